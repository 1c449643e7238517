"""The ledger in PostgreSQL: one database shared by every replica of a hosted server.

Only imported when a database URL is configured (psycopg is the optional extra `musicgpt-mcp[postgres]`).

Why check-then-claim is atomic across replicas: a claim is one short transaction that first takes a
transaction-scoped advisory lock on the owner, then reads, decides (base.py's rules, the same as SQLite's)
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

Migrations are numbered statements, recorded one row per version in `musicgpt_mcp_schema`; they run under a
transaction-scoped advisory lock, so replicas starting together migrate exactly once (the others wait, then
find the work done). A release must only add to the schema: replicas of the previous release keep running
on it during a rolling upgrade.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import anyio
import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from .base import (
    ANSWER_MEMORY,
    DAY,
    DEAD_CLAIM_NOTE,
    HOUR,
    RECENT_COSTS,
    SPENT,
    Accepted,
    Claimed,
    ClaimResult,
    DatabaseLedgerError,
    Download,
    FileKey,
    Job,
    JobRequest,
    Policy,
    Spending,
    StatusUpdate,
    as_dead,
    decide_identical,
    decide_limits,
    dumps_urls,
    estimate_credits,
    is_dead_claim,
    loads_urls,
    lookback,
    signed64,
    storable,
    storable_eta,
    storable_urls,
)

if TYPE_CHECKING:
    from .postgres_ratelimit import PostgresRateLimiter

log = logging.getLogger(__name__)

Redact = Callable[[str], str]

# Each entry moves the schema one version up. Never edit an entry once released: add one.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE musicgpt_mcp_jobs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        owner text NOT NULL,
        account text NOT NULL,
        state text NOT NULL CHECK (state IN ('submitting', 'submitted', 'unknown')),
        task_id text,
        conversion_id text,
        submitted_at double precision NOT NULL,
        heartbeat_at double precision,
        source_kind text NOT NULL,
        source_name text NOT NULL,
        fingerprint text NOT NULL,
        stems text[] NOT NULL,
        stems_key text NOT NULL,
        options text[] NOT NULL,
        options_key text NOT NULL,
        eta integer,
        credit_estimate double precision,
        status text,
        status_message text,
        conversion_cost double precision,
        finished_at double precision,
        stem_urls text,
        note text
    );
    CREATE INDEX musicgpt_mcp_jobs_by_request
        ON musicgpt_mcp_jobs (owner, account, fingerprint, stems_key, options_key, submitted_at);
    CREATE INDEX musicgpt_mcp_jobs_by_owner_time ON musicgpt_mcp_jobs (owner, submitted_at);
    CREATE INDEX musicgpt_mcp_jobs_by_owner_task ON musicgpt_mcp_jobs (owner, task_id);
    CREATE TABLE musicgpt_mcp_downloads (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id bigint NOT NULL REFERENCES musicgpt_mcp_jobs (id) ON DELETE CASCADE,
        stem text NOT NULL,
        path text NOT NULL,
        format text NOT NULL,
        bytes bigint NOT NULL,
        at double precision NOT NULL
    );
    CREATE INDEX musicgpt_mcp_downloads_by_job ON musicgpt_mcp_downloads (job_id);
    -- Keyed by host too: device and inode numbers mean nothing on another machine.
    CREATE TABLE musicgpt_mcp_fingerprints (
        host text NOT NULL,
        dev bigint NOT NULL,
        ino bigint NOT NULL,
        size bigint NOT NULL,
        mtime_ns bigint NOT NULL,
        sha256 text NOT NULL,
        PRIMARY KEY (host, dev, ino)
    );
    -- One row per call counted by a PostgresRateLimiter, pruned as the window slides.
    CREATE TABLE musicgpt_mcp_rate_calls (
        bucket text NOT NULL,
        at double precision NOT NULL
    );
    CREATE INDEX musicgpt_mcp_rate_calls_by_bucket ON musicgpt_mcp_rate_calls (bucket, at);
    """,
    # 2: what a claim counts against the daily credit limit until MusicGPT states a figure. Jobs recorded before
    # it count at the documented assumption (1.5 a stem, 0.5 a clean-up option), never as free.
    """
    ALTER TABLE musicgpt_mcp_jobs ADD COLUMN reserved double precision;
    UPDATE musicgpt_mcp_jobs
        SET reserved = 1.5 * coalesce(array_length(stems, 1), 0) + 0.5 * coalesce(array_length(options, 1), 0);
    """,
    # 3: consent answers already spent on a submission (a digest of the sealed state that carried each).
    """
    CREATE TABLE musicgpt_mcp_answers (token text PRIMARY KEY, spent_at double precision NOT NULL);
    CREATE INDEX musicgpt_mcp_answers_by_time ON musicgpt_mcp_answers (spent_at);
    """,
    # 4: a cached hash holds only while the ctime is the one it was taken at too (base.FileKey says why).
    # Rows from before have none, so they never match. A replica of the previous release, during a rolling
    # upgrade, updates a row's hash without its ctime_ns: that leaves an older ctime behind, which a
    # file's current ctime never equals again, so it is a miss, never a wrong hash.
    """
    ALTER TABLE musicgpt_mcp_fingerprints ADD COLUMN ctime_ns bigint;
    """,
    # 5: the hash of each saved stem, so a repeated download_stems can skip a file still on disk as saved.
    """
    ALTER TABLE musicgpt_mcp_downloads ADD COLUMN sha256 text;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

# Advisory locks take two int4 keys: the first is ours alone (so a lock never meets another application's
# in a shared database), the second names what is locked.
LOCK_MIGRATE: Final = 0x6D675001
LOCK_OWNER: Final = 0x6D675002
LOCK_RATE: Final = 0x6D675003

CONNECT_TIMEOUT: Final = 10  # seconds, unless the URL sets connect_timeout
# How long a statement waits for a lock (a claim behind another claim of the same owner takes milliseconds),
# and how long a session may sit in a transaction doing nothing: a replica that hangs mid-claim must not hold
# an owner's lock for ever.
LOCK_TIMEOUT: Final = "15s"
IDLE_IN_TRANSACTION_TIMEOUT: Final = "60s"
POOL_TIMEOUT: Final = 15.0  # seconds to wait for a free connection
CHECK_TIMEOUT: Final = 5.0  # the same, for a health check

_JOBS: Final = "musicgpt_mcp_jobs"
_COLUMNS: Final = (
    "id, owner, account, state, task_id, conversion_id, submitted_at, source_kind, source_name, fingerprint, "
    "stems, options, eta, credit_estimate, status, status_message, conversion_cost, finished_at, stem_urls, note"
)
_CHARGEABLE: Final = "state IN ('submitting', 'submitted', 'unknown')"
# Which machine this process runs on, for the fingerprint cache.
_HOST: Final = socket.gethostname()


def lock_key(text: str) -> int:
    """A stable int4 for an advisory lock's second key (a collision only makes two keys wait for each other)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:4], "big", signed=True)


