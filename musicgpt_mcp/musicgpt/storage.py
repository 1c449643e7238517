"""Stem downloads from MusicGPT's storage: redirects followed one hop at a time, the body piped to a file while
the network keeps reading, the first bytes checked to start the audio asked for, stalls and crawls abandoned.

Storage URLs are fetched without the API key: they are not MusicGPT's API, and a key sent there could end up in
a third party's logs. They go through the storage pool, which connects only to public addresses (netguard.py),
and every redirect is checked like the first URL. At most MAX_DOWNLOADS run at once in the process (the slots
are the Pools'), and a failed attempt is retried like any read (transport.retrying).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, BinaryIO

import anyio

from .. import sniff
from .addresses import AddressRefused
from .contract import reply_text
from .errors import DownloadError
from .transport import RETRYABLE_STATUSES, Pools, Retryable, retry_after_seconds, retrying

if TYPE_CHECKING:
    import httpx2
    from anyio.streams.memory import MemoryObjectSendStream

OnBytes = Callable[[int], Awaitable[None]]

# A stem that sends no byte for DOWNLOAD_STALL seconds is abandoned, and so is one whose average rate
# after DOWNLOAD_GRACE seconds is under DOWNLOAD_MIN_RATE bytes a second. httpx2's read timeout cannot
# tell: a server sending a byte a second never trips it. 16 KiB/s is 128 kbit/s, slower than an MP3
# stem plays, so such a download is not going to finish usefully; the grace period lets a connection
# get going on a slow link.
DOWNLOAD_STALL = 30.0
DOWNLOAD_MIN_RATE = 16 * 1024
DOWNLOAD_GRACE = 30.0
# Redirects a stem download follows, each hop checked like the first URL.
MAX_REDIRECTS = 5
DOWNLOAD_CHUNK = 1024 * 1024
# Batches of DOWNLOAD_CHUNK bytes waiting for the disk while the network keeps reading.
WRITE_QUEUE = 4


async def fetch(
    pools: Pools,
    url: str,
    sink: BinaryIO,
    *,
    max_bytes: int,
    fmt: str | None = None,
    on_bytes: OnBytes | None = None,
    redact: Callable[[str], str],
) -> int:
    """Stream `url` into `sink` (rewound and truncated on each try); the byte count written. With `fmt`, the
    first bytes must start a file of that format. `redact` keeps the key out of the log."""

    async def attempt() -> int:
        import httpx2

        await anyio.to_thread.run_sync(_rewind, sink)
        try:
            written = await _follow(pools.storage(), url, sink, max_bytes, fmt, on_bytes)
        except AddressRefused as exc:
            raise DownloadError(str(exc)) from None
        except httpx2.TransportError as exc:
            raise Retryable(pools.describe(exc, redact)) from None
        await anyio.to_thread.run_sync(sink.flush)
        if on_bytes is not None:
            await on_bytes(written)
        return written

    async with pools.download_slots:
        return await retrying("Downloading the stem", attempt)


async def _follow(
    http: httpx2.AsyncClient, url: str, sink: BinaryIO, max_bytes: int, fmt: str | None, on_bytes: OnBytes | None
) -> int:
    """The bytes written from the answer at the end of at most MAX_REDIRECTS redirects."""
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        async with http.stream("GET", target, headers={"Accept-Encoding": "identity"}) as response:
            location = response.headers.get("Location")
            if response.status_code in (301, 302, 303, 307, 308) and location:
                target = _redirect_target(str(response.url), location)
                continue
            return await _receive(response, sink, max_bytes, fmt, on_bytes)
    raise DownloadError(f"the storage server redirected more than {MAX_REDIRECTS} times; not followed")


async def _receive(
    response: httpx2.Response, sink: BinaryIO, max_bytes: int, fmt: str | None, on_bytes: OnBytes | None
) -> int:
    """The file in a final answer, written to `sink`; Retryable for what another try may fix."""
    status = response.status_code
    if status in RETRYABLE_STATUSES:
        raise Retryable(f"HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
    if status != 200:
        raise DownloadError(f"the storage server answered HTTP {status}")
    declared = _content_length(response)
    if declared is not None and declared > max_bytes:
        raise DownloadError(
            f"the file is {declared} bytes, over the {max_bytes}-byte limit (MUSICGPT_MCP_MAX_DOWNLOAD_MB)"
        )
    written = await pipe_to_file(response, sink, max_bytes, on_bytes, fmt)
    if declared is not None and written != declared:
        raise Retryable(f"the download was cut short ({written} of {declared} bytes)")
    if written == 0:
        raise DownloadError("the storage server sent an empty file")
    return written


def _redirect_target(current: str, location: str) -> str:
    """Where a redirect points, if it may be followed: http(s), no credentials, no control characters."""
    from urllib.parse import urljoin, urlsplit

    target = urljoin(current, location.strip())
    parts = urlsplit(target)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = reply_text(parts.scheme, 20) or "no scheme"
        raise DownloadError(f"the storage server redirected to a URL that is not http(s) ({shown}); not followed")
    if parts.username is not None or parts.password is not None or any(ord(ch) < 0x21 for ch in target):
        raise DownloadError(
            "the storage server redirected to a URL with credentials or control characters; not followed"
        )
    return target


async def pipe_to_file(
    response: httpx2.Response, sink: BinaryIO, max_bytes: int, on_bytes: OnBytes | None, fmt: str | None = None
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
    body = _Body(max_bytes, fmt)

    async def writer() -> None:
        async with receive:
            async for batch in receive:
                await anyio.to_thread.run_sync(sink.writelines, batch)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await _read(response, body, send, on_bytes)
    except BaseExceptionGroup as group:
        # One side failed and the other was cancelled: surface the failure itself.
        raise _first_failure(group) from None
    return body.written


async def _read(
    response: httpx2.Response, body: _Body, send: MemoryObjectSendStream[list[bytes]], on_bytes: OnBytes | None
) -> None:
    """The network side of `pipe_to_file`: batches to the writer, abandoned when the body stalls."""
    chunks = response.aiter_raw().__aiter__()
    async with send:
        while True:
            with anyio.move_on_after(DOWNLOAD_STALL) as stall:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
            if stall.cancelled_caught:
                raise DownloadError(f"the storage server sent nothing for {DOWNLOAD_STALL:g} s; abandoned")
            if body.add(chunk):
                await send.send(body.take())
                if on_bytes is not None:
                    await on_bytes(body.written)
        body.end()
        if body.batch:
            await send.send(body.take())


class _Body:
    """A download's body as it arrives: its size against the limit and the rate, its head against the format,
    and the batch waiting for the writer."""

    def __init__(self, max_bytes: int, fmt: str | None) -> None:
        self.max_bytes = max_bytes
        self.fmt = fmt
        self.started = time.monotonic()
        self.written = 0
        self.head = b""
        self.checked = fmt is None
        self.batch: list[bytes] = []
        self.batched = 0

    def add(self, chunk: bytes) -> bool:
        """Take `chunk` in; True when a batch is ready for the writer."""
        self.written += len(chunk)
        if self.written > self.max_bytes:
            raise DownloadError(f"the file grew past the {self.max_bytes}-byte limit (MUSICGPT_MCP_MAX_DOWNLOAD_MB)")
        elapsed = time.monotonic() - self.started
        if elapsed > DOWNLOAD_GRACE and self.written / elapsed < DOWNLOAD_MIN_RATE:
            raise DownloadError(
                f"the download was slower than {DOWNLOAD_MIN_RATE // 1024} KiB/s ({self.written} bytes in "
                f"{elapsed:.0f} s); abandoned"
            )
        self.batch.append(chunk)
        self.batched += len(chunk)
        if not self.checked:
            self.head += chunk[: sniff.STEM_HEAD_BYTES]
            if len(self.head) < sniff.STEM_HEAD_BYTES:
                return False
            _check_head(self.fmt, self.head)
            self.checked = True
        return self.batched >= DOWNLOAD_CHUNK

    def take(self) -> list[bytes]:
        batch, self.batch, self.batched = self.batch, [], 0
        return batch

    def end(self) -> None:
        """The body is complete: a head shorter than a check needs is checked as it is."""
        if not self.checked and self.written:
            _check_head(self.fmt, self.head)


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


def _rewind(sink: BinaryIO) -> None:
    sink.seek(0)
    sink.truncate()


def _content_length(response: httpx2.Response) -> int | None:
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None
