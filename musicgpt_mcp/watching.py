"""Waiting for a job that carries the server's own webhook (hooks.py): on a wake-up, not by asking MusicGPT.

MusicGPT POSTs a finished job to its webhook. The delivery lands on any replica (deliveries.py), is noted in the
ledger, and wakes the job's waiters on every replica (signals.py: PostgreSQL LISTEN/NOTIFY with a database, this
process with SQLite). A delivery alone is not trusted (SECURITY.md): a woken waiter makes one status read, and
one only for all of the job's waiters on all replicas. The read is taken in the ledger (`take_read`, one short
statement); whoever takes it asks MusicGPT, writes the answer and wakes the others, who read it from the ledger.

MusicGPT is asked about such a job only
- after a delivery no read has answered yet: at once, or CONFIRM_PAUSE after the last read (replays of a leaked
  address buy no more); while the job then still runs (MusicGPT told us before its own status said so), again
  after a pause as long as the time since the delivery (at least CONFIRM_PAUSE, at most SAFETY_EVERY);
- as the safety net that finishes a job whose delivery was lost: SAFETY_AFTER_ETA past the ETA (past the submit
  when there is none), and then every SAFETY_EVERY, shared like any read.
With replicas, a waiter also reads the ledger every RECHECK seconds, for a wake-up that was lost (a notification
sent while a replica's listener reconnects is); within one process none is lost, and it does not (a thousand
waiters reading their rows every few seconds queued the answers of the woken ones behind their reads).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Final

import anyio

from .hooks import JOB_CHANNEL
from .ledger import Job, Ledger, LedgerError, StatusUpdate
from .musicgpt import MusicGPTClient, contract, transport
from .signals import Signals, Subscription
from .waiting import TICK, EtaHint, Progress, Report

log = logging.getLogger(__name__)

SAFETY_AFTER_ETA: Final = 60.0
SAFETY_EVERY: Final = 60.0
CONFIRM_PAUSE: Final = 5.0
# A lost wake-up costs at most this much; each waiter reads its row this often (1,000 waiters: 100 reads a second).
RECHECK: Final = 10.0
# How long a taken read is the taker's alone: its status read ends within STATUS_BOUND, with room for the ledger.
READ_HOLD: Final = transport.STATUS_BOUND + 10.0
# After a read someone else took, the least a waiter pauses before looking again.
LOST_RACE_PAUSE: Final = 0.5


def next_read(job: Job) -> float:
    """When (wall clock) MusicGPT is next to be asked about the job; a time past means now."""
    eta = job.eta if job.eta is not None and job.eta >= 0 else 0
    when = max(job.submitted_at + eta + SAFETY_AFTER_ETA, (job.read_at or 0.0) + SAFETY_EVERY)
    if job.unconfirmed:
        # At once, unless a read came moments ago: replays of a leaked address must not buy a read each.
        when = (job.read_at or 0.0) + CONFIRM_PAUSE
    elif job.delivered_at is not None and job.read_at is not None:
        # Confirmed, and still running: each pause as long as the time since the delivery (by two replicas'
        # clocks, hence the bounds).
        pause = min(max(job.read_at - job.delivered_at, CONFIRM_PAUSE), SAFETY_EVERY)
        when = min(when, job.read_at + pause)
    # Someone is reading it now: their answer, or the end of their hold.
    return max(when, job.reading_until or 0.0)


def ledger_status(job: Job) -> contract.StatusReply:
    """What the ledger knows of the job, in the shape of MusicGPT's reply. A job nobody has asked MusicGPT about
    since it was accepted is IN_QUEUE: MusicGPT's reply to the submit said it was published to its queue."""
    return contract.StatusReply(
        task_id=job.task_id,
        conversion_id=job.conversion_id,
        status=job.status or "IN_QUEUE",
        status_message=job.status_message,
        conversion_cost=job.conversion_cost,
        mp3=dict(job.mp3_urls),
        wav=dict(job.wav_urls),
    )


def status_update(status: contract.StatusReply) -> StatusUpdate:
    """A status MusicGPT gave, as the ledger records it."""
    return StatusUpdate(
        status=status.status,
        status_message=status.status_message,
        conversion_cost=status.conversion_cost,
        done=status.done,
        mp3_urls=dict(status.mp3),
        wav_urls=dict(status.wav),
    )


@dataclass(frozen=True)
class Watch:
    """A caller's wait on one of their jobs (JobBook checked it is theirs): the ledger, the process's wake-ups,
    and the client that pays with the caller's key."""

    ledger: Ledger
    signals: Signals
    client: MusicGPTClient

    async def wait(
        self, job: Job, wait: float, hint: EtaHint | None, report: Report
    ) -> tuple[contract.StatusReply, float]:
        """The job's status once it is done or `wait` seconds have passed, and the time waited. LedgerError when
        the ledger fails on the way (the caller may then ask MusicGPT itself)."""
        start = time.monotonic()
        progress = Progress(hint, wait, report)
        with self.signals.subscribe(JOB_CHANNEL, str(job.id)) as wake:
            if wait > 0:
                job = await self._reload(job)  # a delivery between the caller's look and the subscription
            status = await self._watch(job, start + wait, wake, progress)
        if wait > 0:  # a plain look is not a wait: no progress to report
            await progress.tick(status)
        return status, time.monotonic() - start

    async def _watch(self, job: Job, deadline: float, wake: Subscription, progress: Progress) -> contract.StatusReply:
        fresh: contract.StatusReply | None = None  # what this waiter's own read found, when it made one
        recheck = RECHECK if self.signals.kind != "process" else math.inf
        while job.finished_at is None:
            pause = recheck
            if next_read(job) <= time.time():
                fresh = await self._read(job) or fresh
                if fresh is not None and fresh.done:
                    return fresh
                pause = LOST_RACE_PAUSE
            left = deadline - time.monotonic()
            if left <= 0:
                break
            until_read = next_read(job) - time.time()
            await self._pause(wake, min(left, max(min(pause, until_read), LOST_RACE_PAUSE)), progress, job)
            job = await self._reload(job)
        return ledger_status(job) if fresh is None or job.finished_at is not None else fresh

    async def _pause(self, wake: Subscription, seconds: float, progress: Progress, job: Job) -> None:
        """Up to `seconds`, until a wake-up; with progress every TICK."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await progress.tick(ledger_status(job))
            with anyio.move_on_after(min(TICK, left)):
                await wake.wait()
                return

    async def _reload(self, job: Job) -> Job:
        return await self.ledger.job_by_id(job.id) or job

    async def _read(self, job: Job) -> contract.StatusReply | None:
        """MusicGPT's status of the job, if this waiter takes the read; None when another took it first."""
        assert job.task_id is not None
        taken = time.time()
        if not await self.ledger.take_read(job.id, job.read_at, taken, taken + READ_HOLD):
            return None
        try:
            status = await self.client.get_status(job.task_id, deadline=time.monotonic() + transport.STATUS_BOUND)
        except BaseException:
            # Failed or cancelled: the next waiter may take the read at once, not when the hold runs out.
            with anyio.CancelScope(shield=True):
                try:
                    await self.ledger.read_failed(job.id, taken, job.read_at, job.unconfirmed)
                except LedgerError as exc:
                    log.warning("could not give back the status read of job %s: %s", job.task_id, exc)
            raise
        try:
            await self.ledger.read_done(job.id, status_update(status), time.time())
        except LedgerError as exc:
            log.warning("could not record the status of job %s: %s", job.task_id, exc)
        await self.signals.publish(JOB_CHANNEL, str(job.id))
        return status


__all__ = ["Watch", "ledger_status", "next_read", "status_update"]
