"""POST /webhooks/musicgpt/<secret>: MusicGPT's deliveries to the server's own webhook (hooks.py), turned into a
wake-up for the job's waiters on every replica.

No sign-in (MusicGPT has none): the secret in the path is the guard. A delivery whose secret this server did not
make (changed, missing, on an unknown path) is answered 404 and touches nothing: no ledger, no wake-up, no
MusicGPT call. An authentic one is noted in the ledger and wakes the job's waiters, who confirm it with one
status read (watching.py); its body is read only for whether it may mean the job ended (hooks.read_delivery), and
is never taken as the result. A delivery for a job the ledger knows has finished, such as MusicGPT's second copy
or a replay, changes nothing.

It answers fast (one short ledger statement and a notification) and reads at most MAX_BODY bytes (413 past
that). Each source address has a budget of SOURCE_LIMIT in each SOURCE_WINDOW (429 past it): a request costs 1,
a refused one (a secret this server did not make, a body too big) REFUSED_COST, so a scanner is cut off after a
few hundred guesses while MusicGPT's own burst, two deliveries for each of a thousand jobs ending together,
passes. Behind a reverse proxy on this machine, uvicorn takes the source from the proxy's X-Forwarded-For.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from .hooks import JOB_CHANNEL, ServerHooks, read_delivery
from .ledger import LedgerError
from .state import ServerState

log = logging.getLogger(__name__)

# A delivery is a small JSON document: two stem maps of up to 23 stems each, with storage URLs, fit in 32 KiB.
MAX_BODY: Final = 256 * 1024
# MusicGPT sends two deliveries a job, and a thousand jobs submitted together end together: 2,000 deliveries in a
# few seconds, each one indexed update. A refused request costs far more of the budget: only a forger sends those.
SOURCE_LIMIT: Final = 5000
SOURCE_WINDOW: Final = 10.0
REFUSED_COST: Final = 25
# Sources whose counts are kept, the least recently seen dropped first (it then starts counting afresh).
MAX_SOURCES: Final = 10_000

Endpoint = Callable[[Request], Awaitable[Response]]


class SourceLimits:
    """At most `limit` requests from one source in each `window` seconds (a fixed window, counted here)."""

    def __init__(self, limit: int | None = None, window: float | None = None) -> None:
        self.limit = SOURCE_LIMIT if limit is None else limit
        self.window = SOURCE_WINDOW if window is None else window
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def allow(self, source: str, now: float, cost: int = 1) -> bool:
        """Whether the source's budget had room left, charging it `cost`."""
        start, count = self._counts.pop(source, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        self._counts[source] = (start, count + cost)
        while len(self._counts) > MAX_SOURCES:
            self._counts.popitem(last=False)
        return count < self.limit

    def refused(self, source: str, now: float) -> None:
        """Charge the source the rest of a refused request's cost."""
        self.allow(source, now, REFUSED_COST - 1)

    def retry_after(self, source: str, now: float) -> int:
        start, _ = self._counts.get(source, (now, 0))
        return max(1, round(start + self.window - now))


def endpoint(hooks: ServerHooks, states: list[ServerState], limits: SourceLimits | None = None) -> Endpoint:
    """The route's handler, for the server whose process state is the last of `states` (the lifespan adds it)."""
    sources = limits or SourceLimits()

    async def receive(request: Request) -> Response:
        source = request.client.host if request.client else "unknown"
        now = time.monotonic()
        if not sources.allow(source, now):
            wait = str(sources.retry_after(source, now))
            return _answer(429, "too many deliveries from this address", {"Retry-After": wait})
        job_id = hooks.job_of(str(request.path_params.get("secret", "")))
        if job_id is None:
            sources.refused(source, now)
            return _answer(404, "not found")
        body = await _body(request)
        if body is None:
            sources.refused(source, now)
            return _answer(413, f"a delivery is at most {MAX_BODY} bytes")
        if not read_delivery(body).wakes:
            return _answer(200, "noted: the job is still running")
        return await _wake(states, job_id)

    return receive


async def _body(request: Request) -> bytes | None:
    """The request's body, or None past MAX_BODY (declared or sent) or when the sender gave up."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        return None
    return b"".join(chunks)


async def _wake(states: list[ServerState], job_id: int) -> Response:
    """Note the authentic delivery for `job_id` and wake its waiters, unless the job is known to be finished."""
    handle = states[-1].ledger if states else None
    ledger = await handle.get() if handle is not None else None
    if ledger is None:
        return _answer(503, "the job ledger is unavailable; deliver again later")
    try:
        noted = await ledger.delivered(job_id, time.time())
    except LedgerError as exc:
        log.warning("a webhook delivery could not be noted: %s", exc)
        return _answer(503, "the job ledger is unavailable; deliver again later")
    if noted == "unknown":
        return _answer(404, "not found")
    if noted == "finished":
        return _answer(200, "noted: the job had finished already")
    if noted == "noted":  # else a delivery before it already woke the waiters, or a read is under way
        await states[-1].signals.publish(JOB_CHANNEL, str(job_id))
    return _answer(202, "noted")


def _answer(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    key = "received" if status < 400 else "error"
    return JSONResponse({key: message}, status_code=status, headers=headers)


__all__ = ["MAX_BODY", "REFUSED_COST", "SOURCE_LIMIT", "SOURCE_WINDOW", "SourceLimits", "endpoint"]
