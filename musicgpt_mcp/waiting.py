"""Waiting for a MusicGPT job: when to poll, and what to tell a person meanwhile. No MCP in here."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from .musicgpt import MusicGPTClient, contract, transport

# Progress is reported at least this often while waiting, so a host's progress bar moves.
TICK = 2.0
MIN_POLL = 1.0
MAX_POLL = 15.0
# Poll intervals once the ETA is unknown or has passed: back off, but keep checking.
OVERDUE_POLLS = (2.0, 3.0, 5.0, 5.0, 8.0, 10.0)

# How far the progress total runs ahead of the ETA (or, once overdue, the time so far), in seconds.
HEADROOM = 1.0

Report = Callable[[float, float, str], Awaitable[None]]


@dataclass(frozen=True)
class EtaHint:
    """What the ledger knows of a job: when it was submitted (wall clock, so it survives a restart
    of the server) and MusicGPT's eta in seconds (-1: unknown)."""

    submitted_at: float
    eta: int

    def remaining(self, now: float) -> float | None:
        if self.eta < 0:
            return None
        return self.submitted_at + self.eta - now

    def progress(self, now: float, done: bool) -> tuple[float, float]:
        """(progress, total) in seconds of the job's life: the total is the ETA, or the time so far once
        the job is overdue, plus a second of headroom, so the bar fills as the job nears its ETA, creeps
        on while it is overdue, never goes back, and is full only when the job is done."""
        elapsed = max(0.0, now - self.submitted_at)
        if done:
            total = max(float(self.eta), elapsed)
            return total, total
        return elapsed, max(float(self.eta), elapsed) + HEADROOM


def next_poll(remaining: float | None, overdue_polls: int) -> float:
    """Seconds until the next status call: at the ETA when one is pending, else backing off."""
    if remaining is not None and remaining > MIN_POLL:
        return min(remaining, MAX_POLL)
    return OVERDUE_POLLS[min(overdue_polls, len(OVERDUE_POLLS) - 1)]


def describe(status: contract.StatusReply, remaining: float | None) -> str:
    if status.status in contract.QUEUED_STATUSES:
        state = "queued"
    elif status.status == "IN_PROGRESS":
        state = "processing"
    elif status.done:
        return "finished" if not status.failed else f"failed ({status.status})"
    else:
        state = f"status {status.status}"
    if remaining is None:
        return state
    if remaining > 0:
        # Under a second to go is not late: saying so made every on-time job look overdue for its last tick.
        return f"{state}, about {max(1, round(remaining))} s left"
    return f"{state}, MusicGPT's estimate has passed; still checking"


class Progress:
    """Progress for one wait, through `report`: in seconds of the job's life when its ETA is known (EtaHint), else
    in seconds of the wait; strictly increasing, whatever the clock's resolution."""

    def __init__(self, hint: EtaHint | None, wait_seconds: float, report: Report) -> None:
        self._hint = hint
        self._wait = wait_seconds
        self._report = report
        self._start = time.monotonic()
        self._last = -1.0

    def remaining(self) -> float | None:
        return self._hint.remaining(time.time()) if self._hint else None

    async def tick(self, status: contract.StatusReply) -> None:
        if self._hint is not None and self._hint.eta >= 0:
            progress, total = self._hint.progress(time.time(), status.done)
        else:
            progress, total = time.monotonic() - self._start, float(self._wait)
        progress = max(progress, self._last + 0.001)
        self._last = progress
        await self._report(round(progress, 3), round(max(total, progress), 3), describe(status, self.remaining()))


async def wait_for_job(
    client: MusicGPTClient,
    task_id: str,
    wait_seconds: float,
    hint: EtaHint | None,
    report: Report,
) -> tuple[contract.StatusReply, float]:
    """Poll until the job is done or `wait_seconds` have passed; the last status and time waited.

    Cancellation (the client's notifications/cancelled) interrupts the sleep at once and
    propagates: nothing here swallows it. Every status read, retries included, ends by
    `wait_seconds` + transport.STATUS_BOUND, so the whole call does too.
    """
    start = time.monotonic()
    deadline = start + wait_seconds
    hard_deadline = deadline + transport.STATUS_BOUND
    progress = Progress(hint, wait_seconds, report)
    status = await client.get_status(task_id, deadline=hard_deadline)
    overdue = 0

    while not status.done:
        now = time.monotonic()
        if now >= deadline:
            break
        remaining = progress.remaining()
        poll_at = now + next_poll(remaining, overdue)
        if remaining is None or remaining <= MIN_POLL:
            overdue += 1
        poll_at = min(poll_at, deadline)
        while (now := time.monotonic()) < poll_at:
            await progress.tick(status)
            await anyio.sleep(min(TICK, poll_at - now))
        status = await client.get_status(task_id, deadline=hard_deadline)
    if wait_seconds > 0:  # a plain look is not a wait: no progress to report
        await progress.tick(status)
    return status, time.monotonic() - start
