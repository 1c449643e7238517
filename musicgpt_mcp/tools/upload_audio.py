"""upload_audio: a slice of the song the user picked in the stem view (hidden from the model). The last slice
makes the song a checked local file and answers with the job it asks for: a quote the user approves in the view
(or, with MUSICGPT_MCP_CONFIRM=never, the job itself)."""

from __future__ import annotations

import time
from typing import Annotated

from mcp.types import CallToolResult
from pydantic import Field

from .. import player, submission, summaries, uploads
from ..call import Call
from ..fingerprint import fingerprint_file
from ..ledger import JobRequest
from ..ledger.studio import Upload
from ..models import UploadReceived
from ..musicgpt import ExtractionRequest
from ..visible import shown
from .args import CurrentCall, result
from .extract_plan import policy
from .extract_stems import submitted_model
from .spec import ToolSpec
from .studio import quote, upload_folder

DESCRIPTION = f"""\
For the stem view (not for the model): one slice (base64, at most {uploads.MAX_SLICE} bytes) of the song the \
user picked, from byte offset on; send the slices in order. The last one answers with the job: a quote for the \
user to approve in the view. Needs the upload ticket only the view holds. Free; approving the quote is what \
costs credits."""

UploadId = Annotated[str, Field(description="The upload's id, from the view's _meta.", max_length=64)]
Ticket = Annotated[str, Field(description="The upload ticket the view was given.", max_length=128)]
FileName = Annotated[str, Field(description="The file's name, as the user picked it.", min_length=1, max_length=400)]
Total = Annotated[int, Field(description="The whole file's size in bytes.", ge=1)]
Offset = Annotated[int, Field(description="Where this slice starts in the file, in bytes.", ge=0)]
Data = Annotated[str, Field(description="The slice's bytes, base64-encoded.", min_length=1, max_length=720_000)]


async def upload_audio(
    call: CurrentCall, upload: UploadId, ticket: Ticket, file_name: FileName, total_bytes: Total, offset: Offset,
    data: Data,
) -> Annotated[CallToolResult, UploadReceived]:  # fmt: skip
    ledger = await call.ledger()
    now, key, limit = time.time(), call.accounts.view_key(), call.settings.max_upload_bytes
    got = await uploads.receive(
        ledger, key, call.owner, upload, ticket, file_name, total_bytes, offset, data, limit, now
    )
    if got.received < total_bytes:
        progress = UploadReceived(received=got.received, total_bytes=total_bytes, done=False, job=None)
        return result(f"Received {summaries.size(got.received)} of {summaries.size(total_bytes)}.", progress)
    return await _arrived(call, got)


async def _arrived(call: Call, got: Upload) -> CallToolResult:
    """The whole song is here: check it like any file, then quote the job (or send it, when nobody is asked)."""
    ledger = await call.ledger()
    part = await uploads.local_copy(ledger, got, upload_folder(call), call.settings.max_upload_bytes)
    stems, options, force_new = list(got.spec["stems"]), list(got.spec["options"]), bool(got.spec["force_new"])
    request = JobRequest(
        call.owner, call.account, await fingerprint_file(part, ledger), "file", shown(part.filename), tuple(stems),
        tuple(options),
    )  # fmt: skip
    extraction = ExtractionRequest(stems, options, audio_file=part)
    total = got.total_bytes or part.size
    if call.settings.confirm == "never":
        outcome = await submission.submit(ledger, call.client, request, extraction, policy(call.settings, force_new))
        await uploads.discard(ledger, got.id, upload_folder(call))
        job = submitted_model(outcome.job, outcome.reused, time.time())
        done = UploadReceived(received=total, total_bytes=total, done=True, job=job)
        return result(summaries.submitted(job, outcome.job.status, downloads_offered=call.state.offers_downloads), done)
    costs = await ledger.recent_costs(request, 3)
    question = summaries.consent_question(request, part.size, None, costs)
    model, meta = await quote(call, request, extraction, force_new, question, upload=got.id)
    reply = result(summaries.awaiting(model), UploadReceived(received=total, total_bytes=total, done=True, job=model))
    reply.meta = meta
    return reply


SPEC = ToolSpec(
    fn=upload_audio,
    name="upload_audio",
    title="Upload a song (stem view)",
    description=DESCRIPTION,
    read_only=False,
    idempotent=False,
    meta=player.ui("app"),
)
