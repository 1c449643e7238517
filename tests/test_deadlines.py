"""Time bounds: a status call ends within wait_seconds + a fixed bound, retries included; a stalled or
crawling download is abandoned per stem; downloads cannot starve submits and status reads."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from musicgpt_mcp.musicgpt import storage, transport
from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import connect, make_settings
from .test_status import submit, text_of

pytestmark = pytest.mark.anyio


def in_progress(task_id: str) -> bytes:
    return json.dumps({"success": True, "conversion": {"task_id": task_id, "status": "IN_PROGRESS"}}).encode()


async def timed(client: Any, tool: str, args: dict[str, Any], limit: float) -> tuple[Any, float]:
    """The call's result and duration; None after `limit` seconds (so old behaviour fails, not hangs)."""
    started = time.monotonic()
    result = None
    with anyio.move_on_after(limit):
        result = await client.call_tool(tool, args)
    return result, time.monotonic() - started


async def test_a_dripping_status_reply_is_cut_off(
    sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte every half second never trips a 2 s read timeout; the call's own bound ends it."""
    monkeypatch.setattr(transport, "STATUS_BOUND", 3.0)
    async with connect(make_settings(sandbox, read_timeout=2.0)) as client:
        task_id = await submit(client, song)
        sandbox.state.queue_fault("status", Fault(status=200, action="drip", body=in_progress(task_id), delay=0.5))
        result, elapsed = await timed(client, "get_extraction", {"task_id": task_id}, 20)
    assert result is not None, "the call was still running after 20 s"
    assert elapsed < 3.0 + 3
    assert result.is_error
    assert text_of(result) == (
        "Error executing tool get_extraction: Checking the job's status with MusicGPT did not complete in time: "
        "MusicGPT was answering too slowly. Try again in a minute."
    )


async def test_retries_fit_in_the_time_left(sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A status read inside a wait used to retry for up to 30 s more; now only in the time left."""
    monkeypatch.setattr(transport, "STATUS_BOUND", 3.0)
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        sandbox.state.queue_fault("status", Fault(status=200, body=in_progress(task_id)))
        sandbox.state.queue_fault("status", Fault(status=503, body=b"", headers=(("Retry-After", "20"),)))
        result, elapsed = await timed(client, "get_extraction", {"task_id": task_id, "wait_seconds": 4}, 30)
    assert result is not None
    assert elapsed < 4 + 3.0 + 2
    assert result.is_error
    assert text_of(result) == (
        "Error executing tool get_extraction: Checking the job's status with MusicGPT failed after retries: "
        "HTTP 503. Try again in a minute."
    )
    assert sandbox.state.status_calls == 2  # the first poll, then the 503 that was not retried


async def test_a_crawling_download_is_abandoned(
    sandbox: Sandbox, song: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "DOWNLOAD_GRACE", 1.0)
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task_id = await submit(client, song, ["vocals", "drums"])
        sandbox.state.queue_fault("download", Fault(status=200, action="drip", size=64, delay=0.25))
        result, elapsed = await timed(client, "download_stems", {"task_id": task_id}, 20)
    assert result is not None, "the download was still running after 20 s"
    assert elapsed < 8
    assert not result.is_error, text_of(result)
    s = result.structured_content
    assert s is not None
    [saved] = s["files"]
    [skipped] = s["skipped"]
    assert {saved["stem"], skipped["stem"]} == {"vocals", "drums"}  # whichever asked first got the drip
    assert re.fullmatch(r"the download was slower than 16 KiB/s \(\d+ bytes in \d+ s\); abandoned", skipped["reason"])
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == [f"{saved['stem']}.mp3"]


async def test_a_stalled_download_is_abandoned(
    sandbox: Sandbox, song: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "DOWNLOAD_STALL", 1.0)
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task_id = await submit(client, song, ["vocals"])
        # 1000 bytes at once, then nothing for 30 s.
        sandbox.state.queue_fault("download", Fault(status=200, action="drip", size=1000, delay=30))
        result, elapsed = await timed(client, "download_stems", {"task_id": task_id}, 15)
    assert result is not None, "the download was still running after 15 s"
    assert elapsed < 8
    assert result.is_error
    assert text_of(result).endswith(f"{task_id}. vocals: the storage server sent nothing for 1 s; abandoned")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


async def test_downloads_cannot_starve_a_status_call(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    """25 download_stems calls of 4 stems each against a storage server that hangs: a status call on
    the side still answers at once, and the process never has more than MAX_DOWNLOADS in flight."""
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task_id = await submit(client, song, ["vocals", "drums", "bass", "piano"])
        sandbox.state.queue_fault("download", Fault(status=200, action="hang", delay=30), times=100)
        async with anyio.create_task_group() as tg:
            for _ in range(25):
                tg.start_soon(client.call_tool, "download_stems", {"task_id": task_id})
            with anyio.fail_after(10):
                while len(sandbox.state.downloads) < transport.MAX_DOWNLOADS:
                    await anyio.sleep(0.05)
            await anyio.sleep(0.5)  # time for any download beyond the limit to show up
            in_flight = len(sandbox.state.downloads)
            result, elapsed = await timed(client, "get_extraction", {"task_id": task_id}, 20)
            tg.cancel_scope.cancel()
    assert result is not None
    assert not result.is_error, text_of(result)
    assert elapsed < 5
    assert in_flight == transport.MAX_DOWNLOADS