# --- opening ----------------------------------------------------------------------------------------------


async def open_postgres_ledger(url: str, *, max_connections: int = 10) -> PostgresLedger:
    """Connect, migrate the schema if needed, and open a connection pool. LedgerError says why not, in words
    that never contain the password."""
    conninfo, where = _conninfo(url)
    redact = _redactor(url)
    try:
        async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await _migrate(conn, where)
    except psycopg.Error as exc:
        raise DatabaseLedgerError(f"cannot use the database {where}: {redact(_reason(exc))}") from None
    pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
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
        raise DatabaseLedgerError(f"cannot use the database {where}: {redact(_reason(exc))}") from None
    return PostgresLedger(pool, where, redact)


def _conninfo(url: str) -> tuple[str, str]:
    """The connection string to use (with our defaults where the URL sets none), and a password-free name."""
    if not url.strip():
        raise DatabaseLedgerError("the database URL is empty; expected postgresql://user:password@host:port/database")
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme is not None and scheme not in ("postgresql", "postgres"):
        raise DatabaseLedgerError(
            f"the database URL starts with {scheme}://, which is not PostgreSQL; expected "
            "postgresql://user:password@host:port/database"
        )
    try:
        params = conninfo_to_dict(url)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in params:
            extra["application_name"] = "musicgpt-mcp"
        conninfo = make_conninfo(url, **extra)
    except psycopg.Error as exc:
        raise DatabaseLedgerError(
            f"the database URL cannot be read ({_redactor(url)(_reason(exc))}); expected "
            "postgresql://user:password@host:port/database"
        ) from None
    user = params.get("user") or "(default user)"
    host = params.get("host") or params.get("hostaddr") or "(default host)"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or "(default database)"
    return conninfo, f"postgresql://{user}@{host}:{port}/{dbname}"


