"""How requests reach MusicGPT and its storage: the two connection pools and their timeouts, the read size, the
submit's connect-only retry, and reads retried with backoff and Retry-After.

`Pools` is made once per process and passed IN to every client: the operator's and, on a shared server, each
caller's own-key client use the same connections and download slots, while each keeps its key and rate budgets.
Two pools, MusicGPT's API (submit, status) and storage (downloads), so one cannot starve the other. httpx2 is
imported on first use: it costs start-up time that a host listing tools should not pay.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import anyio

from .. import __version__
from .contract import MAX_REPLY_BYTES
from .errors import MusicGPTError

if TYPE_CHECKING:
    import httpx2

log = logging.getLogger(__name__)

T = TypeVar("T")

# Reads are retried within this budget; beyond it the error reaches the model.
READ_RETRY_ATTEMPTS = 4
READ_RETRY_BUDGET = 30.0
# A status read, retries included, ends within this many seconds (get_extraction: after the wait it
# was asked for). httpx2's read timeout bounds each read, not a reply: a server dripping one byte a
# second kept a call open indefinitely. 30 s leaves a 50 s wait inside a host's 60 s+ tool timeout
# in the common case, and is long enough for a slow but working MusicGPT.
STATUS_BOUND = 30.0
# Downloads in flight across the whole process, whatever the number of download_stems calls; they
# have their own connection pool, so submits and status reads never wait behind them (25 calls of
# 4 stems once filled a shared pool of 100 and made a status call fail).
MAX_DOWNLOADS = 8
DOWNLOAD_CONNECTIONS = 2 * MAX_DOWNLOADS
API_CONNECTIONS = 20
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Only failures to connect are retried on submit: nothing was sent, so nothing can be charged.
SUBMIT_CONNECT_ATTEMPTS = 3
# httpcore2 reads responses 64 KiB at a time, and every read goes through h11 and anyio in Python:
# measured on loopback, that caps a download near 0.5x curl's speed on the same link, CPU-bound.
# Reading 256 KiB at a time measured ~1.4x faster for stems, and changes nothing else (a read
# returns what is buffered, up to that size). The constant is a class attribute, so it is tuned
# where it lives; if a future httpcore2 drops it, this does nothing.
HTTP_READ_SIZE = 256 * 1024


class Pools:
    """The process's connections to MusicGPT's API and to storage, each made on first use, and the download
    slots every client shares. `storage_hosts`: host or host:port entries downloads may reach at non-public
    addresses (MUSICGPT_MCP_STORAGE_HOSTS)."""

    def __init__(
        self,
        *,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
        write_timeout: float = 120.0,
        storage_hosts: Iterable[str] = (),
    ) -> None:
        self.timeouts = (connect_timeout, read_timeout, write_timeout)
        self.storage_hosts = tuple(storage_hosts)
        self.download_slots = anyio.CapacityLimiter(MAX_DOWNLOADS)
        self._api: httpx2.AsyncClient | None = None
        self._storage: httpx2.AsyncClient | None = None

    def api(self) -> httpx2.AsyncClient:
        if self._api is None:
            import httpx2

            _tune_read_size()
            self._api = httpx2.AsyncClient(
                timeout=self._timeout(),
                limits=httpx2.Limits(max_connections=API_CONNECTIONS, max_keepalive_connections=API_CONNECTIONS),
                follow_redirects=False,
                headers={"User-Agent": f"musicgpt-mcp/{__version__}"},
            )
        return self._api

    def storage(self) -> httpx2.AsyncClient:
        if self._storage is None:
            import httpx2

            from .netguard import GuardedTransport

            _tune_read_size()
            limits = httpx2.Limits(max_connections=DOWNLOAD_CONNECTIONS, max_keepalive_connections=MAX_DOWNLOADS)
            self._storage = httpx2.AsyncClient(
                timeout=self._timeout(),
                transport=GuardedTransport(self.storage_hosts, limits),
                follow_redirects=False,  # followed hop by hop (storage.py)
                headers={"User-Agent": f"musicgpt-mcp/{__version__}"},
            )
        return self._storage

    async def aclose(self) -> None:
        for http in (self._api, self._storage):
            if http is not None:
                await http.aclose()
        self._api = self._storage = None

    def _timeout(self) -> httpx2.Timeout:
        import httpx2

        connect, read, write = self.timeouts
        return httpx2.Timeout(connect=connect, read=read, write=write, pool=connect)

    def describe(self, exc: Exception, redact: Callable[[str], str]) -> str:
        """What went wrong on the wire, in words a person can act on; the exact exception goes to the log."""
        import httpx2

        connect, read, write = self.timeouts
        log.info("transport failure: %s: %s", type(exc).__name__, redact(str(exc)))
        if isinstance(exc, httpx2.ConnectTimeout):
            return f"connecting timed out after {connect:g} s"
        if isinstance(exc, httpx2.ConnectError):
            return "the connection was refused or the host is unreachable"
        if isinstance(exc, httpx2.PoolTimeout):
            return "no free connection"
        if isinstance(exc, httpx2.ReadTimeout):
            return f"no reply within {read:g} s"
        if isinstance(exc, httpx2.WriteTimeout):
            return f"sending stalled for {write:g} s"
        if isinstance(exc, httpx2.RemoteProtocolError):
            return "the server closed the connection before its reply was complete"
        if isinstance(exc, httpx2.NetworkError):
            return "the connection was reset"
        return type(exc).__name__


async def post_connected(
    http: httpx2.AsyncClient, url: str, content: AsyncIterable[bytes], headers: dict[str, str]
) -> tuple[int, bytes | None, str | None]:
    """POST once a connection is made: the status, the body (None when oversized) and Retry-After.

    Only a failure to connect is tried again: no connection was made, so no byte of the request left, and
    that is the one retry that cannot charge twice. Any other failure, or the last one, is raised as is."""
    import httpx2

    attempt = 1
    while True:
        try:
            async with http.stream("POST", url, content=content, headers=headers) as response:
                raw = await read_capped(response)
                return response.status_code, raw, response.headers.get("Retry-After")
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout):
            if attempt == SUBMIT_CONNECT_ATTEMPTS:
                raise
            log.info("could not connect to MusicGPT; retrying the submit (nothing was sent)")
            await anyio.sleep(0.5 * 2 ** (attempt - 1))
            attempt += 1


class Retryable(Exception):
    """A read that failed in a way worth another try (connection trouble, 429, 502/503/504)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


