"""MusicGPT's per-account rate limits, held in PostgreSQL so they hold in sum across replicas.

Two ledgers opened on one database are two replicas (two connection pools); each gives a limiter for the same
bucket. The assertion is on the sliding window itself: sorted by when each call was counted, no `max_calls + 1`
calls fall within one period. The moments are the database's clock (what the limiter counts with), so the
test measures exactly what the limiter promises, with no allowance for scheduling jitter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psycopg
import pytest

from musicgpt_mcp.ledger import open_ledger, shared_limiter
from musicgpt_mcp.ledger.postgres import PostgresLedger
from musicgpt_mcp.ledger.postgres_ratelimit import PostgresRateLimiter

pytestmark = pytest.mark.anyio

MAX_CALLS = 4
PERIOD = 1.0
BUCKET = "status:0123456789abcdef0123456789abcdef"


@pytest.fixture
async def replicas(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[PostgresLedger, PostgresLedger]]:
    first = await open_ledger(tmp_path, database_url=postgres_url)
    second = await open_ledger(tmp_path, database_url=postgres_url)
    assert isinstance(first, PostgresLedger)
    assert isinstance(second, PostgresLedger)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def limiter_on(replica: PostgresLedger, bucket: str, max_calls: int, period: float) -> PostgresRateLimiter:
    """The limiter the server would count in on `replica` (accounts.py asks `shared_limiter` the same)."""
    limiter = shared_limiter(replica, bucket, max_calls, period)
    assert isinstance(limiter, PostgresRateLimiter)
    return limiter


def assert_within_limit(moments: list[float], max_calls: int, period: float) -> None:
    """No window of `period` seconds holds more than `max_calls` of `moments` (the limiter's own test:
    a call leaves the window when now - at >= period)."""
    ordered = sorted(moments)
    for i in range(len(ordered) - max_calls):
        assert ordered[i + max_calls] - ordered[i] >= period, (i, ordered)


async def test_two_replicas_never_exceed_the_limit_in_any_window(
    replicas: tuple[PostgresLedger, PostgresLedger],
) -> None:
    # Three limiters per replica (as three worker processes would have): six ask the database at once.
    limiters = [limiter_on(replica, BUCKET, MAX_CALLS, PERIOD) for replica in replicas for _ in range(3)]
    moments: list[float] = []

    async def call(limiter: PostgresRateLimiter) -> None:
        moments.append(await limiter.take())

    calls = 3 * MAX_CALLS + 2  # four windows' worth: the limit must make them wait three periods
    began = time.monotonic()
    with anyio.fail_after(60):  # "does not hang"; the real bound is below
        await asyncio.gather(*(call(limiters[i % len(limiters)]) for i in range(calls)))
    elapsed = time.monotonic() - began

    assert len(moments) == calls
    assert_within_limit(moments, MAX_CALLS, PERIOD)
    # It waited (a limiter that lets everything through fails above; one that sleeps too long fails here).
    assert max(moments) - min(moments) >= 3 * PERIOD
    assert elapsed < 3 * PERIOD + 20


async def test_a_replica_starting_later_sees_the_calls_already_counted(
    replicas: tuple[PostgresLedger, PostgresLedger],
) -> None:
    a, b = replicas
    first = [await limiter_on(a, BUCKET, MAX_CALLS, PERIOD).take() for _ in range(MAX_CALLS)]
    # A new limiter (a replica that just started) must wait for the first call to leave the window.
    later = await limiter_on(b, BUCKET, MAX_CALLS, PERIOD).take()
    assert later - min(first) >= PERIOD


async def test_buckets_are_independent(replicas: tuple[PostgresLedger, PostgresLedger]) -> None:
    a, b = replicas
    moments = {
        bucket: [await limiter_on(replica, bucket, MAX_CALLS, 60.0).take() for replica in (a, b, a, b)]
        for bucket in ("status:account-1", "status:account-2", "submit:account-1")
    }
    # Each bucket got its full allowance at once: a shared bucket would have made the fifth call wait a minute.
    assert all(max(m) - min(m) < 30 for m in moments.values())


async def test_calls_that_left_the_window_are_pruned(
    replicas: tuple[PostgresLedger, PostgresLedger], postgres_url: str
) -> None:
    a, _ = replicas
    limiter = limiter_on(a, BUCKET, 2, 0.2)
    for _ in range(12):
        await limiter.acquire()
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM musicgpt_mcp_rate_calls WHERE bucket = %s", (BUCKET,))
        assert await cursor.fetchone() == (2,)


async def test_without_the_database_each_process_still_keeps_to_the_limit(
    replicas: tuple[PostgresLedger, PostgresLedger], postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = replicas
    limiter = limiter_on(a, BUCKET, 2, 0.5)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute("ALTER TABLE musicgpt_mcp_rate_calls RENAME TO musicgpt_mcp_rate_calls_gone")
    began = time.monotonic()
    for _ in range(5):
        await limiter.acquire()
    # The third and the fifth call each waited for a window to slide (in-process clock, so a lower bound only).
    assert time.monotonic() - began >= 2 * 0.5
    assert sum("cannot be checked in the database" in r.getMessage() for r in caplog.records) == 1


async def test_a_ledger_of_one_machine_shares_no_limiter(tmp_path: Path) -> None:
    """SQLite is one machine's: each process keeps its own count (accounts.py falls back to RateLimiter)."""
    ledger = await open_ledger(tmp_path / "state")
    try:
        assert shared_limiter(ledger, BUCKET, MAX_CALLS, PERIOD) is None
    finally:
        await ledger.close()


def test_a_limit_must_allow_something() -> None:
    with pytest.raises(ValueError, match="max_calls"):
        PostgresRateLimiter(None, BUCKET, 0, 1.0)  # type: ignore[arg-type]
