"""Configuration, read from the environment when the server starts (never at import time)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from .failures import Failure
from .musicgpt.addresses import parse_storage_hosts
from .musicgpt.key import key_problem
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
        "Where download_stems saves stems (one subfolder per job); an absolute folder. output_dir arguments must "
        "lie inside it.",
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
        "MUSICGPT_MCP_STATE_DIR",
        "(your user state folder, e.g. ~/.local/state/musicgpt-mcp)",
        "Where the job ledger lives (ledger.sqlite3): every paid job, its status and downloads, shared by every "
        "server process of this user. Without a writable folder extract_stems refuses to submit.",
    ),
    EnvVar(
        "MUSICGPT_MCP_REUSE_HOURS",
        "24",
        "An extract_stems call for the same audio, stems and options as a job submitted less than this many hours "
        "ago returns that job instead of paying again. 0 turns reuse off.",
    ),
    EnvVar(
        "MUSICGPT_MCP_MAX_CREDITS_PER_DAY",
        "(no limit)",
        "Refuse a new paid job when, counted at its estimate, it would take the credits of the last 24 hours over "
        "this many. Each job counts MusicGPT's stated cost, else its estimate, else what this server reserved when it "
        "submitted: the highest of the last 3 costs seen for the same stems and options, else 1.5 credits a stem and "
        "0.5 a clean-up option. A job whose cost is not known yet, or whose outcome is unknown, never counts as free.",
    ),
    EnvVar(
        "MUSICGPT_MCP_MAX_JOBS_PER_HOUR",
        "30",
        "Refuse new paid jobs once this many were submitted in the last hour, whatever they cost: stops a runaway loop.",
    ),
    EnvVar(
        "MUSICGPT_MCP_CONFIRM",
        "auto",
        "Ask the user before each paid job: auto (when the MCP client can ask), always (refuse paid jobs when it "
        "cannot), never.",
    ),
    EnvVar(
        "MUSICGPT_MCP_STATUS_CALLS_PER_MINUTE",
        "200",
        "MusicGPT's limit on status calls a minute per API key, which the server keeps to (across replicas with "
        "a database). Raise it only if MusicGPT gave your account more.",
    ),
    EnvVar(
        "MUSICGPT_MCP_SUBMITS_PER_MINUTE",
        "60",
        "MusicGPT's limit on extraction submits a minute per API key, which the server keeps to likewise.",
    ),
    EnvVar(
        "MUSICGPT_MCP_PUBLIC_URL",
        "(http://HOST:PORT/mcp)",
        "With --transport http: the URL clients use to reach the server, e.g. https://stems.example.com/mcp. "
        "Its host is what the server answers to (DNS-rebinding protection), and with OAuth it is the tokens' audience.",
    ),
    EnvVar(
        "MUSICGPT_MCP_AUTH",
        "none",
        "With --transport http: who may call. oauth (JWT access tokens from MUSICGPT_MCP_OAUTH_ISSUER; jobs are "
        "paid with MUSICGPT_API_KEY), header (each caller sends their own MusicGPT key in X-MusicGPT-Api-Key), or "
        "none (loopback only).",
    ),
    EnvVar(
        "MUSICGPT_MCP_OAUTH_ISSUER",
        "(none)",
        "With MUSICGPT_MCP_AUTH=oauth: the authorization server whose tokens are accepted (its metadata names its keys).",
    ),
    EnvVar(
        "MUSICGPT_MCP_OAUTH_SCOPES",
        "(none)",
        "With MUSICGPT_MCP_AUTH=oauth: scopes every token must carry, separated by spaces or commas.",
    ),
    EnvVar(
        "MUSICGPT_MCP_DATABASE_URL",
        "(none: SQLite in MUSICGPT_MCP_STATE_DIR)",
        "postgresql://... puts the job ledger in PostgreSQL, shared by every replica (needs musicgpt-mcp[postgres]).",
    ),
    EnvVar(
        "MUSICGPT_MCP_SERVER_SECRET",
        "(generated and kept in MUSICGPT_MCP_STATE_DIR)",
        "With --transport http: a secret of at least 32 characters that signs state handed to clients between "
        "rounds of a call and names header-mode users. Every replica needs the same one; required with "
        "MUSICGPT_MCP_DATABASE_URL.",
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


Confirm = Literal["auto", "always", "never"]
Auth = Literal["none", "oauth", "header"]
AUTH_MODES: Final[tuple[Auth, ...]] = ("none", "oauth", "header")


@dataclass(frozen=True)
class Remote:
    """How the HTTP transport admits callers and shares state. Ignored over stdio."""

    auth: Auth = "none"
    public_url: str | None = None
    oauth_issuer: str | None = None
    oauth_scopes: tuple[str, ...] = ()
    database_url: SecretStr | None = None
    server_secret: SecretStr | None = None


CONFIRM_MODES: Final[tuple[Confirm, ...]] = ("auto", "always", "never")


def default_state_dir() -> Path:
    from platformdirs import user_state_path

    return user_state_path("musicgpt-mcp", appauthor=False)


class ConfigError(Failure, ValueError):
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
    # The job ledger's folder; None: the platform's user state folder (found when the ledger opens).
    state_dir: Path | None = None
    reuse_hours: float = 24.0
    max_credits_per_day: float | None = None
    max_jobs_per_hour: int = 30
    confirm: Confirm = "auto"
    # MusicGPT's per-key rate limits; None: the documented ones (musicgpt/contract.py).
    status_calls_per_minute: int | None = None
    submits_per_minute: int | None = None
    # Whether MUSICGPT_MCP_OUTPUT_DIR was set: over HTTP, saving to the server's disk is offered only then.
    output_dir_configured: bool = False
    remote: Remote = Remote()
    # URL prefixes a webhook_url must start with (urls.webhook_allowed); empty: no webhooks.
    webhook_urls: tuple[str, ...] = ()
    # host or host:port entries downloads may reach at non-public addresses (netguard).
    storage_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = {k: v for k, v in (os.environ if env is None else env).items() if not is_placeholder(v)}
        raw_key = env.get("MUSICGPT_API_KEY", "").strip()
        if raw_key and any(ch in raw_key for ch in "\r\n\0"):
            # The message must not echo the key itself.
            raise ConfigError("MUSICGPT_API_KEY contains a line break or NUL; paste the key on one line.")
        problem = key_problem(raw_key)
        if problem:
            raise ConfigError(problem)
        base_url = env.get("MUSICGPT_BASE_URL", "").strip() or DEFAULT_BASE_URL
        output_dir = _dir(env, "MUSICGPT_MCP_OUTPUT_DIR", "stems are saved there") or Path("~/Music/MusicGPT")
        return cls(
            allowed_dirs=_dirs(env.get("MUSICGPT_MCP_ALLOWED_DIRS")),
            max_upload_bytes=_int(env, "MUSICGPT_MCP_MAX_UPLOAD_MB", 4096, low=1, high=1024 * 1024) * 1024 * 1024,
            api_key=SecretStr(raw_key) if raw_key else None,
            base_url=normalise_base_url(base_url),
            output_dir=output_dir,
            max_wait=_int(env, "MUSICGPT_MCP_MAX_WAIT", 50, low=0, high=3600),
            max_download_bytes=_int(env, "MUSICGPT_MCP_MAX_DOWNLOAD_MB", 4096, low=1, high=1024 * 1024) * 1024 * 1024,
            state_dir=_dir(env, "MUSICGPT_MCP_STATE_DIR", "the job ledger is kept there"),
            reuse_hours=_number(env, "MUSICGPT_MCP_REUSE_HOURS", 24.0, low=0, high=24 * 365),
            max_credits_per_day=_optional_number(env, "MUSICGPT_MCP_MAX_CREDITS_PER_DAY", low=0, high=1e9),
            max_jobs_per_hour=_int(env, "MUSICGPT_MCP_MAX_JOBS_PER_HOUR", 30, low=1, high=100_000),
            confirm=_confirm(env),
            status_calls_per_minute=_optional_int(env, "MUSICGPT_MCP_STATUS_CALLS_PER_MINUTE", low=1, high=1_000_000),
            submits_per_minute=_optional_int(env, "MUSICGPT_MCP_SUBMITS_PER_MINUTE", low=1, high=1_000_000),
            output_dir_configured=bool(env.get("MUSICGPT_MCP_OUTPUT_DIR", "").strip()),
            remote=_remote(env),
            webhook_urls=_parsed(parse_webhook_prefixes, env.get("MUSICGPT_MCP_WEBHOOK_URLS")),
            storage_hosts=_parsed(parse_storage_hosts, env.get("MUSICGPT_MCP_STORAGE_HOSTS")),
        )


def _parsed(parse: Callable[[str | None], tuple[str, ...]], raw: str | None) -> tuple[str, ...]:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


_PLACEHOLDER = re.compile(r"\$\{[^{}]*\}")


def is_placeholder(value: str) -> bool:
    """True for a value that is one unexpanded `${...}` placeholder: a setting left blank, not a value.

    Claude Desktop passes an optional MCP Bundle setting the user left empty as the literal text of its
    placeholder (MUSICGPT_MCP_OUTPUT_DIR=${user_config.output_dir}); the MCPB library's substitution
    (@anthropic-ai/mcpb 2.1.2, getMcpConfigForManifest) does the same. Read as a value, it would be a
    relative folder named "${user_config.output_dir}"; read as unset, it is the default the user expects.
    """
    return _PLACEHOLDER.fullmatch(value.strip()) is not None


def folders(items: Iterable[str], source: str) -> tuple[Path, ...]:
    """The absolute folders in `items`; empty items and blank placeholders are skipped."""
    dirs = []
    for item in items:
        text = item.strip()
        if not text or is_placeholder(text):
            continue
        path = Path(text).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"{source} must list absolute folders; {text!r} is relative.")
        dirs.append(path)
    return tuple(dirs)


def _dirs(raw: str | None) -> tuple[Path, ...] | None:
    if raw is None or not raw.strip():
        return None
    return folders(raw.split(os.pathsep), "MUSICGPT_MCP_ALLOWED_DIRS")


def _dir(env: Mapping[str, str], name: str, use: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        # Relative to what? The folder the MCP host happened to start the server in, which the user never sees.
        raise ConfigError(
            f"{name} must be an absolute folder (such as ~/Music/MusicGPT); {raw!r} is relative, so {use} would "
            "depend on the folder the MCP host starts the server in. Give the full path and restart the server."
        )
    return path


def _number(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    value = _optional_number(env, name, low=low, high=high)
    return default if value is None else value


def _optional_number(env: Mapping[str, str], name: str, *, low: float, high: float) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}.") from None
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw}.")
    return value


def _remote(env: Mapping[str, str]) -> Remote:
    raw_auth = env.get("MUSICGPT_MCP_AUTH", "").strip().lower() or "none"
    auth = next((mode for mode in AUTH_MODES if mode == raw_auth), None)
    if auth is None:
        raise ConfigError(f"MUSICGPT_MCP_AUTH must be one of {', '.join(AUTH_MODES)}; got {raw_auth!r}.")
    public_url = env.get("MUSICGPT_MCP_PUBLIC_URL", "").strip() or None
    if public_url is not None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ConfigError(
                f"MUSICGPT_MCP_PUBLIC_URL must be the http(s) URL clients use, such as "
                f"https://stems.example.com/mcp; got {public_url!r}."
            )
    issuer = env.get("MUSICGPT_MCP_OAUTH_ISSUER", "").strip() or None
    if issuer is not None and urlsplit(issuer).scheme not in ("http", "https"):
        raise ConfigError(f"MUSICGPT_MCP_OAUTH_ISSUER must be an http(s) URL; got {issuer!r}.")
    scopes = tuple(s for s in re.split(r"[\s,]+", env.get("MUSICGPT_MCP_OAUTH_SCOPES", "")) if s)
    database = env.get("MUSICGPT_MCP_DATABASE_URL", "").strip()
    if database and urlsplit(database).scheme not in ("postgresql", "postgres"):
        # Never echo the URL: it may hold a password.
        raise ConfigError("MUSICGPT_MCP_DATABASE_URL must be a postgresql:// URL.")
    secret = env.get("MUSICGPT_MCP_SERVER_SECRET", "").strip()
    if secret and len(secret) < 32:
        raise ConfigError("MUSICGPT_MCP_SERVER_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`).")
    return Remote(
        auth=auth,
        public_url=public_url,
        oauth_issuer=issuer,
        oauth_scopes=scopes,
        database_url=SecretStr(database) if database else None,
        server_secret=SecretStr(secret) if secret else None,
    )


def _confirm(env: Mapping[str, str]) -> Confirm:
    raw = env.get("MUSICGPT_MCP_CONFIRM", "").strip().lower() or "auto"
    for mode in CONFIRM_MODES:
        if raw == mode:
            return mode
    raise ConfigError(f"MUSICGPT_MCP_CONFIRM must be one of {', '.join(CONFIRM_MODES)}; got {raw!r}.")


def _optional_int(env: Mapping[str, str], name: str, *, low: int, high: int) -> int | None:
    return _int(env, name, 0, low=low, high=high) if env.get(name, "").strip() else None


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