def _redactor(url: str) -> Redact:
    """A function that removes every form of the URL's password (and the URL itself) from a text."""
    secrets: set[str] = set()
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        secrets |= {password, unquote(password)}
    for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)", url, re.IGNORECASE):
        value = match.group(1).strip("'")
        secrets |= {value, unquote(value)}
    try:
        found = conninfo_to_dict(url).get("password")
        if found:
            secrets.add(str(found))
    except psycopg.Error:
        pass
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)

    def redact(text: str) -> str:
        text = text.replace(url, "(the database URL)")
        for secret in ordered:
            text = text.replace(secret, "***")
        return text

    return redact


def _reason(exc: BaseException) -> str:
    """An error's own words on one line (libpq's have several: one per address tried, and hints)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


async def _configure(conn: AsyncConnection[Any]) -> None:
    await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
    await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    await conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'")


async def _migrate(conn: AsyncConnection[Any], where: str) -> None:
    # READ COMMITTED here too: the version read after the lock must be what the replica before us committed.
    await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
    async with conn.transaction():
        # Replicas starting together queue here; the first migrates, the rest find the version current.
        await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_MIGRATE,))
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
    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]],
        where: str,
        redact: Redact | None = None,
    ) -> None:
        self.pool = pool
        self.where = where
        self.kind = "postgresql"
        self._redact: Redact = redact or (lambda text: text)

    async def close(self) -> None:
        await self.pool.close()

    async def check(self) -> None:
        # A load balancer's health check wants an answer soon, not after the paid path's patience.
        async with self._connection(wait=CHECK_TIMEOUT) as conn:
            await conn.execute("SELECT 1")

    @asynccontextmanager
    async def _connection(self, wait: float | None = None) -> AsyncIterator[AsyncConnection[tuple[Any, ...]]]:
        try:
            async with self.pool.connection(timeout=wait) as conn:
                yield conn
        except psycopg.Error as exc:
            raise DatabaseLedgerError(
                f"the ledger {self.where} could not be used: {self._redact(_reason(exc))}"
            ) from None

    # --- the paid path ----------------------------------------------------------------------------------

    async def claim(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_OWNER, lock_key(storable(request.owner))))
            decided, reserved = await _decide(conn, request, policy, now, write=True)
            if decided is not None:
                return decided
            cursor = await conn.execute(
                f"INSERT INTO {_JOBS} (owner, account, state, submitted_at, heartbeat_at, source_kind, source_name, "
                "fingerprint, stems, stems_key, options, options_key, reserved) "
                "VALUES (%s, %s, 'submitting', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    storable(request.owner),
                    storable(request.account),
                    now,
                    now,
                    request.source_kind,
                    storable(request.source_name),
                    storable(request.fingerprint),
                    [storable(s) for s in request.stems],
                    storable(request.stems_key),
                    [storable(o) for o in request.options],
                    storable(request.options_key),
                    reserved,
                ),
            )
            row = await cursor.fetchone()
            assert row is not None
            return Claimed(int(row[0]))

    async def preview(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult:
        """What `claim` would decide now, without claiming (Claimed(0): it would submit)."""
        async with self._connection() as conn:
            return (await _decide(conn, request, policy, now, write=False))[0] or Claimed(0)

    async def heartbeat(self, job_id: int, now: float) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"UPDATE {_JOBS} SET heartbeat_at = %s WHERE id = %s AND state = 'submitting'", (now, job_id)
            )

    async def accepted(self, job_id: int, reply: Accepted) -> Job:
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"UPDATE {_JOBS} SET state = 'submitted', task_id = %s, conversion_id = %s, eta = %s, "
                f"credit_estimate = %s, heartbeat_at = NULL WHERE id = %s RETURNING {_COLUMNS}",
                (
                    storable(reply.task_id),
                    storable(reply.conversion_id) if reply.conversion_id is not None else None,
                    storable_eta(reply.eta),
                    reply.credit_estimate,
                    job_id,
                ),
            )
            row = await cursor.fetchone()
        if row is None:
            raise DatabaseLedgerError(
                f"the ledger {self.where} could not be used: job {job_id} vanished from the ledger"
            )
        return _row_job(row)

    async def outcome_unknown(self, job_id: int, note: str) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"UPDATE {_JOBS} SET state = 'unknown', note = %s, heartbeat_at = NULL WHERE id = %s",
                (storable(note[:500]), job_id),
            )

    async def release(self, job_id: int) -> None:
        async with self._connection() as conn:
            await conn.execute(f"DELETE FROM {_JOBS} WHERE id = %s AND state = 'submitting'", (job_id,))

    async def spend_answer(self, token: str, now: float) -> bool:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM musicgpt_mcp_answers WHERE spent_at < %s", (now - ANSWER_MEMORY,))
            cursor = await conn.execute(
                "INSERT INTO musicgpt_mcp_answers (token, spent_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (storable(token), now),
            )
            return cursor.rowcount == 1

    async def rename_account(self, owner: str, old: str, new: str) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"UPDATE {_JOBS} SET account = %s WHERE owner = %s AND account = %s",
                (storable(new), storable(owner), old),
            )

    async def recent_costs(self, request: JobRequest, limit: int) -> list[float]:
        async with self._connection() as conn:
            return await _recent_costs(conn, request, limit)

    async def spending(self, owner: str, now: float) -> Spending:
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"SELECT count(*) FILTER (WHERE submitted_at >= %(hour)s), "
                f"coalesce(sum({SPENT}) FILTER (WHERE submitted_at >= %(day)s), 0), coalesce(sum({SPENT}), 0) "
                f"FROM {_JOBS} WHERE owner = %(owner)s AND {_CHARGEABLE} AND submitted_at >= %(month)s",
                {"owner": storable(owner), "hour": now - HOUR, "day": now - DAY, "month": now - 30 * DAY},
            )
            row = await cursor.fetchone()
        assert row is not None
        return Spending(credits_last_day=float(row[1]), credits_last_30_days=float(row[2]), jobs_last_hour=int(row[0]))

    # --- what happened afterwards -----------------------------------------------------------------------

    async def job(self, owner: str, task_id: str) -> Job | None:
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM {_JOBS} WHERE owner = %s AND task_id = %s "
                "ORDER BY submitted_at DESC, id DESC LIMIT 1",
                (storable(owner), storable(task_id)),
            )
            row = await cursor.fetchone()
            return (await _with_downloads(conn, [_row_job(row)]))[0] if row else None

    async def update_status(self, owner: str, task_id: str, update: StatusUpdate, now: float) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"UPDATE {_JOBS} SET status = %(status)s, status_message = %(message)s, "
                "conversion_cost = coalesce(%(cost)s, conversion_cost), "
                "finished_at = CASE WHEN %(done)s THEN coalesce(finished_at, %(now)s) ELSE finished_at END, "
                "stem_urls = CASE WHEN %(has_urls)s THEN %(urls)s ELSE stem_urls END "
                "WHERE owner = %(owner)s AND task_id = %(task_id)s AND state = 'submitted'",
                {
                    "status": storable(update.status),
                    "message": storable(update.status_message) if update.status_message is not None else None,
                    "cost": update.conversion_cost,
                    "done": update.done,
                    "now": now,
                    "has_urls": bool(update.mp3_urls or update.wav_urls),
                    "urls": dumps_urls(storable_urls(update.mp3_urls), storable_urls(update.wav_urls)),
                    "owner": storable(owner),
                    "task_id": storable(task_id),
                },
            )

    async def record_downloads(self, owner: str, task_id: str, files: Sequence[Download]) -> None:
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(
                f"SELECT id FROM {_JOBS} WHERE owner = %s AND task_id = %s ORDER BY submitted_at DESC, id DESC LIMIT 1",
                (storable(owner), storable(task_id)),
            )
            row = await cursor.fetchone()
            if row is None or not files:
                return
            async with conn.cursor() as insert:
                await insert.executemany(
                    "INSERT INTO musicgpt_mcp_downloads (job_id, stem, path, format, bytes, at, sha256) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (row[0], storable(f.stem), storable(f.path), storable(f.format), f.bytes, f.at, f.sha256)
                        for f in files
                    ],
                )

    async def jobs(self, owner: str, limit: int, status: str | None, query: str | None) -> list[Job]:
        where, args = ["owner = %s"], [storable(owner)]
        if status is not None:
            clause, extra = _status_clause(status)
            where.append(clause)
            args += extra
        if query:
            escaped = storable(query).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # ILIKE: SQLite's LIKE ignores (ASCII) case, and so must this.
            where.append("source_name ILIKE %s ESCAPE '\\'")
            args.append(f"%{escaped}%")
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM {_JOBS} WHERE {' AND '.join(where)} "
                "ORDER BY submitted_at DESC, id DESC LIMIT %s",
                (*args, max(limit, 0)),
            )
            return await _with_downloads(conn, [_row_job(r) for r in await cursor.fetchall()])

    async def saved_file(self, owner: str, task_id: str, stem: str, fmt: str) -> Path | None:
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"SELECT d.path FROM musicgpt_mcp_downloads d JOIN {_JOBS} j ON j.id = d.job_id "
                "WHERE j.owner = %s AND j.task_id = %s AND d.stem = %s AND d.format = %s ORDER BY d.at DESC, d.id DESC",
                (storable(owner), storable(task_id), storable(stem), storable(fmt)),
            )
            paths = [Path(r[0]) for r in await cursor.fetchall()]

        def first_present() -> Path | None:
            # The newest record whose file is still there (a user may have moved or deleted files since).
            return next((p for p in paths if p.is_file()), None)

        return await anyio.to_thread.run_sync(first_present) if paths else None

    # --- fingerprints -----------------------------------------------------------------------------------

    async def cached_fingerprint(self, key: FileKey) -> str | None:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT sha256 FROM musicgpt_mcp_fingerprints "
                "WHERE host = %s AND dev = %s AND ino = %s AND size = %s AND mtime_ns = %s AND ctime_ns = %s",
                (storable(_HOST), signed64(key.dev), signed64(key.ino), key.size, key.mtime_ns, key.ctime_ns),
            )
            row = await cursor.fetchone()
            return str(row[0]) if row else None

    async def remember_fingerprint(self, key: FileKey, digest: str) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO musicgpt_mcp_fingerprints (host, dev, ino, size, mtime_ns, ctime_ns, sha256) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (host, dev, ino) DO UPDATE "
                "SET size = excluded.size, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, "
                "sha256 = excluded.sha256",
                (
                    storable(_HOST),
                    signed64(key.dev),
                    signed64(key.ino),
                    key.size,
                    key.mtime_ns,
                    key.ctime_ns,
                    storable(digest),
                ),
            )

    # --- MusicGPT's per-account rate limits, shared by the replicas --------------------------------------

    def rate_limiter(self, bucket: str, max_calls: int, period: float) -> PostgresRateLimiter:
        """A PostgresRateLimiter on this ledger's pool (see postgres_ratelimit.py)."""
        from .postgres_ratelimit import PostgresRateLimiter

        return PostgresRateLimiter(self.pool, bucket, max_calls, period)


