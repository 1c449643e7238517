"""The job ledger: a durable record of every paid job, so none is paid for twice by accident."""

from __future__ import annotations

import importlib
from pathlib import Path

import anyio

from .base import (
    JOB_STATUSES,
    OUTCOME_UNKNOWN,
    SUBMITTED,
    Accepted,
    Claimed,
    ClaimResult,
    DatabaseLedgerError,
    Download,
    FileKey,
    InFlight,
    Job,
    JobRequest,
    Ledger,
    LedgerError,
    LimitReached,
    Policy,
    Reused,
    Spending,
    StatusUpdate,
    Unknown,
    iso,
)


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
    "Policy",
    "Reused",
    "Spending",
    "StatusUpdate",
    "Unknown",
    "iso",
    "open_ledger",
]
