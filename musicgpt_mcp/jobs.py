"""A caller's jobs: what the ledger remembers of each and what MusicGPT says of it now.

Every tool, resource and view that looks at a job goes through `JobBook`, which owns the one sequence: read the
caller's row from the ledger (on a shared server, a job that is not the caller's is "not found", in MusicGPT's
own words), ask MusicGPT (waiting with progress when asked to), and write back what changed. The ledger is used
when it can be and done without when it cannot, except on a shared server, where it decides what is whose. A job
that carries the server's own webhook is waited for on a wake-up instead, with MusicGPT asked once for all its
waiters (watching.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .failures import Failure
from .ledger import Download, Job, LedgerError
from .musicgpt import MusicGPTClient, TaskNotFoundError, contract
from .signals import Signals
from .state import LedgerHandle
from .waiting import EtaHint, Report, wait_for_job
from .watching import Watch, status_update

log = logging.getLogger(__name__)

# What the stems are wanted for, which decides what a person is told to do when there are none yet.
Purpose = Literal["download", "play"]


class JobNotReady(Failure):
    """A job whose stems cannot be had: it failed, or it has not finished."""


@dataclass(frozen=True)
class Refreshed:
    status: contract.StatusReply
    job: Job | None  # the ledger's row as read before MusicGPT was asked, when there is one
    waited: float
    hint: EtaHint | None  # when the job was submitted and MusicGPT's eta, from the ledger

    def eta_left(self, now: float) -> float | None:
        return self.hint.remaining(now) if self.hint is not None else None


class JobBook:
    def __init__(
        self,
        ledger: LedgerHandle,
        owner: str,
        client: MusicGPTClient,
        *,
        isolated: bool,
        max_wait: int,
        signals: Signals | None = None,
    ) -> None:
        self._ledger = ledger
        self._owner = owner
        self._client = client
        self._isolated = isolated
        self._max_wait = max_wait
        self._signals = signals  # the process's wake-ups; without them every job is polled

    async def known(self, task_id: str) -> Job | None:
        """The caller's job with `task_id`, as the ledger remembers it. On a shared server a job the caller does
        not own is "not found"; locally any task ID may be asked about (a job from before the ledger, say)."""
        # On a shared server the ledger decides what is whose: without it, nothing can be shown.
        ledger = await (self._ledger.require() if self._isolated else self._ledger.get())
        job = None
        if ledger is not None:
            try:
                job = await ledger.job(self._owner, task_id)
            except LedgerError as exc:
                log.warning("could not read job %s from the ledger: %s", task_id, exc)
                if self._isolated:
                    raise self._ledger.unavailable(exc) from None
        if job is None and self._isolated:
            raise TaskNotFoundError(task_id)
        return job

    async def refresh(self, task_id: str, wait: float = 0.0, report: Report | None = None) -> Refreshed:
        """What MusicGPT says of the job now, after waiting up to `wait` seconds for it to finish (with progress
        through `report`), recorded in the caller's row when it changes it. The ETA comes from the ledger, so a
        restarted server polls on the schedule of the one that submitted. For a job MusicGPT will tell this server
        about (its own webhook), what the ledger says, asked of MusicGPT only as watching.py describes."""
        job = await self.known(task_id)
        hint = EtaHint(job.submitted_at, job.eta) if job is not None and job.eta is not None else None
        watched = await self._watched(job, wait, hint, report or _silent)
        if watched is not None:
            return Refreshed(watched[0], job, watched[1], hint)
        status, waited = await wait_for_job(self._client, task_id, wait, hint, report or _silent)
        await self._remember(task_id, status, job)
        return Refreshed(status, job, waited, hint)

    async def _watched(
        self, job: Job | None, wait: float, hint: EtaHint | None, report: Report
    ) -> tuple[contract.StatusReply, float] | None:
        """A job MusicGPT will tell this server about, waited for on a wake-up with the ledger (watching.py);
        None when the job is to be polled: it has no server webhook, or the ledger fails."""
        if job is None or not job.server_webhook or self._signals is None:
            return None
        ledger = await self._ledger.get()
        if ledger is None:
            return None
        try:
            return await Watch(ledger, self._signals, self._client).wait(job, wait, hint, report)
        except LedgerError as exc:
            # MusicGPT still answers: the wait goes on as for any job, polled, rather than failing.
            log.warning("could not wait for job %s through the ledger (%s); polling it", job.task_id, exc)
            return None

    async def finished_stems(self, task_id: str, purpose: Purpose) -> contract.StatusReply:
        """The status of a job whose stems are ready, or JobNotReady saying why not and what to do."""
        status = (await self.refresh(task_id)).status
        if status.failed:
            reason = f": {status.status_message}" if status.status_message else ""
            end = "to download" if purpose == "download" else "to play"
            raise JobNotReady(f"Extraction {task_id} {status.status}{reason}. It produced no stems {end}.")
        if not status.done:
            if purpose == "play":
                raise JobNotReady(
                    f"Extraction {task_id} is not finished yet (status {status.status}); its stems cannot be played yet."
                )
            raise JobNotReady(
                f"Extraction {task_id} is not finished yet (status {status.status}). Call get_extraction with "
                f"task_id={task_id!r} and wait_seconds={self._max_wait} to wait for it, then download_stems again."
            )
        return status

    async def _remember(self, task_id: str, status: contract.StatusReply, known: Job | None) -> None:
        """Record a status MusicGPT gave for a job the ledger knows (`known`, as read before the call); a status
        the row already holds is not written again."""
        ledger = await self._ledger.get()
        if ledger is None or known is None:
            return
        update = status_update(status)
        if not update.changes(known):
            return
        try:
            await ledger.update_status(self._owner, task_id, update, time.time())
        except LedgerError as exc:
            log.warning("could not record the status of job %s: %s", task_id, exc)

    async def saved_stem(self, task_id: str, stem: str, fmt: str) -> Path | None:
        """The file download_stems saved for this caller's stem in this format, if it still exists; the player
        reads it instead of fetching the stem again."""
        ledger = await self._ledger.get()
        if ledger is None:
            return None
        try:
            return await ledger.saved_file(self._owner, task_id, stem, fmt)
        except LedgerError as exc:
            log.warning("could not look up the saved %s stem of job %s: %s", stem, task_id, exc)
            return None

    async def record_downloads(self, task_id: str, files: Sequence[Download]) -> None:
        ledger = await self._ledger.get()
        if ledger is None or not files:
            return
        try:
            await ledger.record_downloads(self._owner, task_id, files)
        except LedgerError as exc:
            log.warning("could not record the downloads of job %s: %s", task_id, exc)


async def _silent(progress: float, total: float, message: str) -> None:
    return None


__all__ = ["JobBook", "JobNotReady", "Purpose", "Refreshed"]
