"""Protocol edges that clients this project did not write run into (issue 24): a prompt that does not exist,
app-only tools offered to a client that cannot render them, and "what can this client do" on every transport
and in both protocol eras. Cancellation over 2025-era HTTP is in test_cancellation.py."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ElicitResult
from pydantic import BaseModel

from musicgpt_mcp import clients, player, tools
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.server import create_server
from musicgpt_mcp.sessions import HEADER
from musicgpt_mcp.tools.spec import ToolSpec

from .conftest import SECRET_KEY, connect, make_settings, renders_apps
from .support.http_server import serve_http
from .test_remote import ACCEPT, connect_http, remote
from .test_stdio import server_params

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto"]  # the 2025-11-25 handshake; 2026-07-28
UNKNOWN = "No prompt named 'karaoke'. The prompts of this server: karaoke_track, practice_track, drum_stems."
# The tools for the stem view alone (visibility ["app"]), as listed.
APP_ONLY = ["confirm_extraction", "read_stem_audio", "upload_audio"]


async def _decline(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="decline")


ELICITS = {"elicitation_callback": _decline}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


# --- prompts/get of a prompt that does not exist ----------------------------------------------------------


async def unknown_prompt(client: Client) -> MCPError:
    with pytest.raises(MCPError) as raised:
        await client.get_prompt("karaoke", {"audio": "song.mp3"})
    rendered = await client.get_prompt("karaoke_track", {"audio": "song.mp3"})  # a known one still renders
    assert rendered.messages
    return raised.value


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_prompt_is_invalid_params_in_process(
    sandbox: Sandbox, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(make_settings(sandbox), mode=mode) as client:
        error = await unknown_prompt(client)
    assert (error.error.code, error.error.message) == (INVALID_PARAMS, UNKNOWN)
    no_tracebacks(caplog)


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_prompt_is_invalid_params_over_http(
    sandbox: Sandbox, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_http(remote(sandbox)) as server:
        async with connect_http(server.url, mode=mode) as client:
            error = await unknown_prompt(client)
    assert (error.error.code, error.error.message) == (INVALID_PARAMS, UNKNOWN)
    no_tracebacks(caplog)


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_prompt_is_invalid_params_over_stdio(mode: str) -> None:
    with tempfile.TemporaryFile("w+") as errlog:
        params = server_params(MUSICGPT_API_KEY=SECRET_KEY)
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:  # type: ignore[arg-type]
            error = await unknown_prompt(client)
        errlog.seek(0)
        stderr = errlog.read()
    assert (error.error.code, error.error.message) == (INVALID_PARAMS, UNKNOWN)
    assert "Traceback" not in stderr and "Unknown prompt" not in stderr


# --- app-only tools are listed only to clients that render MCP Apps ---------------------------------------


def names(listed: Any) -> list[str]:
    return sorted(t.name for t in listed.tools)


@pytest.mark.parametrize("mode", MODES)
async def test_app_only_tools_are_listed_to_app_hosts_only_in_process(sandbox: Sandbox, mode: str) -> None:
    async with connect(make_settings(sandbox), mode=mode) as plain:
        without = names(await plain.list_tools())
    async with connect(make_settings(sandbox), mode=mode, **renders_apps()) as host:
        with_apps = names(await host.list_tools())
    assert not set(APP_ONLY) & set(without) and "get_extraction" in without  # ["model", "app"] is for the model too
    assert with_apps == sorted([*without, *APP_ONLY])


async def test_app_only_tools_are_listed_to_app_hosts_only_over_stdio() -> None:
    async with Client(server_params(MUSICGPT_API_KEY=SECRET_KEY), mode="legacy") as plain:
        without = names(await plain.list_tools())
    async with Client(server_params(MUSICGPT_API_KEY=SECRET_KEY), **renders_apps()) as host:
        with_apps = names(await host.list_tools())
    assert without == ["download_stems", "extract_stems", "get_extraction", "list_extractions"]
    assert with_apps == sorted([*without, *APP_ONLY])


def sse_result(reply: httpx2.Response) -> dict[str, Any]:
    [data] = [line[5:] for line in reply.text.splitlines() if line.startswith("data:")]
    return dict(json.loads(data)["result"])


def raw_list(url: str, session_id: str | None = None) -> list[str]:
    """tools/list as a 2025-era client that kept no session ID (or sends `session_id`) does it."""
    headers = {**ACCEPT, "MCP-Protocol-Version": "2025-11-25", **({HEADER: session_id} if session_id else {})}
    reply = httpx2.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    return sorted(t["name"] for t in sse_result(reply)["tools"])


def raw_initialize(url: str, capabilities: dict[str, Any]) -> str:
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": {"name": "t", "version": "1"},
    }
    reply = httpx2.post(url, headers=ACCEPT, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
    assert reply.status_code == 200
    return reply.headers[HEADER]


async def test_app_only_tools_over_http_in_both_eras(sandbox: Sandbox) -> None:
    """Each kind of client gets its own answer, also from the listing cache, whatever came first."""
    seen: dict[str, list[str]] = {}
    with serve_http(remote(sandbox)) as server:
        for round_ in (1, 2):  # the second round is answered from the cache
            for mode in MODES:
                async with connect_http(server.url, mode=mode) as plain:
                    seen[f"{mode} plain {round_}"] = names(await plain.list_tools())
                async with connect_http(server.url, mode=mode, **renders_apps()) as host:
                    seen[f"{mode} apps {round_}"] = names(await host.list_tools())
            # A 2025-era client that sends no session ID back cannot be told apart: it gets them all.
            seen[f"no session {round_}"] = raw_list(server.url)
        # The extension without the MCP Apps MIME type is not rendering Apps.
        no_apps = raw_initialize(server.url, {"extensions": {"io.modelcontextprotocol/ui": {"mimeTypes": []}}})
        declared_none = raw_list(server.url, no_apps)
        # The same session ID with its signature changed: ignored, so again "cannot tell".
        forged = raw_list(server.url, no_apps[:-2] + ("AA" if not no_apps.endswith("AA") else "BB"))
    plain = ["extract_stems", "get_extraction", "list_extractions"]
    for label, listed in seen.items():
        expected = plain if "plain" in label else sorted([*plain, *APP_ONLY])
        assert listed == expected, label
    assert declared_none == plain
    assert forged == sorted([*plain, *APP_ONLY])


async def test_any_tool_whose_visibility_is_only_app_is_hidden() -> None:
    """Not a list of names: whatever tool is for views alone (later issues add more) is left out."""
    server: MCPServer[Any] = MCPServer("edges", middleware=[clients.AppOnlyTools()])

    @server.tool(meta={"ui": {"resourceUri": "ui://v/view.html", "visibility": ["app"]}})
    def view_only() -> str:
        return "x"

    @server.tool(meta={"ui": {"resourceUri": "ui://v/view.html", "visibility": ["model", "app"]}})
    def both() -> str:
        return "x"

    @server.tool()
    def plain() -> str:
        return "x"

    for mode in MODES:
        async with Client(server, mode=mode) as client:
            assert names(await client.list_tools()) == ["both", "plain"], mode
        async with Client(server, mode=mode, **renders_apps()) as host:
            assert names(await host.list_tools()) == ["both", "plain", "view_only"], mode


# --- what this client can do, inside a tool call ----------------------------------------------------------


class Seen(BaseModel):
    renders_apps: bool | None
    can_elicit: bool


async def client_abilities(ctx: Context[Any]) -> Seen:
    found = clients.abilities(ctx)
    return Seen(renders_apps=found.renders_apps, can_elicit=found.can_elicit)


def add_probe_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tool that answers what `clients.abilities` says, on the real server (create_server reads the table)."""
    spec = ToolSpec(
        fn=client_abilities, name="client_abilities", title="t", description="t", read_only=True, idempotent=True
    )
    monkeypatch.setattr(tools, "TOOLS", (*tools.TOOLS, spec))


