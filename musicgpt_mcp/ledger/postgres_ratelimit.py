"""A sliding-window rate limit held in PostgreSQL, so it holds in sum across every replica sharing the database.

MusicGPT limits each API key (60 submits and 200 status calls a minute); with several replicas, a limiter in
each process would let N times that through. Each call counted is a row (bucket, at) in
`musicgpt_mcp_rate_calls` (created by the ledger's migrations). One short transaction per attempt: take the
bucket's advisory lock, read the database's clock (one clock for every replica, so skew between machines
does not widen the window), drop the calls that left the window, and count this one if it fits; otherwise the
wait is computed from the oldest call in the window and slept outside the transaction, holding no lock.

Buckets name an account and a kind of call (e.g. "status:<account hash>"); never an API key.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import anyio
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..ratelimit import Limiter, RateLimiter
from .locks import LOCK_RATE, TAKE, lock_key

log = logging.getLogger(__name__)

# The shortest sleep before looking again: asyncio may wake a timer a hair early, and a window that has
# not quite slid must not be polled in a tight loop.
MIN_WAIT: Final = 0.001


class PostgresRateLimiter:
    """At most `max_calls` calls in any `period` seconds for `bucket`, counted across every process that uses
    the same database. `acquire()` has RateLimiter's contract: wait until one more call fits, then count it.

    Make it with `ledger.shared_limiter()`, on a PostgresLedger's pool: that pool runs READ COMMITTED, which the
    count after the lock relies on (a snapshot from before the wait would miss the calls just counted elsewhere)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]],
        bucket: str,
        max_calls: int,
        period: float,
    ) -> None:
        if max_calls < 1 or period <= 0:
            raise ValueError("a rate limit needs max_calls >= 1 and period > 0")
        self.bucket = bucket
        self.max_calls = max_calls
        self.period = period
        self._pool = pool
        # One task per process asks the database at a time; the others queue here in order, as in RateLimiter.
        self._lock = anyio.Lock()
        # When the database cannot be reached, this process still keeps to the limit on its own (status calls
        # are free reads; a 429 from MusicGPT is retried), rather than failing every call.
        self._fallback = RateLimiter(max_calls, period)
        self._degraded = False

    async def acquire(self) -> None:
        """Wait until one more call fits in the window, then count it."""
        await self.take()

    async def take(self) -> float:
        """`acquire()`, returning when the call was counted: the database's clock, epoch seconds (this
        machine's clock while the database cannot be reached)."""
        async with self._lock:
            while True:
                try:
                    counted, wait = await self._attempt()
                except psycopg.Error as exc:
                    if not self._degraded:  # once per outage, not once per call
                        log.warning(
                            "the shared rate limit %r cannot be checked in the database (%s); keeping to it in "
                            "this process only until the database answers again",
                            self.bucket,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        )
                    self._degraded = True
                    await self._fallback.acquire()
                    return time.time()
                if self._degraded:
                    log.info("the shared rate limit %r is checked in the database again", self.bucket)
                    self._degraded = False
                if counted is not None:
                    return counted
                await anyio.sleep(max(wait, MIN_WAIT))

    async def _attempt(self) -> tuple[float | None, float]:
        """(when the call was counted, 0) if it fits now, else (None, seconds until the oldest call leaves)."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(TAKE, (LOCK_RATE, lock_key(self.bucket)))
            # clock_timestamp(), not now(): the time after the lock was granted, not when the transaction began.
            row = await (await conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")).fetchone()
            assert row is not None
            now = float(row[0])
            # The same test as RateLimiter (now - at >= period: gone), in the same float arithmetic.
            await conn.execute(
                "DELETE FROM musicgpt_mcp_rate_calls WHERE bucket = %s AND %s - at >= %s",
                (self.bucket, now, self.period),
            )
            cursor = await conn.execute(
                "SELECT count(*), min(at) FROM musicgpt_mcp_rate_calls WHERE bucket = %s", (self.bucket,)
            )
            counted = await cursor.fetchone()
            assert counted is not None
            if int(counted[0]) < self.max_calls:
                await conn.execute(
                    "INSERT INTO musicgpt_mcp_rate_calls (bucket, at) VALUES (%s, %s)", (self.bucket, now)
                )
                return now, 0.0
            return None, float(counted[1]) + self.period - now


if TYPE_CHECKING:

    def _is_a_limiter(limiter: PostgresRateLimiter) -> Limiter:
        return limiter  # mypy proves MusicGPTClient.status_limiter can be one
