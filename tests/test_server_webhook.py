"""The server's own webhook (issue 21) on one machine: with a public URL every submit without a caller's webhook
carries one of the server's, MusicGPT's delivery wakes the waiter (in this process, SQLite), and one status read
confirms it. Forged deliveries get 4xx and change nothing; replays are harmless; the body is capped and each
source rate-limited; a lost delivery is finished by the safety net; without a public URL jobs are polled."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from musicgpt_mcp import deliveries, logs, watching
from musicgpt_mcp.hooks import HOOK_PATH, hook_prefix
from musicgpt_mcp.sandbox import Sandbox

from .conftest import SECRET_KEY
from .support.http_server import Running, serve_http
from .test_journey import webhook_receiver  # noqa: F401 - a fixture
from .test_remote import connect_http, remote, structured

pytestmark = pytest.mark.anyio

HOOK = re.compile(r"http://127\.0\.0\.1:\d+/webhooks/musicgpt/([1-9][0-9]*)-([0-9a-f]{32})")


@contextmanager
def hosted(sandbox: Sandbox, **settings: Any) -> Iterator[Running]:
    """One server with its own loopback URL as MUSICGPT_MCP_PUBLIC_URL, which the sandbox delivers to."""
    with serve_http(dataclasses.replace(remote(sandbox), **settings), public=True) as server:
        sandbox.state.webhook_urls = (*sandbox.state.webhook_urls, hook_prefix(server.url))
        yield server


@asynccontextmanager
async def client_of(server: Running) -> AsyncIterator[Client]:
    async with connect_http(server.url) as client:
        yield client


async def submit(client: Client, song: str = "https://example.com/a.mp3") -> str:
    return str(structured(await client.call_tool("extract_stems", {"audio_url": song}))["task_id"])


async def chunks(chunk: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield chunk


async def settled(sandbox: Sandbox, deliveries: int) -> None:
    with anyio.fail_after(10):
        while len(sandbox.state.webhooks) < deliveries:
            await anyio.sleep(0.02)


async def test_the_waiter_is_woken_by_the_delivery_and_one_read_confirms_it(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.state.eta = 3
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with hosted(sandbox) as server:
        async with client_of(server) as client:
            task_id = await submit(client)
            [received] = sandbox.state.submits()
            hook = received.fields["webhook_url"]
            assert HOOK.fullmatch(hook), hook
            assert hook.startswith(server.origin + HOOK_PATH)
            assert SECRET_KEY not in hook
            started = time.monotonic()
            args = {"task_id": task_id, "wait_seconds": 30}
            status = structured(await client.call_tool("get_extraction", args, progress_callback=on_progress))
            answered = time.monotonic() - started
            await settled(sandbox, 2)
    assert status["succeeded"] is True and set(status["stems"]) == {"drums", "bass", "piano", "guitar"}
    # Progress while waiting, as when polling: seconds of the job's life against its ETA, ending "finished".
    assert len(progress) >= 2 and progress[-1][2] == "finished"
    assert [p for p, _, _ in progress] == sorted({p for p, _, _ in progress})
    assert progress[0][1] == 3 + 1 and progress[-1][0] == progress[-1][1]
    # Woken, not polled: the job ends 3 s after it arrived, the delivery follows at once.
    assert answered < 3 + 1.5, answered
    assert sandbox.state.status_calls == 1
    # Both copies are taken; the second (during the read, or after it) adds no read of its own.
    first, second = (d.status for d in sandbox.state.webhooks)
    assert first == 202 and second in (200, 202)
    # The server never logs the secret; the double (MusicGPT's side, on its own thread) may log where it POSTs.
    secret = hook.rsplit("/", 1)[1]
    assert not [r for r in caplog.records if secret in r.getMessage() and r.threadName != "musicgpt-sandbox"]


def test_the_log_hides_a_webhook_secret_whoever_writes_it() -> None:
    """With --sandbox the double runs in the server's process, and its HTTP client logs each URL it POSTs to."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    handler.addFilter(logs.HideHookSecrets())
    logger = logging.getLogger("tests.hook-secret")
    logger.addHandler(handler)
    try:
        logger.warning('HTTP Request: %s %s "%s"', "POST", f"http://h:1{HOOK_PATH}12-{'ab' * 16}", "HTTP/1.1 202")
        logger.warning("no address here")
    finally:
        logger.removeHandler(handler)
    assert lines == [f'HTTP Request: POST http://h:1{HOOK_PATH}[secret] "HTTP/1.1 202"', "no address here"]


async def test_forged_deliveries_get_4xx_and_change_nothing(sandbox: Sandbox) -> None:
    sandbox.state.eta = 30
    with hosted(sandbox) as server:
        async with client_of(server) as client:
            task_id = await submit(client)
            hook = sandbox.state.submits()[0].fields["webhook_url"]
            job, mac = HOOK.fullmatch(hook).groups()  # type: ignore[union-attr]
            changed = f"{job}-{'0' if mac[0] != '0' else '1'}{mac[1:]}"
            forged = {
                "changed secret": f"{server.origin}{HOOK_PATH}{changed}",
                "another job's row": f"{server.origin}{HOOK_PATH}{int(job) + 1}-{mac}",
                "unknown path": f"{server.origin}/webhooks/musicgpt-evil/{job}-{mac}",
                "no secret": f"{server.origin}{HOOK_PATH}",
                "no secret, no slash": f"{server.origin}{HOOK_PATH.rstrip('/')}",
            }
            body = {"success": True, "task_id": task_id, "status": "COMPLETED", "conversion_path": "{}"}
            async with httpx2.AsyncClient() as http:
                answers = {name: (await http.post(url, json=body)).status_code for name, url in forged.items()}
            looked = structured(await client.call_tool("get_extraction", {"task_id": task_id}))
    assert all(400 <= code < 500 for code in answers.values()), answers
    # Nothing noted, nobody woken, MusicGPT not asked: the job is as the submit left it.
    assert (looked["status"], looked["done"]) == ("IN_QUEUE", False)
    assert sandbox.state.status_calls == 0


