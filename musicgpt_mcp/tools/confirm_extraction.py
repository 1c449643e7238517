"""confirm_extraction: the user's answer to a quote, from the stem view only (hidden from the model). Approving
sends the paid job (once, whatever the clicks); cancelling sends nothing."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from mcp.types import CallToolResult
from pydantic import Field

from .. import player, quotes, summaries, uploads
from ..models import ExtractionSubmitted
from .args import CurrentCall, result
from .extract_stems import submitted_model
from .spec import ToolSpec
from .studio import send, unsent, upload_folder

DESCRIPTION = """\
For the stem view (not for the model): the user's answer to a quote extract_stems made. approve sends the \
paid job (costs credits; one job per quote, however often approved); cancel sends nothing. Needs the approval \
token only the view holds."""

QuoteId = Annotated[str, Field(description="The quote's id, from the view's _meta.", max_length=64)]
Approval = Annotated[str, Field(description="The approval token the view was given with the quote.", max_length=128)]
Decision = Annotated[Literal["approve", "cancel"], Field(description="approve (pay for the job) or cancel.")]


async def confirm_extraction(
    call: CurrentCall, quote: QuoteId, approval: Approval, decision: Decision = "approve"
) -> Annotated[CallToolResult, ExtractionSubmitted]:
    ledger = await call.ledger()
    key = call.accounts.view_key()
    if decision == "cancel":
        cancelled = await quotes.cancel(ledger, key, call.owner, quote, approval)
        if cancelled.spec.get("upload"):  # the user's song is not kept for a job they declined
            await uploads.discard(ledger, str(cancelled.spec["upload"]), upload_folder(call))
        request = quotes.request_of(cancelled)
        model = unsent("cancelled", request, request.source_kind)
        return result(f"The user cancelled the quote for {request.source_name}: nothing was submitted.", model)
    outcome = await quotes.approve(ledger, key, call.owner, quote, approval, lambda q: send(call, q))
    submitted = submitted_model(outcome.job, outcome.reused, time.time())
    text = summaries.submitted(submitted, outcome.job.status, downloads_offered=call.state.offers_downloads)
    return result(f"The user approved the job in the stem view. {text}", submitted)


SPEC = ToolSpec(
    fn=confirm_extraction,
    name="confirm_extraction",
    title="Approve or cancel a quoted extraction (stem view)",
    description=DESCRIPTION,
    read_only=False,
    idempotent=True,
    meta=player.ui("app"),
)
