"""Two replicas of the HTTP server on one real PostgreSQL, a client's requests spread across both as a
load balancer would: reuse, limits, history and MusicGPT's rate limits hold across them."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from musicgpt_mcp.config import Remote, Settings
from musicgpt_mcp.ledger.postgres_ratelimit import PostgresRateLimiter
from musicgpt_mcp.musicgpt import contract
from musicgpt_mcp.sandbox import Sandbox

from .conftest import make_settings
from .support.http_server import Running, serve_http
from .test_remote import structured

pytestmark = pytest.mark.anyio

SECRET = "replicas-share-this-secret-0123456789abcdef"


class RoundRobin(httpx2.AsyncBaseTransport):
    """Each request to the next replica in turn: a load balancer with no stickiness."""

    def __init__(self, replicas: list[Running]) -> None:
        self._ports = itertools.cycle([int(r.origin.rsplit(":", 1)[1]) for r in replicas])
        self._inner = httpx2.AsyncHTTPTransport()
        self.sent: list[int] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = next(self._ports)
        self.sent.append(port)
        request.url = request.url.copy_with(port=port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def settings_for(sandbox: Sandbox, database: str, **overrides: Any) -> Settings:
    settings = make_settings(sandbox, allowed_dirs=None, **overrides)
    return dataclasses.replace(
        settings, remote=Remote(database_url=SecretStr(database), server_secret=SecretStr(SECRET))
    )


@contextmanager
def replicas(settings: Settings, count: int = 2) -> Iterator[list[Running]]:
    with ExitStack() as stack:
        yield [stack.enter_context(serve_http(settings)) for _ in range(count)]


@asynccontextmanager
async def balanced(servers: list[Running], mode: str = "auto") -> AsyncIterator[tuple[Client, RoundRobin]]:
    transport = RoundRobin(servers)
    async with (
        httpx2.AsyncClient(transport=transport, timeout=60) as http,
        Client(streamable_http_client(servers[0].url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        yield client, transport


async def test_identical_submits_on_two_replicas_make_one_post(sandbox: Sandbox, postgres_url: str) -> None:
    sandbox.state.submit_delay = 0.5
    results: list[dict[str, Any]] = []
    with replicas(settings_for(sandbox, postgres_url)) as servers:
        async with balanced(servers) as (client, transport):

            async def one() -> None:
                results.append(
                    structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/one.mp3"}))
                )

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(one)
    assert len(set(transport.sent)) == 2  # both replicas answered
    assert len(sandbox.state.submits()) == 1
    assert len({r["task_id"] for r in results}) == 1
    assert sum(not r["reused"] for r in results) == 1


async def test_a_limit_reached_through_one_replica_holds_on_the_other(sandbox: Sandbox, postgres_url: str) -> None:
    with replicas(settings_for(sandbox, postgres_url, max_jobs_per_hour=1)) as (first, second):
        async with balanced([first]) as (via_first, _):
            structured(await via_first.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"}))
        async with balanced([second]) as (via_second, _):
            refused = await via_second.call_tool("extract_stems", {"audio_url": "https://example.com/b.mp3"})
    assert refused.is_error
    assert "MUSICGPT_MCP_MAX_JOBS_PER_HOUR" in refused.content[0].text  # type: ignore[union-attr]
    assert len(sandbox.state.submits()) == 1


async def test_a_job_from_one_replica_is_listed_waited_on_and_downloaded_through_the_other(
    sandbox: Sandbox, postgres_url: str, tmp_path: Path
) -> None:
    sandbox.state.eta = 2
    settings = dataclasses.replace(
        settings_for(sandbox, postgres_url), output_dir=tmp_path / "out", output_dir_configured=True
    )
    with replicas(settings) as (first, second):
        async with balanced([first]) as (via_first, _):
            job = structured(await via_first.call_tool("extract_stems", {"audio_url": "https://example.com/c.mp3"}))
        progress: list[float | None] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(total)

        async with balanced([second]) as (via_second, _):
            listed = structured(await via_second.call_tool("list_extractions", {}))
            status = structured(
                await via_second.call_tool(
                    "get_extraction", {"task_id": job["task_id"], "wait_seconds": 20}, progress_callback=on_progress
                )
            )
            saved = structured(await via_second.call_tool("download_stems", {"task_id": job["task_id"]}))
    assert [e["task_id"] for e in listed["extractions"]] == [job["task_id"]]
    assert status["succeeded"] is True
    # The other replica polled on the ETA the first one recorded (total = the ETA plus a second).
    assert progress and progress[0] == 3
    assert Path(saved["directory"]).name == f"c - {job['task_id'][:8]}"
    assert all(Path(f["path"]).is_file() for f in saved["files"])


async def test_musicgpts_rate_limit_holds_in_sum_across_replicas(
    sandbox: Sandbox, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MusicGPT's real budget is 200 status calls a minute; the same rule at 4 calls in 2 s.
    monkeypatch.setattr(contract, "STATUS_CALLS_PER_MINUTE", 4)
    monkeypatch.setattr(contract, "RATE_WINDOW", 2.0)
    sandbox.state.eta = 0
    counted: list[tuple[str, float]] = []  # when each replica's limiter let a call through (database clock)
    take = PostgresRateLimiter.take

    async def recorded(self: PostgresRateLimiter) -> float:
        at = await take(self)
        counted.append((self.bucket, at))
        return at

    monkeypatch.setattr(PostgresRateLimiter, "take", recorded)
    with replicas(settings_for(sandbox, postgres_url)) as servers:
        async with balanced(servers) as (client, transport):
            job = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/d.mp3"}))
            sandbox.state.clear_records()
            mark = len(counted)
            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(client.call_tool, "get_extraction", {"task_id": job["task_id"]})
    times = sorted(sandbox.state.status_times)
    assert len(times) == 12
    assert len(set(transport.sent)) == 2
    # Each replica alone would let 4 through at once (8 in all); together they let 4 in any window, 12 calls
    # over 4 s or more. Checked where the limit is kept (when each call was counted), not by when calls
    # reached MusicGPT: each arrives after a delay of its own, which a busy machine stretched past a quarter
    # second once and so bunched arrivals from two windows together.
    status_counted = sorted(at for bucket, at in counted[mark:] if bucket.startswith("status:"))
    assert len(status_counted) == 12
    busiest = max(sum(1 for t in status_counted if start <= t < start + 2.0) for start in status_counted)
    assert busiest <= 4, status_counted
    assert status_counted[-1] - status_counted[0] >= 4.0 - 0.05, status_counted
    assert times[-1] - times[0] >= 3.0, times


async def test_consent_asked_through_one_replica_is_answered_on_the_other(sandbox: Sandbox, postgres_url: str) -> None:
    """A 2026-07-28 client answers a question by sending the call again with the answer and the state the
    server handed it; here that second round lands on the other replica, which must accept the state
    (sealed with the shared secret) and the answer."""
    from mcp.types import ElicitRequestParams, ElicitResult

    asked: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"submit": True})

    with replicas(settings_for(sandbox, postgres_url)) as servers:
        transport = RoundRobin(servers)
        async with (
            httpx2.AsyncClient(transport=transport, timeout=60) as http,
            Client(streamable_http_client(servers[0].url, http_client=http), elicitation_callback=answer) as client,  # type: ignore[arg-type]
        ):
            done = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/ask.mp3"}))
    assert len(asked) == 1 and "paid stem extraction" in asked[0]
    assert done["reused"] is False
    assert len(sandbox.state.submits()) == 1
    assert len(set(transport.sent[-2:])) == 2  # the question and the answer went to different replicas
