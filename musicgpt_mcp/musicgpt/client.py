"""`MusicGPTClient`: MusicGPT's three calls (submit an extraction, read its status, download a stem) for one API
key, each only putting this package's layers in order. No MCP in here: errors carry text for a person.

Money rule: the paid `POST /v1/Extraction` is never repeated once its body may have left the machine; when the
outcome is unknown, the error says so and its `outcome` is "maybe_charged".
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import anyio

from ..ratelimit import Limiter, RateLimiter
from .contract import (
    CONVERSION_TYPE,
    EXTRACTION_PATH,
    FIELD_AUDIO_URL,
    FIELD_PREPROCESSING,
    FIELD_STEMS,
    FIELD_WEBHOOK_URL,
    RATE_WINDOW,
    STATUS_CALLS_PER_MINUTE,
    STATUS_PATH,
    SUBMITS_PER_MINUTE,
    StatusReply,
    SubmitReply,
)
from .errors import CHECK_BEFORE_RETRY, MusicGPTError
from .key import APIKey
from .multipart import FileChangedError, FilePart, MultipartBody
from .replies import status_outcome, submit_outcome
from .storage import fetch
from .transport import (
    RETRYABLE_STATUSES,
    SUBMIT_CONNECT_ATTEMPTS,
    Pools,
    Retryable,
    post_connected,
    read_capped,
    retry_after_seconds,
    retrying,
    status_deadline,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractionRequest:
    stems: Sequence[str]
    preprocessing_options: Sequence[str]
    audio_url: str | None = None
    audio_file: FilePart | None = None
    webhook_url: str | None = None


class MusicGPTClient:
    """One MusicGPT key's client on the process's `pools` (the operator's, or a caller's own key on a shared
    server). The limiters default to this client's own; replicas sharing a MusicGPT account pass ones that count
    across all of them. MusicGPT allows 200 status calls and 60 submits a minute per key."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        pools: Pools,
        *,
        status_limiter: Limiter | None = None,
        submit_limiter: Limiter | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.pools = pools
        self._key = APIKey(api_key)
        self.status_limiter: Limiter = status_limiter or RateLimiter(STATUS_CALLS_PER_MINUTE, RATE_WINDOW)
        self.submit_limiter: Limiter = submit_limiter or RateLimiter(SUBMITS_PER_MINUTE, RATE_WINDOW)

    @property
    def has_key(self) -> bool:
        return self._key.present

    def redact(self, text: str) -> str:
        """Belt and braces: never let the key through, even if a server echoes it back."""
        return self._key.redact(text)

    async def submit_extraction(
        self, request: ExtractionRequest, on_file_bytes: Callable[[int], Awaitable[None]] | None = None
    ) -> SubmitReply:
        headers = self._key.headers()
        # Before anything is sent: waiting here for MusicGPT's per-key budget costs nothing.
        await self.submit_limiter.acquire()
        # Opened and proved to be the checked content right before the request, so a file replaced
        # since the checks is refused before a byte leaves; the body reads this descriptor only.
        fd = await _open_upload(request.audio_file) if request.audio_file is not None else None
        try:
            body = MultipartBody(_fields(request), request.audio_file, on_file_bytes, fd)
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
        return submit_outcome(status, raw, retry_after, self._key)

    async def _post_submit(self, body: MultipartBody, headers: dict[str, str]) -> tuple[int, bytes | None, str | None]:
        """The submit's status, body and Retry-After; MusicGPTError, with its outcome, when it fails."""
        import httpx2

        try:
            return await post_connected(self.pools.api(), self.base_url + EXTRACTION_PATH, body, headers)
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
                outcome="maybe_charged",
            ) from None
        except httpx2.TimeoutException as exc:
            raise MusicGPTError(
                f"MusicGPT did not answer in time ({self._describe(exc)}). The extraction may or may not have been "
                f"submitted. {CHECK_BEFORE_RETRY}",
                outcome="maybe_charged",
            ) from None
        except httpx2.TransportError as exc:
            raise MusicGPTError(
                f"The connection to MusicGPT broke during the request ({self._describe(exc)}). The extraction may "
                f"or may not have been submitted. {CHECK_BEFORE_RETRY}",
                outcome="maybe_charged",
            ) from None
        except OSError as exc:
            raise MusicGPTError(
                f"The audio file could not be read during the upload ({exc.strerror or type(exc).__name__}). "
                f"The extraction may or may not have been submitted. {CHECK_BEFORE_RETRY}",
                outcome="maybe_charged",
            ) from None

    async def get_status(self, task_id: str, deadline: float | None = None) -> StatusReply:
        """The job's status. The call, retries included, ends by `deadline` (monotonic; default:
        STATUS_BOUND seconds from now)."""
        deadline = status_deadline(deadline)
        headers = self._key.headers()
        url = self.base_url + STATUS_PATH
        params = {"conversionType": CONVERSION_TYPE, "task_id": task_id}

        async def attempt() -> tuple[int, bytes | None]:
            import httpx2

            await self.status_limiter.acquire()
            try:
                async with self.pools.api().stream("GET", url, params=params, headers=headers) as response:
                    raw = await read_capped(response)
                    status = response.status_code
                    if status in RETRYABLE_STATUSES:
                        raise Retryable(f"HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
                    return status, raw
            except httpx2.TransportError as exc:
                raise Retryable(self._describe(exc)) from None

        status, raw = await retrying("Checking the job's status with MusicGPT", attempt, deadline)
        return status_outcome(task_id, status, raw, self._key)

    async def download(
        self,
        url: str,
        sink: BinaryIO,
        *,
        max_bytes: int,
        fmt: str | None = None,
        on_bytes: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        """Stream `url` into `sink` (rewound and truncated on each try); the byte count written. Without the
        key, through the storage pool, redirects checked hop by hop (storage.py). With `fmt`, the first bytes
        must start a file of that format."""
        return await fetch(self.pools, url, sink, max_bytes=max_bytes, fmt=fmt, on_bytes=on_bytes, redact=self.redact)

    def _describe(self, exc: Exception) -> str:
        return self.pools.describe(exc, self.redact)


def _fields(request: ExtractionRequest) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = [
        (FIELD_STEMS, json.dumps(list(request.stems))),
        (FIELD_PREPROCESSING, json.dumps(list(request.preprocessing_options))),
    ]
    if request.audio_url:
        fields.append((FIELD_AUDIO_URL, request.audio_url))
    if request.webhook_url:
        fields.append((FIELD_WEBHOOK_URL, request.webhook_url))
    return fields


async def _open_upload(part: FilePart) -> int:
    """A descriptor on the checked audio file, or MusicGPTError (nothing sent) when the file at its path
    is no longer the content that was checked: replaced (even by a file that got the same inode back),
    or written to since."""
    from ..files import open_checked

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
