"""An async client for MusicGPT's Extraction API. No MCP in here: errors carry text for a person.

Money rule: the paid `POST /v1/Extraction` is never repeated by this module once its body may
have left the machine; when the outcome is unknown, the error says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal, TypeVar

import anyio

from . import __version__, contract, keys, sniff
from .addresses import AddressRefused
from .config import key_problem
from .failures import Failure
from .multipart import FileChangedError, FilePart, MultipartBody
from .ratelimit import Limiter, RateLimiter

if TYPE_CHECKING:
    import httpx2
    from pydantic import SecretStr

log = logging.getLogger(__name__)

CHECK_BEFORE_RETRY = (
    "Check the extractions in your MusicGPT dashboard before submitting again, so you are not charged twice."
)


Outcome = Literal["not_sent", "rejected", "unknown"]


class MusicGPTError(Failure):
    """A failure explained for a person: what happened and what to do next. Never holds the key.

    `outcome` tells a submit's caller whether money may have moved: "not_sent" (nothing left the
    machine), "rejected" (MusicGPT refused the job: nothing charged) or "unknown" (the request may
    have reached MusicGPT and created a job). Reads leave it at "not_sent".
    """

    def __init__(self, message: str, outcome: Outcome = "not_sent") -> None:
        super().__init__(message, outcome="maybe_charged" if outcome == "unknown" else "not_charged")


class TaskNotFoundError(MusicGPTError):
    def __init__(self, task_id: str) -> None:
        # Also what a caller of a shared server reads for someone else's job: the same words, so the
        # answer does not tell whether the job exists.
        super().__init__(
            f"MusicGPT has no extraction with task_id {task_id!r} (HTTP 404). Use the task_id exactly as "
            "extract_stems returned it."
        )


class DownloadError(MusicGPTError):
    pass


class _Retryable(Exception):
    """A read that failed in a way worth another try (connection trouble, 429, 502/503/504)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


T = TypeVar("T")

# Reads are retried within this budget; beyond it the error reaches the model.
READ_RETRY_ATTEMPTS = 4
READ_RETRY_BUDGET = 30.0
# A status read, retries included, ends within this many seconds (get_extraction: after the wait it
# was asked for). httpx2's read timeout bounds each read, not a reply: a server dripping one byte a
# second kept a call open indefinitely. 30 s leaves a 50 s wait inside a host's 60 s+ tool timeout
# in the common case, and is long enough for a slow but working MusicGPT.
STATUS_BOUND = 30.0
# Downloads: a stem that sends no byte for DOWNLOAD_STALL seconds is abandoned, and so is one whose
# average rate after DOWNLOAD_GRACE seconds is under DOWNLOAD_MIN_RATE bytes a second. httpx2's read
# timeout cannot tell: a server sending a byte a second never trips it. 16 KiB/s is 128 kbit/s,
# slower than an MP3 stem plays, so such a download is not going to finish usefully; the grace
# period lets a connection get going on a slow link.
DOWNLOAD_STALL = 30.0
DOWNLOAD_MIN_RATE = 16 * 1024
DOWNLOAD_GRACE = 30.0
# Downloads in flight across the whole process, whatever the number of download_stems calls; they
# have their own connection pool, so submits and status reads never wait behind them (25 calls of
# 4 stems once filled a shared pool of 100 and made a status call fail).
MAX_DOWNLOADS = 8
DOWNLOAD_CONNECTIONS = 2 * MAX_DOWNLOADS
API_CONNECTIONS = 20
# Redirects a stem download follows, each hop checked like the first URL.
MAX_REDIRECTS = 5
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
DOWNLOAD_CHUNK = 1024 * 1024
# Batches of DOWNLOAD_CHUNK bytes waiting for the disk while the network keeps reading.
WRITE_QUEUE = 4
# Only failures to connect are retried on submit: nothing was sent, so nothing can be charged.
SUBMIT_CONNECT_ATTEMPTS = 3


