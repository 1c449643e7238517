"""download_stems: save a finished job's stems to the user's disk. Free."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ResourceLink
from pydantic import Field

from .. import downloads, player, summaries
from ..catalog import STEM_DESCRIPTIONS, STEMS
from ..ledger import Download
from ..models import SavedFile, SkippedStem, StemsDownloaded
from ..state import AppState, app_state
from .common import RootsForOutputDir, StemList, TaskId, ToolSpec, allowed, catalog_names, result

DESCRIPTION = """\
Save a finished job's stems to the user's disk and return the file paths. Free (no credits). Call it \
after get_extraction reports succeeded=true.

Files are named after the stem (vocals.mp3, ...) in a folder per job under the user's MusicGPT output \
folder; existing files are never overwritten. Tell the user where the files are."""


async def download_stems(
    ctx: Context[AppState],
    task_id: TaskId,
    stems: Annotated[
        StemList | None,
        Field(
            description="Which stems to save, each named once. Omit to save every stem the job produced.",
        ),
    ] = None,
    format: Annotated[
        Literal["mp3", "wav"],
        Field(description="mp3 (smaller, the default) or wav (lossless, for editing and production)."),
    ] = "mp3",
    output_dir: Annotated[
        str | None,
        Field(
            description=(
                "Folder to save into; omit unless the user names one. It must lie inside the user's MusicGPT "
                "output folder."
            ),
            max_length=4096,
        ),
    ] = None,
    client_roots: RootsForOutputDir = None,
) -> Annotated[CallToolResult, StemsDownloaded]:
    state = app_state(ctx)
    wanted = catalog_names("stems", stems, STEMS, "a stem MusicGPT separates") if stems else None
    _, settings = state.require()
    who = state.who()
    job = await state.known_job(who, task_id)
    # Saving is allowed into the output folder, and into folders the user listed or the client
    # offered as roots, but never into the whole home folder just because reading falls back to it.
    extra = allowed(state, client_roots)
    also = extra.dirs if extra.origin != "your home folder" else ()
    directory = downloads.resolve_output_dir(
        output_dir,
        settings.output_dir,
        downloads.folder_name(job.source_name if job is not None else None, task_id),
        also_allowed=also,
    )
    status = await who.client.get_status(task_id)
    await state.remember_status(who, task_id, status, job)
    if status.failed:
        reason = f": {status.status_message}" if status.status_message else ""
        raise ToolError(f"Extraction {task_id} {status.status}{reason}. It produced no stems to download.")
    if not status.done:
        raise ToolError(
            f"Extraction {task_id} is not finished yet (status {status.status}). Call get_extraction with "
            f"task_id={task_id!r} and wait_seconds={settings.max_wait} to wait for it, then download_stems again."
        )
    urls = status.mp3 if format == "mp3" else status.wav
    jobs, skipped, missing = downloads.plan(urls, wanted)
    if missing:
        available = ", ".join(sorted(k for k in urls if k in STEM_DESCRIPTIONS)) or "none"
        raise ToolError(
            f"Extraction {task_id} has no {format} file for {', '.join(missing)}. Stems available as "
            f"{format}: {available}. Nothing was downloaded."
        )
    if not jobs:
        raise ToolError(
            f"Extraction {task_id} finished, but MusicGPT listed no {format} stems that can be downloaded"
            + (f" ({'; '.join(f'{s.stem}: {s.reason}' for s in skipped)})" if skipped else "")
            + (". Try format='wav'." if format == "mp3" and status.wav else ".")
        )

    async def on_bytes(total: int) -> None:
        await ctx.report_progress(total, None, f"downloaded {summaries.size(total)}")

    present, to_fetch = await downloads.saved_before(job.downloads if job is not None else (), jobs, format, directory)
    try:
        fetched, failed = await downloads.save_stems(
            who.client, to_fetch, format, directory, max_bytes=settings.max_download_bytes, on_bytes=on_bytes
        )
    except OSError as exc:
        raise ToolError(
            f"Could not write to {directory}: {exc.strerror or type(exc).__name__}. Check that the folder is "
            "writable and the disk has space, or set MUSICGPT_MCP_OUTPUT_DIR to another folder."
        ) from None
    skipped += failed
    now = time.time()
    await state.remember_downloads(
        who, task_id, [Download(s.stem, str(s.path), format, s.bytes, now, s.sha256) for s in fetched]
    )
    saved = downloads.in_order(present + fetched, jobs)
    if not saved:
        reasons = "; ".join(f"{s.stem}: {s.reason}" for s in skipped)
        raise ToolError(f"No stems could be saved for extraction {task_id}. {reasons}")
    downloaded = StemsDownloaded(
        task_id=task_id,
        directory=str(directory),
        files=[
            SavedFile(stem=s.stem, path=str(s.path), format=format, bytes=s.bytes, already_present=s.already_present)
            for s in saved
        ],
        skipped=[SkippedStem(stem=s.stem, reason=s.reason) for s in skipped],
    )
    links = [
        ResourceLink(
            type="resource_link",
            uri=Path(f.path).as_uri(),
            name=Path(f.path).name,
            title=f"{f.stem} stem ({format})",
            mime_type=downloads.AUDIO_MIME[format],
            size=f.bytes,
        )
        for f in downloaded.files
    ]
    return result(summaries.downloaded(downloaded), downloaded, *links)


SPEC = ToolSpec(
    fn=download_stems,
    name="download_stems",
    title="Download extracted stems",
    description=DESCRIPTION,
    read_only=False,
    idempotent=True,
    # The player shows the saved stems; the view itself may not call this tool (it writes to disk).
    meta=player.ui("model"),
)
