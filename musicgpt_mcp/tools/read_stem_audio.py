"""read_stem_audio: a stem's audio in slices, for the player view only (hidden from the model). Free."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult
from pydantic import Field

from .. import downloads, player, summaries
from ..call import Call
from ..catalog import STEM_DESCRIPTIONS, STEMS, Stem
from ..models import StemAudioChunk
from ..musicgpt import MusicGPTError
from ..stem_cache import read_chunk
from .args import StatusCall, StemName, TaskId, catalog_names, result
from .spec import ToolSpec

# A slice per call: 512 KiB is ~700 KB of base64 in one JSON-RPC message, small enough for any
# host's postMessage and tool-result limits, and a 4 MB MP3 stem still arrives in 8 calls.
MAX_SLICE = 512 * 1024

DESCRIPTION = """\
For the stem player view (not for the model): one slice of a finished job's stem file, base64-encoded, \
at most 512 KiB per call; call again from offset + length until eof is true. Reads the file download_stems \
saved when there is one, otherwise the server fetches the stem from MusicGPT's storage once and keeps it \
in a private cache. Free (no credits)."""


Stem_ = Annotated[StemName, Field(description="Which stem of the job to read.")]
Format = Annotated[Literal["mp3", "wav"], Field(description="mp3 (smaller, the default) or wav, as the job lists it.")]
Offset = Annotated[int, Field(description="Byte offset to start at (0 for the first slice).", ge=0)]
Length = Annotated[int, Field(description=f"Bytes to read, at most {MAX_SLICE} (512 KiB).", ge=1, le=MAX_SLICE)]


async def read_stem_audio(
    call: StatusCall,
    task_id: TaskId,
    stem: Stem_,
    format: Format = "mp3",
    offset: Offset = 0,
    length: Length = MAX_SLICE,
) -> Annotated[CallToolResult, StemAudioChunk]:
    [name] = catalog_names("stem", [stem], STEMS, "a stem MusicGPT separates")
    book = call.book
    await book.known(task_id)  # on a shared server, only the caller's own jobs
    source: Literal["saved", "fetched"] = "saved"
    saved = await book.saved_stem(task_id, name, format)
    sliced = await _read(saved, offset, length) if saved is not None else None
    if sliced is None:
        source = "fetched"
        sliced = await _read_fetched(call, task_id, name, format, offset, length)
    data, total = sliced
    if offset > total:
        raise ToolError(f"offset {offset} is past the end of the {name} stem ({total} bytes); start again from 0.")
    chunk = StemAudioChunk(
        task_id=task_id,
        stem=name,
        format=format,
        mime_type=downloads.AUDIO_MIME[format],
        offset=offset,
        length=len(data),
        total_bytes=total,
        eof=offset + len(data) >= total,
        source=source,
        data=base64.b64encode(data).decode("ascii"),
    )
    # The text stays a line whatever the slice's size: the audio is in structured content, for the view.
    end = "the end" if chunk.eof else "more to read"
    text = f"{name}.{format}: bytes {offset}-{offset + len(data)} of {summaries.size(total)} ({end})."
    return result(text, chunk)


async def _read_fetched(
    call: Call, task_id: str, stem: Stem, fmt: Literal["mp3", "wav"], offset: int, length: int
) -> tuple[bytes, int]:
    """The slice from the server's private copy of the stem, fetched from MusicGPT's storage once."""
    cache = call.state.stem_cache

    async def fetch(sink: BinaryIO) -> int:
        return await _fetch(call, task_id, stem, fmt, sink, cache.max_bytes)

    # Twice: another call may evict the file between fetching and reading it, when the cache is full.
    for _ in range(2):
        sliced = await _read(await cache.get(task_id, stem, fmt, fetch), offset, length)
        if sliced is not None:
            return sliced
    raise ToolError(f"The {stem} stem was fetched but its cached copy vanished; call read_stem_audio again.")


async def _read(path: Path, offset: int, length: int) -> tuple[bytes, int] | None:
    """The slice, or None when the file is not there as the regular file it was: deleted or evicted since it was
    recorded, or replaced by a link or a folder (never followed: the stem is fetched again instead)."""
    try:
        return await anyio.to_thread.run_sync(read_chunk, path, offset, length)
    except OSError:
        return None


async def _fetch(
    call: Call, task_id: str, stem: Stem, fmt: Literal["mp3", "wav"], sink: BinaryIO, cache_bytes: int
) -> int:
    status = await call.book.finished_stems(task_id, "play")
    known, _ = downloads.screen(status.mp3 if fmt == "mp3" else status.wav)
    url = known.get(stem)
    if url is None:
        available = ", ".join(sorted(k for k in known if k in STEM_DESCRIPTIONS)) or "none"
        raise ToolError(f"Extraction {task_id} has no {fmt} file for {stem}. Stems available as {fmt}: {available}.")
    try:
        return await call.client.download(url, sink, max_bytes=min(call.settings.max_download_bytes, cache_bytes))
    except MusicGPTError as exc:
        raise ToolError(f"Could not fetch the {stem} stem ({fmt}) from MusicGPT's storage: {exc}") from None


SPEC = ToolSpec(
    fn=read_stem_audio,
    name="read_stem_audio",
    title="Read a stem's audio (player)",
    description=DESCRIPTION,
    read_only=True,
    idempotent=True,
    meta=player.ui("app"),
)
