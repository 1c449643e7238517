"""What makes two submissions "the same audio": a file's content hash, or a URL in a normal form."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from urllib.parse import urlsplit, urlunsplit

import anyio

from .files import FileRefused, open_checked, shown_path, unchanged
from .ledger import Ledger
from .musicgpt.multipart import FileChangedError, FilePart

# Large reads keep hashlib's per-call overhead small, and a second thread reads the next block while
# this one hashes (hashlib releases the GIL): measured on the 2-core reference machine on a 1 GiB file
# in the page cache, 4 MiB reads hashed in turn ran at ~1.1 GB/s, overlapped at ~1.3 GB/s, against
# OpenSSL's own ceiling of ~1.4 GB/s there (coreutils' sha256sum: 0.16 GB/s).
READ_SIZE = 4 * 1024 * 1024
BUFFERS = 3


def hash_file(part: FilePart) -> str:
    """SHA-256 of the checked file's content, read from the very content that passed the checks (its
    FileKey, ctime included, and its first bytes) and still in that state once read to the end, so the
    hash is of what was checked and may be remembered under `part.identity`. Blocking."""
    fd = open_checked(part)
    try:
        digest = _sha256_overlapped(fd)
        unchanged(fd, part)
        return "sha256:" + digest
    finally:
        os.close(fd)


def _sha256_overlapped(fd: int) -> str:
    full: queue.Queue[tuple[bytearray, int] | BaseException] = queue.Queue()
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(BUFFERS):
        free.put(bytearray(READ_SIZE))
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                buffer = free.get()
                n = os.readv(fd, [buffer])
                full.put((buffer, n))
                if n == 0:
                    return
        except BaseException as exc:  # handed to the hashing thread, which raises it
            full.put(exc)

    thread = threading.Thread(target=reader, name="musicgpt-mcp-hash-reader", daemon=True)
    thread.start()
    digest = hashlib.sha256()
    try:
        while True:
            item = full.get()
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            if n == 0:
                return digest.hexdigest()
            digest.update(memoryview(buffer)[:n])
            free.put(buffer)
    finally:
        stop.set()
        free.put(bytearray(0))  # wakes a reader waiting for a buffer, so it sees `stop`
        thread.join()


async def fingerprint_file(part: FilePart, ledger: Ledger) -> str:
    """The file's fingerprint, hashed at most once while it stays unchanged (the ledger remembers it by
    the state the checks saw, so a cached answer is about the checked content even if the path holds
    another file by now: the upload finds that out before sending). A file that changed or cannot be
    read since it passed the checks is refused (FileRefused)."""
    known = await ledger.cached_fingerprint(part.identity)
    if known is not None:
        return known
    try:
        digest = await anyio.to_thread.run_sync(hash_file, part)
    except FileChangedError:
        raise FileRefused(
            f"{shown_path(part.path)} changed (it was replaced, or is being written) right after it was checked, so it was "
            "not sent. Wait until the file is complete, then try again."
        ) from None
    except OSError as exc:
        raise FileRefused(
            f"Cannot read {shown_path(part.path)}: {(exc.strerror or type(exc).__name__).lower()}."
        ) from None
    await ledger.remember_fingerprint(part.identity, digest)
    return digest


def fingerprint_url(url: str) -> str:
    """The URL with what does not change the resource normalised: scheme and host case, a default
    port, an empty path, and the fragment (never sent to a server). Path and query are kept as given:
    servers may treat their case and order as meaningful."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range: keep what was given
        return "url:" + urlunsplit((scheme, parts.netloc.lower(), parts.path or "/", parts.query, ""))
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" + netloc[len(host) :]
    return "url:" + urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
