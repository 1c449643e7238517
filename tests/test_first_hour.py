"""A newcomer's first contacts (issue 23) that the lead's part covers: short keys, stem names, configuration
errors named by every tool. Through the protocol, as a new user's host would meet them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import pytest
from pydantic import SecretStr

from musicgpt_mcp.sandbox import Sandbox

from .conftest import PYTHON, closed_port, connect, make_settings, subprocess_env
from .test_remote import connect_http, structured
from .test_status import text_of

pytestmark = pytest.mark.anyio


@contextmanager
def sandbox_in_header_mode() -> Iterator[str]:
    """`musicgpt-mcp --sandbox --transport http` with MUSICGPT_MCP_AUTH=header, as a newcomer starts it."""
    port = closed_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "musicgpt_mcp", "--sandbox", "--transport", "http", "--port", str(port)],
        env=subprocess_env(MUSICGPT_MCP_AUTH="header"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_header_mode_refuses_a_short_key_by_name_and_a_real_one_works() -> None:
    with sandbox_in_header_mode() as url:
        refused = httpx2.post(
            url,
            headers={"X-MusicGPT-Api-Key": "test", "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
        forty = "mgpt-" + "0123456789abcdef" * 2 + "012"
        assert len(forty) == 40
        async with connect_http(url, key=forty) as client:
            job = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"}))
    assert refused.status_code == 401
    described = refused.json()["error_description"]
    assert "X-MusicGPT-Api-Key" in described and "4 characters, too few for a MusicGPT API key" in described
    assert set(job) >= {"task_id", "conversion_id", "credit_estimate"} and job["task_id"]


@pytest.mark.parametrize("key", ["k", "test", "abc", "task"])
async def test_a_short_operator_key_leaves_results_intact(sandbox: Sandbox, key: str) -> None:
    """A short key is scrubbed only where it stands alone: never inside `task_id`, nor inside a JSON key."""
    sandbox.state.accept_any_key = True
    async with connect(make_settings(sandbox, api_key=SecretStr(key))) as client:
        job = await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"})
        status = await client.call_tool("get_extraction", {"task_id": structured(job)["task_id"]})
    assert not job.is_error and not status.is_error, text_of(job) + text_of(status)
    assert "task_id" in structured(job) and "[redacted]" not in json.dumps(structured(job))
    assert "task_id" in text_of(job)


@pytest.mark.parametrize("spelled", ["Vocals", "VOCALS", " vocals"])
async def test_a_stem_name_in_another_case_is_the_stem(sandbox: Sandbox, spelled: str) -> None:
    async with connect(make_settings(sandbox)) as client:
        job = await client.call_tool(
            "extract_stems", {"audio_url": "https://example.com/a.mp3", "stems": [spelled, "Hi-Hat"]}
        )
    assert not job.is_error, text_of(job)
    assert structured(job)["stems"] == ["vocals", "hi_hat"]
    [sent] = sandbox.state.submits()
    assert json.loads(sent.fields["stems"]) == ["vocals", "hi_hat"]


@pytest.mark.parametrize(
    ("tool", "args", "named"),
    [
        ("extract_stems", {"audio_url": "https://example.com/a.mp3", "stems": ["vocal"]}, "vocals"),
        ("extract_stems", {"audio_url": "https://example.com/a.mp3", "preprocessing_options": ["denoize"]}, "Denoise"),
        ("download_stems", {"task_id": "t-1", "stems": ["drum"]}, "drums"),
        ("read_stem_audio", {"task_id": "t-1", "stem": "guitars"}, "guitar"),
    ],
)
async def test_a_wrong_name_is_answered_in_words_with_the_closest(
    sandbox: Sandbox, tool: str, args: dict[str, object], named: str
) -> None:
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool(tool, args)
    text = text_of(result)
    assert result.is_error
    assert f"Did you mean {named}" in text
    assert "pydantic" not in text and "validation error" not in text and "input_value" not in text
    assert sandbox.state.submits() == []


async def test_a_bad_setting_is_named_by_every_tool_and_stops_only_those_that_use_it(sandbox: Sandbox) -> None:
    """MUSICGPT_MCP_CONFIRM=yes: the paid tool refuses, naming it; the free tools work and mention it."""
    from musicgpt_mcp.config import Settings

    env = {
        "MUSICGPT_API_KEY": sandbox.api_key,
        "MUSICGPT_BASE_URL": sandbox.base_url,
        "MUSICGPT_MCP_STORAGE_HOSTS": sandbox.netloc,
        "MUSICGPT_MCP_CONFIRM": "yes",
    }
    job = sandbox.state.new_job(
        stems=("vocals",), preprocessing_options=(), source="x", webhook_url=None, credit_estimate=1
    )
    settings = dataclasses.replace(Settings.from_env(env), state_dir=make_settings(sandbox).state_dir)
    async with connect(settings) as client:
        paid = await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"})
        listed = await client.call_tool("list_extractions", {})
        status = await client.call_tool("get_extraction", {"task_id": job.task_id})
    assert paid.is_error and "MUSICGPT_MCP_CONFIRM must be one of auto, always, never; got 'yes'" in text_of(paid)
    assert sandbox.state.submits() == []
    for free in (listed, status):
        assert not free.is_error, text_of(free)
        assert "MUSICGPT_MCP_CONFIRM" in text_of(free)
    assert structured(status)["task_id"] == job.task_id


async def test_a_bad_key_stops_the_tools_that_call_musicgpt_but_not_the_history(sandbox: Sandbox) -> None:
    from musicgpt_mcp.config import Settings

    settings = Settings.from_env({"MUSICGPT_API_KEY": "has a space", "MUSICGPT_BASE_URL": sandbox.base_url})
    settings = dataclasses.replace(settings, state_dir=make_settings(sandbox).state_dir)
    async with connect(settings) as client:
        status = await client.call_tool("get_extraction", {"task_id": "t-1"})
        listed = await client.call_tool("list_extractions", {})
    assert status.is_error and "MUSICGPT_API_KEY contains a character that cannot be sent" in text_of(status)
    assert not listed.is_error and "MUSICGPT_API_KEY" in text_of(listed)
