"""extract_stems through the protocol against the sandbox: what MusicGPT receives, what the model sees."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from musicgpt_mcp.musicgpt import multipart
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.sandbox.audio import mp3_silence

from . import audio_samples
from .conftest import SECRET_KEY, connect, make_settings

pytestmark = pytest.mark.anyio


async def test_file_submission_on_the_wire(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool(
            "extract_stems",
            {"audio_file": str(song), "stems": ["vocals", "instrumental"], "preprocessing_options": ["Denoise"]},
        )
    assert not result.is_error, result.content
    [received] = sandbox.state.submits()
    assert received.authorization == SECRET_KEY  # raw key, no "Bearer"
    assert received.content_type.startswith("multipart/form-data; boundary=")
    assert received.fields == {"stems": '["vocals", "instrumental"]', "preprocessing_options": '["Denoise"]'}
    [part] = received.files
    assert part.field == "audio_file"
    assert part.filename == "My Song (demo).wav"
    assert part.content_type == "audio/wav"
    assert part.size == song.stat().st_size
    assert part.sha256 == hashlib.sha256(song.read_bytes()).hexdigest()

    structured = result.structured_content
    assert structured is not None
    job = sandbox.state.jobs[structured["task_id"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", structured.pop("submitted_at"))
    assert structured == {
        "state": "submitted",
        "task_id": job.task_id,
        "conversion_id": job.conversion_id,
        "eta": 3,
        "credit_estimate": 1.25,
        "stems": ["vocals", "instrumental"],
        "preprocessing_options": ["Denoise"],
        "source": "My Song (demo).wav",
        "source_type": "file",
        "reused": False,
        "expires_at": None,
    }
    text = result.content[0].text  # type: ignore[union-attr]
    assert job.task_id in text and "about 3 s" in text and "1.25 credits" in text


async def test_url_submission_on_the_wire(sandbox: Sandbox) -> None:
    url = "https://example.com/music/track.mp3?x=1&y=2"
    async with connect(make_settings(sandbox, webhook_urls=("https://hooks.example.com/musicgpt",))) as client:
        result = await client.call_tool(
            "extract_stems", {"audio_url": url, "webhook_url": "https://hooks.example.com/musicgpt?secret=s3"}
        )
    assert not result.is_error, result.content
    [received] = sandbox.state.submits()
    assert received.files == ()
    assert received.content_type.startswith("multipart/form-data")
    assert received.fields == {
        "stems": "[]",
        "preprocessing_options": "[]",
        "audio_url": url,
        "webhook_url": "https://hooks.example.com/musicgpt?secret=s3",
    }
    assert json.loads(received.fields["stems"]) == []
    structured = result.structured_content
    assert structured is not None
    # No stems named: MusicGPT's default band, and the result says so.
    assert structured["stems"] == ["drums", "bass", "piano", "guitar"]
    assert structured["source_type"] == "url" and structured["source"] == url
    assert structured["credit_estimate"] == 2.0


async def test_empty_string_counts_as_absent(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(song), "audio_url": "", "webhook_url": ""})
    assert not result.is_error, result.content
    [received] = sandbox.state.submits()
    assert "audio_url" not in received.fields and "webhook_url" not in received.fields
    assert [f.field for f in received.files] == ["audio_file"]


async def test_tilde_path_expands_to_home(sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(song.parent))
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": f"~/{song.name}"})
    assert not result.is_error, result.content
    assert sandbox.state.submits()[0].files[0].sha256 == hashlib.sha256(song.read_bytes()).hexdigest()


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache, so reading it waits for the disk again."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.parametrize("reads", ["page cache", "disk", "mixed", "no RWF_NOWAIT"])
async def test_large_file_streams_intact(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: str
) -> None:
    """Several upload chunks plus a ragged tail, read from the page cache on the event loop, or (what
    would wait for the disk, or a file system without RWF_NOWAIT) in worker threads, or both in turn."""
    path = tmp_path / "big.mp3"
    with path.open("wb") as f:
        f.write(audio_samples.id3())
        f.write(mp3_silence(400.0))  # about 6.4 MB of MPEG frames
        f.write(b"tail" * 1001)
    in_threads: list[int] = []
    read_unchanged = multipart.read_unchanged
    monkeypatch.setattr(multipart, "read_unchanged", lambda *a: in_threads.append(a[2]) or read_unchanged(*a))
    preadv = os.preadv
    if reads == "disk":
        # Each chunk's pages are dropped just before the kernel is asked whether it holds them (dropped once,
        # before the upload, read-ahead and the machine's load could bring every chunk back: seen once).
        evict(path)

        def preadv_evicted(fd: int, buffers: Any, offset: int, *flags: int) -> int:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            return preadv(fd, buffers, offset, *flags)

        monkeypatch.setattr(os, "preadv", preadv_evicted)
    elif reads != "page cache":

        def preadv_sometimes(fd: int, buffers: Any, offset: int, *flags: int) -> int:
            if reads == "no RWF_NOWAIT":
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            if offset // multipart.CHUNK_SIZE % 2 == 0:  # every other chunk "on disk"
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            return preadv(fd, buffers, offset, *flags)

        monkeypatch.setattr(os, "preadv", preadv_sometimes)
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(path), "stems": ["drums"]})
    assert not result.is_error, result.content
    [part] = sandbox.state.submits()[0].files
    assert part.content_type == "audio/mpeg"
    assert part.size == path.stat().st_size
    assert part.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    every_chunk = list(range(0, path.stat().st_size, multipart.CHUNK_SIZE))
    if reads == "disk":
        # Read-ahead still in flight when a chunk's pages are dropped can bring some back (seen under load), so
        # not every chunk need go to a thread; but chunks do, in order.
        assert in_threads and in_threads == sorted(set(in_threads)) and set(in_threads) <= set(every_chunk)
    else:
        assert in_threads == {"page cache": [], "mixed": every_chunk[::2], "no RWF_NOWAIT": every_chunk}[reads]


async def test_upload_reports_progress(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "long.mp3"
    path.write_bytes((audio_samples.id3() + mp3_silence(200.0))[: 3 * 1024 * 1024 + 10])
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(path)}, progress_callback=on_progress)
    assert not result.is_error, result.content
    size = path.stat().st_size
    assert updates, "no progress during the upload"
    assert updates[-1] == (size, size, "uploaded 3.0 MB of 3.0 MB")
    assert [u[0] for u in updates] == sorted(u[0] for u in updates)
    assert all(u[1] == size for u in updates)


@pytest.mark.parametrize(
    ("stems", "cost"),
    [(["vocals"], "0.5 credits"), (["vocals", "drums"], "1 credit"), (["vocals", "drums", "bass"], "1.5 credits")],
)
async def test_cost_is_counted_in_words_a_person_would_use(sandbox: Sandbox, stems: list[str], cost: str) -> None:
    """The sandbox prices 0.5 credit a stem; exactly one credit is singular (issue #14: "1 credits")."""
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3", "stems": stems})
    text = result.content[0].text  # type: ignore[union-attr]
    assert f"; estimated cost: {cost}. Next:" in text
