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
    Noted,
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

    # --- the server's webhook and the job's shared status read (hooks.py, watching.py) ---

    async def delivered(self, job_id: int, now: float) -> Noted:
        """Note that an authentic delivery came for job `job_id` at `now`, to be confirmed by a status read, unless
        the job is known to have finished, or one is noted and not yet read, or a read is under way (a repeated
        delivery then changes nothing). One statement when it notes: deliveries come in bursts, when many jobs
        end together."""
        ...

    async def job_by_id(self, job_id: int) -> Job | None:
        """Job `job_id` as its row holds it, without its downloads: what a waiter looks at again and again."""
        ...

    async def take_read(self, job_id: int, seen: float | None, now: float, until: float) -> bool:
        """Take the job's next status read until `until` (it answers every delivery so far): True unless another
        waiter has taken one since the caller saw `seen` as its `read_at`, a reader's hold has not run out, or
        the job has finished."""
        ...

    async def read_done(self, job_id: int, update: StatusUpdate, now: float) -> None:
        """Record what the read taken found, seen at `now`, and free the job for the next read."""
        ...

    async def read_failed(self, job_id: int, taken: float, seen: float | None, unconfirmed: bool) -> None:
        """Give back the read taken at `taken` that found nothing (MusicGPT failed, or the waiter was cancelled):
        `read_at` is `seen` again and a delivery it was to confirm (`unconfirmed`, as the taker saw the job) is
        still to be confirmed, as if it had never been taken, unless someone took a read since."""
        ...
