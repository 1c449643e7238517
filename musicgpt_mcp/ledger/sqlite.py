"""The ledger in SQLite: one file per user, shared safely by every server process of that user.

Why these settings: WAL lets readers run while a writer commits; the busy timeout (set before
switching to WAL, or the switch itself can fail on a busy file) makes a second process wait
instead of failing; `BEGIN IMMEDIATE` takes the write lock before reading, so check-then-claim is
one atomic step across processes. Every call runs in a worker thread: a blocked lock must never
freeze the event loop.
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
from typing import Any, Final, TypeVar

import anyio

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
    Download,
    FileKey,
    Job,
    JobRequest,
    LedgerError,
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

log = logging.getLogger(__name__)

FILE_NAME: Final = "ledger.sqlite3"
BUSY_TIMEOUT_MS: Final = 15_000

# Each entry moves the schema one version up; `PRAGMA user_version` says how far a file has come.
# Never edit an entry once released: add one.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        account TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('submitting', 'submitted', 'unknown')),
        task_id TEXT,
        conversion_id TEXT,
        submitted_at REAL NOT NULL,
        heartbeat_at REAL,
        source_kind TEXT NOT NULL,
        source_name TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        stems TEXT NOT NULL,
        stems_key TEXT NOT NULL,
        options TEXT NOT NULL,
        options_key TEXT NOT NULL,
        eta INTEGER,
        credit_estimate REAL,
        status TEXT,
        status_message TEXT,
        conversion_cost REAL,
        finished_at REAL,
        stem_urls TEXT,
        note TEXT
    );
    CREATE INDEX jobs_by_request ON jobs (owner, account, fingerprint, stems_key, options_key, submitted_at);
    CREATE INDEX jobs_by_owner_time ON jobs (owner, submitted_at);
    CREATE INDEX jobs_by_task ON jobs (task_id);
    CREATE TABLE downloads (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        stem TEXT NOT NULL,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX downloads_by_job ON downloads (job_id);
    CREATE TABLE fingerprints (
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (dev, ino)
    );
    """,
    # 2: what a claim counts against the daily credit limit until MusicGPT states a figure. Jobs recorded before
    # it count at the documented assumption (1.5 a stem, 0.5 a clean-up option), never as free.
    """
    ALTER TABLE jobs ADD COLUMN reserved REAL;
    UPDATE jobs SET reserved = 1.5 * json_array_length(stems) + 0.5 * json_array_length(options)
    """,
    # 3: consent answers already spent on a submission (a digest of the sealed state that carried each).
    """
    CREATE TABLE answers (token TEXT PRIMARY KEY, spent_at REAL NOT NULL);
    CREATE INDEX answers_by_time ON answers (spent_at)
    """,
    # 4: a cached hash holds only while the ctime is the one it was taken at too (base.FileKey says why).
    # Rows from before have none, so they never match and the file is hashed once more.
    """
    ALTER TABLE fingerprints ADD COLUMN ctime_ns INTEGER;
    """,
    # 5: the hash of each saved stem, so a repeated download_stems can skip a file still on disk as saved.
    """
    ALTER TABLE downloads ADD COLUMN sha256 TEXT;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

T = TypeVar("T")

_COLUMNS: Final = (
    "id, owner, account, state, task_id, conversion_id, submitted_at, source_kind, source_name, fingerprint, "
    "stems, options, eta, credit_estimate, status, status_message, conversion_cost, finished_at, stem_urls, note"
)
# Jobs that may have cost money (everything but a claim that is still in the air... which may too).
_CHARGEABLE: Final = "state IN ('submitting', 'submitted', 'unknown')"


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


class SQLiteLedger:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        self.where = str(path)
        self.kind = "sqlite"

    async def close(self) -> None:
        await self._run(lambda c: c.close())

    def rate_limiter(self, bucket: str, max_calls: int, period: float) -> None:
        return None  # one machine: each process's own limiter suffices

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

    @staticmethod
    @contextlib.contextmanager
    def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # --- the paid path ----------------------------------------------------------------------

    async def claim(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult:
        def run(conn: sqlite3.Connection) -> ClaimResult:
            with self._write(conn):
                decided, reserved = _decide(conn, request, policy, now, write=True)
                if decided is not None:
                    return decided
                cursor = conn.execute(
                    "INSERT INTO jobs (owner, account, state, submitted_at, heartbeat_at, source_kind, source_name, "
                    "fingerprint, stems, stems_key, options, options_key, reserved) "
                    "VALUES (?, ?, 'submitting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        storable(request.owner),
                        storable(request.account),
                        now,
                        now,
                        request.source_kind,
                        storable(request.source_name),
                        storable(request.fingerprint),
                        json.dumps([storable(s) for s in request.stems]),
                        storable(request.stems_key),
                        json.dumps([storable(o) for o in request.options]),
                        storable(request.options_key),
                        reserved,
                    ),
                )
                return Claimed(int(cursor.lastrowid or 0))

        return await self._run(run)

    async def preview(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult:
        """What `claim` would decide now, without claiming (Claimed(0): it would submit)."""

        def run(conn: sqlite3.Connection) -> ClaimResult:
            return _decide(conn, request, policy, now, write=False)[0] or Claimed(0)

        return await self._run(run)

    async def heartbeat(self, job_id: int, now: float) -> None:
        await self._run(
            lambda c: c.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND state = 'submitting'", (now, job_id))
        )

    async def accepted(self, job_id: int, reply: Accepted) -> Job:
        def run(conn: sqlite3.Connection) -> Job:
            with self._write(conn):
                conn.execute(
                    "UPDATE jobs SET state = 'submitted', task_id = ?, conversion_id = ?, eta = ?, "
                    "credit_estimate = ?, heartbeat_at = NULL WHERE id = ?",
                    (
                        storable(reply.task_id),
                        storable(reply.conversion_id) if reply.conversion_id is not None else None,
                        storable_eta(reply.eta),
                        reply.credit_estimate,
                        job_id,
                    ),
                )
                return _job(conn, job_id)

        return await self._run(run)

    async def outcome_unknown(self, job_id: int, note: str) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE jobs SET state = 'unknown', note = ?, heartbeat_at = NULL WHERE id = ?",
                (storable(note[:500]), job_id),
            )
        )

    async def release(self, job_id: int) -> None:
        await self._run(lambda c: c.execute("DELETE FROM jobs WHERE id = ? AND state = 'submitting'", (job_id,)))

    async def spend_answer(self, token: str, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            with self._write(conn):
                conn.execute("DELETE FROM answers WHERE spent_at < ?", (now - ANSWER_MEMORY,))
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO answers (token, spent_at) VALUES (?, ?)", (storable(token), now)
                )
                return cursor.rowcount == 1

        return await self._run(run)

    async def rename_account(self, owner: str, old: str, new: str) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE jobs SET account = ? WHERE owner = ? AND account = ?", (storable(new), storable(owner), old)
            )
        )

    async def recent_costs(self, request: JobRequest, limit: int) -> list[float]:
        return await self._run(lambda conn: _recent_costs(conn, request, limit))

    async def spending(self, owner: str, now: float) -> Spending:
        def run(conn: sqlite3.Connection) -> Spending:
            jobs, day = _usage(conn, storable(owner), now - HOUR, now - DAY)
            month = conn.execute(
                f"SELECT coalesce(sum({SPENT}), 0) FROM jobs WHERE owner = ? AND {_CHARGEABLE} AND submitted_at >= ?",
                (storable(owner), now - 30 * DAY),
            ).fetchone()[0]
            return Spending(credits_last_day=day, credits_last_30_days=float(month), jobs_last_hour=jobs)

        return await self._run(run)

    # --- what happened afterwards -----------------------------------------------------------

    async def job(self, owner: str, task_id: str) -> Job | None:
        def run(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE owner = ? AND task_id = ? ORDER BY submitted_at DESC, id DESC LIMIT 1",
                (storable(owner), storable(task_id)),
            ).fetchone()
            return _with_downloads(conn, [_row_job(row)])[0] if row else None

        return await self._run(run)

    async def update_status(self, owner: str, task_id: str, update: StatusUpdate, now: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            has_urls = bool(update.mp3_urls or update.wav_urls)
            conn.execute(
                "UPDATE jobs SET status = ?, status_message = ?, conversion_cost = coalesce(?, conversion_cost), "
                "finished_at = CASE WHEN ? THEN coalesce(finished_at, ?) ELSE finished_at END, "
                "stem_urls = CASE WHEN ? THEN ? ELSE stem_urls END "
                "WHERE owner = ? AND task_id = ? AND state = 'submitted'",
                (
                    storable(update.status),
                    storable(update.status_message) if update.status_message is not None else None,
                    update.conversion_cost,
                    update.done,
                    now,
                    has_urls,
                    dumps_urls(storable_urls(update.mp3_urls), storable_urls(update.wav_urls)),
                    storable(owner),
                    storable(task_id),
                ),
            )

        await self._run(run)

    async def record_downloads(self, owner: str, task_id: str, files: Sequence[Download]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with self._write(conn):
                row = conn.execute(
                    "SELECT id FROM jobs WHERE owner = ? AND task_id = ? ORDER BY submitted_at DESC, id DESC LIMIT 1",
                    (storable(owner), storable(task_id)),
                ).fetchone()
                if row is None:
                    return
                conn.executemany(
                    "INSERT INTO downloads (job_id, stem, path, format, bytes, at, sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (row[0], storable(f.stem), storable(f.path), storable(f.format), f.bytes, f.at, f.sha256)
                        for f in files
                    ],
                )

        await self._run(run)

    async def jobs(self, owner: str, limit: int, status: str | None, query: str | None) -> list[Job]:
        def run(conn: sqlite3.Connection) -> list[Job]:
            where, args = ["owner = ?"], [storable(owner)]
            if status is not None:
                clause, extra = _status_clause(status)
                where.append(clause)
                args += extra
            if query:
                escaped = storable(query).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                where.append("source_name LIKE ? ESCAPE '\\'")
                args.append(f"%{escaped}%")
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY submitted_at DESC, id DESC LIMIT ?",
                (*args, max(limit, 0)),
            ).fetchall()
            return _with_downloads(conn, [_row_job(r) for r in rows])

        return await self._run(run)

    async def saved_file(self, owner: str, task_id: str, stem: str, fmt: str) -> Path | None:
        def run(conn: sqlite3.Connection) -> Path | None:
            rows = conn.execute(
                "SELECT d.path FROM downloads d JOIN jobs j ON j.id = d.job_id WHERE j.owner = ? AND j.task_id = ? "
                "AND d.stem = ? AND d.format = ? ORDER BY d.at DESC, d.id DESC",
                (storable(owner), storable(task_id), storable(stem), storable(fmt)),
            ).fetchall()
            # The newest record whose file is still there (a user may have moved or deleted files since).
            return next((Path(r[0]) for r in rows if Path(r[0]).is_file()), None)

        return await self._run(run)

    # --- fingerprints -------------------------------------------------------------------------

    async def cached_fingerprint(self, key: FileKey) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT sha256 FROM fingerprints WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ?",
                (signed64(key.dev), signed64(key.ino), key.size, key.mtime_ns, key.ctime_ns),
            ).fetchone()
            return str(row[0]) if row else None

        return await self._run(run)

    async def remember_fingerprint(self, key: FileKey, digest: str) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO fingerprints (dev, ino, size, mtime_ns, ctime_ns, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                (signed64(key.dev), signed64(key.ino), key.size, key.mtime_ns, key.ctime_ns, storable(digest)),
            )
        )


def _recent_costs(conn: sqlite3.Connection, request: JobRequest, limit: int) -> list[float]:
    rows = conn.execute(
        "SELECT coalesce(conversion_cost, credit_estimate) FROM jobs WHERE owner = ? AND account = ? "
        "AND stems_key = ? AND options_key = ? AND state = 'submitted' "
        "AND coalesce(conversion_cost, credit_estimate) IS NOT NULL ORDER BY submitted_at DESC, id DESC LIMIT ?",
        (
            storable(request.owner),
            storable(request.account),
            storable(request.stems_key),
            storable(request.options_key),
            max(limit, 0),  # SQLite reads a negative LIMIT as "no limit"
        ),
    ).fetchall()
    return [float(r[0]) for r in rows]


def _decide(
    conn: sqlite3.Connection, request: JobRequest, policy: Policy, now: float, *, write: bool
) -> tuple[ClaimResult | None, float]:
    """Reuse, wait, refuse, or None: submit (the rules are base.py's), and what a new claim counts at. With
    `write`, dead claims found on the way are recorded as unknown outcomes."""
    estimate = estimate_credits(_recent_costs(conn, request, RECENT_COSTS), request)
    if not policy.force_new:
        found: list[Job] = []
        for job, heartbeat_at in _same_request(conn, request, now - lookback(policy)):
            if is_dead_claim(job, heartbeat_at, now):
                if write:
                    conn.execute("UPDATE jobs SET state = 'unknown', note = ? WHERE id = ?", (DEAD_CLAIM_NOTE, job.id))
                job = as_dead(job)
            found.append(job)
        decided = decide_identical(found, policy, now)
        if decided is not None:
            return decided, estimate
    jobs, credits = _usage(conn, storable(request.owner), now - HOUR, now - DAY)
    return decide_limits(jobs, credits, policy, estimate), estimate


def _same_request(conn: sqlite3.Connection, request: JobRequest, since: float) -> list[tuple[Job, float | None]]:
    rows = conn.execute(
        f"SELECT {_COLUMNS}, heartbeat_at FROM jobs WHERE owner = ? AND account = ? AND fingerprint = ? "
        "AND stems_key = ? AND options_key = ? AND submitted_at >= ? ORDER BY submitted_at DESC, id DESC",
        (
            storable(request.owner),
            storable(request.account),
            storable(request.fingerprint),
            storable(request.stems_key),
            storable(request.options_key),
            since,
        ),
    ).fetchall()
    return [(_row_job(r[:-1]), float(r[-1]) if r[-1] is not None else None) for r in rows]


def _usage(conn: sqlite3.Connection, owner: str, hour_ago: float, day_ago: float) -> tuple[int, float]:
    jobs = conn.execute(
        f"SELECT count(*) FROM jobs WHERE owner = ? AND {_CHARGEABLE} AND submitted_at >= ?", (owner, hour_ago)
    ).fetchone()[0]
    credits = conn.execute(
        f"SELECT coalesce(sum({SPENT}), 0) FROM jobs WHERE owner = ? AND {_CHARGEABLE} AND submitted_at >= ?",
        (owner, day_ago),
    ).fetchone()[0]
    return int(jobs), float(credits)


def _status_clause(status: str) -> tuple[str, list[Any]]:
    if status == "OUTCOME_UNKNOWN":
        return "state = 'unknown'", []
    if status == "SUBMITTED":
        return "state = 'submitted' AND status IS NULL", []
    return "state = 'submitted' AND status = ?", [status]


def _job(conn: sqlite3.Connection, job_id: int) -> Job:
    row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise sqlite3.DatabaseError(f"job {job_id} vanished from the ledger")
    return _row_job(row)


def _row_job(row: Sequence[Any]) -> Job:
    (id_, owner, account, state, task_id, conversion_id, submitted_at, source_kind, source_name, fingerprint) = row[:10]
    (stems, options, eta, credit, status, message, cost, finished, urls, note) = row[10:]
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
        stems=tuple(json.loads(stems)),
        options=tuple(json.loads(options)),
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


def _with_downloads(conn: sqlite3.Connection, jobs: list[Job]) -> list[Job]:
    if not jobs:
        return jobs
    marks = ",".join("?" * len(jobs))
    found: dict[int, list[Download]] = {}
    for job_id, stem, path, fmt, size, at, sha256 in conn.execute(
        f"SELECT job_id, stem, path, format, bytes, at, sha256 FROM downloads WHERE job_id IN ({marks}) ORDER BY at, id",
        [j.id for j in jobs],
    ):
        found.setdefault(job_id, []).append(Download(stem, path, fmt, size, at, sha256))
    from dataclasses import replace

    return [replace(j, downloads=tuple(found.get(j.id, ()))) for j in jobs]
