"""Which local files may leave the machine, checked before any network request.

The path comes from a model, which may have been steered by a prompt injection in something it
read, so it is hostile until checked: it must resolve (symlinks and `..` followed) to a regular,
non-empty, not-too-large file inside the allowed folders that holds audio in a container MusicGPT
takes (sniff.py checks the structure, not just a magic number). A private key renamed song.mp3 never leaves the machine. Every refusal names the rule
and how a user can allow what they meant.

The checks also record the state the file was in (FileKey: device, inode, size, mtime, ctime) and a
digest of its first bytes; whatever reads the file later, the hash and the upload, opens it with
`open_checked`, which proves it still holds that content, so a file replaced after the checks (even
by one that got the old inode number back) is never read in its place.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from . import sniff
from .failures import Failure
from .ledger.base import FileKey
from .musicgpt.contract import FIELD_AUDIO_FILE
from .musicgpt.multipart import FileChangedError, FilePart
from .visible import shown

# Content types by extension. mimetypes' table varies by platform (it lacks .flac or .m4a on some),
# so the audio types we upload are spelled out here.
AUDIO_CONTENT_TYPES: Final[dict[str, str]] = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".wave": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/opus",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".aac": "audio/aac",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
    ".aifc": "audio/aiff",
    ".webm": "audio/webm",
    ".mka": "audio/x-matroska",
    ".mkv": "audio/x-matroska",
    ".wma": "audio/x-ms-wma",
    ".asf": "audio/x-ms-wma",
}

SNIFF_BYTES: Final = 8192

DEFAULT_MAX_UPLOAD_MB: Final = 4096


class FileRefused(Failure):
    """The file may not be uploaded; the message says which rule refused it and what to do."""

    consequence = "Nothing was submitted."


@dataclass(frozen=True)
class AllowedDirs:
    """The folders files may be read from (or stems saved into), and where that list came from."""

    dirs: tuple[Path, ...]
    origin: str  # for messages: "MUSICGPT_MCP_ALLOWED_DIRS", "the MCP client's roots", "your home folder"
    how_to_widen: str
    # Why there are no folders at all, when that is the case (the client's roots were all unusable).
    unusable: str | None = None

    def containing(self, resolved: Path) -> Path | None:
        return next((d for d in self.dirs if resolved == d or d in resolved.parents), None)

    def describe(self) -> str:
        return ", ".join(str(d) for d in self.dirs) or "(none)"


def allowed_dirs(configured: Sequence[Path] | None, client_roots: Iterable[str] | None) -> AllowedDirs:
    """MUSICGPT_MCP_ALLOWED_DIRS when set; else the client's usable file:// roots, when it offers any;
    else (no roots offered) the home folder. A client that offers roots none of which is usable gets
    no folder at all: falling back to the whole home folder would widen what the user chose."""
    if configured is not None:
        return AllowedDirs(
            tuple(_resolve_dir(p) for p in configured),
            "MUSICGPT_MCP_ALLOWED_DIRS",
            "add its folder to MUSICGPT_MCP_ALLOWED_DIRS (separated by ':' or ';' on Windows) in the server's "
            "environment and restart the server",
        )
    offered = list(client_roots or ())
    usable: list[Path] = []
    unusable: list[str] = []
    for uri in offered:
        path, why = _root_path(uri)
        if path is None:
            unusable.append(f"{uri[:100]!r} ({why})")
        else:
            usable.append(path)
    if usable:
        return AllowedDirs(
            tuple(usable),
            "the MCP client's roots",
            "open its folder as a workspace root in your MCP client, or set MUSICGPT_MCP_ALLOWED_DIRS in the "
            "server's environment to list the folders yourself",
        )
    if offered:
        return AllowedDirs(
            (),
            "the MCP client's roots",
            "open a local folder as a workspace root in your MCP client, or set MUSICGPT_MCP_ALLOWED_DIRS in the "
            "server's environment to the folders that may be read, and restart the server",
            unusable=f"the MCP client offered roots, but none is a local folder this server can use: "
            f"{', '.join(unusable[:3])}{' and more' if len(unusable) > 3 else ''}",
        )
    return AllowedDirs(
        (_resolve_dir(Path.home()),),
        "your home folder",
        "move it into your home folder, or set MUSICGPT_MCP_ALLOWED_DIRS in the server's environment to the "
        "folders that may be read",
    )


def _root_path(uri: str) -> tuple[Path | None, str]:
    """A client root as a local folder, or None and why it cannot be one."""
    parts = urlsplit(uri)
    if parts.scheme != "file":
        return None, "not a file:// URI"
    if parts.netloc not in ("", "localhost"):
        return None, "a network location, not a folder on this machine"
    text = unquote(parts.path)
    if "\0" in text:
        return None, "its path contains a NUL character"
    path = Path(text)
    if not path.is_absolute():
        return None, "not an absolute path"
    try:
        return _resolve_dir(path), ""
    except (OSError, RuntimeError, ValueError) as exc:
        return None, f"cannot be resolved: {_reason(exc)}"


def _resolve_dir(path: Path) -> Path:
    return path.expanduser().resolve()


def content_type_for(path: Path) -> str:
    return AUDIO_CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def expand_user_path(raw: str) -> Path:
    """`raw` as an absolute path; relative paths are refused because the server's working
    directory is whatever the host chose, not what the user meant."""
    if "\0" in raw:
        raise FileRefused("The audio_file path contains a NUL character; give a plain file path.")
    text = raw.strip()
    if text.startswith("~"):
        try:
            path = Path(text).expanduser()
        except RuntimeError:
            raise FileRefused(f"Cannot expand {text!r}: the home folder is unknown. Give an absolute path.") from None
    else:
        path = Path(text)
    if not path.is_absolute():
        raise FileRefused(
            f"audio_file must be an absolute path (or start with ~), got {raw!r}. Ask the user for the "
            "full path of the file, for example ~/Music/song.mp3."
        )
    return path


def check_audio_file(raw: str, allowed: AllowedDirs, max_bytes: int) -> FilePart:
    """The upload for `raw`, or FileRefused. Only a stat and a peek at the first bytes happen here."""
    path = expand_user_path(raw)
    resolved = _inside(path, allowed)
    info = _regular(path, resolved, max_bytes)
    verdict, head, key = examine(resolved, info)
    if not verdict.audio:
        named = name_content(head) if verdict.kind is None else None
        found = verdict.detail or (
            f"its content looks like {named}" if named else "its first bytes match no audio format"
        )
        raise FileRefused(
            f"{shown_path(path)} does not look like an audio file ({found}), so it was not sent. Give an audio file "
            "(MP3, WAV, FLAC, OGG/Opus, M4A/AAC, AIFF, WebM/Matroska or WMA); if this is audio in another "
            "format, convert it to one of those first."
        )
    return FilePart(
        name=FIELD_AUDIO_FILE,
        path=resolved,
        filename=path.name,
        content_type=content_type_for(path),
        size=key.size,
        identity=key,
        head_sha256=hashlib.sha256(head).digest(),
    )


def _inside(path: Path, allowed: AllowedDirs) -> Path:
    """`path` resolved (links and `..` followed), when that lies inside the allowed folders."""
    if not allowed.dirs and allowed.unusable:
        raise FileRefused(
            f"{shown_path(path)} was not read: {allowed.unusable}. So no local file may be uploaded. To send it, "
            f"{allowed.how_to_widen}."
        )
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise FileRefused(f"No file at {shown_path(path)}. Check the path (and its spelling) and try again.") from None
    except (OSError, RuntimeError) as exc:
        raise FileRefused(f"Cannot resolve {shown_path(path)}: {_reason(exc)}.") from None
    if allowed.containing(resolved) is not None:
        return resolved
    where = f"({allowed.origin}: {allowed.describe()})"
    lexical = Path(os.path.normpath(path))
    if allowed.containing(lexical) is not None and lexical != resolved:
        raise FileRefused(
            f"{shown_path(path)} is a link to {shown_path(resolved)}, which is outside the folders files may be read "
            f"from {where}. Give the real file's path if it should be sent; to allow it, {allowed.how_to_widen}."
        )
    raise FileRefused(
        f"{shown_path(resolved)} is outside the folders files may be read from {where}. To send it, "
        f"{allowed.how_to_widen}."
    )


def _regular(path: Path, resolved: Path, max_bytes: int) -> os.stat_result:
    """The resolved file's stat, when it is a regular, non-empty file within the upload limit."""
    try:
        info = resolved.stat()
    except OSError as exc:
        raise FileRefused(f"Cannot read {shown_path(path)}: {_reason(exc)}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise FileRefused(f"{shown_path(path)} is a directory. Give the path of one audio file inside it.")
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(
            f"{shown_path(path)} is not a regular file (it is a device, pipe or socket); give an audio file."
        )
    if info.st_size == 0:
        raise FileRefused(f"{shown_path(path)} is empty (0 bytes); give an audio file.")
    if info.st_size > max_bytes:
        raise FileRefused(
            f"{shown_path(path)} is {info.st_size / 1_048_576:.1f} MB, over the {max_bytes / 1_048_576:g} MB upload "
            "limit. Use a shorter or compressed file (e.g. mp3), or raise MUSICGPT_MCP_MAX_UPLOAD_MB in the server's "
            "environment."
        )
    return info


# No link followed (one swapped in after the checks), no wait on a FIFO swapped in (the fstat that
# follows every open refuses anything but the regular file that was checked).
_READ_FLAGS: Final = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
)


