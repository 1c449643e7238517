"""The server secret: the operator's (MUSICGPT_MCP_SERVER_SECRET), or one generated once and kept in the state
folder; and the keys derived from it, one per purpose, so one leaked use cannot serve another.

What it guards: state sealed for a client between rounds of a call, the names of header-mode users, and the
names of MusicGPT accounts in the ledger (an HMAC of base URL and key, so a leaked ledger cannot be used to
test guessed keys). A secret cut short would make all of that guessable, so a kept one is written whole or not
at all (a temporary file, flushed, then linked into place) and its length is checked on every read.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from .config import ConfigError

log = logging.getLogger(__name__)

FILE_NAME: Final = "server-secret"
MIN_LENGTH: Final = 32
# What a generated secret holds: 32 random bytes, hex-encoded.
GENERATED_BYTES: Final = 32


def kept_secret(folder: Path) -> SecretStr:
    """The secret kept in `folder`, generated there on first use. ConfigError when it cannot be had, or when the
    file holds something too short to be a secret (a first start that failed while writing it, before writes
    were atomic): then the operator deletes it, and every sealed state and header-mode name starts afresh."""
    path = folder / FILE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = _read(path)
        if text is None:
            _create(path)
            text = _read(path) or ""
    except OSError as exc:
        raise ConfigError(
            f"Cannot keep a server secret in {path} ({exc.strerror or exc}); set MUSICGPT_MCP_SERVER_SECRET."
        ) from None
    if len(text) < MIN_LENGTH:
        raise ConfigError(
            f"The server secret in {path} is damaged: it holds {len(text)} characters, and a secret has at least "
            f"{MIN_LENGTH}. Delete the file and start the server again (a new one is generated), or set "
            "MUSICGPT_MCP_SERVER_SECRET."
        )
    return SecretStr(text)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None


def _create(path: Path) -> None:
    """Write a new secret whole, then link it into place; a process that got there first wins, and both read
    the same file afterwards."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(GENERATED_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            log.info("generated a server secret in %s", path)
        except FileExistsError:
            pass  # another process of this server wrote one first: use theirs
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def derived(secret: SecretStr, purpose: str) -> str:
    """A key for one purpose, so one leaked use cannot serve another."""
    return hmac.new(secret.get_secret_value().encode(), purpose.encode(), hashlib.sha256).hexdigest()


def account_name(key: bytes, base_url: str, api_key: str | None) -> str:
    """Which MusicGPT account (and endpoint) a job belongs to, without storing the key: a job submitted with one
    key is never reused for another, nor a sandbox job for the real API. Keyed, so a leaked ledger cannot be
    used to test guessed keys."""
    material = f"musicgpt-mcp account\0{base_url}\0{api_key or ''}".encode()
    return "acct:" + hmac.new(key, material, hashlib.sha256).hexdigest()[:32]


def legacy_account_name(base_url: str, api_key: str | None) -> str:
    """The unkeyed name earlier releases stored, so their jobs can be renamed when their key is next used."""
    material = f"musicgpt-mcp account\0{base_url}\0{api_key or ''}".encode()
    return hashlib.sha256(material).hexdigest()[:32]
