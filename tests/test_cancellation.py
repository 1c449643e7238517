"""A client's cancel stops the call it names, and only that one: in process, over stdio-like in-process
connections in both eras, and over 2025-era stateless HTTP, where the cancel is a POST of its own that may
reach another replica (two replicas on one real PostgreSQL)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.sessions import HEADER

from .conftest import connect, make_settings
from .support.http_server import Running, serve_http
from .test_remote import ACCEPT, remote, structured
from .test_replicas import replicas, settings_for

pytestmark = pytest.mark.anyio

CANCELLED = -32800  # what the SDK's 2025-era transport answers for a call it cancelled


@dataclass
class Exchange:
    """One HTTP request as the client sent it, and how its answer's stream ended."""

    body: dict[str, Any]
    headers: dict[str, str]
    port: int
    sent: float
    data: bytearray = field(default_factory=bytearray)
    answered: float | None = None  # when the answer to this request arrived on its stream
    answer: dict[str, Any] | None = None

    def received(self, chunk: bytes) -> None:
        self.data.extend(chunk)
        for line in self.data.decode(errors="replace").splitlines():
            if line.startswith("data:") and self.answer is None:
                message = json.loads(line[5:])
                if message.get("id") == self.body.get("id") and ("result" in message or "error" in message):
                    self.answer, self.answered = message, time.monotonic()


class Watched(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, exchange: Exchange) -> None:
        self._inner = inner
        self._exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._exchange.received(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class Wire(httpx2.AsyncBaseTransport):
    """Records every exchange; cancels go to `cancel_port` (another replica), everything else to `port`."""

    def __init__(self, port: int, cancel_port: int | None = None) -> None:
        self.port, self.cancel_port = port, cancel_port or port
        self.exchanges: list[Exchange] = []
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        content = await request.aread()
        body = json.loads(content) if content else {}
        port = self.cancel_port if body.get("method") == "notifications/cancelled" else self.port
        request.url = request.url.copy_with(port=port)
        exchange = Exchange(body=body, headers=dict(request.headers), port=port, sent=time.monotonic())
        self.exchanges.append(exchange)
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = Watched(response.stream, exchange)
        return response

    def call(self, method: str, tool: str | None = None) -> Exchange:
        return next(
            e
            for e in self.exchanges
            if e.body.get("method") == method and (tool is None or e.body["params"]["name"] == tool)
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def port_of(server: Running) -> int:
    return int(server.origin.rsplit(":", 1)[1])


@asynccontextmanager
async def legacy_client(server: Running, wire: Wire) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(transport=wire, timeout=60) as http,
        Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client,  # type: ignore[arg-type]
    ):
        yield client


async def stalled_job(client: Client, sandbox: Sandbox) -> str:
    """A job that never finishes and whose ETA has passed: a wait on it polls MusicGPT every few seconds."""
    sandbox.state.eta = 1
    job = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/stalled.mp3"}))
    sandbox.state.jobs[job["task_id"]].status_override = "IN_PROGRESS"
    return str(job["task_id"])


async def cancel_a_wait(client: Client, task_id: str) -> None:
    """Start a long wait and give up on it after a second and a half: the SDK then sends notifications/cancelled."""
    with anyio.move_on_after(1.5):
        await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 40})


async def assert_stopped(wire: Wire, sandbox: Sandbox) -> None:
    """The server answered the wait with the cancel answer soon after the cancel, and polls no more."""
    with anyio.fail_after(2):  # the SDK sends the cancel from a task of its own
        while not any(e.body.get("method") == "notifications/cancelled" for e in wire.exchanges):
            await anyio.sleep(0.02)
    wait, cancel = wire.call("tools/call", "get_extraction"), wire.call("notifications/cancelled")
    assert cancel.body["params"]["requestId"] == wait.body["id"]
    with anyio.fail_after(8):  # without the fix the wait runs to its end, 40 s
        while wait.answered is None:
            await anyio.sleep(0.05)
    assert wait.answered - cancel.sent < 2.0
    error = {"code": CANCELLED, "message": "Request cancelled"}
    assert wait.answer == {"jsonrpc": "2.0", "id": wait.body["id"], "error": error}
    calls = sandbox.state.status_calls
    await anyio.sleep(3.5)  # a wait still running past its ETA would poll within 2-3 s
    assert sandbox.state.status_calls == calls


