"""Quotes: a paid job the user approves in the stem view before anything is sent. No MCP in here.

In hosts that render MCP Apps but cannot ask the user a question (claude.ai, ChatGPT), a model's word alone must
not spend the user's credits. So extract_stems answers there with a quote, kept in the ledger (it survives a
restart and is seen by every replica), and the view shows it with Approve and Cancel. Approving takes the quote
(one approval at a time; the others wait for its job) and sends the job through the same claim as any paid job:
an identical job is reused, the limits are checked now, an unknown outcome is never resubmitted. One quote buys
at most one job: double clicks, two open views and retries all end in that job.

What lets the view approve, and nothing else: a token derived from the server secret and the quote's id, handed
to the view only (in a result's `_meta`, which hosts give the view and not the model). A model that calls the
approval tool with whatever it has read is refused and pays nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio

from . import submission
from .failures import Failure
from .ledger import Job, JobRequest, Ledger, Policy
from .ledger.base import STALE_CLAIM, FileKey, iso
from .ledger.studio import Quote, cancel_quote, find_quote, open_quote, set_quote, take_quote, touch_quote
from .musicgpt import ExtractionRequest
from .musicgpt.multipart import FilePart

log = logging.getLogger(__name__)

QUOTE_TTL: Final = 30 * 60.0
# How long an approval waits for another approval of the same quote that took it first.
APPROVAL_WAIT: Final = 60.0
POLL: Final = 0.2
TOKEN_CHARS: Final = 40


class QuoteRefused(Failure):
    """The quote cannot buy a job (now): unknown, not the caller's, wrong token, expired or cancelled."""

    consequence = "Nothing was submitted and nothing was charged."


@dataclass(frozen=True)
class Offer:
    """What a quote offers the view: the quote, and the token that approves it."""

    quote: Quote
    approval: str


def token(key: bytes, purpose: str, item: str) -> str:
    """The view's token for `item` (a quote, an upload): derived, so any replica can check it and none stores it."""
    return hmac.new(key, f"{purpose}\0{item}".encode(), hashlib.sha256).hexdigest()[:TOKEN_CHARS]


def is_id(item: str) -> bool:
    """Whether `item` could be one of our ids (hex): anything else is unknown without asking the ledger."""
    return 0 < len(item) <= 64 and all(c in "0123456789abcdef" for c in item)


def valid(key: bytes, purpose: str, item: str, given: str) -> bool:
    return hmac.compare_digest(token(key, purpose, item), given.strip())


def spec_of(request: JobRequest, extraction: ExtractionRequest, policy: Policy, question: str) -> dict[str, Any]:
    """What an approval sends, as the ledger keeps it (a local file by the state its checks saw)."""
    part = extraction.audio_file
    return {
        "request": {"kind": request.source_kind, "name": request.source_name, "fingerprint": request.fingerprint,
                    "stems": list(request.stems), "options": list(request.options)},
        "stems": list(extraction.stems),
        "options": list(extraction.preprocessing_options),
        "audio_url": extraction.audio_url,
        "webhook_url": extraction.webhook_url,
        "file": None if part is None else {
            "path": str(part.path), "filename": part.filename, "content_type": part.content_type, "size": part.size,
            "identity": [part.identity.dev, part.identity.ino, part.identity.size, part.identity.mtime_ns,
                         part.identity.ctime_ns],
            "head_sha256": part.head_sha256.hex(),
        },
        "force_new": policy.force_new,
        "question": question,
    }  # fmt: skip


def request_of(quote: Quote) -> JobRequest:
    r = quote.spec["request"]
    return JobRequest(
        quote.owner, quote.account, r["fingerprint"], r["kind"], r["name"], tuple(r["stems"]), tuple(r["options"])
    )


def extraction_of(quote: Quote, part: FilePart | None = None) -> ExtractionRequest:
    """The submit an approval makes; a local file as the ledger recorded it, or `part` (an upload's copy)."""
    spec = quote.spec
    recorded = spec.get("file")
    if part is None and recorded is not None:
        part = FilePart(
            name="audio_file",
            path=Path(recorded["path"]),
            filename=recorded["filename"],
            content_type=recorded["content_type"],
            size=int(recorded["size"]),
            identity=FileKey(*(int(n) for n in recorded["identity"])),
            head_sha256=bytes.fromhex(recorded["head_sha256"]),
        )
    return ExtractionRequest(
        spec["stems"], spec["options"], audio_url=spec["audio_url"], audio_file=part, webhook_url=spec["webhook_url"]
    )


async def offer(ledger: Ledger, key: bytes, request: JobRequest, spec: dict[str, Any], now: float) -> Offer:
    """A quote for `request`, or the open one already standing for it."""
    # The webhook is part of what the user approves: a call naming another one is another quote.
    webhook = spec.get("webhook_url") or ""
    identity = f"{request.fingerprint}\0{request.stems_key}\0{request.options_key}\0{webhook}"
    draft = Quote(
        secrets.token_hex(12), request.owner, request.account, identity, spec, now, now + QUOTE_TTL, "open",
        None, None, None,
    )  # fmt: skip
    quote = await open_quote(ledger, draft, now)
    return Offer(quote, token(key, "quote", quote.id))


