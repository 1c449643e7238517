"""Configuration, read from the environment when the server starts (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from pydantic import SecretStr

from .addresses import parse_storage_hosts
from .urls import parse_webhook_prefixes

DEFAULT_BASE_URL: Final = "https://api.musicgpt.com/api/public"


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    help: str


# The single list of variables; `--help` and the README table are written from it.
ENV_VARS: Final[tuple[EnvVar, ...]] = (
    EnvVar(
        "MUSICGPT_API_KEY",
        "(none)",
        "Your MusicGPT API key, from the MusicGPT API dashboard. Required for the real API; "
        "without it the server still starts and each call explains how to set it.",
    ),
    EnvVar(
        "MUSICGPT_BASE_URL",
        DEFAULT_BASE_URL,
        "Base URL of the MusicGPT public API; the server appends /v1/Extraction and friends.",
    ),
    EnvVar(
        "MUSICGPT_MCP_ALLOWED_DIRS",
        "(the MCP client's roots, else your home folder)",
        "Folders audio files may be uploaded from, separated by the OS path separator (':' or ';' on "
        "Windows). Files outside them are refused. download_stems may also save into them.",
    ),
    EnvVar(
        "MUSICGPT_MCP_MAX_UPLOAD_MB",
        "4096",
        "Largest audio file extract_stems uploads, in MB.",
    ),
    EnvVar(
        "MUSICGPT_MCP_OUTPUT_DIR",
        "~/Music/MusicGPT",
        "Where download_stems saves stems (one subfolder per job). output_dir arguments must lie inside it.",
    ),
    EnvVar(
        "MUSICGPT_MCP_MAX_WAIT",
        "50",
        "Longest wait_seconds get_extraction honours, in seconds. Keep it under your host's tool timeout (often 60 s).",
    ),
    EnvVar(
        "MUSICGPT_MCP_MAX_DOWNLOAD_MB",
        "4096",
        "Largest stem file download_stems accepts, in MB; bigger downloads are stopped and discarded.",
    ),
    EnvVar(
        "MUSICGPT_MCP_WEBHOOK_URLS",
        "(none: webhook_url is refused)",
        "Addresses extract_stems may give MusicGPT as webhook_url, as URL prefixes separated by spaces "
        "(e.g. https://hooks.example.com/musicgpt). MusicGPT POSTs the finished job, with links to the stems, "
        "there; any other webhook_url is refused.",
    ),
    EnvVar(
        "MUSICGPT_MCP_STORAGE_HOSTS",
        "(none)",
        "Hosts (host or host:port, separated by spaces) download_stems may fetch stems from even though they "
        "resolve to a private, loopback or link-local address. Every other download must go to a public address.",
    ),
    EnvVar(
        "MUSICGPT_MCP_LOG_LEVEL",
        "INFO",
        "Log level for the server's log on stderr: DEBUG, INFO, WARNING or ERROR.",
    ),
)


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    # SecretStr keeps the key out of repr(), str() and tracebacks' locals.
    api_key: SecretStr | None
    base_url: str = DEFAULT_BASE_URL
    # Seconds. The write timeout is per chunk sent, so it bounds a stalled link, not a long upload.
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    write_timeout: float = 120.0
    output_dir: Path = Path("~/Music/MusicGPT")
    # None: the MCP client's roots, else the home folder (decided per call, see files.allowed_dirs).
    allowed_dirs: tuple[Path, ...] | None = None
    max_upload_bytes: int = 4096 * 1024 * 1024
    max_wait: int = 50
    max_download_bytes: int = 4096 * 1024 * 1024
    # URL prefixes a webhook_url must start with (urls.webhook_allowed); empty: no webhooks.
    webhook_urls: tuple[str, ...] = ()
    # host or host:port entries downloads may reach at non-public addresses (netguard).
    storage_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        raw_key = env.get("MUSICGPT_API_KEY", "").strip()
        if raw_key and any(ch in raw_key for ch in "\r\n\0"):
            # The message must not echo the key itself.
            raise ConfigError("MUSICGPT_API_KEY contains a line break or NUL; paste the key on one line.")
        problem = key_problem(raw_key)
        if problem:
            raise ConfigError(problem)
        base_url = env.get("MUSICGPT_BASE_URL", "").strip() or DEFAULT_BASE_URL
        output_dir = env.get("MUSICGPT_MCP_OUTPUT_DIR", "").strip() or "~/Music/MusicGPT"
        return cls(
            allowed_dirs=_dirs(env.get("MUSICGPT_MCP_ALLOWED_DIRS")),
            max_upload_bytes=_int(env, "MUSICGPT_MCP_MAX_UPLOAD_MB", 4096, low=1, high=1024 * 1024) * 1024 * 1024,
            api_key=SecretStr(raw_key) if raw_key else None,
            base_url=normalise_base_url(base_url),
            output_dir=Path(output_dir),
            max_wait=_int(env, "MUSICGPT_MCP_MAX_WAIT", 50, low=0, high=3600),
            max_download_bytes=_int(env, "MUSICGPT_MCP_MAX_DOWNLOAD_MB", 4096, low=1, high=1024 * 1024) * 1024 * 1024,
            webhook_urls=_parsed(parse_webhook_prefixes, env.get("MUSICGPT_MCP_WEBHOOK_URLS")),
            storage_hosts=_parsed(parse_storage_hosts, env.get("MUSICGPT_MCP_STORAGE_HOSTS")),
        )


def key_problem(key: str) -> str | None:
    """Why `key` cannot be sent in an HTTP header, in words that never echo it; None when it can."""
    if all(0x21 <= ord(ch) <= 0x7E for ch in key):
        return None
    return (
        "MUSICGPT_API_KEY contains a character that cannot be sent (a space, a non-ASCII character such as a "
        "non-breaking space, or a control character), which usually comes from copying it out of a web page. "
        "Paste the key again, exactly as the MusicGPT dashboard shows it, and restart the server."
    )


def _parsed(parse: Callable[[str | None], tuple[str, ...]], raw: str | None) -> tuple[str, ...]:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _dirs(raw: str | None) -> tuple[Path, ...] | None:
    if raw is None or not raw.strip():
        return None
    dirs = []
    for item in raw.split(os.pathsep):
        if not item.strip():
            continue
        path = Path(item.strip()).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"MUSICGPT_MCP_ALLOWED_DIRS must list absolute folders; {item.strip()!r} is relative.")
        dirs.append(path)
    return tuple(dirs)


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}.")
    return value


def normalise_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"MUSICGPT_BASE_URL must be an http(s) URL such as {DEFAULT_BASE_URL}; got {url!r}.")
    if parts.username or parts.password:
        raise ConfigError("MUSICGPT_BASE_URL must not contain a user name or password.")
    return url.rstrip("/")