async def test_a_2025_http_cancel_stops_the_wait(sandbox: Sandbox) -> None:
    with serve_http(remote(sandbox)) as server:
        wire = Wire(port_of(server))
        async with legacy_client(server, wire) as client:
            task_id = await stalled_job(client, sandbox)
            await cancel_a_wait(client, task_id)
            await assert_stopped(wire, sandbox)
            again = await client.call_tool("get_extraction", {"task_id": task_id})  # the server still answers
    assert not again.is_error


async def test_a_cancel_through_another_replica_stops_the_wait(sandbox: Sandbox, postgres_url: str) -> None:
    with replicas(settings_for(sandbox, postgres_url)) as (first, second):
        wire = Wire(port_of(first), cancel_port=port_of(second))
        async with legacy_client(first, wire) as client:
            task_id = await stalled_job(client, sandbox)
            await cancel_a_wait(client, task_id)
            await assert_stopped(wire, sandbox)
    assert wire.call("notifications/cancelled").port == port_of(second)
    assert wire.call("tools/call", "get_extraction").port == port_of(first)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_cancel_stops_the_wait_in_process_and_over_2026_http(sandbox: Sandbox, mode: str) -> None:
    """The paths that stopped already (stdio's and 2026 HTTP's), kept so."""
    with serve_http(remote(sandbox)) as server:
        async with (
            connect(make_settings(sandbox), mode=mode) as local,
            httpx2.AsyncClient(timeout=60) as http,
            Client(streamable_http_client(server.url, http_client=http), mode="auto") as modern,  # type: ignore[arg-type]
        ):
            for client in (local, modern):
                task_id = await stalled_job(client, sandbox)
                await cancel_a_wait(client, task_id)
                calls = sandbox.state.status_calls
                await anyio.sleep(3.5)
                assert sandbox.state.status_calls == calls


def post(server: Running, message: dict[str, Any], session: str | None, key: str | None = None) -> httpx2.Response:
    headers = {**ACCEPT, "MCP-Protocol-Version": "2025-11-25"}
    if session is not None:
        headers[HEADER] = session
    if key is not None:
        headers["X-MusicGPT-Api-Key"] = key
    return httpx2.post(server.url, headers=headers, json=message, timeout=10)


def raw_session(server: Running, key: str | None = None) -> str:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}}
    reply = post(server, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}, None, key)
    return reply.headers[HEADER]


async def test_only_the_caller_can_cancel_its_call(sandbox: Sandbox) -> None:
    """Two clients of one user both number their requests from 1: B's cancel of A's request id, a cancel
    without a session ID and one with A's session ID from another user stop nothing; A's own does."""
    sandbox.state.accept_any_key = True
    alice, mallory = "alice-key-0123456789", "mallory-key-0123456789"
    outcome: list[Any] = []
    with serve_http(remote(sandbox, auth="header")) as server:
        wire = Wire(port_of(server))
        async with (
            httpx2.AsyncClient(transport=wire, timeout=60, headers={"X-MusicGPT-Api-Key": alice}) as http,
            Client(streamable_http_client(server.url, http_client=http), mode="legacy") as a,  # type: ignore[arg-type]
        ):
            task_id = await stalled_job(a, sandbox)

            async def wait() -> None:
                try:
                    outcome.append(await a.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 30}))
                except MCPError as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(1)
                call = wire.call("tools/call", "get_extraction")
                cancel = {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": call.body["id"]},
                }
                a_session = call.headers[HEADER]
                foreign = [
                    post(server, cancel, raw_session(server, alice), alice),  # the same user's other client
                    post(server, cancel, None, alice),  # the same user, no session ID
                    post(server, cancel, a_session, mallory),  # another user with A's session ID
                ]
                await anyio.sleep(2.5)
                assert call.answered is None  # still waiting
                own = post(server, cancel, a_session, alice)
                with anyio.fail_after(3):
                    while call.answered is None:
                        await anyio.sleep(0.05)
    assert all(r.status_code == 202 for r in [*foreign, own])
    [error] = outcome
    assert isinstance(error, MCPError) and error.error.code == CANCELLED
