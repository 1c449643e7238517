"""get_extraction: look at a job, or wait for it with progress. Free."""

from __future__ import annotations

import time
from typing import Annotated

from mcp.types import CallToolResult, ResourceLink
from pydantic import Field

from .. import player, summaries
from ..clients import abilities
from ..downloads import AUDIO_MIME
from ..models import ExtractionStatus
from .args import StatusCall, TaskId, result
from .spec import ToolSpec

DESCRIPTION = """\
Check a stem extraction job submitted with extract_stems, optionally waiting for it to finish. Free \
(no credits).

With wait_seconds > 0 the call waits (sending progress notifications) until the job is done or the \
wait is over, whichever comes first; if it returns with done=false, call it again. A job that \
FAILED or ended in ERROR is reported with MusicGPT's reason (done=true, succeeded=false). When \
succeeded is true, call download_stems to save the stems."""


Wait = Annotated[
    int,
    Field(
        description=(
            "How long to wait for the job to finish, in seconds. 0 (the default) just looks. Waits "
            "are capped by the server (50 s unless configured otherwise) so the call returns before "
            "hosts time out; call again to keep waiting."
        ),
        ge=0,
        le=3600,
    ),
]


async def get_extraction(
    call: StatusCall, task_id: TaskId, wait_seconds: Wait = 0
) -> Annotated[CallToolResult, ExtractionStatus]:
    wait = min(wait_seconds, call.settings.max_wait)
    refreshed = await call.book.refresh(task_id, wait, call.progress)
    extraction = summaries.status_model(task_id, refreshed.status, refreshed.waited)
    eta_left = refreshed.eta_left(time.time())
    offered = call.state.offers_downloads
    text = summaries.status(extraction, eta_left, wait_seconds, wait, downloads_offered=offered)
    reply = result(text, extraction, *([] if offered else stem_links(extraction)))
    if abilities(call.ctx).renders_apps:
        if eta_left is not None and not extraction.done:
            reply.meta = {player.ETA_META: max(0, round(eta_left))}
        elif extraction.succeeded and offered:
            # The view may save the stems through download_stems (into the output folder) when the host cannot
            # save a file itself (no `downloadFile`).
            reply.meta = {player.SAVES_META: "server"}
    return reply


def stem_links(extraction: ExtractionStatus) -> list[ResourceLink]:
    """One link per stem file, for hosts of a shared server that does not save to its own disk."""
    if not extraction.succeeded:
        return []
    links = []
    for stem, urls in extraction.stems.items():
        for fmt, url in (("mp3", urls.mp3_url), ("wav", urls.wav_url)):
            if url:
                links.append(
                    ResourceLink(
                        type="resource_link",
                        uri=url,
                        name=f"{stem}.{fmt}",
                        title=f"{stem} stem ({fmt})",
                        mime_type=AUDIO_MIME[fmt],
                    )
                )
    return links


SPEC = ToolSpec(
    fn=get_extraction,
    name="get_extraction",
    title="Check or wait for a stem extraction",
    description=DESCRIPTION,
    read_only=True,
    idempotent=True,
    meta=player.ui("model", "app"),
)
