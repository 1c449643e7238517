"""Stems fetched for the in-chat player: a private folder under the temp dir, size-capped, least recently used out.

The player reads a stem in chunks, one tool call each; fetching the stem from storage once and then
serving chunks from disk keeps a stem to one download however many chunks it takes. Files appear
whole (written to a hidden temporary file, renamed when complete) and are named after a hash of
(task, stem, format), so nothing from MusicGPT or the model becomes a path. No MCP in here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import anyio

from . import downloads

log = logging.getLogger(__name__)

# A stem is a few MB as MP3 and tens of MB as WAV; 512 MiB holds a handful of jobs' worth without
# filling a small (often RAM-backed) temp folder.
MAX_BYTES = 512 * 1024 * 1024
# Temporaries left by a process that was killed mid-download are removed once this old.
STALE_TEMPORARY_SECONDS = 3600.0

Fetch = Callable[[BinaryIO], Awaitable[int]]


def _user() -> str:
    getuid = getattr(os, "getuid", None)
    return str(getuid()) if getuid is not None else "user"


def _private(path: Path) -> bool:
    """A real folder (not a link) that only this user can enter: one someone else created first is not ours."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # Windows: the temp folder is per user already
        return True
    return st.st_uid == getuid() and st.st_mode & 0o077 == 0


class StemCache:
    """One per server process; the folder is made on first use and may be shared with other processes
    of the same user (files appear atomically, so a reader never sees half a stem)."""

    def __init__(self, root: Path | None = None, max_bytes: int = MAX_BYTES) -> None:
        self._root = root if root is not None else Path(tempfile.gettempdir()) / f"musicgpt-mcp-player-{_user()}"
        self.max_bytes = max_bytes
        self._dir: Path | None = None
        self._locks: dict[str, anyio.Lock] = {}

    def directory(self) -> Path:
        if self._dir is None:
            with contextlib.suppress(FileExistsError):
                self._root.mkdir(mode=0o700, parents=True)
            if _private(self._root):
                self._dir = self._root
            else:
                # Someone else owns the usual name (or it is a link): use a fresh private folder instead.
                self._dir = Path(tempfile.mkdtemp(prefix="musicgpt-mcp-player-"))
                log.warning("stem cache %s is not private to this user; using %s", self._root, self._dir)
        return self._dir

    @staticmethod
    def name(task_id: str, stem: str, fmt: str) -> str:
        return hashlib.sha256(f"{task_id}\0{stem}\0{fmt}".encode()).hexdigest()[:40] + "." + fmt

    async def get(self, task_id: str, stem: str, fmt: str, fetch: Fetch) -> Path:
        """The cached file, fetched first with `fetch(sink)` (which writes the whole stem) if absent.
        Concurrent calls for the same stem fetch it once."""
        directory = await anyio.to_thread.run_sync(self.directory)
        name = self.name(task_id, stem, fmt)
        path = directory / name
        lock = self._locks.setdefault(name, anyio.Lock())
        try:
            async with lock:
                if await anyio.to_thread.run_sync(_touch, path):
                    return path
                with downloads.temporary_file(directory, name) as (sink, tmp):
                    await fetch(sink)
                    sink.close()
                    await anyio.to_thread.run_sync(os.replace, tmp, path)
                await anyio.to_thread.run_sync(self.evict, path)
                return path
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(name, None)

    def evict(self, keep: Path) -> None:
        """Remove the least recently used stems until the folder is under its cap (never `keep`),
        and temporaries abandoned by killed processes."""
        directory = self.directory()
        now = time.time()
        entries: list[tuple[float, int, Path]] = []
        for entry in os.scandir(directory):
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                # Gone since the listing: another fetch renamed its temporary into place, or another
                # process evicted it. The player loads every stem at once, so this happens.
                continue
            if entry.name.startswith("."):
                if entry.name.endswith(".part") and now - st.st_mtime > STALE_TEMPORARY_SECONDS:
                    with contextlib.suppress(OSError):
                        Path(entry.path).unlink()
                continue
            entries.append((st.st_mtime, st.st_size, Path(entry.path)))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
                log.info("stem cache: removed %s (%d bytes) to stay under %d bytes", path.name, size, self.max_bytes)


def _touch(path: Path) -> bool:
    """Mark a cached file as just used; False when it is not there."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return path.is_file()


def read_chunk(path: Path, offset: int, length: int) -> tuple[bytes, int]:
    """Up to `length` bytes of a regular file from `offset`, and the file's size. Links are not followed."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        f.seek(min(offset, st.st_size))
        return f.read(length), st.st_size
