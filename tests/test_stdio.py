"""The server as a host runs it: a subprocess speaking MCP over stdio."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from musicgpt_mcp.sandbox import Sandbox

from .conftest import PYTHON, SECRET_KEY, TMP, subprocess_env

pytestmark = pytest.mark.anyio


def server_params(*args: str, **env: str) -> StdioServerParameters:
    env.setdefault("MUSICGPT_MCP_ALLOWED_DIRS", str(TMP))
    return StdioServerParameters(command=PYTHON, args=["-m", "musicgpt_mcp", *args], env=subprocess_env(**env))


async def test_stdio_submit_against_sandbox(sandbox: Sandbox, song: Path) -> None:
    params = server_params(MUSICGPT_API_KEY=SECRET_KEY, MUSICGPT_BASE_URL=sandbox.base_url)
    async with Client(params) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]})
    # The app-only read_stem_audio is offered only to clients that render MCP Apps.
    assert sorted(names) == ["download_stems", "extract_stems", "get_extraction", "list_extractions"]
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["task_id"] in sandbox.state.jobs
    [received] = sandbox.state.submits()
    assert received.authorization == SECRET_KEY
    assert received.files[0].sha256 == hashlib.sha256(song.read_bytes()).hexdigest()


async def test_builtin_sandbox_needs_no_key(tmp_path: Path, song: Path) -> None:
    async with Client(server_params("--sandbox", "--sandbox-eta", "2")) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["drums", "bass"]})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["eta"] == 2
    assert result.structured_content["credit_estimate"] == 1.0


def _rpc(id_: int | None, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        message["id"] = id_
    if params is not None:
        message["params"] = params
    return (json.dumps(message) + "\n").encode()


def run_raw(requests: bytes, env: dict[str, str], expect: set[int]) -> tuple[list[dict[str, Any]], str, int]:
    """Write raw JSON-RPC to the server, keep stdin open (as hosts do) until every expected reply is in."""
    errfile = tempfile.TemporaryFile()  # a file, not a pipe: a full stderr pipe would stall the server
    proc = subprocess.Popen(
        [PYTHON, "-m", "musicgpt_mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(requests)
    proc.stdin.flush()
    messages: list[dict[str, Any]] = []
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while not expect <= seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)  # every line on stdout must be JSON
            messages.append(message)
            if "id" in message:
                seen.add(message["id"])
    finally:
        proc.stdin.close()
        rest = proc.stdout.read()
        proc.wait(timeout=30)
        errfile.seek(0)
        stderr = errfile.read().decode()
        errfile.close()
    messages.extend(json.loads(line) for line in rest.decode().splitlines())
    return messages, stderr, proc.returncode


# initialize (id 1), initialized, tools/list (id 2): what a host sends first.
HANDSHAKE = (
    _rpc(
        1,
        "initialize",
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    ),
    _rpc(None, "notifications/initialized"),
    _rpc(2, "tools/list"),
)


def test_stdout_carries_only_json_rpc_even_when_things_fail(sandbox: Sandbox, tmp_path: Path) -> None:
    """Drive the raw wire: successes, tool errors, a broken base URL, bad arguments, garbage input."""
    requests = b"".join(
        [
            *HANDSHAKE,
            _rpc(3, "tools/call", {"name": "extract_stems", "arguments": {"audio_url": "https://a.b/c.mp3"}}),
            _rpc(4, "tools/call", {"name": "extract_stems", "arguments": {"audio_file": str(tmp_path / "x.mp3")}}),
            _rpc(5, "tools/call", {"name": "extract_stems", "arguments": {"stems": ["nope"]}}),
            _rpc(6, "tools/call", {"name": "no_such_tool", "arguments": {}}),
            _rpc(7, "resources/read", {"uri": "musicgpt://stems"}),
        ]
    )
    # A wrong key: MusicGPT (the sandbox) answers 401, which must come back as a tool error.
    env = subprocess_env(MUSICGPT_API_KEY=SECRET_KEY + "-wrong", MUSICGPT_BASE_URL=sandbox.base_url)
    messages, stderr, _ = run_raw(requests, env, {1, 2, 3, 4, 5, 6, 7})
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert set(by_id) == {1, 2, 3, 4, 5, 6, 7}
    assert by_id[3]["result"]["isError"] is True
    assert "HTTP 401" in by_id[3]["result"]["content"][0]["text"]
    assert "No file at" in by_id[4]["result"]["content"][0]["text"]
    assert by_id[5]["result"]["isError"] is True
    assert "HTTP Request: POST" in stderr  # logs go to stderr
    assert SECRET_KEY not in json.dumps(messages) and SECRET_KEY not in stderr
    assert len(sandbox.state.submits()) == 1


def test_missing_key_and_bad_base_url_do_not_crash_the_server() -> None:
    requests = b"".join(
        [
            *HANDSHAKE,
            _rpc(3, "tools/call", {"name": "extract_stems", "arguments": {"audio_url": "https://a.b/c.mp3"}}),
        ]
    )
    for env, expected in (
        ({}, "MUSICGPT_API_KEY"),
        ({"MUSICGPT_API_KEY": "k", "MUSICGPT_BASE_URL": "ftp://nowhere"}, "MUSICGPT_BASE_URL must be an http(s) URL"),
    ):
        messages, _, returncode = run_raw(requests, subprocess_env(**env), {1, 2, 3})
        by_id = {m["id"]: m for m in messages if "id" in m}
        assert sorted(t["name"] for t in by_id[2]["result"]["tools"]) == [
            "download_stems",
            "extract_stems",
            "get_extraction",
            "list_extractions",
        ]
        assert by_id[3]["result"]["isError"] is True
        assert expected in by_id[3]["result"]["content"][0]["text"]
        assert returncode == 0


def test_help_documents_options_and_environment() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "musicgpt_mcp", "--help"], capture_output=True, env=subprocess_env(), timeout=60, check=True
    )
    out = proc.stdout.decode()
    for needle in ("--sandbox", "MUSICGPT_API_KEY", "MUSICGPT_BASE_URL", "https://api.musicgpt.com/api/public"):
        assert needle in out
