"""download_stems: save a finished job's stems to the user's disk. Free."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ResourceLink
from pydantic import Field

from .. import downloads, player, summaries
from ..call import Call
from ..catalog import STEM_DESCRIPTIONS, STEMS, Stem
from ..config import Settings
from ..ledger import Download
from ..models import SavedFile, SkippedStem, StemsDownloaded
from ..musicgpt.contract import StatusReply
from ..state import Transport
from .args import DownloadCall, RootsForOutputDir, StemList, TaskId, allowed, catalog_names, result
from .spec import ToolSpec

DESCRIPTION = """\
Save a finished job's stems to the user's disk and return the file paths. Free (no credits). Call it \
after get_extraction reports succeeded=true.

Files are named after the stem (vocals.mp3, ...) in a folder per job under the user's MusicGPT output \
folder; existing files are never overwritten. Tell the user where the files are."""

Stems = Annotated[
    StemList | None,
    Field(description="Which stems to save, each named once. Omit to save every stem the job produced."),
]
Format = Annotated[
    Literal["mp3", "wav"],
    Field(description="mp3 (smaller, the default) or wav (lossless, for editing and production)."),
]
OutputDir = Annotated[
    str | None,
    Field(
        description=(
            "Folder to save into; omit unless the user names one. It must lie inside the user's MusicGPT output folder."
        ),
        max_length=4096,
    ),
]


async def download_stems(
    call: DownloadCall,
    task_id: TaskId,
    stems: Stems = None,
    format: Format = "mp3",
    output_dir: OutputDir = None,
    client_roots: RootsForOutputDir = None,
) -> Annotated[CallToolResult, StemsDownloaded]:
    wanted = catalog_names("stems", stems, STEMS, "a stem MusicGPT separates") if stems else None
    job = await call.book.known(task_id)
    # Saving is allowed into the output folder, and into folders the user listed or the client offered as
    # roots, but never into the whole home folder just because reading falls back to it.
    extra = allowed(call, client_roots)
    directory = downloads.resolve_output_dir(
        output_dir,
        call.settings.output_dir,
        downloads.folder_name(job.source_name if job is not None else None, task_id),
        also_allowed=extra.dirs if extra.origin != "your home folder" else (),
    )
    status = await call.book.finished_stems(task_id, "download")
    jobs, skipped = _wanted(task_id, status, format, wanted)
    present, to_fetch = await downloads.saved_before(job.downloads if job is not None else (), jobs, format, directory)
    fetched, failed = await _save(call, to_fetch, format, directory)
    skipped += failed
    now = time.time()
    recorded = [Download(s.stem, str(s.path), format, s.bytes, now, s.sha256) for s in fetched]
    await call.book.record_downloads(task_id, recorded)
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
    return result(summaries.downloaded(downloaded), downloaded, *_links(downloaded, format))


def _wanted(
    task_id: str, status: StatusReply, fmt: str, wanted: list[Stem] | None
) -> tuple[list[tuple[Stem, str]], list[downloads.Skipped]]:
    """The (stem, url) pairs to save, and what MusicGPT listed that cannot be; ToolError when nothing can."""
    urls = status.mp3 if fmt == "mp3" else status.wav
    jobs, skipped, missing = downloads.plan(urls, wanted)
    if missing:
        available = ", ".join(sorted(k for k in urls if k in STEM_DESCRIPTIONS)) or "none"
        raise ToolError(
            f"Extraction {task_id} has no {fmt} file for {', '.join(missing)}. Stems available as "
            f"{fmt}: {available}. Nothing was downloaded."
        )
    if not jobs:
        raise ToolError(
            f"Extraction {task_id} finished, but MusicGPT listed no {fmt} stems that can be downloaded"
            + (f" ({'; '.join(f'{s.stem}: {s.reason}' for s in skipped)})" if skipped else "")
            + (". Try format='wav'." if fmt == "mp3" and status.wav else ".")
        )
    return jobs, skipped


async def _save(
    call: Call, jobs: list[tuple[Stem, str]], fmt: str, directory: Path
) -> tuple[list[downloads.Saved], list[downloads.Skipped]]:
    async def on_bytes(total: int) -> None:
        await call.progress(total, None, f"downloaded {summaries.size(total)}")

    try:
        return await downloads.save_stems(
            call.client, jobs, fmt, directory, max_bytes=call.settings.max_download_bytes, on_bytes=on_bytes
        )
    except OSError as exc:
        raise ToolError(
            f"Could not write to {directory}: {exc.strerror or type(exc).__name__}. Check that the folder is "
            "writable and the disk has space, or set MUSICGPT_MCP_OUTPUT_DIR to another folder."
        ) from None


def _links(downloaded: StemsDownloaded, fmt: Literal["mp3", "wav"]) -> list[ResourceLink]:
    return [
        ResourceLink(
            type="resource_link",
            uri=Path(f.path).as_uri(),
            name=Path(f.path).name,
            title=f"{f.stem} stem ({fmt})",
            mime_type=downloads.AUDIO_MIME[fmt],
            size=f.bytes,
        )
        for f in downloaded.files
    ]


def offered(settings: Settings, transport: Transport) -> bool:
    """Over HTTP the server's disk is not the user's: without a folder the operator chose there is nowhere to
    save for them, and get_extraction links the stem files instead."""
    return transport == "stdio" or settings.output_dir_configured


SPEC = ToolSpec(
    fn=download_stems,
    name="download_stems",
    title="Download extracted stems",
    description=DESCRIPTION,
    read_only=False,
    idempotent=True,
    # The view shows the saved stems, and may save them itself through this tool, into the output folder, when
    # the user clicks Save in a host that cannot save a file (get_extraction's _meta says when it may).
    meta=player.ui("model", "app"),
    available=offered,
)
