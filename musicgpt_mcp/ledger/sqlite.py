"""The ledger in SQLite: one file per user, shared safely by every server process of that user.

Why these settings: WAL lets readers run while a writer commits; the busy timeout (set before
switching to WAL, or the switch itself can fail on a busy file) makes a second process wait
instead of failing; `BEGIN IMMEDIATE` takes the write lock before reading, so check-then-claim is
one atomic step across processes. Every call runs in a worker thread: a blocked lock must never
freeze the event loop.

This module holds what only SQLite says: its file (created private, moved aside when damaged), how its schema is
migrated (the migrations themselves are sqlite_schema.py's), its transactions, and the few statements PostgreSQL
words differently. The statements both engines
run are sql.py's, and the values they bind and the rows they read are codec.py's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, TypeVar

import anyio

from .base import (
    Accepted,
    Claimed,
    ClaimResult,
    Download,
    FileKey,
    Job,
    JobRequest,
    Noted,
    Policy,
    Spending,
    StatusUpdate,
)
from .codec import key_values, stored, with_downloads
from .errors import LedgerError
from .rules import RECENT_COSTS, Windows, decide_identical, decide_limits, estimate_credits, lookback, sift_identical
from .sql import Dialect, Statements
from .sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from .studio import Done, Step, Unchanged, answered

log = logging.getLogger(__name__)

FILE_NAME: Final = "ledger.sqlite3"
BUSY_TIMEOUT_MS: Final = 15_000


T = TypeVar("T")

# A job's stems and options are a JSON array in a TEXT column; LIKE ignores ASCII case.
SQLITE: Final = Dialect(prefix="", mark="?", like="LIKE", store_texts=json.dumps, load_texts=json.loads)
SQL: Final = Statements(SQLITE)
# What only SQLite says: its upserts, and an owner's usage one window at a time.
SPEND_ANSWER: Final = SQLITE.render("INSERT OR IGNORE INTO {answers} (token, spent_at) VALUES (?, ?)")
JOBS_SINCE: Final = SQLITE.render("SELECT count(*) FROM {jobs} WHERE owner = ? AND {chargeable} AND submitted_at >= ?")
SPENT_SINCE: Final = SQLITE.render(
    "SELECT coalesce(sum({spent}), 0) FROM {jobs} WHERE owner = ? AND {chargeable} AND submitted_at >= ?"
)
# {marks}: one ? a job, filled in per call.
DOWNLOADS_OF: Final = SQLITE.render(
    "SELECT {download_columns} FROM {downloads} WHERE job_id IN ({{marks}}) ORDER BY at, id"
)
FINGERPRINT: Final = (
    "SELECT sha256 FROM fingerprints WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ?"
)
REMEMBER_FINGERPRINT: Final = (
    "INSERT OR REPLACE INTO fingerprints (dev, ino, size, mtime_ns, ctime_ns, sha256) VALUES (?, ?, ?, ?, ?, ?)"
)


def open_sqlite_ledger(state_dir: Path) -> SQLiteLedger:
    """Open (creating, migrating or, if damaged, replacing) the ledger in `state_dir`. Blocking."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LedgerError(f"cannot create the state folder {state_dir}: {exc.strerror or exc}") from None
    path = state_dir / FILE_NAME
    try:
        return SQLiteLedger(_connect(path), path)
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise LedgerError(f"cannot open {path}: {exc}") from None
        aside = _move_aside(path)
        log.error("the ledger %s is damaged (%s); moved it to %s and started a new one", path, exc, aside)
        try:
            return SQLiteLedger(_connect(path), path)
        except sqlite3.Error as again:
            raise LedgerError(f"cannot open {path}: {again}") from None
    except OSError as exc:
        raise LedgerError(f"cannot open {path}: {exc.strerror or exc}") from None


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text or "quick_check" in text
    )


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(aside.with_name(aside.name + suffix))
    return aside


