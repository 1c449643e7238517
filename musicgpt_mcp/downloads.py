"""Where stems land on disk, and how they get there without clobbering or leaving partial files.

Names on disk come from our stem catalog, never from the server. Each stem is written to a hidden
temporary file in the target directory and linked to its final name only when complete, so an
interrupted download leaves nothing behind and an existing file is never overwritten. Each saved
file's SHA-256 is taken as it is written and kept in the ledger, so a repeated download finds a file
still on disk as it was saved and does not fetch it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import anyio

from .catalog import STEM_DESCRIPTIONS, Stem
from .failures import Failure
from .files import AUDIO_CONTENT_TYPES
from .ledger import Download
from .musicgpt import MusicGPTClient, MusicGPTError, contract

# The formats MusicGPT stores stems in, typed as uploads of the same kind are.
AUDIO_MIME: Final[dict[str, str]] = {fmt: AUDIO_CONTENT_TYPES[f".{fmt}"] for fmt in ("mp3", "wav")}

_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()\-]+")


class OutputRefused(Failure):
    """The output location is not allowed; the message names the root and the fix."""

    consequence = "Nothing was downloaded."


def resolve_output_dir(requested: str | None, root: Path, default_name: str, also_allowed: Sequence[Path] = ()) -> Path:
    """The directory to write into: `requested` (which must lie inside `root` or `also_allowed`,
    after following symlinks and `..`) or root/default_name."""
    root_resolved = root.expanduser().resolve()
    if requested is None or not requested.strip():
        return root_resolved / default_name
    text = requested.strip()
    if "\0" in text:
        raise OutputRefused("output_dir contains a NUL character; give a plain directory path.")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = root_resolved / path
    resolved = path.resolve()
    for allowed in (root_resolved, *(p.expanduser().resolve() for p in also_allowed)):
        if resolved == allowed or allowed in resolved.parents:
            return resolved
    others = f" (or inside {', '.join(str(p) for p in also_allowed)})" if also_allowed else ""
    raise OutputRefused(
        f"output_dir {text!r} is outside the allowed output folder {root_resolved}{others}. Omit output_dir to use "
        f"a subfolder of {root_resolved}, give a folder inside it, or set MUSICGPT_MCP_OUTPUT_DIR to widen it."
    )


def unwritable(root: Path) -> str | None:
    """Why stems could not be saved under `root` (the output folder, made when first needed), or None.
    Checked at start-up: otherwise the first sign is a failed download, after the job was paid for."""
    folder = root.expanduser()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return f"{folder} cannot be made"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        made = "" if existing == folder else f" (it would be made inside {existing})"
        return f"{folder} is not writable by this user{made}"
    return None


def folder_name(source: str | None, task_id: str) -> str:
    """A readable, safe folder name: the source file's (or URL's) stem plus the start of the task ID."""
    base = ""
    if source:
        if source.startswith(("http://", "https://")):
            tail = unquote(urlsplit(source).path.rstrip("/").rsplit("/", 1)[-1])
            base = tail or urlsplit(source).hostname or ""
        else:
            base = source
        base = base.rsplit(".", 1)[0] if "." in base else base
    base = _UNSAFE.sub("_", base).strip(" ._")[:80]
    short = _UNSAFE.sub("_", task_id)[:8]
    return f"{base} - {short}" if base else f"task-{short}"


class HashingWriter(io.BufferedWriter):
    """A stem's temporary file that hashes what is written to it, in the thread that writes (hashlib
    releases the GIL), so the saved file's SHA-256 costs no second read. A rewind to the start (a
    retried download begins again) starts the hash again; downloads only ever write straight on."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__(raw, buffer_size=1024 * 1024)
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        written = super().write(data)
        self.sha256.update(data)
        return written

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if (offset, whence) == (0, os.SEEK_SET):
            self.sha256 = hashlib.sha256()
        return super().seek(offset, whence)


@contextmanager
def temporary_file(directory: Path, final_name: str) -> Iterator[tuple[HashingWriter, Path]]:
    """A hidden temporary file next to where `final_name` will go; removed unless finished."""
    fd, tmp = tempfile.mkstemp(prefix=f".{final_name}.", suffix=".part", dir=directory)
    path = Path(tmp)
    _ACTIVE_TEMPORARIES.add(path)
    f = HashingWriter(io.FileIO(fd, "wb"))
    try:
        yield f, path
    finally:
        f.close()
        path.unlink(missing_ok=True)
        _ACTIVE_TEMPORARIES.discard(path)


# Temporary files being written now, so a process told to stop can remove them on its way out.
_ACTIVE_TEMPORARIES: set[Path] = set()


def remove_active_temporaries() -> None:
    for path in list(_ACTIVE_TEMPORARIES):
        with contextlib.suppress(OSError):
            path.unlink()


