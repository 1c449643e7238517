"""The tools' side of the studio (quotes.py, uploads.py): what the stem view is handed to act on, and the submit
an approval makes.

Everything the view needs to approve or to upload (the quote's id and its approval token, an upload's ticket)
goes into the result's `_meta`, which hosts give the view and not the model; `content` and `structuredContent`,
which the model reads, never carry a token.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final, Literal

from mcp.types import CallToolResult

from .. import quotes, submission, summaries, uploads
from ..call import Call
from ..config import Settings, default_state_dir
from ..ledger import JobRequest
from ..ledger.base import iso
from ..ledger.studio import Quote, find_upload, set_quote
from ..models import ExtractionSubmitted
from ..musicgpt import ExtractionRequest
from ..musicgpt.multipart import FilePart
from .args import result
from .extract_plan import policy

QUOTE_META: Final = "musicgpt-mcp/quote"
UPLOAD_META: Final = "musicgpt-mcp/upload"
UPLOADS_PER_HOUR: Final = 20


def upload_folder(call: Call) -> Path:
    return uploads_in(call.settings)


def uploads_in(settings: Settings) -> Path:
    """Where this process keeps its copies of uploaded songs: private, in the state folder."""
    return (settings.state_dir or default_state_dir()) / "uploads"


def unsent(
    state: Literal["awaiting_approval", "awaiting_audio", "cancelled"],
    request: JobRequest,
    source_type: str | None,
    expires_at: float | None = None,
) -> ExtractionSubmitted:
    """The result of a call that sent nothing to MusicGPT (yet): no task, no cost, what would be split."""
    return ExtractionSubmitted(
        state=state,
        task_id=None,
        conversion_id=None,
        eta=-1,
        credit_estimate=None,
        stems=list(request.stems),  # type: ignore[arg-type] # catalog names, checked by the plan
        preprocessing_options=list(request.options),  # type: ignore[arg-type]
        source=request.source_name if source_type else None,
        source_type=source_type,  # type: ignore[arg-type]
        submitted_at=None,
        reused=False,
        expires_at=iso(expires_at) if expires_at is not None else None,
    )


async def quote(
    call: Call, request: JobRequest, extraction: ExtractionRequest, force_new: bool, question: str, upload: str = ""
) -> tuple[ExtractionSubmitted, dict[str, Any]]:
    """A quote for the job (or the open one standing for it): what the model reads, and the view's `_meta`."""
    spec = quotes.spec_of(request, extraction, policy(call.settings, force_new), question)
    if upload:
        spec.update(file=None, upload=upload)  # any replica makes its own copy from the ledger when approved
    offer = await quotes.offer(await call.ledger(), call.accounts.view_key(), request, spec, time.time())
    shown = offer.quote
    model = unsent("awaiting_approval", request, "upload" if upload else request.source_kind, shown.expires_at)
    # Nothing here repeats what the model reads (expires_at is in the structured result, which the view has too).
    # The question of the quote that stands, which is what an approval sends (an identical call's may differ in
    # wording, e.g. the recent costs it quotes).
    meta = {"id": shown.id, "approval": offer.approval, "question": shown.spec.get("question", question)}
    return model, {QUOTE_META: meta}


def quoted(model: ExtractionSubmitted, meta: dict[str, Any]) -> CallToolResult:
    reply = result(summaries.awaiting(model), model)
    reply.meta = meta
    return reply


async def ask_for_audio(call: Call, request: JobRequest, force_new: bool) -> CallToolResult:
    """No song named, in a host that shows the view: the view asks the user for one, and uploads it."""
    spec = {"stems": list(request.stems), "options": list(request.options), "force_new": force_new}
    ledger = await call.ledger()
    await uploads.tidy(ledger, upload_folder(call), time.time())
    ticket = await uploads.begin(ledger, call.accounts.view_key(), call.owner, spec, time.time(), UPLOADS_PER_HOUR)
    model = unsent("awaiting_audio", request, None, ticket.upload.expires_at)
    meta = {
        "id": ticket.upload.id,
        "ticket": ticket.ticket,
        "max_bytes": uploads.limit(call.settings.max_upload_bytes),
        "slice_bytes": uploads.MAX_SLICE,
    }
    reply = result(summaries.awaiting(model), model)
    reply.meta = {UPLOAD_META: meta}
    return reply


async def send(call: Call, quote: Quote) -> submission.Outcome:
    """The submit an approval makes: through the claim, like any paid job; an uploaded song from this replica's
    own copy of it, which is forgotten once its job is accepted."""
    ledger = await call.ledger()
    upload_id = str(quote.spec.get("upload") or "")
    part: FilePart | None = None
    if upload_id:
        upload = await find_upload(ledger, call.owner, upload_id)
        if upload is None or upload.expires_at <= time.time():
            raise uploads.UploadRefused("The song uploaded for this quote is gone (it expired); upload it again.")
        part = await uploads.local_copy(ledger, upload, upload_folder(call), call.settings.max_upload_bytes)

    async def claimed(job_id: int) -> None:
        await set_quote(ledger, quote.id, "approving", job_id=job_id)

    outcome = await submission.submit(
        ledger,
        call.client,
        quotes.request_of(quote),
        quotes.extraction_of(quote, part),
        policy(call.settings, bool(quote.spec.get("force_new"))),
        on_claim=claimed,
    )
    if upload_id:
        await uploads.discard(ledger, upload_id, upload_folder(call))
    return outcome
