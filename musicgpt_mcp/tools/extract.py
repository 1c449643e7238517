"""extract_stems: the one paid tool. Checks everything it can before a byte leaves the machine."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult
from pydantic import Field

from .. import summaries
from ..catalog import DEFAULT_STEMS
from ..files import check_audio_file
from ..models import ExtractionSubmitted
from ..musicgpt import ExtractionRequest
from ..state import AppState, Submitted, app_state
from ..urls import check_url, check_webhook_url
from ..waiting import EtaHint
from .common import PreprocessingList, RootsForAudioFile, StemList, ToolSpec, allowed, result

MAX_URL_LENGTH = 2048

DESCRIPTION = """\
Split a song into separate stems (vocals, drums, bass, guitar, piano, ...) with MusicGPT.

Costs money: every call submits a paid job that spends MusicGPT credits from the user's account \
(the result's credit_estimate says about how many). Call it once per song, only when the user asked \
for stems, and do not call it again for the same song just because a call failed: read the error \
first, since some failures leave the job submitted.

Give exactly one of audio_file (a local path) or audio_url. The call returns at once with a task_id \
and an eta in seconds; the stems are not ready yet. Next: call get_extraction with the task_id and \
wait_seconds to wait for the job, then download_stems to save the stems to disk."""


async def extract_stems(
    ctx: Context[AppState],
    audio_file: Annotated[
        str | None,
        Field(
            description=(
                "Absolute path of a local audio file (mp3, wav, flac, m4a, ...), or a path starting "
                "with ~, e.g. ~/Music/song.mp3. The file is uploaded to MusicGPT. Give this or "
                "audio_url, not both."
            ),
            max_length=4096,
        ),
    ] = None,
    audio_url: Annotated[
        str | None,
        Field(
            description=(
                "An http(s) URL of the audio, which MusicGPT fetches itself (this server never "
                "downloads it). Give this or audio_file, not both."
            ),
            max_length=MAX_URL_LENGTH,
        ),
    ] = None,
    stems: Annotated[
        StemList,
        Field(
            description=(
                "Which stems to separate, each named once. Omit or leave empty for MusicGPT's default "
                f"set: {', '.join(DEFAULT_STEMS)}. Use 'instrumental' for a karaoke track, 'vocals' for "
                "an a cappella. Every stem is described in the resource musicgpt://stems."
            ),
            json_schema_extra={"uniqueItems": True},
        ),
    ] = [],  # noqa: B006 - pydantic copies defaults; the schema needs a literal default
    preprocessing_options: Annotated[
        PreprocessingList,
        Field(
            description=(
                "Clean-up applied before separation, each named once: Denoise (background noise), "
                "Deecho (echo), Dereverb (reverb). Usually none; use them for live or home recordings."
            ),
            json_schema_extra={"uniqueItems": True},
        ),
    ] = [],  # noqa: B006
    webhook_url: Annotated[
        str | None,
        Field(
            description=(
                "Optional http(s) URL that MusicGPT will POST the result to when the job finishes. "
                "Only set it when the user gives one; it must start with an address the user configured in "
                "MUSICGPT_MCP_WEBHOOK_URLS, otherwise the call is refused."
            ),
            max_length=MAX_URL_LENGTH,
        ),
    ] = None,
    client_roots: RootsForAudioFile = None,
) -> Annotated[CallToolResult, ExtractionSubmitted]:
    state = app_state(ctx)
    file_arg = audio_file.strip() if audio_file and audio_file.strip() else None
    url_arg = audio_url.strip() if audio_url and audio_url.strip() else None
    if file_arg and url_arg:
        raise ToolError("Give either audio_file or audio_url, not both. Nothing was submitted.")
    if not file_arg and not url_arg:
        raise ToolError(
            "Give the audio to split: audio_file (an absolute local path such as ~/Music/song.mp3) or "
            "audio_url (an http(s) URL). Nothing was submitted."
        )
    if url_arg:
        check_url("audio_url", url_arg)
    hook = webhook_url.strip() if webhook_url and webhook_url.strip() else None
    client, settings = state.require()
    if hook:
        check_webhook_url(hook, settings.webhook_urls)
    part = None
    if file_arg:
        part = await anyio.to_thread.run_sync(
            check_audio_file, file_arg, allowed(settings, client_roots), settings.max_upload_bytes
        )
    request = ExtractionRequest(
        stems=list(stems),
        preprocessing_options=list(preprocessing_options),
        audio_url=url_arg,
        audio_file=part,
        webhook_url=hook,
    )
    reply = await client.submit_extraction(request, _upload_progress(ctx, part.size) if part else None)
    submitted = ExtractionSubmitted(
        task_id=reply.task_id,
        conversion_id=reply.conversion_id,
        eta=reply.eta,
        credit_estimate=reply.credit_estimate,
        stems=list(stems) or list(DEFAULT_STEMS),
        preprocessing_options=list(preprocessing_options),
        source=part.filename if part else (url_arg or ""),
        source_type="file" if part else "url",
    )
    state.remember(reply.task_id, Submitted(EtaHint(time.monotonic(), reply.eta), submitted.source))
    return result(summaries.submitted(submitted), submitted)


def _upload_progress(ctx: Context[AppState], total: int) -> Callable[[int], Awaitable[None]]:
    """Progress for an upload, at most every half second (and at the end): a long upload shows
    movement, and hosts that extend their timeout on progress keep the call alive."""
    last = 0.0

    async def report(sent: int) -> None:
        nonlocal last
        now = time.monotonic()
        if sent < total and now - last < 0.5:
            return
        last = now
        await ctx.report_progress(sent, total, f"uploaded {summaries.size(sent)} of {summaries.size(total)}")

    return report


SPEC = ToolSpec(
    fn=extract_stems,
    name="extract_stems",
    title="Extract stems from a song",
    description=DESCRIPTION,
    read_only=False,
    idempotent=False,
)