class MissingAPIKeyError(MusicGPTError):
    def __init__(self) -> None:
        super().__init__(
            "No MusicGPT API key is configured, so nothing was sent. Create a key in the MusicGPT API "
            "dashboard and set it as MUSICGPT_API_KEY in this server's environment (in your MCP host's "
            'config: "env": {"MUSICGPT_API_KEY": "<your key>"}), then restart the server. '
            "To try the tools without a key, run the server with --sandbox."
        )


@dataclass(frozen=True)
class ExtractionRequest:
    stems: Sequence[str]
    preprocessing_options: Sequence[str]
    audio_url: str | None = None
    audio_file: FilePart | None = None
    webhook_url: str | None = None


class MusicGPTClient:
    """One per server process; the HTTP connection pool is created on first use."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        *,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
        write_timeout: float = 120.0,
        storage_hosts: Iterable[str] = (),
        status_limiter: Limiter | None = None,
        submit_limiter: Limiter | None = None,
    ) -> None:
        """`storage_hosts`: host or host:port entries downloads may reach at non-public addresses
        (MUSICGPT_MCP_STORAGE_HOSTS). The limiters default to this process's own; replicas sharing a
        MusicGPT account pass ones that count across all of them."""
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeouts = (connect_timeout, read_timeout, write_timeout)
        self._storage_hosts = tuple(storage_hosts)
        # Two pools: MusicGPT's API (submit, status) and storage (downloads), so one cannot starve the other.
        self._api_http: httpx2.AsyncClient | None = None
        self._storage_http: httpx2.AsyncClient | None = None
        # MusicGPT allows 200 status calls and 60 submits a minute per key: budgets for this key.
        self.status_limiter: Limiter = status_limiter or RateLimiter(
            contract.STATUS_CALLS_PER_MINUTE, contract.RATE_WINDOW
        )
        self.submit_limiter: Limiter = submit_limiter or RateLimiter(contract.SUBMITS_PER_MINUTE, contract.RATE_WINDOW)
        self.download_slots = anyio.CapacityLimiter(MAX_DOWNLOADS)
        self.retry_budget = READ_RETRY_BUDGET
        # Set on clients made by `with_key`: they use the pools and download slots of this one.
        self._parent: MusicGPTClient | None = None

    def with_key(
        self, api_key: SecretStr, *, status_limiter: Limiter | None = None, submit_limiter: Limiter | None = None
    ) -> MusicGPTClient:
        """A client for another MusicGPT key (a caller's own, on a shared server) that shares this
        one's connection pools and download slots, with rate limits of its own (they are per key)."""
        connect, read, write = self._timeouts
        child = MusicGPTClient(
            self.base_url,
            api_key,
            connect_timeout=connect,
            read_timeout=read,
            write_timeout=write,
            storage_hosts=self._storage_hosts,
            status_limiter=status_limiter,
            submit_limiter=submit_limiter,
        )
        child._parent = self
        child.download_slots = self.download_slots
        child.retry_budget = self.retry_budget
        return child

    @property
    def has_key(self) -> bool:
        return self._api_key is not None

    async def aclose(self) -> None:
        if self._parent is not None:
            return  # the pools are the parent's to close
        for http in (self._api_http, self._storage_http):
            if http is not None:
                await http.aclose()
        self._api_http = self._storage_http = None

    def _timeout(self) -> httpx2.Timeout:
        import httpx2

        connect, read, write = self._timeouts
        return httpx2.Timeout(connect=connect, read=read, write=write, pool=connect)

    def _api(self) -> httpx2.AsyncClient:
        if self._parent is not None:
            return self._parent._api()
        if self._api_http is None:
            # Imported here: httpx2 costs start-up time that a host listing tools should not pay.
            import httpx2

            _tune_read_size()
            self._api_http = httpx2.AsyncClient(
                timeout=self._timeout(),
                limits=httpx2.Limits(max_connections=API_CONNECTIONS, max_keepalive_connections=API_CONNECTIONS),
                follow_redirects=False,
                headers={"User-Agent": f"musicgpt-mcp/{__version__}"},
            )
        return self._api_http

    def _storage(self) -> httpx2.AsyncClient:
        if self._parent is not None:
            return self._parent._storage()
        if self._storage_http is None:
            import httpx2

            from .netguard import GuardedTransport

            _tune_read_size()
            limits = httpx2.Limits(max_connections=DOWNLOAD_CONNECTIONS, max_keepalive_connections=MAX_DOWNLOADS)
            self._storage_http = httpx2.AsyncClient(
                timeout=self._timeout(),
                transport=GuardedTransport(self._storage_hosts, limits),
                follow_redirects=False,  # followed hop by hop in `download`
                headers={"User-Agent": f"musicgpt-mcp/{__version__}"},
            )
        return self._storage_http

    def _auth_headers(self) -> dict[str, str]:
        if self._api_key is None:
            raise MissingAPIKeyError()
        key = self._api_key.get_secret_value()
        problem = key_problem(key)
        if problem:
            # Sending it would fail deep in the HTTP stack with an encoding error, on every call.
            raise MusicGPTError(f"{problem} Nothing was sent.")
        return {contract.AUTH_HEADER: key}

    def _describe(self, exc: Exception) -> str:
        """What went wrong on the wire, in words a person can act on; the exact exception goes to the log."""
        import httpx2

        connect, read, write = self._timeouts
        log.info("transport failure: %s: %s", type(exc).__name__, self.redact(str(exc)))
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

    def redact(self, text: str) -> str:
        """Belt and braces: never let the key through, even if a server echoes it back."""
        return keys.scrub(text, self._api_key.get_secret_value()) if self._api_key is not None else text

    async def submit_extraction(
        self, request: ExtractionRequest, on_file_bytes: Callable[[int], Awaitable[None]] | None = None
    ) -> contract.SubmitReply:
        headers = self._auth_headers()
        fields: list[tuple[str, str]] = [
            (contract.FIELD_STEMS, json.dumps(list(request.stems))),
            (contract.FIELD_PREPROCESSING, json.dumps(list(request.preprocessing_options))),
        ]
        if request.audio_url:
            fields.append((contract.FIELD_AUDIO_URL, request.audio_url))
        if request.webhook_url:
            fields.append((contract.FIELD_WEBHOOK_URL, request.webhook_url))
        # Before anything is sent: waiting here for MusicGPT's per-key budget costs nothing.
        await self.submit_limiter.acquire()
        # Opened and proved to be the checked content right before the request, so a file replaced
        # since the checks is refused before a byte leaves; the body reads this descriptor only.
        fd = await _open_upload(request.audio_file) if request.audio_file is not None else None
        try:
            body = MultipartBody(fields, request.audio_file, on_file_bytes, fd)
            headers.update(body.headers)
            log.info(
                "submitting extraction: stems=%s preprocessing=%s input=%s (%d bytes)",
                list(request.stems),
                list(request.preprocessing_options),
                "file" if request.audio_file else "url",
                body.content_length,
            )
            status, raw, retry_after = await self._post_submit(body, headers)
        finally:
            if fd is not None:
                os.close(fd)

        try:
            return self._submit_outcome(status, raw, retry_after)
        except MusicGPTError:
            raise
        except Exception as exc:
            # Whatever went wrong reading the reply, the request was sent: the one error that must
            # never be lost here is "it may have been submitted".
            log.warning("could not interpret MusicGPT's submit reply: %s", type(exc).__name__)
            raise MusicGPTError(
                f"MusicGPT answered HTTP {status}, but its reply could not be read. The extraction may or may not "
                f"have been submitted. {CHECK_BEFORE_RETRY}",
                outcome="unknown",
            ) from None

    async def _post_submit(self, body: MultipartBody, headers: dict[str, str]) -> tuple[int, bytes | None, str | None]:
        """The submit's status, body and Retry-After; MusicGPTError, with its outcome, when it fails."""
        import httpx2

        url = self.base_url + contract.EXTRACTION_PATH
        attempt = 0
        try:
            while True:
                try:
                    async with self._api().stream("POST", url, content=body, headers=headers) as response:
                        raw = await _read_capped(response)
                        return response.status_code, raw, response.headers.get("Retry-After")
                except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout):
                    # No connection was made, so no byte of the request left: the one retry that
                    # cannot charge twice.
                    attempt += 1
                    if attempt == SUBMIT_CONNECT_ATTEMPTS:
                        raise
                    log.info("could not connect to MusicGPT; retrying the submit (nothing was sent)")
                    await anyio.sleep(0.5 * 2 ** (attempt - 1))
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            raise MusicGPTError(
                f"Could not connect to MusicGPT at {self.base_url} ({self._describe(exc)}; tried "
                f"{SUBMIT_CONNECT_ATTEMPTS} times). Nothing was sent, so nothing was charged. Check the network "
                "connection (and MUSICGPT_BASE_URL, if set) and try again."
            ) from None
        except FileChangedError:
            raise MusicGPTError(
                "The audio file changed (it was written to, moved, replaced or cut short) while it was being "
                "uploaded, so the upload was stopped before it was complete. MusicGPT may or may not have "
                "created a job from the partial request. Wait until the file is no longer being written, then "
                f"submit again. {CHECK_BEFORE_RETRY}",
                outcome="unknown",
            ) from None
        except httpx2.TimeoutException as exc:
            raise MusicGPTError(
                f"MusicGPT did not answer in time ({self._describe(exc)}). The extraction may or may not have been "
                f"submitted. {CHECK_BEFORE_RETRY}",
                outcome="unknown",
            ) from None
        except httpx2.TransportError as exc:
            raise MusicGPTError(
                f"The connection to MusicGPT broke during the request ({self._describe(exc)}). The extraction may "
                f"or may not have been submitted. {CHECK_BEFORE_RETRY}",
                outcome="unknown",
            ) from None
        except OSError as exc:
            raise MusicGPTError(
                f"The audio file could not be read during the upload ({exc.strerror or type(exc).__name__}). "
                f"The extraction may or may not have been submitted. {CHECK_BEFORE_RETRY}",
                outcome="unknown",
            ) from None

    def _submit_outcome(self, status: int, raw: bytes | None, retry_after: str | None) -> contract.SubmitReply:
        reply = contract.parse_json_object(raw) if raw is not None else None
        if 200 <= status < 300:
            if raw is None:
                raise MusicGPTError(
                    f"MusicGPT answered HTTP {status} with an oversized body, not a submit reply. The "
                    f"extraction may or may not have been submitted. {CHECK_BEFORE_RETRY}",
                    outcome="unknown",
                )
            if reply is None:
                raise MusicGPTError(
                    f"MusicGPT answered HTTP {status} with {contract.describe_non_json(raw)} instead of JSON. "
                    f"The extraction may or may not have been submitted. {CHECK_BEFORE_RETRY}",
                    outcome="unknown",
                )
            parsed = self._scrub_submit(contract.parse_submit_reply(reply))
            if parsed is None:
                said = contract.error_message(reply)
                detail = f" It said: {_sentence(self.redact(said))}" if said else ""
                raise MusicGPTError(
                    f"MusicGPT answered HTTP {status} without a task_id.{detail} The extraction may or may "
                    f"not have been submitted. {CHECK_BEFORE_RETRY}",
                    outcome="unknown",
                )
            log.info("extraction submitted: task_id=%s eta=%s", parsed.task_id, parsed.eta)
            return parsed
        raise self._error_for_status(status, reply, raw, retry_after)

    def _scrub_submit(self, reply: contract.SubmitReply | None) -> contract.SubmitReply | None:
        """The reply without the key in any string; a task_id that is the key is no task_id."""
        if reply is None or self.redact(reply.task_id) != reply.task_id:
            return None
        return dataclasses.replace(
            reply,
            conversion_id=self._redact_optional(reply.conversion_id),
            message=self._redact_optional(reply.message),
        )

    def _scrub_status(self, reply: contract.StatusReply) -> contract.StatusReply:
        return dataclasses.replace(
            reply,
            task_id=self._redact_optional(reply.task_id),
            conversion_id=self._redact_optional(reply.conversion_id),
            status=self.redact(reply.status),
            status_message=self._redact_optional(reply.status_message),
            mp3={self.redact(k): self.redact(v) for k, v in reply.mp3.items()},
            wav={self.redact(k): self.redact(v) for k, v in reply.wav.items()},
        )

    def _redact_optional(self, text: str | None) -> str | None:
        return None if text is None else self.redact(text)

    def _error_for_status(
        self, status: int, reply: dict[str, object] | None, raw: bytes | None, retry_after: str | None
    ) -> MusicGPTError:
        said = contract.error_message(reply)
        said = self.redact(said) if said else None
        detail = f": {said}" if said else (f" ({contract.describe_non_json(raw)})" if raw is not None else "")
        if status == 401:
            return MusicGPTError(
                f"MusicGPT rejected the API key (HTTP 401{detail}). Nothing was charged. Check MUSICGPT_API_KEY "
                "in this server's environment: it must be the key from the MusicGPT API dashboard, pasted "
                "as is, without a 'Bearer' prefix. Restart the server after changing it.",
                outcome="rejected",
            )
        if status == 403:
            return MusicGPTError(
                f"MusicGPT refused the request (HTTP 403{detail}): the API key lacks permission for this. "
                "Nothing was charged. Check the key's permissions in the MusicGPT API dashboard, or use "
                "another key in MUSICGPT_API_KEY.",
                outcome="rejected",
            )
        if status == 402:
            return MusicGPTError(
                f"MusicGPT says the account does not have enough credits (HTTP 402{detail}). Nothing was "
                "charged. Add credits in the MusicGPT dashboard, then submit again.",
                outcome="rejected",
            )
        if status == 429:
            wait = _retry_after_seconds(retry_after)
            when = f"Wait {wait} second{'' if wait == 1 else 's'}" if wait is not None else "Wait a minute"
            return MusicGPTError(
                f"MusicGPT's rate limit was reached (HTTP 429{detail}; it allows "
                f"{contract.SUBMITS_PER_MINUTE} extraction submits a minute). The job was not accepted. "
                f"{when} before submitting again.",
                outcome="rejected",
            )
        if status in (400, 404, 409, 422) or 400 <= status < 500:
            what = said or "no reason given"
            return MusicGPTError(
                f"MusicGPT rejected the request (HTTP {status}): {_sentence(what)} Nothing was charged. Fix the "
                "arguments and submit again.",
                outcome="rejected",
            )
        if status >= 500:
            return MusicGPTError(
                f"MusicGPT had a server error (HTTP {status}{detail}). The job was probably not created, but "
                f"MusicGPT did not confirm it. {CHECK_BEFORE_RETRY} If none is there, try again in a minute.",
                outcome="unknown",
            )
        return MusicGPTError(
            f"MusicGPT answered with an unexpected HTTP {status}{detail}. The extraction may or may not have "
            f"been submitted. {CHECK_BEFORE_RETRY}",
            outcome="unknown",
        )

    # --- reads: status and downloads, retried ------------------------------------------------

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]], deadline: float | None = None) -> T:
        """`attempt` until it succeeds or fails for good. With a `deadline` (monotonic), every attempt
        is cut off there and retries happen only in the time left before it."""
        budget_end = time.monotonic() + self.retry_budget
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
            except _Retryable as exc:
                last = exc.reason
                backoff = random.uniform(0, min(8.0, 0.5 * 2**n))  # noqa: S311 - jitter, not crypto
                wait = max(exc.retry_after, backoff) if exc.retry_after is not None else backoff
                if n == READ_RETRY_ATTEMPTS - 1 or time.monotonic() + wait > budget_end:
                    break
                log.info("%s failed (%s); retrying in %.1f s", what, exc.reason, wait)
                await anyio.sleep(wait)
        raise MusicGPTError(f"{what} failed after retries: {last}. Try again in a minute.")

    async def get_status(self, task_id: str, deadline: float | None = None) -> contract.StatusReply:
        """The job's status. The call, retries included, ends by `deadline` (monotonic; default:
        STATUS_BOUND seconds from now)."""
        deadline = time.monotonic() + STATUS_BOUND if deadline is None else deadline
        headers = self._auth_headers()
        url = self.base_url + contract.STATUS_PATH
        params = {"conversionType": contract.CONVERSION_TYPE, "task_id": task_id}

        async def attempt() -> tuple[int, bytes | None]:
            import httpx2

            await self.status_limiter.acquire()
            try:
                async with self._api().stream("GET", url, params=params, headers=headers) as response:
                    raw = await _read_capped(response)
                    status = response.status_code
                    if status in RETRYABLE_STATUSES:
                        raise _Retryable(f"HTTP {status}", _retry_after_seconds(response.headers.get("Retry-After")))
                    return status, raw
            except httpx2.TransportError as exc:
                raise _Retryable(self._describe(exc)) from None

        status, raw = await self._retrying("Checking the job's status with MusicGPT", attempt, deadline)
        try:
            return self._status_outcome(task_id, status, raw)
        except MusicGPTError:
            raise
        except Exception as exc:
            log.warning("could not interpret MusicGPT's status reply: %s", type(exc).__name__)
            raise MusicGPTError(
                f"MusicGPT answered the status request with HTTP {status}, but its reply could not be read. "
                "Try again in a minute."
            ) from None

    def _status_outcome(self, task_id: str, status: int, raw: bytes | None) -> contract.StatusReply:
        reply = contract.parse_json_object(raw) if raw is not None else None
        if status == 404:
            raise TaskNotFoundError(task_id)
        if not 200 <= status < 300:
            said = contract.error_message(reply)
            detail = f": {self.redact(said)}" if said else ""
            if status in (401, 403):
                raise MusicGPTError(
                    f"MusicGPT refused the status request (HTTP {status}{detail}). Check MUSICGPT_API_KEY in "
                    "this server's environment; it must be the key the job was submitted with."
                )
            raise MusicGPTError(f"MusicGPT's status request failed (HTTP {status}{detail}). Try again in a minute.")
        if raw is None or reply is None:
            what = "an oversized body" if raw is None else contract.describe_non_json(raw)
            raise MusicGPTError(f"MusicGPT answered the status request with {what}. Try again in a minute.")
        parsed = contract.parse_status_reply(reply)
        if parsed is None:
            said = contract.error_message(reply)
            detail = f" It said: {_sentence(self.redact(said))}" if said else ""
            raise MusicGPTError(
                f"MusicGPT's status reply for task {task_id!r} had no conversion in it.{detail} Try again in a minute."
            )
        return self._scrub_status(parsed)

    async def download(
        self,
        url: str,
        sink: BinaryIO,
        *,
        max_bytes: int,
        fmt: str | None = None,
        on_bytes: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        """Stream `url` into `sink` (rewound and truncated on each try); the byte count written.

        Storage URLs are fetched without the API key: they are not MusicGPT's API, and a key sent
        there could end up in a third party's logs. They go through the storage pool, which
        connects only to public addresses (netguard), and redirects are followed one hop at a
        time, each checked like the first URL. With `fmt`, the first bytes must start a file of
        that format. At most MAX_DOWNLOADS run at once in the process.
        """

        async def attempt() -> int:
            import httpx2

            await anyio.to_thread.run_sync(_rewind, sink)
            target = url
            try:
                for _ in range(MAX_REDIRECTS + 1):
                    async with self._storage().stream(
                        "GET", target, headers={"Accept-Encoding": "identity"}
                    ) as response:
                        status = response.status_code
                        location = response.headers.get("Location")
                        if status in (301, 302, 303, 307, 308) and location:
                            target = _redirect_target(str(response.url), location)
                            continue
                        if status in RETRYABLE_STATUSES:
                            raise _Retryable(
                                f"HTTP {status}", _retry_after_seconds(response.headers.get("Retry-After"))
                            )
                        if status != 200:
                            raise DownloadError(f"the storage server answered HTTP {status}")
                        declared = _content_length(response)
                        if declared is not None and declared > max_bytes:
                            raise DownloadError(
                                f"the file is {declared} bytes, over the {max_bytes}-byte limit (MUSICGPT_MCP_MAX_DOWNLOAD_MB)"
                            )
                        written = await _pipe_to_file(response, sink, max_bytes, on_bytes, fmt)
                        if declared is not None and written != declared:
                            raise _Retryable(f"the download was cut short ({written} of {declared} bytes)")
                        if written == 0:
                            raise DownloadError("the storage server sent an empty file")
                        break
                else:
                    raise DownloadError(f"the storage server redirected more than {MAX_REDIRECTS} times; not followed")
            except AddressRefused as exc:
                raise DownloadError(str(exc)) from None
            except httpx2.TransportError as exc:
                raise _Retryable(self._describe(exc)) from None
            await anyio.to_thread.run_sync(sink.flush)
            if on_bytes is not None:
                await on_bytes(written)
            return written

        async with self.download_slots:
            return await self._retrying("Downloading the stem", attempt)


async def _open_upload(part: FilePart) -> int:
    """A descriptor on the checked audio file, or MusicGPTError (nothing sent) when the file at its path
    is no longer the content that was checked: replaced (even by a file that got the same inode back),
    or written to since."""
    from .files import open_checked

    try:
        return await anyio.to_thread.run_sync(lambda: open_checked(part, sniff_again=True))
    except FileChangedError:
        raise MusicGPTError(
            "The audio file changed after it was checked (it was replaced, or written to), so it was not "
            "uploaded. Nothing was sent, so nothing was charged. Wait until the file is no longer being written, "
            "then call extract_stems again."
        ) from None
    except OSError as exc:
        raise MusicGPTError(
            f"The audio file could not be opened for the upload ({(exc.strerror or type(exc).__name__).lower()}). "
            "Nothing was sent, so nothing was charged. Check that the file is still there, then call extract_stems "
            "again."
        ) from None


def _redirect_target(current: str, location: str) -> str:
    """Where a redirect points, if it may be followed: http(s), no credentials, no control characters."""
    from urllib.parse import urljoin, urlsplit

    target = urljoin(current, location.strip())
    parts = urlsplit(target)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = contract.reply_text(parts.scheme, 20) or "no scheme"
        raise DownloadError(f"the storage server redirected to a URL that is not http(s) ({shown}); not followed")
    if parts.username is not None or parts.password is not None or any(ord(ch) < 0x21 for ch in target):
        raise DownloadError(
            "the storage server redirected to a URL with credentials or control characters; not followed"
        )
    return target


async def _pipe_to_file(
    response: httpx2.Response,
    sink: BinaryIO,
    max_bytes: int,
    on_bytes: Callable[[int], Awaitable[None]] | None,
    fmt: str | None = None,
) -> int:
    """Copy the body to `sink`, reading the network while a worker thread writes the disk.

    Done one after the other, the two add up (on loopback: ~900 MB/s of reading and ~450 MB/s of
    writing gave ~290 MB/s); overlapped, the slower one sets the pace. At most WRITE_QUEUE batches
    of ~1 MiB wait in memory, so memory stays flat whatever the file size. Batches are lists of
    the chunks as received, written with writelines, so no byte is copied on the way.

    The body is abandoned when it stalls (DOWNLOAD_STALL) or crawls (DOWNLOAD_MIN_RATE after
    DOWNLOAD_GRACE), and, with `fmt`, when its first bytes are not that format: nothing is written
    before those bytes have been seen.
    """
    send, receive = anyio.create_memory_object_stream[list[bytes]](WRITE_QUEUE)
    written = 0

    async def writer() -> None:
        async with receive:
            async for batch in receive:
                await anyio.to_thread.run_sync(sink.writelines, batch)

    async def reader() -> None:
        nonlocal written
        started = time.monotonic()
        head = b""
        checked = fmt is None
        chunks = response.aiter_raw().__aiter__()
        async with send:
            batch: list[bytes] = []
            batched = 0
            while True:
                with anyio.move_on_after(DOWNLOAD_STALL) as stall:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                if stall.cancelled_caught:
                    raise DownloadError(f"the storage server sent nothing for {DOWNLOAD_STALL:g} s; abandoned")
                written += len(chunk)
                if written > max_bytes:
                    raise DownloadError(f"the file grew past the {max_bytes}-byte limit (MUSICGPT_MCP_MAX_DOWNLOAD_MB)")
                elapsed = time.monotonic() - started
                if elapsed > DOWNLOAD_GRACE and written / elapsed < DOWNLOAD_MIN_RATE:
                    raise DownloadError(
                        f"the download was slower than {DOWNLOAD_MIN_RATE // 1024} KiB/s ({written} bytes in "
                        f"{elapsed:.0f} s); abandoned"
                    )
                if not checked:
                    head += chunk[: sniff.STEM_HEAD_BYTES]
                    if len(head) < sniff.STEM_HEAD_BYTES:
                        batch.append(chunk)
                        batched += len(chunk)
                        continue
                    _check_head(fmt, head)
                    checked = True
                batch.append(chunk)
                batched += len(chunk)
                if batched >= DOWNLOAD_CHUNK:
                    await send.send(batch)
                    batch, batched = [], 0
                    if on_bytes is not None:
                        await on_bytes(written)
            if not checked and written:
                _check_head(fmt, head)
            if batch:
                await send.send(batch)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await reader()
    except BaseExceptionGroup as group:
        # One side failed and the other was cancelled: surface the failure itself.
        raise _first_failure(group) from None
    return written


def _check_head(fmt: str | None, head: bytes) -> None:
    if fmt is None or sniff.stem_head_matches(fmt, head):
        return
    stripped = head.lstrip()
    what = "an HTML or XML page" if stripped[:1] == b"<" else ("JSON" if stripped[:1] in (b"{", b"[") else "other data")
    raise DownloadError(f"the storage server sent {what}, not {fmt} audio; discarded")


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_failure(exc)
        if not isinstance(exc, anyio.get_cancelled_exc_class()):
            return exc
    return group.exceptions[0]


# httpcore2 reads responses 64 KiB at a time, and every read goes through h11 and anyio in Python:
# measured on loopback, that caps a download near 0.5x curl's speed on the same link, CPU-bound.
# Reading 256 KiB at a time measured ~1.4x faster for stems, and changes nothing else (a read
# returns what is buffered, up to that size). The constant is a class attribute, so it is tuned
# where it lives; if a future httpcore2 drops it, this does nothing.
HTTP_READ_SIZE = 256 * 1024


def _tune_read_size() -> None:
    try:
        from httpcore2._async.http11 import AsyncHTTP11Connection
    except ImportError:  # pragma: no cover - a layout change in httpcore2
        return
    if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", HTTP_READ_SIZE) < HTTP_READ_SIZE:
        AsyncHTTP11Connection.READ_NUM_BYTES = HTTP_READ_SIZE


def _rewind(sink: BinaryIO) -> None:
    sink.seek(0)
    sink.truncate()


def _content_length(response: httpx2.Response) -> int | None:
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


async def _read_capped(response: httpx2.Response) -> bytes | None:
    """The body, or None when it is bigger than any reply MusicGPT sends."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > contract.MAX_REPLY_BYTES:
        return None
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) > contract.MAX_REPLY_BYTES:
            return None
    return bytes(buf)


def _retry_after_seconds(value: str | None) -> int | None:
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


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."
