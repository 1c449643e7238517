"""The ledger's part in the server's webhook, on both engines: a delivery noted once and harmless when replayed,
and one status read of a job for all its waiters (taken in a short transaction, given back when it fails)."""

from __future__ import annotations

import anyio
import pytest

from musicgpt_mcp.ledger import Accepted, Claimed, Ledger

from . import test_ledger_contract as contract
from .test_ledger_contract import POLICY, T0, req, status

pytestmark = pytest.mark.anyio

# The contract's fixtures: each test runs on SQLite and on PostgreSQL.
engine = contract.engine
ledger = contract.ledger

DONE = status("COMPLETED", done=True, mp3={"vocals": "https://s/v.mp3"})


async def hooked(ledger: Ledger, task_id: str = "task-h", *, server_webhook: bool = True) -> int:
    claim = await ledger.claim(req(task_id), POLICY, T0)
    assert isinstance(claim, Claimed)
    await ledger.accepted(claim.job_id, Accepted(task_id, None, 20, 1.0, server_webhook=server_webhook))
    return claim.job_id


async def test_the_server_webhook_is_recorded_with_the_accepted_job(ledger: Ledger) -> None:
    hooked_id, polled_id = await hooked(ledger, "task-a"), await hooked(ledger, "task-b", server_webhook=False)
    a, b = await ledger.job("alice", "task-a"), await ledger.job("alice", "task-b")
    assert a is not None and b is not None
    assert (a.id, a.server_webhook, a.delivered_at, a.unconfirmed, a.read_at, a.reading_until) == (
        hooked_id,
        True,
        None,
        False,
        None,
        None,
    )
    assert (b.id, b.server_webhook) == (polled_id, False)


async def test_a_delivery_is_noted_until_the_job_is_known_to_have_finished(ledger: Ledger) -> None:
    job_id = await hooked(ledger)
    assert await ledger.delivered(job_id, T0 + 20) == "noted"
    noted = await ledger.job("alice", "task-h")
    assert noted is not None and (noted.delivered_at, noted.unconfirmed) == (T0 + 20, True)
    assert await ledger.delivered(job_id, T0 + 20.5) == "pending"  # a second copy, before anyone read
    assert await ledger.take_read(job_id, None, T0 + 21, T0 + 61)
    taken = await ledger.job_by_id(job_id)
    assert taken is not None and not taken.unconfirmed  # the read taken answers the delivery
    assert await ledger.delivered(job_id, T0 + 21) == "pending"  # a copy while the read is under way
    again = await ledger.job_by_id(job_id)
    assert again is not None and (again.delivered_at, again.unconfirmed) == (T0 + 20, False)
    await ledger.read_done(job_id, status("IN_PROGRESS"), T0 + 22)
    # MusicGPT told before its status said so: a later copy is noted, and asks for another read.
    assert await ledger.delivered(job_id, T0 + 23) == "noted"
    assert await ledger.take_read(job_id, T0 + 21, T0 + 24, T0 + 64)
    await ledger.read_done(job_id, DONE, T0 + 25)
    assert await ledger.delivered(job_id, T0 + 500) == "finished"
    replayed = await ledger.job("alice", "task-h")
    assert replayed is not None
    assert (replayed.delivered_at, replayed.finished_at, replayed.status) == (T0 + 23, T0 + 25, "COMPLETED")
    assert replayed.mp3_urls == {"vocals": "https://s/v.mp3"}
    assert await ledger.delivered(job_id + 1000, T0) == "unknown"
    assert await ledger.job_by_id(job_id + 1000) is None


async def test_one_read_is_taken_for_all_waiters(ledger: Ledger) -> None:
    job_id = await hooked(ledger)
    # Ten waiters who all saw the job never read: one takes it.
    results = []

    async def take() -> None:
        results.append(await ledger.take_read(job_id, None, T0 + 20, T0 + 60))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(take)
    assert sorted(results) == [False] * 9 + [True]
    job = await ledger.job("alice", "task-h")
    assert job is not None and (job.read_at, job.reading_until) == (T0 + 20, T0 + 60)
    # While it is held, even a waiter who saw the new read_at waits; once the hold runs out, one may take over.
    assert not await ledger.take_read(job_id, T0 + 20, T0 + 30, T0 + 70)
    assert await ledger.take_read(job_id, T0 + 20, T0 + 60, T0 + 100)


async def test_a_read_done_frees_the_job_and_a_finished_job_is_never_read_again(ledger: Ledger) -> None:
    job_id = await hooked(ledger)
    assert await ledger.take_read(job_id, None, T0 + 20, T0 + 60)
    await ledger.read_done(job_id, status("IN_PROGRESS"), T0 + 21)
    job = await ledger.job("alice", "task-h")
    assert job is not None and (job.status, job.finished_at, job.reading_until) == ("IN_PROGRESS", None, None)
    # Someone who still saw no read at all lost the race: the read was taken since.
    assert not await ledger.take_read(job_id, None, T0 + 25, T0 + 65)
    assert await ledger.take_read(job_id, T0 + 20, T0 + 25, T0 + 65)
    await ledger.read_done(job_id, DONE, T0 + 26)
    assert not await ledger.take_read(job_id, T0 + 25, T0 + 90, T0 + 130)


async def test_a_failed_read_is_given_back_unless_someone_took_one_since(ledger: Ledger) -> None:
    job_id = await hooked(ledger)
    await ledger.delivered(job_id, T0 + 20)
    assert await ledger.take_read(job_id, None, T0 + 20, T0 + 60)
    await ledger.read_failed(job_id, T0 + 20, None, True)
    job = await ledger.job("alice", "task-h")
    assert job is not None and (job.read_at, job.reading_until, job.unconfirmed) == (None, None, True)
    assert await ledger.take_read(job_id, None, T0 + 21, T0 + 22)
    assert await ledger.take_read(job_id, T0 + 21, T0 + 23, T0 + 63)  # the first hold ran out
    await ledger.read_failed(job_id, T0 + 21, None, True)  # too late: the read is the second taker's now
    job = await ledger.job("alice", "task-h")
    assert job is not None and (job.read_at, job.reading_until, job.unconfirmed) == (T0 + 23, T0 + 63, False)


async def test_a_job_still_being_submitted_is_not_read(ledger: Ledger) -> None:
    claim = await ledger.claim(req("task-s"), POLICY, T0)
    assert isinstance(claim, Claimed)
    assert await ledger.delivered(claim.job_id, T0 + 1) == "noted"  # MusicGPT was quicker than its own reply
    assert not await ledger.take_read(claim.job_id, None, T0 + 1, T0 + 40)
