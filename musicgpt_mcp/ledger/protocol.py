"""The Ledger interface: what the money rules, the job book and the studio ask of a store, whichever engine
(SQLite for one machine, PostgreSQL for replicas) keeps it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .base import (
    Accepted,
    ClaimResult,
    Download,
    FileKey,
    Job,
    JobRequest,
    Policy,
    Spending,
    StatusUpdate,
)
from .sql import Dialect
from .studio import Done, Step


class Ledger(Protocol):
    """The store behind the money rules: SQLite for one machine, PostgreSQL for replicas.

    Every method is a short transaction; `claim` is the one that must be atomic across processes.
    """

    where: str
    kind: str  # "sqlite" or "postgresql", for a health check
    dialect: Dialect  # how the shared SQL is said in this engine (sql.py)

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise unless the store answers a trivial query (a health check)."""
        ...

    async def claim(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult: ...

    async def preview(self, request: JobRequest, policy: Policy, now: float) -> ClaimResult: ...

    async def heartbeat(self, job_id: int, now: float) -> None: ...

    async def accepted(self, job_id: int, reply: Accepted) -> Job: ...

    async def outcome_unknown(self, job_id: int, note: str) -> None: ...

    async def release(self, job_id: int) -> None: ...

    async def recent_costs(self, request: JobRequest, limit: int) -> list[float]: ...

    async def spend_answer(self, token: str, now: float) -> bool:
        """Record that the consent answer `token` bought a submission; False when it already had."""
        ...

    async def rename_account(self, owner: str, old: str, new: str) -> None:
        """Give the owner's jobs recorded under account name `old` the name `new`."""
        ...

    async def spending(self, owner: str, now: float) -> Spending: ...

    async def job(self, owner: str, task_id: str) -> Job | None: ...

    async def update_status(self, owner: str, task_id: str, update: StatusUpdate, now: float) -> None: ...

    async def record_downloads(self, owner: str, task_id: str, files: Sequence[Download]) -> None: ...

    async def jobs(self, owner: str, limit: int, status: str | None, query: str | None) -> list[Job]: ...

    async def saved_file(self, owner: str, task_id: str, stem: str, fmt: str) -> Path | None: ...

    async def cached_fingerprint(self, key: FileKey) -> str | None: ...

    async def remember_fingerprint(self, key: FileKey, digest: str) -> None: ...

    async def run_steps(self, steps: Sequence[Step]) -> list[Done]:
        """Statements in one transaction, each decision a single conditional statement (studio.py)."""
        ...
