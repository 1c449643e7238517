"""The ledger in PostgreSQL: one database shared by every replica of a hosted server.

Only imported when a database URL is configured (psycopg is the optional extra `musicgpt-mcp[postgres]`).

Why check-then-claim is atomic across replicas: a claim is one short transaction that first takes a
transaction-scoped advisory lock on the owner, then reads, decides (rules.py's rules, the same as SQLite's)
and inserts. The lock is per owner, not per request, because the spending limits count all of an owner's
jobs: two different songs submitted at one instant through two replicas must not both pass a limit of one
job an hour. The rows the decision reads are also locked (FOR NO KEY UPDATE), so a submitter recording its
outcome cannot slip in between the read and a dead claim being marked unknown. READ COMMITTED (set on every
connection, whatever the server's default) matters: each statement after the lock sees what the previous
holder committed; a REPEATABLE READ snapshot would be taken before the wait and miss it.

Timestamps are epoch seconds in double precision, as in SQLite, not timestamptz: every Ledger method takes
`now` from the caller's clock and every rule compares against it, so both engines do the same arithmetic on
the same numbers (a float64 keeps microseconds for epochs far past 2200). `to_timestamp(submitted_at)` shows
one in psql.

Migrations (postgres_schema.py) are numbered statements, recorded one row per version in `musicgpt_mcp_schema`; they run under a
transaction-scoped advisory lock, so replicas starting together migrate exactly once (the others wait, then
find the work done). A release must only add to the schema: replicas of the previous release keep running
on it during a rolling upgrade.

This module holds what only PostgreSQL says: how the schema is migrated, the pool and its sessions' settings,
the locks (their keys are locks.py's), and the statements SQLite words differently. The statements both engines
run are sql.py's, the values they bind and the rows they read codec.py's, and the database URL is read by
postgres_url.py. MusicGPT's rate limits shared through this database are postgres_ratelimit.py's.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from .base import Accepted, Claimed, ClaimResult, Download, FileKey, Job, JobRequest, Policy, Spending, StatusUpdate
from .base import Noted as DeliveryNoted  # named apart: the engines' import lists must not be one run
from .codec import JOB_COLUMNS, key_values, stored, with_downloads
from .errors import DatabaseLedgerError
from .locks import LOCK_MIGRATE, LOCK_OWNER, TAKE, lock_key
from .postgres_schema import MIGRATIONS, SCHEMA_VERSION
from .postgres_url import Redact, read_url, reason, redactor
from .rules import RECENT_COSTS, Windows, decide_identical, decide_limits, estimate_credits, lookback, sift_identical
from .sql import Dialect, Statements
from .studio import Done, Step, Unchanged, answered

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]
Connection = AsyncConnection[tuple[Any, ...]]


# How long a statement waits for a lock (a claim behind another claim of the same owner takes milliseconds),
# and how long a session may sit in a transaction doing nothing: a replica that hangs mid-claim must not hold
# an owner's lock for ever.
LOCK_TIMEOUT: Final = "15s"
IDLE_IN_TRANSACTION_TIMEOUT: Final = "60s"
POOL_TIMEOUT: Final = 15.0  # seconds to wait for a free connection
CHECK_TIMEOUT: Final = 5.0  # the same, for a health check

# A job's stems and options are a text[] column, which psycopg maps to and from a list. ILIKE: SQLite's LIKE
# ignores (ASCII) case, and so must this.
POSTGRES: Final = Dialect(
    prefix="musicgpt_mcp_", mark="%s", like="ILIKE", store_texts=list, load_texts=list, owner_lock=TAKE
)
SQL: Final = Statements(POSTGRES)
# What only PostgreSQL says: RETURNING, row locks, upserts, aggregates with FILTER, arrays.
RETURNING_ID: Final = " RETURNING id"
RETURNING_JOB: Final = f" RETURNING {JOB_COLUMNS}"
ROW_LOCK: Final = " FOR NO KEY UPDATE"
SPEND_ANSWER: Final = POSTGRES.render("INSERT INTO {answers} (token, spent_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
USAGE: Final = POSTGRES.render(  # (an hour ago, owner, a day ago)
    "SELECT count(*) FILTER (WHERE submitted_at >= ?), coalesce(sum({spent}), 0) FROM {jobs} "
    "WHERE owner = ? AND {chargeable} AND submitted_at >= ?"
)
SPENDING: Final = POSTGRES.render(  # (an hour ago, a day ago, owner, 30 days ago)
    "SELECT count(*) FILTER (WHERE submitted_at >= ?), coalesce(sum({spent}) FILTER (WHERE submitted_at >= ?), 0), "
    "coalesce(sum({spent}), 0) FROM {jobs} WHERE owner = ? AND {chargeable} AND submitted_at >= ?"
)
DOWNLOADS_OF: Final = POSTGRES.render(
    "SELECT {download_columns} FROM {downloads} WHERE job_id = ANY(?) ORDER BY at, id"
)
# Keyed by host too: device and inode numbers mean nothing on another machine.
FINGERPRINT: Final = POSTGRES.render(
    "SELECT sha256 FROM {fingerprints} "
    "WHERE host = ? AND dev = ? AND ino = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ?"
)
REMEMBER_FINGERPRINT: Final = POSTGRES.render(
    "INSERT INTO {fingerprints} (host, dev, ino, size, mtime_ns, ctime_ns, sha256) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host, dev, ino) DO UPDATE "
    "SET size = excluded.size, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, "
    "sha256 = excluded.sha256"
)
# Which machine this process runs on, for the fingerprint cache.
_HOST: Final = socket.gethostname()


# --- opening ----------------------------------------------------------------------------------------------


async def open_postgres_ledger(url: str, *, max_connections: int = 10) -> PostgresLedger:
    """Connect, migrate the schema if needed, and open a connection pool. LedgerError says why not, in words
    that never contain the password."""
    conninfo, where = read_url(url)
    redact = redactor(url)
    try:
        async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await _migrate(conn, where)
    except psycopg.Error as exc:
        raise DatabaseLedgerError(f"cannot use the database {where}: {redact(reason(exc))}") from None
    pool: Pool = AsyncConnectionPool(
        conninfo,
        kwargs={"autocommit": True},
        min_size=1,
        max_size=max_connections,
        open=False,
        configure=_configure,
        # A connection the server has dropped (a restart, a failover) is replaced before use, not failed on.
        check=AsyncConnectionPool.check_connection,
        name="musicgpt-mcp-ledger",
        timeout=POOL_TIMEOUT,
    )
    try:
        await pool.open(wait=True, timeout=POOL_TIMEOUT)
    except psycopg.Error as exc:
        await pool.close()
        raise DatabaseLedgerError(f"cannot use the database {where}: {redact(reason(exc))}") from None
    return PostgresLedger(pool, where, redact)


async def _configure(conn: AsyncConnection[Any]) -> None:
    await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
    await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    await conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'")


async def _migrate(conn: AsyncConnection[Any], where: str) -> None:
    # READ COMMITTED here too: the version read after the lock must be what the replica before us committed.
    await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
    async with conn.transaction():
        # Replicas starting together queue here; the first migrates, the rest find the version current.
        await conn.execute(TAKE, (LOCK_MIGRATE, 0))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS musicgpt_mcp_schema ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = await (await conn.execute("SELECT coalesce(max(version), 0) FROM musicgpt_mcp_schema")).fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise DatabaseLedgerError(
                f"the database {where} was migrated by a newer musicgpt-mcp (ledger schema {version}; this one "
                f"reads up to {SCHEMA_VERSION}). Upgrade musicgpt-mcp on every replica, or use another database."
            )
        for step in range(version, SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[step])
            await conn.execute("INSERT INTO musicgpt_mcp_schema (version) VALUES (%s)", (step + 1,))
            log.info("ledger %s migrated to schema %d", where, step + 1)


# --- the ledger ---------------------------------------------------------------------------------------------


class PostgresLedger:
    """The Ledger on a pool of READ COMMITTED sessions; `pool` is also what a shared rate limiter counts in."""

    def __init__(self, pool: Pool, where: str, redact: Redact | None = None) -> None:
        self.pool = pool
        self.where = where
        self.kind = "postgresql"
        self.dialect = POSTGRES
        self._redact: Redact = redact or (lambda text: text)

    async def close(self) -> None:
        await self.pool.close()

    async def run_steps(self, steps: Sequence[Step]) -> list[Done]:
        """The statements in one transaction (studio.py's operations)."""
        done: list[Done] = []
        with contextlib.suppress(Unchanged):
            async with self._connection() as conn, conn.transaction():
                for step in steps:
                    cursor = await conn.execute(step.statement, step.values)
                    done.append(Done(cursor.rowcount, list(await cursor.fetchall() if step.fetch else [])))
                    if step.guard and not cursor.rowcount:
                        raise Unchanged
        return answered(done, steps)

    async def check(self) -> None:
        # A load balancer's health check wants an answer soon, not after the paid path's patience.
        async with self._connection(wait=CHECK_TIMEOUT) as conn:
            await conn.execute("SELECT 1")

    @asynccontextmanager
    async def _connection(self, wait: float | None = None) -> AsyncIterator[Connection]:
        try:
            async with self.pool.connection(timeout=wait) as conn:
                yield conn
        except psycopg.Error as exc:
            raise DatabaseLedgerError(
                f"the ledger {self.where} could not be used: {self._redact(reason(exc))}"
            ) from None

    # --- the paid path ----------------------------------------------------------------------------------

    async def claim(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(TAKE, (LOCK_OWNER, lock_key(*stored(request.owner))))
            decided, reserved = await _decide(conn, request, policy, now, write=True)
            if decided is not None:
                return decided
            row = await (await conn.execute(*SQL.claim(request, now, reserved, RETURNING_ID))).fetchone()
            assert row is not None
            return Claimed(int(row[0]))

    async def preview(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult:
        """What `claim` would decide now, without claiming (Claimed(0): it would submit)."""
        async with self._connection() as conn:
            return (await _decide(conn, request, policy, now, write=False))[0] or Claimed(0)

    async def heartbeat(self, job_id: int, now: float) -> None:
        async with self._connection() as conn:
            await conn.execute(*SQL.heartbeat(job_id, now))

    async def accepted(self, job_id: int, reply: Accepted) -> Job:
        async with self._connection() as conn:
            row = await (await conn.execute(*SQL.accepted(job_id, reply, RETURNING_JOB))).fetchone()
        if row is None:
            raise DatabaseLedgerError(
                f"the ledger {self.where} could not be used: job {job_id} vanished from the ledger"
            )
        return SQL.job(row)

    async def outcome_unknown(self, job_id: int, note: str) -> None:
        async with self._connection() as conn:
            await conn.execute(*SQL.outcome_unknown(job_id, note))

    async def release(self, job_id: int) -> None:
        async with self._connection() as conn:
            await conn.execute(*SQL.release(job_id))

    async def spend_answer(self, token: str, now: float) -> bool:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(*SQL.forget_answers(now))
            return (await conn.execute(SPEND_ANSWER, (*stored(token), now))).rowcount == 1

    async def rename_account(self, owner: str, old: str, new: str) -> None:
        async with self._connection() as conn:
            await conn.execute(*SQL.rename_account(owner, old, new))

    async def recent_costs(self, request: JobRequest, limit: int) -> list[float]:
        async with self._connection() as conn:
            return await _recent_costs(conn, request, limit)

    async def spending(self, owner: str, now: float) -> Spending:
        w = Windows.ending(now)
        async with self._connection() as conn:
            cursor = await conn.execute(SPENDING, (w.hour_ago, w.day_ago, *stored(owner), w.month_ago))
            row = await cursor.fetchone()
        assert row is not None
        return Spending(credits_last_day=float(row[1]), credits_last_30_days=float(row[2]), jobs_last_hour=int(row[0]))

    # --- what happened afterwards -----------------------------------------------------------------------

    async def job(self, owner: str, task_id: str) -> Job | None:
        async with self._connection() as conn:
            row = await (await conn.execute(*SQL.job_by_task(owner, task_id))).fetchone()
            return (await _with_downloads(conn, [SQL.job(row)]))[0] if row else None

    async def update_status(self, owner: str, task_id: str, update: StatusUpdate, now: float) -> None:
        async with self._connection() as conn:
            await conn.execute(*SQL.update_status(owner, task_id, update, now))

    async def record_downloads(self, owner: str, task_id: str, files: Sequence[Download]) -> None:
        async with self._connection() as conn, conn.transaction():
            row = await (await conn.execute(*SQL.job_id_by_task(owner, task_id))).fetchone()
            if row is None or not files:
                return
            async with conn.cursor() as insert:
                await insert.executemany(*SQL.add_downloads(row[0], files))

    async def jobs(self, owner: str, limit: int, status: str | None, query: str | None) -> list[Job]:
        listing = SQL.listing(owner, limit, status, query)
        async with self._connection() as conn:
            rows = await (await conn.execute(*listing)).fetchall()
            return await _with_downloads(conn, [SQL.job(r) for r in rows])

    async def saved_file(self, owner: str, task_id: str, stem: str, fmt: str) -> Path | None:
        async with self._connection() as conn:
            rows = await (await conn.execute(*SQL.saved_paths(owner, task_id, stem, fmt))).fetchall()
        paths = [Path(r[0]) for r in rows]

        def first_present() -> Path | None:
            # The newest record whose file is still there (a user may have moved or deleted files since).
            return next((p for p in paths if p.is_file()), None)

        return await anyio.to_thread.run_sync(first_present) if paths else None

    # --- the server's webhook, and a job's shared status read --------------------------------------------

    async def delivered(self, job_id: int, now: float) -> DeliveryNoted:
        async with self._connection() as conn:
            count = (await conn.execute(*SQL.delivered(job_id, now))).rowcount
            finished = None if count else await (await conn.execute(*SQL.finished(job_id))).fetchone()
        return SQL.noted(count, finished)

    async def job_by_id(self, job_id: int) -> Job | None:
        async with self._connection() as conn:
            row = await (await conn.execute(*SQL.job_by_id(job_id))).fetchone()
        return SQL.job(row) if row else None

    async def take_read(self, job_id: int, seen: float | None, now: float, until: float) -> bool:
        # Under READ COMMITTED a second taker waits for the first's row lock, then finds read_at changed: one wins.
        async with self._connection() as conn:
            return (await conn.execute(*SQL.take_read(job_id, seen, now, until))).rowcount == 1

    async def read_done(self, job_id: int, update: StatusUpdate, now: float) -> None:
        async with self._connection() as conn:
            await conn.execute(*SQL.read_done(job_id, update, now))

    async def read_failed(self, job_id: int, taken: float, seen: float | None, unconfirmed: bool) -> None:
        async with self._connection() as conn:
            await conn.execute(*SQL.read_failed(job_id, taken, seen, unconfirmed))

    # --- fingerprints -----------------------------------------------------------------------------------

    async def cached_fingerprint(self, key: FileKey) -> str | None:
        async with self._connection() as conn:
            row = await (await conn.execute(FINGERPRINT, (*stored(_HOST), *key_values(key)))).fetchone()
            return str(row[0]) if row else None

    async def remember_fingerprint(self, key: FileKey, digest: str) -> None:
        async with self._connection() as conn:
            await conn.execute(REMEMBER_FINGERPRINT, (*stored(_HOST), *key_values(key), *stored(digest)))


async def _recent_costs(conn: Connection, request: JobRequest, limit: int) -> list[float]:
    return [float(r[0]) for r in await (await conn.execute(*SQL.recent_costs(request, limit))).fetchall()]


async def _decide(
    conn: Connection, request: JobRequest, policy: Policy, now: float, *, write: bool
) -> tuple[ClaimResult | None, float]:
    """Reuse, wait, refuse, or None: submit (the rules are rules.py's), and what a new claim counts at. With
    `write` (under the owner's lock), the rows read are locked, and dead claims found on the way are recorded
    as unknown outcomes."""
    estimate = estimate_credits(await _recent_costs(conn, request, RECENT_COSTS), request)
    if not policy.force_new:
        same = SQL.same_request(request, now - lookback(policy), ROW_LOCK if write else "")
        found, dead = sift_identical(SQL.identical(await (await conn.execute(*same)).fetchall()), now)
        for job_id in dead if write else ():
            await conn.execute(*SQL.mark_dead(job_id))
        decided = decide_identical(found, policy, now)
        if decided is not None:
            return decided, estimate
    w = Windows.ending(now)
    usage = await (await conn.execute(USAGE, (w.hour_ago, *stored(request.owner), w.day_ago))).fetchone()
    assert usage is not None
    return decide_limits(int(usage[0]), float(usage[1]), policy, estimate), estimate


async def _with_downloads(conn: Connection, jobs: list[Job]) -> list[Job]:
    if not jobs:
        return jobs
    return with_downloads(jobs, await (await conn.execute(DOWNLOADS_OF, ([j.id for j in jobs],))).fetchall())