def finish(tmp: Path, directory: Path, stem: Stem, ext: str, digest: str | None = None) -> tuple[Path, bool]:
    """Give the finished temporary file (whose SHA-256 is `digest`, when known) its final name without
    overwriting anything.

    Returns the path and whether an identical file was already there (then nothing new is kept),
    which makes a repeated download idempotent rather than a pile of copies.
    """
    for n in range(1, 1000):
        name = f"{stem}.{ext}" if n == 1 else f"{stem} ({n}).{ext}"
        final = directory / name
        try:
            # link() fails if the name exists: no check-then-write race with another writer.
            os.link(tmp, final)
            return final, False
        except FileExistsError:
            if digest is None:
                digest = _sha256(tmp)
            if final.is_file() and not final.is_symlink() and _sha256(final) == digest:
                return final, True
        except OSError:
            # Filesystems without hard links: fall back to an exclusive create and copy.
            try:
                with final.open("xb") as out, tmp.open("rb") as src:
                    while chunk := src.read(1024 * 1024):
                        out.write(chunk)
                return final, False
            except FileExistsError:
                continue
    raise OutputRefused(f"Too many files named {stem}.* in {directory}; choose another output_dir.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Saved:
    stem: Stem
    path: Path
    format: str
    bytes: int
    already_present: bool
    sha256: str  # hex, of the file's bytes
    fetched: bool = True  # False: an earlier download's file, found as it was saved; nothing was fetched


async def saved_before(
    recorded: Sequence[Download], jobs: Sequence[tuple[Stem, str]], fmt: str, directory: Path
) -> tuple[list[Saved], list[tuple[Stem, str]]]:
    """Of the (stem, url) pairs to save into `directory`: the files an earlier download_stems saved there
    that are still as saved (not fetched again), and the pairs left to fetch."""
    present: list[Saved] = []
    for stem, _ in jobs:
        found = await anyio.to_thread.run_sync(still_saved, recorded, stem, fmt, directory)
        if found is not None:
            present.append(found)
    done = {saved.stem for saved in present}
    return present, [(stem, url) for stem, url in jobs if stem not in done]


def in_order(saved: Sequence[Saved], jobs: Sequence[tuple[Stem, str]]) -> list[Saved]:
    order = {stem: i for i, (stem, _) in enumerate(jobs)}
    return sorted(saved, key=lambda s: order[s.stem])


def still_saved(recorded: Sequence[Download], stem: Stem, fmt: str, directory: Path) -> Saved | None:
    """The file an earlier download_stems saved for `stem` in `fmt` into `directory`, if it is still there
    as it was saved: a regular file (not a link) of the recorded size and SHA-256. Blocking: it reads the
    file, which costs far less than fetching it again."""
    for download in reversed(recorded):  # the newest first
        path = Path(download.path)
        if (download.stem, download.format, path.parent) != (stem, fmt, directory) or download.sha256 is None:
            continue
        if _has_content(path, download.bytes, download.sha256):
            return Saved(stem, path, fmt, download.bytes, already_present=True, sha256=download.sha256, fetched=False)
    return None


def _has_content(path: Path, size: int, sha256: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False  # gone, or a link now
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        digest = hashlib.sha256()
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
        return digest.hexdigest() == sha256


@dataclass(frozen=True)
class Skipped:
    stem: str
    reason: str


def screen(urls: dict[str, str]) -> tuple[dict[Stem, str], list[Skipped]]:
    """The usable entries of a stem map from MusicGPT, and the rest with the reason for each.

    Keys that are not catalog stems are skipped (they would otherwise become file names), and so
    are URLs that are not http(s).
    """
    known: dict[Stem, str] = {}
    skipped: list[Skipped] = []
    for key, url in urls.items():
        if key not in STEM_DESCRIPTIONS:
            shown = contract.reply_text(key, 60) or "(blank)"
            skipped.append(Skipped(stem=shown, reason="not a stem MusicGPT documents; ignored"))
            continue
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            shown = contract.reply_text(scheme, 20) or "no scheme"
            skipped.append(Skipped(stem=key, reason=f"its URL is not http(s) ({shown}); not fetched"))
            continue
        if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
            skipped.append(Skipped(stem=key, reason="its URL contains spaces or control characters; not fetched"))
            continue
        known[key] = url  # mypy narrows key to Stem through the membership test
    return known, skipped


def plan(
    urls: dict[str, str], wanted: Sequence[Stem] | None
) -> tuple[list[tuple[Stem, str]], list[Skipped], list[Stem]]:
    """Which (stem, url) pairs to fetch; what was skipped and why; which wanted stems are missing."""
    known, skipped = screen(urls)
    if wanted:
        missing = [stem for stem in wanted if stem not in known]
        return [(stem, known[stem]) for stem in wanted if stem in known], skipped, missing
    return list(known.items()), skipped, []


async def save_stems(
    client: MusicGPTClient,
    jobs: Sequence[tuple[Stem, str]],
    fmt: str,
    directory: Path,
    *,
    max_bytes: int,
    concurrency: int = 4,
    on_bytes: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[list[Saved], list[Skipped]]:
    """Download each stem concurrently (bounded) into `directory`; failures are reported per stem."""
    await anyio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
    limiter = anyio.CapacityLimiter(concurrency)
    saved: list[Saved] = []
    failed: list[Skipped] = []
    progress: dict[Stem, int] = {}

    async def one(stem: Stem, url: str) -> None:
        async def count(n: int) -> None:
            progress[stem] = n
            if on_bytes is not None:
                await on_bytes(sum(progress.values()))

        async with limiter:
            try:
                with temporary_file(directory, f"{stem}.{fmt}") as (sink, tmp):
                    try:
                        size = await client.download(url, sink, max_bytes=max_bytes, fmt=fmt, on_bytes=count)
                    except MusicGPTError as exc:
                        failed.append(Skipped(stem=stem, reason=str(exc)))
                        return
                    sink.close()
                    digest = sink.sha256.hexdigest()
                    path, existed = await anyio.to_thread.run_sync(finish, tmp, directory, stem, fmt, digest)
                    saved.append(Saved(stem, path, fmt, size, already_present=existed, sha256=digest))
            except (OSError, OutputRefused) as exc:
                # Per stem, so one failure cannot take the others down with it (or escape as a crash).
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                failed.append(Skipped(stem=stem, reason=f"could not be written to {directory}: {reason}"))

    async with anyio.create_task_group() as tg:
        for stem, url in jobs:
            tg.start_soon(one, stem, url)
    return in_order(saved, jobs), failed
