"""The job ledger: a durable record of every paid job, so none is paid for twice by accident.

The rooms: `base.py` holds what the ledger remembers (Job, JobRequest, ...), `protocol.py` the `Ledger`
interface, `studio.py` the quotes and uploads the in-chat view works with;
`rules.py` the money rules every engine applies; `errors.py` LedgerError, whose `explained()` is the one text
for "the ledger cannot be used". Two engines implement the interface, `sqlite.py` (one machine) and
`postgres.py` (replicas sharing a database), each keeping only its dialect, connections and locking (and its
migrations, in `sqlite_schema.py` and `postgres_schema.py`): the SQL they share is `sql.py`'s, the row codec
`codec.py`'s. For PostgreSQL, `locks.py` holds the advisory lock keys,
`postgres_url.py` reads the database URL, and `postgres_ratelimit.py` counts MusicGPT's per-key rate limits in
the database, made by `shared_limiter` here.

An engine is imported only when a ledger is opened (state.LedgerHandle opens it on first use), so start-up
never pays for psycopg.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .base import (
    JOB_STATUSES,
    OUTCOME_UNKNOWN,
    SUBMITTED,
    Accepted,
    Claimed,
    ClaimResult,
    Download,
    FileKey,
    InFlight,
    Job,
    JobRequest,
    LimitReached,
    Noted,
    Policy,
    Reused,
    Spending,
    StatusUpdate,
    Unknown,
    iso,
)
from .errors import DatabaseLedgerError, LedgerError
from .protocol import Ledger

if TYPE_CHECKING:
    from ..ratelimit import Limiter


async def open_ledger(state_dir: Path, database_url: str | None = None) -> Ledger:
    """The SQLite ledger in `state_dir`; or, given `database_url` (MUSICGPT_MCP_DATABASE_URL), the PostgreSQL
    one that replicas share. Raises LedgerError saying why it cannot be used (never with the password)."""
    if database_url is None:
        from .sqlite import open_sqlite_ledger

        return await anyio.to_thread.run_sync(open_sqlite_ledger, state_dir)
    # psycopg is the optional extra: imported here only, so a stdio user without it never loads it.
    try:
        importlib.import_module("psycopg")
        importlib.import_module("psycopg_pool")
    except ImportError as exc:
        raise DatabaseLedgerError(
            f"a PostgreSQL database is configured, but its driver cannot be loaded ({exc}). Install the server "
            "with its PostgreSQL extra: pip install 'musicgpt-mcp[postgres]' (or uvx 'musicgpt-mcp[postgres]')."
        ) from None
    from .postgres import open_postgres_ledger

    return await open_postgres_ledger(database_url)


def shared_limiter(ledger: Ledger, bucket: str, max_calls: int, period: float) -> Limiter | None:
    """At most `max_calls` calls in any `period` seconds for `bucket` (an account and a kind of call, never a key),
    counted in `ledger`'s PostgreSQL database so that every replica sharing it keeps to the limit in sum; or None
    when the ledger is this machine's alone (then each process keeps its own count)."""
    if ledger.kind != "postgresql":
        return None  # checked first: a SQLite user need not have psycopg
    from .postgres import PostgresLedger
    from .postgres_ratelimit import PostgresRateLimiter

    if not isinstance(ledger, PostgresLedger):
        return None
    return PostgresRateLimiter(ledger.pool, bucket, max_calls, period)


__all__ = [
    "JOB_STATUSES",
    "OUTCOME_UNKNOWN",
    "SUBMITTED",
    "Accepted",
    "ClaimResult",
    "Claimed",
    "DatabaseLedgerError",
    "Download",
    "FileKey",
    "InFlight",
    "Job",
    "JobRequest",
    "Ledger",
    "LedgerError",
    "LimitReached",
    "Noted",
    "Policy",
    "Reused",
    "Spending",
    "StatusUpdate",
    "Unknown",
    "iso",
    "open_ledger",
    "shared_limiter",
]