def _connect(path: Path) -> sqlite3.Connection:
    # The file holds a user's history and their files' names: readable by them alone.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        checked = conn.execute("PRAGMA quick_check").fetchone()
        if checked is None or checked[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check failed: {checked[0] if checked else 'no answer'}")
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL never corrupts the file; a power cut can lose the last commits, so the
        # commits that protect money (a claim, an accepted job) are forced to disk with FULL.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"{path} was written by a newer musicgpt-mcp (ledger schema {version}; this one reads up to "
            f"{SCHEMA_VERSION}). Upgrade musicgpt-mcp, or point MUSICGPT_MCP_STATE_DIR at another folder."
        )
    # IMMEDIATE: two processes starting at once must not both migrate; the second waits, then sees
    # the new version and does nothing.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
            log.info("ledger %s migrated to schema %d", path, step + 1)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that holds the file's write lock from its first read (check-then-claim)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SQLiteLedger:
    """The Ledger on one SQLite connection, which one worker thread at a time uses."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        self.where = str(path)
        self.kind = "sqlite"
        self.dialect = SQLITE

    async def close(self) -> None:
        await self._run(lambda c: c.close())

    async def run_steps(self, steps: Sequence[Step]) -> list[Done]:
        """The statements in one write transaction (studio.py's operations)."""

        def run(conn: sqlite3.Connection) -> list[Done]:
            done: list[Done] = []
            with contextlib.suppress(Unchanged), _write(conn):
                for step in steps:
                    cursor = conn.execute(step.statement, step.values)
                    done.append(Done(cursor.rowcount, cursor.fetchall() if step.fetch else []))
                    if step.guard and not cursor.rowcount:
                        raise Unchanged
            return answered(done, steps)

        return await self._run(run)

    async def check(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                return fn(self._conn)

        try:
            return await anyio.to_thread.run_sync(call)
        except sqlite3.Error as exc:
            raise LedgerError(f"the ledger {self.path} could not be used: {exc}") from None

    # --- the paid path ----------------------------------------------------------------------

    async def claim(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult:
        def run(conn: sqlite3.Connection) -> ClaimResult:
            with _write(conn):
                decided, reserved = _decide(conn, request, policy, now, write=True)
                if decided is not None:
                    return decided
                return Claimed(int(conn.execute(*SQL.claim(request, now, reserved)).lastrowid or 0))

        return await self._run(run)

    async def preview(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult:
        """What `claim` would decide now, without claiming (Claimed(0): it would submit)."""
        return await self._run(lambda conn: _decide(conn, request, policy, now, write=False)[0] or Claimed(0))

    async def heartbeat(self, job_id: int, now: float) -> None:
        await self._run(lambda c: c.execute(*SQL.heartbeat(job_id, now)))

    async def accepted(self, job_id: int, reply: Accepted) -> Job:
        def run(conn: sqlite3.Connection) -> Job:
            with _write(conn):
                conn.execute(*SQL.accepted(job_id, reply))
                row = conn.execute(*SQL.job_by_id(job_id)).fetchone()
                if row is None:
                    raise sqlite3.DatabaseError(f"job {job_id} vanished from the ledger")
                return SQL.job(row)

        return await self._run(run)

    async def outcome_unknown(self, job_id: int, note: str) -> None:
        await self._run(lambda c: c.execute(*SQL.outcome_unknown(job_id, note)))

    async def release(self, job_id: int) -> None:
        await self._run(lambda c: c.execute(*SQL.release(job_id)))

    async def spend_answer(self, token: str, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                conn.execute(*SQL.forget_answers(now))
                return conn.execute(SPEND_ANSWER, (*stored(token), now)).rowcount == 1

        return await self._run(run)

    async def rename_account(self, owner: str, old: str, new: str) -> None:
        await self._run(lambda c: c.execute(*SQL.rename_account(owner, old, new)))

    async def recent_costs(self, request: JobRequest, limit: int) -> list[float]:
        return await self._run(lambda conn: _recent_costs(conn, request, limit))

    async def spending(self, owner: str, now: float) -> Spending:
        windows = Windows.ending(now)

        def run(conn: sqlite3.Connection) -> Spending:
            jobs, day = _usage(conn, owner, windows)
            month = conn.execute(SPENT_SINCE, (*stored(owner), windows.month_ago)).fetchone()[0]
            return Spending(credits_last_day=day, credits_last_30_days=float(month), jobs_last_hour=jobs)

        return await self._run(run)

    # --- what happened afterwards -----------------------------------------------------------

    async def job(self, owner: str, task_id: str) -> Job | None:
        def run(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(*SQL.job_by_task(owner, task_id)).fetchone()
            return _with_downloads(conn, [SQL.job(row)])[0] if row else None

        return await self._run(run)

    async def update_status(self, owner: str, task_id: str, update: StatusUpdate, now: float) -> None:
        await self._run(lambda c: c.execute(*SQL.update_status(owner, task_id, update, now)))

    async def record_downloads(self, owner: str, task_id: str, files: Sequence[Download]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with _write(conn):
                row = conn.execute(*SQL.job_id_by_task(owner, task_id)).fetchone()
                if row is not None:
                    conn.executemany(*SQL.add_downloads(row[0], files))

        await self._run(run)

    async def jobs(self, owner: str, limit: int, status: str | None, query: str | None) -> list[Job]:
        listing = SQL.listing(owner, limit, status, query)

        def run(conn: sqlite3.Connection) -> list[Job]:
            return _with_downloads(conn, [SQL.job(r) for r in conn.execute(*listing).fetchall()])

        return await self._run(run)

    async def saved_file(self, owner: str, task_id: str, stem: str, fmt: str) -> Path | None:
        def run(conn: sqlite3.Connection) -> Path | None:
            rows = conn.execute(*SQL.saved_paths(owner, task_id, stem, fmt)).fetchall()
            # The newest record whose file is still there (a user may have moved or deleted files since).
            return next((Path(r[0]) for r in rows if Path(r[0]).is_file()), None)

        return await self._run(run)

    # --- the server's webhook, and a job's shared status read --------------------------------

    async def delivered(self, job_id: int, now: float) -> Noted:
        def run(conn: sqlite3.Connection) -> Noted:
            count = conn.execute(*SQL.delivered(job_id, now)).rowcount
            return SQL.noted(count, None if count else conn.execute(*SQL.finished(job_id)).fetchone())

        return await self._run(run)

    async def job_by_id(self, job_id: int) -> Job | None:
        def run(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(*SQL.job_by_id(job_id)).fetchone()
            return SQL.job(row) if row else None

        return await self._run(run)

    async def take_read(self, job_id: int, seen: float | None, now: float, until: float) -> bool:
        return await self._run(lambda c: c.execute(*SQL.take_read(job_id, seen, now, until)).rowcount == 1)

    async def read_done(self, job_id: int, update: StatusUpdate, now: float) -> None:
        await self._run(lambda c: c.execute(*SQL.read_done(job_id, update, now)))

    async def read_failed(self, job_id: int, taken: float, seen: float | None, unconfirmed: bool) -> None:
        await self._run(lambda c: c.execute(*SQL.read_failed(job_id, taken, seen, unconfirmed)))

    # --- fingerprints -------------------------------------------------------------------------

    async def cached_fingerprint(self, key: FileKey) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(FINGERPRINT, key_values(key)).fetchone()
            return str(row[0]) if row else None

        return await self._run(run)

    async def remember_fingerprint(self, key: FileKey, digest: str) -> None:
        await self._run(lambda c: c.execute(REMEMBER_FINGERPRINT, (*key_values(key), *stored(digest))))


def _recent_costs(conn: sqlite3.Connection, request: JobRequest, limit: int) -> list[float]:
    return [float(r[0]) for r in conn.execute(*SQL.recent_costs(request, limit)).fetchall()]


def _decide(
    conn: sqlite3.Connection, request: JobRequest, policy: Policy, now: float, *, write: bool
) -> tuple[ClaimResult | None, float]:
    """Reuse, wait, refuse, or None: submit (the rules are rules.py's), and what a new claim counts at. With
    `write`, dead claims found on the way are recorded as unknown outcomes."""
    estimate = estimate_credits(_recent_costs(conn, request, RECENT_COSTS), request)
    if not policy.force_new:
        rows = conn.execute(*SQL.same_request(request, now - lookback(policy))).fetchall()
        found, dead = sift_identical(SQL.identical(rows), now)
        for job_id in dead if write else ():
            conn.execute(*SQL.mark_dead(job_id))
        decided = decide_identical(found, policy, now)
        if decided is not None:
            return decided, estimate
    jobs, credits = _usage(conn, request.owner, Windows.ending(now))
    return decide_limits(jobs, credits, policy, estimate), estimate


def _usage(conn: sqlite3.Connection, owner: str, windows: Windows) -> tuple[int, float]:
    """The owner's chargeable jobs in the last hour, and the credits they count at in the last day."""
    jobs = conn.execute(JOBS_SINCE, (*stored(owner), windows.hour_ago)).fetchone()[0]
    credits = conn.execute(SPENT_SINCE, (*stored(owner), windows.day_ago)).fetchone()[0]
    return int(jobs), float(credits)


def _with_downloads(conn: sqlite3.Connection, jobs: list[Job]) -> list[Job]:
    if not jobs:
        return jobs
    marks = ",".join("?" * len(jobs))
    return with_downloads(jobs, conn.execute(DOWNLOADS_OF.format(marks=marks), [j.id for j in jobs]).fetchall())