async def retrying(what: str, attempt: Callable[[], Awaitable[T]], deadline: float | None = None) -> T:
    """`attempt` until it succeeds or fails for good. With a `deadline` (monotonic), every attempt
    is cut off there and retries happen only in the time left before it."""
    budget_end = time.monotonic() + READ_RETRY_BUDGET
    if deadline is not None:
        budget_end = min(budget_end, deadline)
    last = ""
    for n in range(READ_RETRY_ATTEMPTS):
        left = None if deadline is None else deadline - time.monotonic()
        try:
            if left is not None and left <= 0:
                raise TimeoutError
            with anyio.fail_after(left):
                return await attempt()
        except TimeoutError:
            was = f" (before that: {last})" if last else ""
            raise MusicGPTError(
                f"{what} did not complete in time: MusicGPT was answering too slowly{was}. Try again in a minute."
            ) from None
        except Retryable as exc:
            last = exc.reason
            backoff = random.uniform(0, min(8.0, 0.5 * 2**n))  # noqa: S311 - jitter, not crypto
            wait = max(exc.retry_after, backoff) if exc.retry_after is not None else backoff
            if n == READ_RETRY_ATTEMPTS - 1 or time.monotonic() + wait > budget_end:
                break
            log.info("%s failed (%s); retrying in %.1f s", what, exc.reason, wait)
            await anyio.sleep(wait)
    raise MusicGPTError(f"{what} failed after retries: {last}. Try again in a minute.")


def status_deadline(deadline: float | None) -> float:
    """`deadline` (monotonic), or STATUS_BOUND seconds from now."""
    return time.monotonic() + STATUS_BOUND if deadline is None else deadline


async def read_capped(response: httpx2.Response) -> bytes | None:
    """The body, or None when it is bigger than any reply MusicGPT sends."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_REPLY_BYTES:
        return None
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) > MAX_REPLY_BYTES:
            return None
    return bytes(buf)


def retry_after_seconds(value: str | None) -> int | None:
    """Retry-After in whole seconds (a number, or an HTTP date from now); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    if when.tzinfo is None:
        return None
    return max(0, int((when - datetime.now(UTC)).total_seconds() + 0.999))


def _tune_read_size() -> None:
    try:
        from httpcore2._async.http11 import AsyncHTTP11Connection
    except ImportError:  # pragma: no cover - a layout change in httpcore2
        return
    if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", HTTP_READ_SIZE) < HTTP_READ_SIZE:
        AsyncHTTP11Connection.READ_NUM_BYTES = HTTP_READ_SIZE
