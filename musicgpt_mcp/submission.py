"""The paid path, made safe: ask the ledger, claim, submit exactly once, record what happened.

No MCP in here. The rules: an identical job (same owner, account, audio, stems and options) that is
recent and did not fail is returned instead of paying again; an identical submit already under way
is waited for; an identical submit whose outcome is unknown blocks until the user says otherwise
(force_new); the spending limits are checked in the same transaction that claims the submit, so
they hold across processes. When the server has a webhook of its own (hooks.py) and the caller gave none, the
submit carries the server's, made for the claimed row before the POST, so MusicGPT tells the server when the job
ends and its waiters need not ask (watching.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from . import failures, hooks
from .failures import Failure
from .ledger import (
    Accepted,
    Claimed,
    InFlight,
    Job,
    JobRequest,
    Ledger,
    LedgerError,
    LimitReached,
    Policy,
    Reused,
    Unknown,
    iso,
)
from .ledger.base import HEARTBEAT
from .musicgpt import ExtractionRequest, MusicGPTClient, MusicGPTError
from .summaries import count

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a waiting call looks again at an identical submit under way elsewhere.
IN_FLIGHT_POLL = 0.2


class Refused(Failure):
    """A money rule stopped the submit before any request; the message names the rule and the way on."""


@dataclass(frozen=True)
class Outcome:
    job: Job
    reused: bool


def limit_message(limit: LimitReached) -> str:
    if limit.kind == "credits":
        return (
            f"The daily spending limit would be passed: the jobs of the last 24 hours count "
            f"{count(round(limit.used, 4), 'credit')} (a job whose cost MusicGPT has not stated yet counts at an "
            f"estimate), this job is estimated at up to {count(round(limit.needed, 4), 'credit')}, and "
            f"MUSICGPT_MCP_MAX_CREDITS_PER_DAY is {limit.limit:g}. Nothing was submitted. Tell the user; they can wait "
            "until older jobs leave the 24-hour window, or raise MUSICGPT_MCP_MAX_CREDITS_PER_DAY in the server's "
            "environment."
        )
    return (
        f"{count(limit.used, 'paid job')} {'was' if limit.used == 1 else 'were'} submitted in the last hour, the most MUSICGPT_MCP_MAX_JOBS_PER_HOUR "
        f"({limit.limit:g}) allows. Nothing was submitted. Tell the user; if this is not a runaway loop, they can "
        "wait, or raise MUSICGPT_MCP_MAX_JOBS_PER_HOUR in the server's environment."
    )


def unknown_message(job: Job) -> str:
    why = f" ({job.note})" if job.note else ""
    return (
        f"An identical extract_stems call at {iso(job.submitted_at)} (same audio, stems and options) may already "
        f"have been charged: its outcome is unknown{why}. Nothing was submitted now, so the user is not charged "
        "twice. Ask the user to check the extractions in their MusicGPT dashboard; if that job is not there, call "
        "extract_stems again with force_new=true to submit anyway (that costs credits again)."
    )


async def submit(
    ledger: Ledger,
    client: MusicGPTClient,
    request: JobRequest,
    extraction: ExtractionRequest,
    policy: Policy,
    on_file_bytes: Callable[[int], Awaitable[None]] | None = None,
    *,
    may_submit: bool = True,
    answer: str | None = None,
    on_claim: Callable[[int], Awaitable[None]] | None = None,
) -> Outcome:
    """Reuse, wait for, or submit the job; never two POSTs for one identical request on our own.

    `may_submit` False: the caller expected a reuse and has no consent to pay, so a claim that would
    submit is given back instead. `answer`: the consent answer that allows this submission (answers.py),
    spent by it: a second submission on the same answer is refused. `on_claim`: told the claim's ledger row
    before the request is sent (a quote records which job its approval claimed)."""
    while True:
        # A ledger that cannot be used refuses the submit (LedgerError): without it this server cannot promise
        # the user is not charged twice.
        claim = await ledger.claim(request, policy, time.time())
        if isinstance(claim, Reused):
            log.info("reusing job %s for an identical request: nothing submitted", claim.job.task_id)
            return Outcome(claim.job, reused=True)
        if isinstance(claim, InFlight):
            await anyio.sleep(IN_FLIGHT_POLL)
            continue
        if isinstance(claim, Unknown):
            raise Refused(unknown_message(claim.job))
        if isinstance(claim, LimitReached):
            raise Refused(limit_message(claim))
        assert isinstance(claim, Claimed)
        if not may_submit:
            await ledger.release(claim.job_id)
            raise Refused(
                "An identical recent job was going to be returned, but it is no longer available (it failed, or "
                "left the reuse window, while this call ran). Nothing was submitted. Call extract_stems again to "
                "submit a new paid job."
            )
        if answer is not None:
            await _spend(ledger, claim.job_id, answer)
        if on_claim is not None:
            await on_claim(claim.job_id)
        hooked = _with_hook(extraction, claim)
        return await _submit_claimed(
            ledger, client, claim.job_id, request, hooked, on_file_bytes, server_webhook=hooked is not extraction
        )


def _with_hook(extraction: ExtractionRequest, claim: Claimed) -> ExtractionRequest:
    """The request with the server's own webhook for this claim, when the server has one and the caller gave no
    webhook_url of their own (MusicGPT takes one; the caller's is kept, and that job is polled)."""
    server = hooks.current.get()
    if server is None or extraction.webhook_url is not None:
        return extraction
    return dataclasses.replace(extraction, webhook_url=server.url_for(claim.job_id))


async def _spend(ledger: Ledger, job_id: int, answer: str) -> None:
    """Spend the consent answer on this claim, or give the claim back and refuse."""
    try:
        fresh = await ledger.spend_answer(answer, time.time())
    except LedgerError as exc:
        await _settle(ledger, job_id, "not_charged", str(exc))
        raise
    if not fresh:
        await _settle(ledger, job_id, "not_charged", "consent answer already spent")
        raise Refused(
            "This answer to the consent question was already used for a paid job, and one answer buys one job. "
            "Nothing was submitted. Call extract_stems again if the user wants another job: they will be asked again."
        )


async def _submit_claimed(
    ledger: Ledger,
    client: MusicGPTClient,
    job_id: int,
    request: JobRequest,
    extraction: ExtractionRequest,
    on_file_bytes: Callable[[int], Awaitable[None]] | None,
    *,
    server_webhook: bool,
) -> Outcome:
    submitted_at = time.time()
    try:
        reply = await _keeping_alive(ledger, job_id, lambda: client.submit_extraction(extraction, on_file_bytes))
    except MusicGPTError as exc:
        with anyio.CancelScope(shield=True):
            await _settle(ledger, job_id, exc.outcome, str(exc))
        raise
    except BaseException:
        # Cancelled by the client, or a crash, while the request was in the air: it may have been
        # charged. Recorded even while being cancelled, so a later identical call will not pay blindly.
        with anyio.CancelScope(shield=True):
            await _settle(ledger, job_id, "maybe_charged", "the call was stopped while the request was being sent")
        raise
    accepted = Accepted(reply.task_id, reply.conversion_id, reply.eta, reply.credit_estimate, server_webhook)
    try:
        return Outcome(await ledger.accepted(job_id, accepted), reused=False)
    except LedgerError as exc:
        # The job is paid for: the result must reach the user even if the ledger fails now. The claim
        # stays, goes stale, and then blocks identical submits as "outcome unknown": the safe side.
        log.error("job %s was accepted but could not be recorded: %s", reply.task_id, exc)
        return Outcome(_unrecorded(job_id, request, accepted, submitted_at), reused=False)


def _unrecorded(job_id: int, request: JobRequest, reply: Accepted, submitted_at: float) -> Job:
    return Job(
        id=job_id,
        owner=request.owner,
        account=request.account,
        state="submitted",
        task_id=reply.task_id,
        conversion_id=reply.conversion_id,
        submitted_at=submitted_at,
        source_kind=request.source_kind,
        source_name=request.source_name,
        fingerprint=request.fingerprint,
        stems=request.stems,
        options=request.options,
        eta=reply.eta,
        credit_estimate=reply.credit_estimate,
        status=None,
        status_message=None,
        conversion_cost=None,
        finished_at=None,
        mp3_urls={},
        wav_urls={},
        note=None,
    )


async def _settle(ledger: Ledger, job_id: int, outcome: failures.Outcome, why: str) -> None:
    """Record how a claimed submit ended: a job that may have been charged blocks identical submits; one that
    certainly was not gives its claim back."""
    try:
        if outcome == "maybe_charged":
            await ledger.outcome_unknown(job_id, why)
        else:
            await ledger.release(job_id)
    except LedgerError as exc:
        log.error("could not record the outcome of claim %d (%s): %s", job_id, outcome, exc)


async def _keeping_alive(ledger: Ledger, job_id: int, work: Callable[[], Awaitable[T]]) -> T:
    """`work()`, while a side task keeps the claim fresh; its failure is raised as itself, not in a group."""
    results: list[T] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_keep_alive, ledger, job_id)
            try:
                results.append(await work())
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        failures = [e for e in group.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        if len(failures) == 1:
            raise failures[0] from None
        raise
    return results[0]


async def _keep_alive(ledger: Ledger, job_id: int) -> None:
    """Tell other processes this claim is alive while the (possibly long) upload runs."""
    while True:
        await anyio.sleep(HEARTBEAT)
        try:
            await ledger.heartbeat(job_id, time.time())
        except LedgerError as exc:
            log.warning("could not refresh claim %d: %s", job_id, exc)