async def cancel(ledger: Ledger, key: bytes, owner: str, quote_id: str, approval: str) -> Quote:
    quote = await _checked(ledger, key, owner, quote_id, approval)
    if not await cancel_quote(ledger, owner, quote.id):
        _refuse_closed(await find_quote(ledger, owner, quote.id) or quote, time.time())
    return await find_quote(ledger, owner, quote.id) or quote


async def approve(
    ledger: Ledger,
    key: bytes,
    owner: str,
    quote_id: str,
    approval: str,
    send: Callable[[Quote], Awaitable[submission.Outcome]],
) -> submission.Outcome:
    """The job the quote buys: sent now by `send` (which submits through the claim), or the one it bought."""
    await _checked(ledger, key, owner, quote_id, approval)
    deadline = time.monotonic() + APPROVAL_WAIT
    while True:
        quote, took = await take_quote(ledger, owner, quote_id, time.time())
        if quote is None:
            raise _not_found()
        if took:
            return await _send(ledger, quote, send)
        if quote.state == "approved":
            return await _bought(ledger, quote)
        if quote.state != "approving":
            _refuse_closed(quote, time.time())
        if time.monotonic() > deadline:
            raise QuoteRefused("Another approval of this quote is still sending its job. Wait a moment and look again.")
        await anyio.sleep(POLL)


async def _send(
    ledger: Ledger, quote: Quote, send: Callable[[Quote], Awaitable[submission.Outcome]]
) -> submission.Outcome:
    try:
        outcome = await _alive(ledger, quote, send)
    except Failure as exc:
        # Charged nothing (a limit, a refusal, a file that changed): the quote stands, to be approved later.
        with anyio.CancelScope(shield=True):
            await set_quote(ledger, quote.id, "approved" if exc.outcome == "maybe_charged" else "open")
        raise
    except BaseException:
        # Stopped while the request may have been sent: the job's outcome is unknown (submission recorded it);
        # the quote is spent, so nothing resubmits it.
        with anyio.CancelScope(shield=True):
            await set_quote(ledger, quote.id, "approved")
        raise
    await set_quote(ledger, quote.id, "approved", task_id=outcome.job.task_id)
    return outcome


async def _alive(
    ledger: Ledger, quote: Quote, send: Callable[[Quote], Awaitable[submission.Outcome]]
) -> submission.Outcome:
    """`send(quote)`, while saying the approval is alive; its own exception, not a group of one."""
    sent: list[submission.Outcome] = []
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_keep_taken, ledger, quote.id)
            try:
                sent.append(await send(quote))
            finally:
                tasks.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return sent[0]


async def _keep_taken(ledger: Ledger, quote_id: str) -> None:
    """While this approval prepares its job (an uploaded song is copied out of the ledger first), say it is alive,
    so that no other approval takes the quote over as one that died before claiming its job."""
    while True:
        await anyio.sleep(STALE_CLAIM / 4)
        try:
            await touch_quote(ledger, quote_id, time.time())
        except Failure as exc:  # the claim's own ledger use will say so; this one only keeps others out
            log.warning("could not renew an approval in progress: %s", exc)


async def _bought(ledger: Ledger, quote: Quote) -> submission.Outcome:
    job: Job | None = await ledger.job(quote.owner, quote.task_id) if quote.task_id else None
    if job is None:
        raise QuoteRefused(
            "This quote was approved, but sending its job was interrupted, so MusicGPT may or may not have "
            "accepted it (it may have been charged). Check the extractions in the MusicGPT dashboard before "
            "asking for the job again."
        )
    return submission.Outcome(job, reused=False)


async def _checked(ledger: Ledger, key: bytes, owner: str, quote_id: str, approval: str) -> Quote:
    quote = await find_quote(ledger, owner, quote_id) if is_id(quote_id) else None
    if quote is None or not valid(key, "quote", quote.id, approval):
        raise _not_found()
    return quote


def _not_found() -> QuoteRefused:
    # The same words for a wrong token, another caller's quote and none at all: a model learns nothing from them.
    return QuoteRefused(
        "This approval does not match a quote of this user: only the stem view holds it, and only the user approves "
        "a paid job there. Ask the user to approve (or cancel) in the view."
    )


def _refuse_closed(quote: Quote, now: float) -> None:
    if quote.expired(now):
        raise QuoteRefused(
            f"This quote expired at {iso(quote.expires_at)}. Call extract_stems again for a new one if the user "
            "still wants the job."
        )
    if quote.state == "cancelled":
        raise QuoteRefused(
            "This quote was cancelled in the view. Call extract_stems again if the user changes their mind."
        )
    raise QuoteRefused(f"This quote cannot be approved now (it is {quote.state}).")


__all__ = ["QUOTE_TTL", "Offer", "QuoteRefused", "approve", "cancel", "extraction_of", "offer", "request_of", "spec_of"]