async def _recent_costs(conn: AsyncConnection[tuple[Any, ...]], request: JobRequest, limit: int) -> list[float]:
    cursor = await conn.execute(
        f"SELECT coalesce(conversion_cost, credit_estimate) FROM {_JOBS} WHERE owner = %s AND account = %s "
        "AND stems_key = %s AND options_key = %s AND state = 'submitted' "
        "AND coalesce(conversion_cost, credit_estimate) IS NOT NULL ORDER BY submitted_at DESC, id DESC "
        "LIMIT %s",
        (
            storable(request.owner),
            storable(request.account),
            storable(request.stems_key),
            storable(request.options_key),
            max(limit, 0),
        ),
    )
    return [float(r[0]) for r in await cursor.fetchall()]


async def _decide(
    conn: AsyncConnection[tuple[Any, ...]], request: JobRequest, policy: Policy, now: float, *, write: bool
) -> tuple[ClaimResult | None, float]:
    """Reuse, wait, refuse, or None: submit (the rules are base.py's), and what a new claim counts at. With
    `write` (under the owner's lock), the rows read are locked, and dead claims found on the way are recorded
    as unknown outcomes."""
    owner = storable(request.owner)
    estimate = estimate_credits(await _recent_costs(conn, request, RECENT_COSTS), request)
    if not policy.force_new:
        cursor = await conn.execute(
            f"SELECT {_COLUMNS}, heartbeat_at FROM {_JOBS} WHERE owner = %s AND account = %s AND fingerprint = %s "
            "AND stems_key = %s AND options_key = %s AND submitted_at >= %s ORDER BY submitted_at DESC, id DESC"
            + (" FOR NO KEY UPDATE" if write else ""),
            (
                owner,
                storable(request.account),
                storable(request.fingerprint),
                storable(request.stems_key),
                storable(request.options_key),
                now - lookback(policy),
            ),
        )
        found: list[Job] = []
        for row in await cursor.fetchall():
            job = _row_job(row[:-1])
            if is_dead_claim(job, row[-1], now):
                if write:
                    await conn.execute(
                        f"UPDATE {_JOBS} SET state = 'unknown', note = %s WHERE id = %s", (DEAD_CLAIM_NOTE, job.id)
                    )
                job = as_dead(job)
            found.append(job)
        decided = decide_identical(found, policy, now)
        if decided is not None:
            return decided, estimate
    cursor = await conn.execute(
        f"SELECT count(*) FILTER (WHERE submitted_at >= %(hour)s), coalesce(sum({SPENT}), 0) FROM {_JOBS} "
        f"WHERE owner = %(owner)s AND {_CHARGEABLE} AND submitted_at >= %(day)s",
        {"owner": owner, "hour": now - HOUR, "day": now - DAY},
    )
    usage = await cursor.fetchone()
    assert usage is not None
    return decide_limits(int(usage[0]), float(usage[1]), policy, estimate), estimate


