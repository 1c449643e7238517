"""Which local files may be uploaded, checked before any network request.

The path comes from a model, which may have been steered by text it read, so it is treated as
hostile: it must be absolute (or start with ~), name an existing regular file we can read, and
the checks run on the resolved path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from . import contract
from .multipart import FilePart

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
    ".wma": "audio/x-ms-wma",
}


class FileRefused(Exception):
    """The file may not be uploaded; the message says why and what the user can do."""


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
            raise FileRefused(
                f"Cannot expand {text!r}: the home directory is unknown. Give an absolute path."
            ) from None
    else:
        path = Path(text)
    if not path.is_absolute():
        raise FileRefused(
            f"audio_file must be an absolute path (or start with ~), got {raw!r}. Ask the user for the "
            "full path of the file, for example ~/Music/song.mp3."
        )
    return path


def check_audio_file(raw: str) -> FilePart:
    """The upload for `raw`, or FileRefused. Opens nothing but a stat; the upload opens it again."""
    path = expand_user_path(raw)
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise FileRefused(f"No file at {path}. Check the path (and its spelling) and try again.") from None
    except (OSError, RuntimeError) as exc:
        raise FileRefused(f"Cannot resolve {path}: {_reason(exc)}.") from None
    try:
        info = resolved.stat()
    except OSError as exc:
        raise FileRefused(f"Cannot read {path}: {_reason(exc)}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise FileRefused(f"{path} is a directory. Give the path of one audio file inside it.")
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{path} is not a regular file (it is a device, pipe or socket); give an audio file.")
    if not os.access(resolved, os.R_OK):
        raise FileRefused(f"{path} is not readable by this server (permission denied). Check its permissions.")
    try:
        # Opening proves readability where os.access cannot (ACLs, network filesystems).
        with resolved.open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise FileRefused(f"Cannot read {path}: {_reason(exc)}.") from None
    if info.st_size == 0:
        raise FileRefused(f"{path} is empty (0 bytes); give an audio file.")
    return FilePart(
        name=contract.FIELD_AUDIO_FILE,
        path=resolved,
        filename=path.name,
        content_type=content_type_for(path),
        size=info.st_size,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__