async def test_a_replayed_delivery_is_harmless(sandbox: Sandbox) -> None:
    sandbox.state.eta = 1
    with hosted(sandbox) as server:
        async with client_of(server) as client:
            task_id = await submit(client)
            done = structured(await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 20}))
            await settled(sandbox, 2)
            first = sandbox.state.webhooks[0]
            async with httpx2.AsyncClient() as http:
                replays = [(await http.post(first.url, json=first.payload)).status_code for _ in range(5)]
            again = structured(await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 5}))
    assert done["succeeded"] is True and again == {**done, "waited_seconds": again["waited_seconds"]}
    assert replays == [200] * 5
    assert sandbox.state.status_calls == 1


async def test_a_body_over_the_cap_is_refused(sandbox: Sandbox) -> None:
    sandbox.state.eta = 30
    with hosted(sandbox) as server:
        async with client_of(server) as client:
            task_id = await submit(client)
            hook = sandbox.state.submits()[0].fields["webhook_url"]
            async with httpx2.AsyncClient() as http:
                huge = await http.post(hook, content=b"{" + b" " * deliveries.MAX_BODY + b"}")
                undeclared = await http.post(hook, content=chunks(b" " * 100_000, 3))  # no length declared
            looked = structured(await client.call_tool("get_extraction", {"task_id": task_id}))
    assert (huge.status_code, undeclared.status_code) == (413, 413)
    assert looked["status"] == "IN_QUEUE" and sandbox.state.status_calls == 0


async def test_each_source_is_rate_limited_and_refusals_cost_more(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deliveries, "SOURCE_LIMIT", 60)
    monkeypatch.setattr(deliveries, "REFUSED_COST", 20)
    sandbox.state.eta = 30
    with hosted(sandbox) as server:
        async with client_of(server) as client:
            await submit(client)
        good = sandbox.state.submits()[0].fields["webhook_url"]
        forged = f"{server.origin}{HOOK_PATH}1-{'0' * 32}"

        # uvicorn takes the source from X-Forwarded-For when a proxy on loopback sends it.
        async def post(url: str, source: str) -> httpx2.Response:
            return await http.post(url, headers={"X-Forwarded-For": source}, json={"status": "IN_PROGRESS"})

        async with httpx2.AsyncClient() as http:
            guesses = [(await post(forged, "203.0.113.7")).status_code for _ in range(4)]
            after_guesses = (await post(good, "203.0.113.7")).status_code
            accepted = [(await post(good, "198.51.100.9")).status_code for _ in range(61)]
            limited = await post(good, "198.51.100.9")
            elsewhere = await post(good, "192.0.2.1")
    # Three refusals (20 each) spend the budget of 60: the fourth guess, and anything else, waits.
    assert guesses == [404, 404, 404, 429] and after_guesses == 429
    # Accepted deliveries cost 1 each: 60 pass.
    assert accepted == [200] * 60 + [429] and limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= deliveries.SOURCE_WINDOW
    assert elsewhere.status_code == 200


async def test_a_lost_delivery_is_finished_by_the_safety_net(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watching, "SAFETY_AFTER_ETA", 2.0)
    sandbox.state.eta = 1
    sandbox.state.webhook_copies = 0  # MusicGPT's deliveries never arrive
    with hosted(sandbox) as server:
        async with client_of(server) as client:
            task_id = await submit(client)
            started = time.monotonic()
            status = structured(await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 20}))
            answered = time.monotonic() - started
    assert status["succeeded"] is True
    # Not before the safety net (ETA + SAFETY_AFTER_ETA), and well before the 20 s wait ran out (the upper bound
    # is loose: a busy machine running the whole suite once took more than 1.5 s longer).
    assert 1 + 2 - 0.5 <= answered < 1 + 2 + watching.LOST_RACE_PAUSE + 6, answered
    assert sandbox.state.status_calls == 1


async def test_a_callers_own_webhook_is_kept_and_its_job_polled(
    sandbox: Sandbox,
    webhook_receiver: tuple[str, list[dict[str, Any]]],  # noqa: F811 - the fixture
) -> None:
    url, received = webhook_receiver
    prefix = url.split("?")[0]
    sandbox.state.eta = 2
    with hosted(sandbox, webhook_urls=(prefix,)) as server:
        sandbox.state.webhook_urls = (*sandbox.state.webhook_urls, prefix)
        async with client_of(server) as client:
            args = {"audio_url": "https://example.com/own.mp3", "webhook_url": url}
            task_id = structured(await client.call_tool("extract_stems", args))["task_id"]
            status = structured(await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 20}))
        await settled(sandbox, 2)
    assert [s.fields["webhook_url"] for s in sandbox.state.submits()] == [url]
    assert status["succeeded"] is True
    assert sandbox.state.status_calls >= 2  # polled: a first look, then at the ETA
    assert [r["task_id"] for r in received] == [task_id, task_id]  # MusicGPT called the caller's address


async def test_without_a_public_url_jobs_are_polled_as_before(sandbox: Sandbox) -> None:
    sandbox.state.eta = 1
    with serve_http(remote(sandbox)) as server:
        async with client_of(server) as client:
            task_id = await submit(client)
            status = structured(await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 20}))
    assert "webhook_url" not in sandbox.state.submits()[0].fields
    assert status["succeeded"] is True and sandbox.state.status_calls >= 2
