"""Issue 21's check, as it is written: two replicas on one real PostgreSQL (header sign-in, one server secret),
MUSICGPT_MCP_PUBLIC_URL = replica 1's URL so MusicGPT's deliveries land there, MusicGPT's 200 status calls a
minute left in force, and a double whose jobs take 20 s and which then POSTs each job to its webhook_url twice.
120 songs are submitted through replica 1 and each is waited on through replica 2."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from pydantic import SecretStr

from musicgpt_mcp.config import Settings
from musicgpt_mcp.hooks import HOOK_PATH, hook_prefix
from musicgpt_mcp.sandbox import Sandbox

from .support.http_server import Running, serve_http
from .test_journey import webhook_receiver  # noqa: F401 - a fixture
from .test_remote import connect_http, remote, structured

pytestmark = pytest.mark.anyio

JOB_SECONDS = 20
SONGS = 120
# Header sign-in: each caller brings their own key. Four callers share the songs, 30 each: within MusicGPT's 60
# submits a minute per key, and each key's 200 status calls a minute stay in force.
KEYS = tuple(f"mgpt-replica-caller-{n}-0123456789" for n in range(4))
# The budget the issue sets, and how late after its job's end a waiter may learn of it.
CALLS_PER_JOB = 1.25
LATE = 6.0


def replica_settings(sandbox: Sandbox, database: str, **overrides: Any) -> Settings:
    settings = remote(sandbox, auth="header", database_url=SecretStr(database))
    return dataclasses.replace(settings, max_jobs_per_hour=1000, **overrides)


@contextmanager
def two_replicas(settings: Settings) -> Iterator[tuple[Running, Running]]:
    """Replica 1 with its own URL as the public URL; replica 2 configured alike (one public URL for all), so
    every delivery reaches replica 1."""
    with serve_http(settings, public=True) as first, serve_http(settings, public_url=first.url) as second:
        yield first, second


async def test_120_jobs_submitted_on_one_replica_and_waited_on_through_the_other(
    sandbox: Sandbox,
    postgres_url: str,
    webhook_receiver: tuple[str, list[dict[str, Any]]],  # noqa: F811 - the fixture
) -> None:
    own_hook, own_received = webhook_receiver
    own_prefix = own_hook.split("?")[0]
    sandbox.state.eta = JOB_SECONDS
    sandbox.state.accept_any_key = True
    settings = replica_settings(sandbox, postgres_url, webhook_urls=(own_prefix,))
    with two_replicas(settings) as (first, second):
        sandbox.state.webhook_urls = (hook_prefix(first.url), own_prefix)
        jobs = await submit_all(first)
        submits = sandbox.state.submits()
        assert await forge(first, submits[0].fields["webhook_url"]) == [404, 404, 404]
        own = await submit_own(first, own_hook)
        assert sandbox.state.status_calls == 0  # nothing was read: no delivery, forged or real, has come yet
        answers = await wait_all(second, [*jobs, own])
        await delivered(sandbox, 2 * (SONGS + 1))
    created = {job.task_id: job.created for job in sandbox.state.jobs.values()}
    hooks = [s.fields.get("webhook_url", "") for s in submits]
    assert len(hooks) == SONGS and all(h.startswith(first.origin + HOOK_PATH) for h in hooks)
    assert not [h for h in hooks if any(key in h for key in KEYS)]
    assert [d.status for d in sandbox.state.webhooks if not 200 <= (d.status or 0) < 300] == []
    late = {task: round(at - created[task] - JOB_SECONDS, 2) for task, (status, at) in answers.items()}
    assert all(status["succeeded"] and status["stems"] for status, _ in answers.values())
    assert max(late.values()) <= LATE, sorted(late.values())[-5:]
    assert sandbox.state.status_calls <= CALLS_PER_JOB * (SONGS + 1), sandbox.state.status_calls
    # The caller's own address was kept, MusicGPT called it, and that job finished (polled, as before).
    own_task = own[1]
    assert [s.fields["webhook_url"] for s in sandbox.state.submits()[SONGS:]] == [own_hook]
    assert [r["task_id"] for r in own_received] == [own_task, own_task]


async def submit_all(replica: Running) -> list[tuple[str, str]]:
    """SONGS songs through `replica`, at once; (caller's key, task_id) each."""
    jobs: list[tuple[str, str]] = []

    async def caller(key: str, songs: range) -> None:
        async with connect_http(replica.url, key=key) as client, anyio.create_task_group() as tg:
            for n in songs:
                tg.start_soon(one, client, key, n)

    async def one(client: Client, key: str, n: int) -> None:
        args = {"audio_url": f"https://example.com/song-{n}.mp3", "stems": ["vocals", "drums"]}
        jobs.append((key, str(structured(await client.call_tool("extract_stems", args))["task_id"])))

    per = SONGS // len(KEYS)
    async with anyio.create_task_group() as tg:
        for i, key in enumerate(KEYS):
            tg.start_soon(caller, key, range(i * per, (i + 1) * per))
    return jobs


async def submit_own(replica: Running, hook: str) -> tuple[str, str]:
    async with connect_http(replica.url, key=KEYS[0]) as client:
        args = {"audio_url": "https://example.com/own-hook.mp3", "webhook_url": hook}
        return KEYS[0], str(structured(await client.call_tool("extract_stems", args))["task_id"])


async def forge(replica: Running, real: str) -> list[int]:
    """Three forged deliveries, as the issue lists them: a changed secret, an unknown path, no secret."""
    secret = real.rsplit("/", 1)[1]
    changed = secret[:-1] + ("0" if secret[-1] != "0" else "1")
    body = json.dumps({"success": True, "status": "COMPLETED", "conversion_path": '{"vocals": "https://evil/x"}'})
    urls = [
        f"{replica.origin}{HOOK_PATH}{changed}",
        f"{replica.origin}/webhooks/other/{secret}",
        f"{replica.origin}{HOOK_PATH}",
    ]
    async with httpx2.AsyncClient() as http:
        return [(await http.post(url, content=body)).status_code for url in urls]


async def wait_all(replica: Running, jobs: list[tuple[str, str]]) -> dict[str, tuple[dict[str, Any], float]]:
    """Each job waited on through `replica` by its own caller, all at once: the status each waiter saw, and
    when (monotonic, the sandbox's clock)."""
    answers: dict[str, tuple[dict[str, Any], float]] = {}

    async def caller(key: str, tasks: list[str]) -> None:
        async with connect_http(replica.url, key=key) as client, anyio.create_task_group() as tg:
            for task in tasks:
                tg.start_soon(wait, client, task)

    async def wait(client: Client, task: str) -> None:
        status: dict[str, Any] = {"done": False}
        while not status["done"]:
            status = structured(await client.call_tool("get_extraction", {"task_id": task, "wait_seconds": 50}))
        answers[task] = (status, time.monotonic())

    async with anyio.create_task_group() as tg:
        for key in KEYS:
            tg.start_soon(caller, key, [task for owner, task in jobs if owner == key])
    return answers


async def delivered(sandbox: Sandbox, count: int) -> None:
    with anyio.fail_after(15):
        while len(sandbox.state.webhooks) < count:
            await anyio.sleep(0.05)


async def test_waiters_on_both_replicas_share_one_read(sandbox: Sandbox, postgres_url: str) -> None:
    """Eight waiters on one job, four on each replica, and afterwards a resource read on the replica that did not
    receive the delivery: MusicGPT is asked once."""
    sandbox.state.eta = 3
    sandbox.state.accept_any_key = True
    key = KEYS[0]
    with two_replicas(replica_settings(sandbox, postgres_url)) as (first, second):
        sandbox.state.webhook_urls = (hook_prefix(first.url),)
        async with connect_http(first.url, key=key) as one, connect_http(second.url, key=key) as two:
            task = str(
                structured(await one.call_tool("extract_stems", {"audio_url": "https://example.com/s.mp3"}))["task_id"]
            )
            seen: list[dict[str, Any]] = []

            async def wait(client: Client) -> None:
                seen.append(structured(await client.call_tool("get_extraction", {"task_id": task, "wait_seconds": 20})))

            async with anyio.create_task_group() as tg:
                for client in (one, two) * 4:
                    tg.start_soon(wait, client)
            read = await two.read_resource(f"musicgpt://extractions/{task}")
        await delivered(sandbox, 2)
    assert [s["succeeded"] for s in seen] == [True] * 8
    assert json.loads(read.contents[0].text)["status"] == "COMPLETED"  # type: ignore[union-attr]
    assert sandbox.state.status_calls == 1
