"""Songs the user hands over in the stem view. No MCP in here.

A remote server cannot read the user's disk, and a model often has no path to name: so the view asks the user
for a file and sends it in base64 slices through an app-only tool (every transport carries tool calls; the view
itself reaches no network). The slices are kept in the ledger, so they can land on any replica (PostgreSQL with
replicas, the state folder's SQLite otherwise), and once complete the song becomes a local file like any other:
the upload size limit, the check that it is audio, the fingerprint (the same song twice reuses its job). An
upload belongs to the caller who asked for it, is capped per caller and hour, and is deleted once its job is
accepted, or when it expires.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import anyio

from . import quotes
from .failures import Failure
from .files import AUDIO_CONTENT_TYPES, AllowedDirs, FileRefused, check_audio_file, shown_path
from .ledger import Ledger
from .ledger.studio import (
    Upload,
    append_upload,
    complete_upload,
    delete_upload,
    find_upload,
    forget_lapsed_uploads,
    open_upload,
    upload_chunk_at,
    upload_chunks,
)
from .musicgpt.multipart import FilePart
from .quotes import token, valid

log = logging.getLogger(__name__)

UPLOAD_TTL: Final = 60 * 60.0
# A whole song is kept as long as the quote made for it stands, and this much more for an approval in flight.
APPROVAL_MARGIN = 60.0
# A slice per call: 512 KiB is about 700 KB of base64 in one message, within any host's limits.
MAX_SLICE: Final = 512 * 1024
# Songs sent through the view are kept in the ledger until their job is accepted; a bound on that, whatever the
# upload limit for local files (MUSICGPT_MCP_MAX_UPLOAD_MB) says.
MAX_VIEW_UPLOAD: Final = 512 * 1024 * 1024
CHUNKS_PER_READ: Final = 16


class UploadRefused(Failure):
    consequence = "Nothing was submitted."


@dataclass(frozen=True)
class Ticket:
    """An upload the view may fill, and the token that lets it."""

    upload: Upload
    ticket: str


def limit(max_upload_bytes: int) -> int:
    return min(max_upload_bytes, MAX_VIEW_UPLOAD)


async def begin(ledger: Ledger, key: bytes, owner: str, spec: dict[str, Any], now: float, per_hour: int) -> Ticket:
    draft = Upload(secrets.token_hex(12), owner, spec, None, None, 0, None, "receiving", now, now + UPLOAD_TTL)
    upload = await open_upload(ledger, draft, now, per_hour)
    if upload is None:
        raise UploadRefused(
            f"This user has asked for {per_hour} uploads in the last hour, the most this server takes. Wait a "
            "while, or give audio_url instead."
        )
    return Ticket(upload, token(key, "upload", upload.id))


async def receive(
    ledger: Ledger, key: bytes, owner: str, upload_id: str, ticket: str, name: str, total: int, start: int,
    data: str, max_bytes: int, now: float,
) -> Upload:  # fmt: skip
    """Add one slice (base64) at byte `start` of a `total`-byte file called `name`; the upload as it stands."""
    upload = await find_upload(ledger, owner, upload_id) if quotes.is_id(upload_id) else None
    if upload is None or not valid(key, "upload", upload.id, ticket):
        raise UploadRefused("This upload does not match one of this user's: only the stem view can send the song.")
    if total > limit(max_bytes) or total <= 0:
        raise UploadRefused(
            f"The song is {total} bytes; this server takes songs of 1 byte to {limit(max_bytes)} bytes through the "
            "view (MUSICGPT_MCP_MAX_UPLOAD_MB). Use a shorter or compressed file (e.g. mp3)."
        )
    if start >= total:  # (and before any number reaches the ledger that it could not store)
        raise UploadRefused(f"A slice cannot start at byte {start} of a {total}-byte file; send the slices in order.")
    chunk = _decoded(data)
    appended = await append_upload(ledger, owner, upload.id, clean_name(name), total, start, chunk, now)
    # The same slice again (its answer was lost on the way) is here already, and that is no error.
    if not appended and await upload_chunk_at(ledger, owner, upload.id, start) != chunk:
        raise UploadRefused(_why_not(await find_upload(ledger, owner, upload.id) or upload, total, start, now))
    return await find_upload(ledger, owner, upload.id) or upload


def _decoded(data: str) -> bytes:
    try:
        chunk = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise UploadRefused("A slice of the song was not valid base64; send it again.") from None
    if not chunk or len(chunk) > MAX_SLICE:
        raise UploadRefused(f"A slice must hold 1 to {MAX_SLICE} bytes; send the song in smaller slices.")
    return chunk


def _why_not(upload: Upload, total: int, start: int, now: float) -> str:
    if now >= upload.expires_at:
        return "This upload has expired. Ask the assistant for a new one (call extract_stems again)."
    if upload.state != "receiving":
        return "This upload is complete already; approve (or cancel) the job in the view."
    if upload.total_bytes is not None and total != upload.total_bytes:
        return f"This upload is for a file of {upload.total_bytes} bytes, not {total}; start again with that file."
    return f"The next slice must start at byte {upload.received}, not {start}."


def clean_name(name: str) -> str:
    """A file's name as the view gave it, without any folders, at most 200 characters."""
    base = PurePosixPath(name.replace("\\", "/").strip()).name.strip()
    return (base or "song")[:200]