def examine(resolved: Path, info: os.stat_result) -> tuple[sniff.Verdict, bytes, FileKey]:
    """What the file holds (a bounded structural check), its first bytes, and the state it was in
    throughout the check, read without following a swapped-in link and without blocking on a FIFO."""
    try:
        fd = os.open(resolved, _READ_FLAGS)
    except OSError as exc:
        raise FileRefused(f"Cannot read {shown_path(resolved)}: {_reason(exc)}.") from None
    try:
        with os.fdopen(fd, "rb") as f:
            opened = os.fstat(fd)
            key = FileKey.of(opened)
            if key != FileKey.of(info) or not stat.S_ISREG(opened.st_mode):
                raise FileRefused(f"{shown_path(resolved)} changed while it was being checked; try again.")
            head = f.read(SNIFF_BYTES)
            verdict = sniff.inspect(f, key.size)
            if FileKey.of(os.fstat(fd)) != key:
                raise FileRefused(f"{shown_path(resolved)} changed while it was being checked; try again.")
            return verdict, head, key
    except OSError as exc:
        raise FileRefused(f"Cannot read {shown_path(resolved)}: {_reason(exc)}.") from None


def open_checked(part: FilePart, *, sniff_again: bool = False) -> int:
    """A descriptor on the content `part` was checked with, for the hash and the upload to read from;
    FileChangedError when the file at its path is no longer that content. Blocking.

    The same device, inode, size, mtime and ctime (FileKey), and the same first bytes. With
    `sniff_again`, the structural check runs again on this descriptor, so the bytes about to be
    uploaded are the ones that were found to be audio even where ctimes are coarse (a change within the
    same clock tick as the check would keep the ctime). A bounded read: well under a millisecond."""
    fd = os.open(part.path, _READ_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or FileKey.of(info) != part.identity:
            raise FileChangedError(part.path)
        if hashlib.sha256(os.pread(fd, SNIFF_BYTES, 0)).digest() != part.head_sha256:
            raise FileChangedError(part.path)
        if sniff_again:
            with os.fdopen(os.dup(fd), "rb") as f:
                if not sniff.inspect(f, part.size).audio:
                    raise FileChangedError(part.path)
        if FileKey.of(os.fstat(fd)) != part.identity:
            raise FileChangedError(part.path)
        return fd
    except BaseException:
        os.close(fd)
        raise


def unchanged(fd: int, part: FilePart) -> None:
    """FileChangedError unless the open file is still in the state `part` was checked in."""
    if FileKey.of(os.fstat(fd)) != part.identity:
        raise FileChangedError(part.path)


def name_content(head: bytes) -> str | None:
    """filetype's name for what `head` starts (zip, pdf, png, ...), for a refusal's wording only.
    Its audio guesses rest on magic numbers the structural check has already seen through."""
    import filetype  # imported on first use: the stdio start-up path does not need it

    kind = filetype.guess(head)
    if kind is None or str(kind.mime).startswith("audio/"):
        return None
    return str(kind.extension)


def shown_path(path: Path) -> str:
    """A path as a refusal shows it: a name may hold a line break or a direction override (visible.py)."""
    return shown(str(path))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__
