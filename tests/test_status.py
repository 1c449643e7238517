"""get_extraction: every payload shape, waiting with progress, cancellation, the cap, failures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from musicgpt_mcp.ratelimit import RateLimiter
from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import connect, make_settings

pytestmark = pytest.mark.anyio


async def submit(client: Client, song: Path, stems: list[str] | None = None) -> str:
    """A new job every time (force_new: these tests reuse one song and want a job each)."""
    result = await client.call_tool(
        "extract_stems", {"audio_file": str(song), "stems": stems or ["vocals", "drums"], "force_new": True}
    )
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return str(result.structured_content["task_id"])


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("shape", ["prefixed-string", "json-string", "object"])
@pytest.mark.parametrize("keys", ["conversion_path", "audio_url"])
async def test_every_stem_map_shape(sandbox: Sandbox, song: Path, shape: str, keys: str) -> None:
    sandbox.state.stem_shape = shape  # type: ignore[assignment]
    sandbox.state.map_keys = keys  # type: ignore[assignment]
    sandbox.state.cost_as_string = True
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        result = await client.call_tool("get_extraction", {"task_id": task_id})
    assert not result.is_error, result.content
    s = result.structured_content
    assert s is not None
    origin = sandbox.origin
    assert s["status"] == "COMPLETED"
    assert s["done"] is True
    assert s["succeeded"] is True
    assert s["conversion_cost"] == 1.0  # sent as the string "1.0"
    assert s["conversion_id"] == sandbox.state.jobs[task_id].conversion_id
    assert s["stems"] == {
        stem: {
            "mp3_url": f"{origin}/files/{task_id}/{stem}.mp3",
            "wav_url": f"{origin}/files/{task_id}/{stem}.wav",
        }
        for stem in ("vocals", "drums")
    }
    assert s["ignored"] == []
    assert f"download_stems with task_id='{task_id}'" in text_of(result)


async def test_plain_url_shape_names_the_stem_by_file_name(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.stem_shape = "plain-url"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song, ["vocals"])
        result = await client.call_tool("get_extraction", {"task_id": task_id})
    s = result.structured_content
    assert s is not None
    assert s["stems"]["vocals"]["mp3_url"] == f"{sandbox.origin}/files/{task_id}/vocals.mp3"


async def test_wait_reports_progress_until_done(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.eta = 3
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        result = await client.call_tool(
            "get_extraction", {"task_id": task_id, "wait_seconds": 20}, progress_callback=on_progress
        )
    s = result.structured_content
    assert s is not None
    assert s["done"] is True
    assert s["status"] == "COMPLETED"
    assert 2.0 <= s["waited_seconds"] < 15
    assert len(updates) >= 2
    progresses = [u[0] for u in updates]
    assert progresses == sorted(progresses)
    assert len(set(progresses)) == len(progresses)  # strictly increasing
    # Progress measures the job, not the wait window: it runs towards MusicGPT's ETA (3 s) from the submit,
    # stays below its total while the job runs, and reaches it when the job is done.
    assert all(u[1] is not None and 3 <= u[1] < 20 for u in updates), updates
    assert all(u[0] < u[1] for u in updates[:-1] if u[1] is not None), updates
    assert updates[-1][0] == updates[-1][1]
    # The bar never goes back, also when the job runs past its ETA.
    fractions = [u[0] / u[1] for u in updates if u[1]]
    assert fractions == sorted(fractions), updates
    messages = [u[2] or "" for u in updates]
    assert any(m.startswith(("queued", "processing")) and "s left" in m for m in messages[:-1]), messages
    assert messages[-1] == "finished"
    # Polls follow the ETA, not a tight loop: a handful of status calls for a 3 s job.
    assert sandbox.state.status_calls <= 5


async def test_wait_is_capped_and_says_to_call_again(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox, max_wait=1)) as client:
        task_id = await submit(client, song)
        sandbox.state.jobs[task_id].status_override = "IN_PROGRESS"
        started = time.monotonic()
        result = await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 40})
        elapsed = time.monotonic() - started
    s = result.structured_content
    assert s is not None
    assert s["done"] is False
    assert s["status"] == "IN_PROGRESS"
    assert elapsed < 10  # the cap (1 s) applied, not the 40 s asked for
    text = text_of(result)
    assert "(wait_seconds was capped at 1)" in text
    assert f"Call get_extraction again with task_id='{task_id}'" in text


async def test_just_looking_does_not_wait(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.eta = 30
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        result = await client.call_tool("get_extraction", {"task_id": task_id})
    s = result.structured_content
    assert s is not None
    assert s["status"] == "IN_QUEUE"
    assert s["done"] is False
    assert s["stems"] == {}
    assert sandbox.state.status_calls == 1
    assert "s left by MusicGPT's estimate" in text_of(result)


async def test_cancellation_stops_the_wait(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        sandbox.state.jobs[task_id].status_override = "IN_PROGRESS"
        started = time.monotonic()
        with anyio.move_on_after(1.5):
            await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 45})
        assert time.monotonic() - started < 3
        calls = sandbox.state.status_calls
        await anyio.sleep(4)  # a still-running wait would poll again within this time
        assert sandbox.state.status_calls == calls
        # The server still answers afterwards.
        again = await client.call_tool("get_extraction", {"task_id": task_id})
        assert not again.is_error


async def test_unknown_status_is_reported_as_not_done(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        sandbox.state.jobs[task_id].status_override = "PAUSED_FOR_REVIEW"
        result = await client.call_tool("get_extraction", {"task_id": task_id})
    s = result.structured_content
    assert s is not None
    assert s["status"] == "PAUSED_FOR_REVIEW"
    assert s["done"] is False
    assert "which this server does not know; treating it as still running" in text_of(result)


async def test_failed_job_is_an_answer_not_an_error(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        sandbox.state.jobs[task_id].fail_reason = "Audio too short to separate"
        result = await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 5})
        download = await client.call_tool("download_stems", {"task_id": task_id})
    assert not result.is_error
    s = result.structured_content
    assert s is not None
    assert (s["status"], s["done"], s["succeeded"]) == ("FAILED", True, False)
    assert s["status_message"] == "Audio too short to separate"
    assert text_of(result).startswith(f"Extraction {task_id} ended with FAILED: Audio too short to separate.")
    assert download.is_error
    assert text_of(download).endswith(
        f"Extraction {task_id} FAILED: Audio too short to separate. It produced no stems to download."
    )


async def test_unknown_task_is_a_tool_error(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("get_extraction", {"task_id": "0000-unknown"})
    assert result.is_error
    assert text_of(result).endswith(
        "MusicGPT has no extraction with task_id '0000-unknown' (HTTP 404). Use the task_id exactly as "
        "extract_stems returned it."
    )


async def test_task_id_must_look_like_one(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("get_extraction", {"task_id": "../../etc?x=1"})
    assert result.is_error
    assert "task_id" in text_of(result)
    assert sandbox.state.status_calls == 0


async def test_status_reads_are_retried(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        sandbox.state.queue_fault("status", Fault(status=503, body=b"<html>busy</html>", content_type="text/html"))
        sandbox.state.queue_fault("status", Fault(status=429, body=b"{}", headers=(("Retry-After", "1"),)))
        result = await client.call_tool("get_extraction", {"task_id": task_id})
    assert not result.is_error, result.content
    assert sandbox.state.status_calls == 3


async def test_extraction_resource(sandbox: Sandbox, song: Path) -> None:
    import json

    sandbox.state.eta = 0
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song)
        templates = (await client.list_resource_templates()).resource_templates
        read = await client.read_resource(f"musicgpt://extractions/{task_id}")
    assert {t.uri_template for t in templates} == {
        "musicgpt://extractions/{task_id}",
        "musicgpt://extractions{?status,query,limit}",
    }
    data = json.loads(read.contents[0].text)  # type: ignore[union-attr]
    assert data["status"] == "COMPLETED"
    assert set(data["stems"]) == {"vocals", "drums"}


async def test_rate_limiter_holds_calls_past_the_budget() -> None:
    limiter = RateLimiter(3, 60.0)
    for _ in range(3):
        await limiter.acquire()
    acquired = False
    with anyio.move_on_after(0.3):
        await limiter.acquire()
        acquired = True
    assert not acquired


async def test_status_limit_matches_musicgpt(sandbox: Sandbox) -> None:
    from musicgpt_mcp.musicgpt import MusicGPTClient, Pools

    client = MusicGPTClient(sandbox.base_url, None, Pools())
    assert (client.status_limiter.max_calls, client.status_limiter.period) == (200, 60.0)