async def probe(client: Client) -> tuple[bool | None, bool]:
    result = await client.call_tool("client_abilities", {})
    assert result.structured_content is not None, result.content
    return result.structured_content["renders_apps"], result.structured_content["can_elicit"]


@asynccontextmanager
async def in_process(sandbox: Sandbox, mode: str, **options: Any) -> AsyncIterator[Client]:
    async with Client(create_server(make_settings(sandbox)), mode=mode, **options) as client:
        yield client


@pytest.mark.parametrize("mode", MODES)
async def test_what_the_client_can_do_in_process(sandbox: Sandbox, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    add_probe_tool(monkeypatch)
    async with in_process(sandbox, mode) as plain:
        assert await probe(plain) == (False, False)
    async with in_process(sandbox, mode, **renders_apps(), **ELICITS) as host:
        assert await probe(host) == (True, True)


async def test_what_the_client_can_do_over_http(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    add_probe_tool(monkeypatch)
    with serve_http(remote(sandbox)) as server:
        async with connect_http(server.url, mode="auto", **renders_apps(), **ELICITS) as modern:
            assert await probe(modern) == (True, True)  # asked by an input-required result
        async with connect_http(server.url, mode="auto") as modern_plain:
            assert await probe(modern_plain) == (False, False)
        async with connect_http(server.url, mode="legacy", **renders_apps(), **ELICITS) as legacy:
            # Known from its session ID; a stateless server has no way to send it a question mid-call.
            assert await probe(legacy) == (True, False)
        async with connect_http(server.url, mode="legacy") as legacy_plain:
            assert await probe(legacy_plain) == (False, False)
        headers = {**ACCEPT, "MCP-Protocol-Version": "2025-11-25"}
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "client_abilities", "arguments": {}},
        }
        anonymous = httpx2.post(server.url, headers=headers, json=call)
    assert '"structuredContent":{"renders_apps":null,"can_elicit":false}' in anonymous.text  # cannot tell


async def test_an_app_host_on_2025_http_gets_the_view_hint(sandbox: Sandbox) -> None:
    """get_extraction gives the player the job's ETA in `_meta` only when the client renders Apps: over 2025
    HTTP too, where only the session ID says so."""
    sandbox.state.eta = 60
    with serve_http(remote(sandbox)) as server:
        for options, expected in (({}, False), (renders_apps(), True)):
            async with connect_http(server.url, mode="legacy", **options) as client:
                job = await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"})
                assert job.structured_content is not None, job.content
                status = await client.call_tool("get_extraction", {"task_id": job.structured_content["task_id"]})
            assert (player.ETA_META in (status.meta or {})) is expected, status.meta


def test_a_2025_get_stream_is_refused_not_held_open(sandbox: Sandbox) -> None:
    with serve_http(remote(sandbox)) as server:
        session = raw_initialize(server.url, {})
        reply = httpx2.get(server.url, headers={"Accept": "text/event-stream", HEADER: session}, timeout=5)
    assert reply.status_code == 405 and reply.headers["allow"] == "POST"
