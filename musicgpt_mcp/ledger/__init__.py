"""The job ledger: a durable record of every paid job, so none is paid for twice by accident."""

from __future__ import annotations

from pathlib import Path

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


async def open_ledger(state_dir: Path) -> Ledger:
    from .sqlite import open_sqlite_ledger

    return await anyio.to_thread.run_sync(open_sqlite_ledger, state_dir)


__all__ = [
    "JOB_STATUSES",
    "OUTCOME_UNKNOWN",
    "SUBMITTED",
    "Accepted",
    "ClaimResult",
    "Claimed",
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
