"""The third hostile review's findings (issue 24), each re-enacted through the protocol as the review did it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import ListRootsResult, Root

from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import connect, make_settings
from .support.http_server import serve_http
from .test_remote import connect_http, remote, structured
from .test_status import text_of

pytestmark = pytest.mark.anyio


# --- 1. a remote caller's roots are not folders on the server's disk -------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_remote_clients_roots_do_not_open_the_servers_disk(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    """A hosted server with an output folder and no MUSICGPT_MCP_ALLOWED_DIRS: a client offering a root
    elsewhere on the server's disk must not get stems written there, nor even be asked for its roots."""
    sandbox.state.eta = 0
    elsewhere = tmp_path / "not-the-output-folder"
    elsewhere.mkdir()
    asked: list[str] = []

    async def roots(context: Any) -> ListRootsResult:
        asked.append("roots/list")
        return ListRootsResult(roots=[Root(uri=elsewhere.as_uri(), name="evil")])  # type: ignore[arg-type]

    settings = dataclasses.replace(remote(sandbox), output_dir=tmp_path / "out", output_dir_configured=True)
    with serve_http(settings) as server:
        async with connect_http(server.url, mode=mode, list_roots_callback=roots) as client:
            task = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"}))
            target = elsewhere / "planted"
            refused = await client.call_tool("download_stems", {"task_id": task["task_id"], "output_dir": str(target)})
            local = await client.call_tool("extract_stems", {"audio_file": str(elsewhere / "song.wav")})
    assert refused.is_error, text_of(refused)
    assert "outside the allowed output folder" in text_of(refused)
    assert not target.exists() and list(elsewhere.iterdir()) == []
    assert local.is_error and "local files are refused here" in text_of(local)
    assert asked == []  # the server never asked: a remote client's roots mean nothing on this disk


# --- 2. the daily credit limit cannot be raced, and an unknown cost is never free -------------------------


def _posts(sandbox: Sandbox) -> int:
    return len([s for s in sandbox.state.submits() if s.complete])


async def test_distinct_calls_at_once_cannot_race_past_the_credit_limit(sandbox: Sandbox) -> None:
    """Eight different songs at once against a 2-credit limit: a claim counts its estimate (1.5 credits for one
    stem, nothing having been seen yet) from the moment it is made, so only one fits."""
    sandbox.state.submit_delay = 0.5  # every submit is in the air while the others are decided
    settings = make_settings(sandbox, max_credits_per_day=2.0)
    async with connect(settings) as client:
        results: list[Any] = []

        async def one(n: int) -> None:
            args = {"audio_url": f"https://example.com/song-{n}.mp3", "stems": ["bass"]}
            results.append(await client.call_tool("extract_stems", args))

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(one, n)
    assert _posts(sandbox) == 1
    refused = [r for r in results if r.is_error]
    assert len(refused) == 7
    assert all("daily spending limit would be passed" in text_of(r) for r in refused)


@pytest.mark.parametrize("reply", ["no stated cost", "outcome unknown"])
async def test_a_job_of_unknown_cost_still_counts(sandbox: Sandbox, reply: str) -> None:
    """A reply without credit_estimate, or a submit whose outcome is unknown, kept counting 0: four jobs in a
    row passed a 1-credit limit. It counts the claim's estimate until MusicGPT states a cost."""
    if reply == "no stated cost":
        body = json.dumps({"success": True, "task_id": "t-unpriced", "eta": 5}).encode()
        sandbox.state.queue_fault("submit", Fault(status=200, body=body))
    else:
        sandbox.state.queue_fault("submit", Fault(status=502, body=b"<html>bad gateway</html>"))
    settings = make_settings(sandbox, max_credits_per_day=2.0)
    async with connect(settings) as client:
        await client.call_tool("extract_stems", {"audio_url": "https://example.com/first.mp3", "stems": ["bass"]})
        second = await client.call_tool(
            "extract_stems", {"audio_url": "https://example.com/second.mp3", "stems": ["bass"]}
        )
        listed = structured(await client.call_tool("list_extractions", {}))
    assert second.is_error and "daily spending limit would be passed" in text_of(second)
    assert "count 1.5 credits" in text_of(second)
    assert _posts(sandbox) == 1
    assert listed["credits_last_24_hours"] == 1.5
