"""The money rules every engine applies, on rows it has read under its lock (or, for a preview, without one):
reuse an identical job, wait for one under way, refuse after an unknown outcome, keep to the spending limits,
and what a new claim counts at until MusicGPT prices it. Pure functions: the engines read, these decide, the
engines write what was decided. One set of rules, so SQLite and PostgreSQL cannot decide differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from ..musicgpt.contract import assumed_credits
from .base import (
    DAY,
    DEAD_CLAIM_NOTE,
    HOUR,
    STALE_CLAIM,
    UNKNOWN_GUARD,
    InFlight,
    Job,
    JobRequest,
    LimitReached,
    Policy,
    Reused,
    Unknown,
)

# How many of the last costs for the same stems and options an estimate looks at.
RECENT_COSTS: Final = 3


@dataclass(frozen=True)
class Windows:
    """Where the windows the spending limits and `Ledger.spending` count in begin, for an instant `now`."""

    hour_ago: float
    day_ago: float
    month_ago: float  # 30 days

    @classmethod
    def ending(cls, now: float) -> Windows:
        return cls(now - HOUR, now - DAY, now - 30 * DAY)


def lookback(policy: Policy) -> float:
    """How far back a claim looks for identical jobs: the longest window any rule below needs."""
    return max(policy.reuse_seconds, UNKNOWN_GUARD, STALE_CLAIM)


def is_dead_claim(job: Job, heartbeat_at: float | None, now: float) -> bool:
    """A claim whose submitter has not said it is alive for STALE_CLAIM: it crashed or was killed."""
    return job.state == "submitting" and (heartbeat_at is None or heartbeat_at < now - STALE_CLAIM)


def as_dead(job: Job) -> Job:
    """The job as a dead claim is recorded: its outcome is unknown."""
    return replace(job, state="unknown", note=DEAD_CLAIM_NOTE)


def sift_identical(found: Sequence[tuple[Job, float | None]], now: float) -> tuple[list[Job], list[int]]:
    """The identical jobs a claim found (each with its last heartbeat) as `decide_identical` takes them, dead
    claims turned into unknown outcomes; and the ids of those dead claims, which a claim records as such."""
    jobs: list[Job] = []
    dead: list[int] = []
    for job, heartbeat_at in found:
        if is_dead_claim(job, heartbeat_at, now):
            dead.append(job.id)
            job = as_dead(job)
        jobs.append(job)
    return jobs, dead


def decide_identical(found: Sequence[Job], policy: Policy, now: float) -> Reused | InFlight | Unknown | None:
    """Reuse, wait for, or refuse because of an identical job; None when none stands in the way.

    `found`: the owner's jobs with the same request submitted since `now - lookback(policy)`, newest
    first, dead claims already turned into unknown outcomes (`as_dead`). Reuse comes first (it costs
    nothing), then a submit under way (wait for it), then an unknown outcome (may have been charged)."""
    if policy.force_new:
        return None
    if policy.reuse_seconds > 0:  # 0 turns reuse off, even for a job stamped "now" by a clock ahead of ours
        for job in found:
            if job.state == "submitted" and not job.failed and job.submitted_at >= now - policy.reuse_seconds:
                return Reused(job)
    for job in found:
        if job.state == "submitting":
            return InFlight(job)
    for job in found:
        if job.state == "unknown" and job.submitted_at >= now - UNKNOWN_GUARD:
            return Unknown(job)
    return None


def decide_limits(jobs_last_hour: int, credits_last_day: float, policy: Policy, estimate: float) -> LimitReached | None:
    """The spending limits, on the owner's chargeable jobs (every state: a claim may be charged). A new job
    must fit under the credit limit at its estimate: counting it at 0 until MusicGPT replies let eight calls
    at once past a two-credit limit."""
    if jobs_last_hour >= policy.max_jobs_per_hour:
        return LimitReached("jobs", jobs_last_hour, policy.max_jobs_per_hour)
    limit = policy.max_credits_per_day
    if limit is not None and credits_last_day + estimate > limit + 1e-9:
        return LimitReached("credits", credits_last_day, limit, estimate)
    return None


def estimate_credits(recent_costs: Sequence[float], request: JobRequest) -> float:
    """What a claim counts at until the job's own figure is known: the highest of the last costs seen for the
    same stems and options, else the documented assumption per stem and option (musicgpt/contract.py)."""
    if recent_costs:
        return max(recent_costs)
    return assumed_credits(len(request.stems), len(request.options))