async def local_copy(ledger: Ledger, upload: Upload, folder: Path, max_bytes: int) -> FilePart:
    """The complete upload as a local file in `folder` (written from the ledger on first need, on any replica),
    checked like any file to be sent: the size limit and the audio check. Its SHA-256 is recorded the first time
    and must match on every later copy."""
    suffix = PurePosixPath(upload.file_name or "").suffix.lower()
    path = folder / f"{upload.id}{suffix if suffix in AUDIO_CONTENT_TYPES else '.audio'}"
    digest = await _materialize(ledger, upload, path)
    if upload.sha256 is None:
        await complete_upload(ledger, upload.id, digest, time.time() + kept_whole())
    elif digest != upload.sha256:
        await anyio.to_thread.run_sync(_remove, path)
        raise UploadRefused("The uploaded song could not be read back intact; upload it again.")
    resolved = await anyio.to_thread.run_sync(folder.resolve)
    allowed = AllowedDirs((resolved,), "the server's upload folder", "upload it again")
    name = upload.file_name or "song"
    try:
        part = await anyio.to_thread.run_sync(check_audio_file, str(path), allowed, limit(max_bytes))
    except FileRefused as exc:
        # Said of the file the user picked, not of the server's copy (whose path is the server's business).
        await discard(ledger, upload.id, folder)
        raise UploadRefused(str(exc).replace(shown_path(path), repr(name))) from None
    content_type = AUDIO_CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), part.content_type)
    return FilePart(part.name, part.path, name, content_type, part.size, part.identity, part.head_sha256)


async def _materialize(ledger: Ledger, upload: Upload, path: Path) -> str:
    if upload.total_bytes is None or upload.received != upload.total_bytes:
        raise UploadRefused(f"The song has not arrived whole yet ({upload.received} of {upload.total_bytes} bytes).")
    await anyio.to_thread.run_sync(lambda: path.parent.mkdir(parents=True, exist_ok=True, mode=0o700))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    fd = await anyio.to_thread.run_sync(lambda: os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        after = 0
        while chunks := await upload_chunks(ledger, upload.id, after, CHUNKS_PER_READ):
            for start, data in chunks:
                digest.update(data)
                await anyio.to_thread.run_sync(_write_all, fd, data)
                after = start + len(data)
        await anyio.to_thread.run_sync(os.close, fd)
        fd = -1
        if after != upload.total_bytes:
            raise UploadRefused("The uploaded song is missing slices; upload it again.")
        await anyio.to_thread.run_sync(os.replace, tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        await anyio.to_thread.run_sync(_remove, tmp)
    return digest.hexdigest()


async def discard(ledger: Ledger, upload_id: str, folder: Path) -> None:
    """Forget the upload: its slices in the ledger and this process's copy (its job was accepted, or the song
    failed its checks). Tidying only: it never fails the call it ends (after an accepted job, an error here would
    read as if nothing had been sent); what it could not delete lapses, and the janitor deletes it then."""
    try:
        await delete_upload(ledger, upload_id, time.time())
        for path in await anyio.to_thread.run_sync(lambda: list(folder.glob(f"{upload_id}*"))):
            await anyio.to_thread.run_sync(_remove, path)
    except (Failure, OSError) as exc:
        log.warning("could not delete an uploaded song yet (it lapses and is deleted later): %s", exc)


async def tidy(ledger: Ledger, folder: Path, now: float) -> None:
    """Forget uploads that lapsed (their quote expired, or the song never arrived whole): a song the user never
    approved is kept neither in the ledger nor on the server's disk."""
    forgotten = await forget_lapsed_uploads(ledger, now)
    if forgotten:
        log.info("forgot %d lapsed upload(s) from the stem view", forgotten)
    await anyio.to_thread.run_sync(sweep, folder, now)


def kept_whole() -> float:
    return quotes.QUOTE_TTL + APPROVAL_MARGIN


def sweep(folder: Path, now: float) -> None:
    """Remove this process's copies of songs older than a whole song is kept: a copy is made only once the song
    is whole (and again to send it), so an older one belongs to an upload that lapsed, here or on a replica."""
    with contextlib.suppress(FileNotFoundError):
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < now - kept_whole():
                    path.unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


__all__ = [
    "MAX_SLICE",
    "Ticket",
    "UploadRefused",
    "begin",
    "clean_name",
    "discard",
    "limit",
    "local_copy",
    "receive",
    "sweep",
]