def _status_clause(status: str) -> tuple[str, list[Any]]:
    if status == "OUTCOME_UNKNOWN":
        return "state = 'unknown'", []
    if status == "SUBMITTED":
        return "state = 'submitted' AND status IS NULL", []
    return "state = 'submitted' AND status = %s", [storable(status)]


def _row_job(row: Sequence[Any]) -> Job:
    (id_, owner, account, state, task_id, conversion_id, submitted_at, source_kind, source_name, fingerprint) = row[:10]
    (stems, options, eta, credit, status, message, cost, finished, urls, note) = row[10:20]
    mp3, wav = loads_urls(urls)
    return Job(
        id=int(id_),
        owner=owner,
        account=account,
        state=state,
        task_id=task_id,
        conversion_id=conversion_id,
        submitted_at=float(submitted_at),
        source_kind=source_kind,
        source_name=source_name,
        fingerprint=fingerprint,
        stems=tuple(stems),
        options=tuple(options),
        eta=eta,
        credit_estimate=credit,
        status=status,
        status_message=message,
        conversion_cost=cost,
        finished_at=finished,
        mp3_urls=mp3,
        wav_urls=wav,
        note=note,
    )


async def _with_downloads(conn: AsyncConnection[tuple[Any, ...]], jobs: list[Job]) -> list[Job]:
    if not jobs:
        return jobs
    cursor = await conn.execute(
        "SELECT job_id, stem, path, format, bytes, at, sha256 FROM musicgpt_mcp_downloads WHERE job_id = ANY(%s) "
        "ORDER BY at, id",
        ([j.id for j in jobs],),
    )
    found: dict[int, list[Download]] = {}
    for job_id, stem, path, fmt, size, at, sha256 in await cursor.fetchall():
        found.setdefault(int(job_id), []).append(Download(stem, path, fmt, int(size), float(at), sha256))
    return [replace(j, downloads=tuple(found.get(j.id, ()))) for j in jobs]
