"""Configuration, read from the environment when the server starts (never at import time)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from .envvars import DEFAULT_BASE_URL
from .failures import Failure
from .musicgpt.addresses import parse_storage_hosts
from .musicgpt.key import key_problem
from .urls import parse_webhook_prefixes

T = TypeVar("T")
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
    """A setting is present but unusable; the message names the variable and the fix. `variable` says which,
    so a tool that does not use it can work on."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class _Reader:
    """Reads one variable at a time: a bad one keeps its default and is kept as a problem, so the others (and
    every tool that needs only them) still work."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[ConfigError] = []

    def __call__(self, variable: str, parse: Callable[[], T], default: T) -> T:
        try:
            return parse()
        except ConfigError as exc:
            self.problems.append(ConfigError(str(exc), variable=exc.variable or variable))
            return default

    def whole(self, name: str, default: int, *, low: int, high: int) -> int:
        return self(name, lambda: _int(self.env, name, default, low=low, high=high), default)

    def optional_whole(self, name: str, *, low: int, high: int) -> int | None:
        return self(name, lambda: _optional_int(self.env, name, low=low, high=high), None)

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        return self(name, lambda: _number(self.env, name, default, low=low, high=high), default)

    def optional_number(self, name: str, *, low: float, high: float) -> float | None:
        return self(name, lambda: _optional_number(self.env, name, low=low, high=high), None)

    def folder(self, name: str, use: str) -> Path | None:
        return self(name, lambda: _dir(self.env, name, use), None)

    def listed(self, name: str, parse: Callable[[str | None], tuple[str, ...]]) -> tuple[str, ...]:
        return self(name, lambda: _parsed(parse, self.env.get(name)), ())


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

    # Variables that are set but unusable (each keeps its default above); tools that use one refuse to run and
    # say why, the others run and mention it.
    problems: tuple[ConfigError, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = {k: v for k, v in (os.environ if env is None else env).items() if not is_placeholder(v)}
        read = _Reader(env)
        mb = 1024 * 1024
        settings = cls(
            api_key=read("MUSICGPT_API_KEY", lambda: _api_key(env), None),
            base_url=read("MUSICGPT_BASE_URL", lambda: _base_url(env), DEFAULT_BASE_URL),
            allowed_dirs=read("MUSICGPT_MCP_ALLOWED_DIRS", lambda: _dirs(env.get("MUSICGPT_MCP_ALLOWED_DIRS")), None),
            max_upload_bytes=read.whole("MUSICGPT_MCP_MAX_UPLOAD_MB", 4096, low=1, high=mb) * mb,
            output_dir=read.folder("MUSICGPT_MCP_OUTPUT_DIR", "stems are saved there") or Path("~/Music/MusicGPT"),
            max_wait=read.whole("MUSICGPT_MCP_MAX_WAIT", 50, low=0, high=3600),
            max_download_bytes=read.whole("MUSICGPT_MCP_MAX_DOWNLOAD_MB", 4096, low=1, high=mb) * mb,
            state_dir=read.folder("MUSICGPT_MCP_STATE_DIR", "the job ledger is kept there"),
            reuse_hours=read.number("MUSICGPT_MCP_REUSE_HOURS", 24.0, low=0, high=24 * 365),
            max_credits_per_day=read.optional_number("MUSICGPT_MCP_MAX_CREDITS_PER_DAY", low=0, high=1e9),
            max_jobs_per_hour=read.whole("MUSICGPT_MCP_MAX_JOBS_PER_HOUR", 30, low=1, high=100_000),
            confirm=read("MUSICGPT_MCP_CONFIRM", lambda: _confirm(env), "auto"),
            status_calls_per_minute=read.optional_whole("MUSICGPT_MCP_STATUS_CALLS_PER_MINUTE", low=1, high=1_000_000),
            submits_per_minute=read.optional_whole("MUSICGPT_MCP_SUBMITS_PER_MINUTE", low=1, high=1_000_000),
            output_dir_configured=bool(env.get("MUSICGPT_MCP_OUTPUT_DIR", "").strip()),
            remote=read("MUSICGPT_MCP_AUTH", lambda: _remote(env), Remote()),
            webhook_urls=read.listed("MUSICGPT_MCP_WEBHOOK_URLS", parse_webhook_prefixes),
            storage_hosts=read.listed("MUSICGPT_MCP_STORAGE_HOSTS", parse_storage_hosts),
        )
        return dataclasses.replace(settings, problems=tuple(read.problems))

    def check(self) -> None:
        """Raise the first problem: where an operator is watching (the HTTP transport), nothing unusable runs."""
        if self.problems:
            raise self.problems[0]


def _api_key(env: Mapping[str, str]) -> SecretStr | None:
    raw_key = env.get("MUSICGPT_API_KEY", "").strip()
    if raw_key and any(ch in raw_key for ch in "\r\n\0"):
        # The message must not echo the key itself.
        raise ConfigError("MUSICGPT_API_KEY contains a line break or NUL; paste the key on one line.")
    problem = key_problem(raw_key)
    if problem:
        raise ConfigError(problem)
    return SecretStr(raw_key) if raw_key else None


def _base_url(env: Mapping[str, str]) -> str:
    return normalise_base_url(env.get("MUSICGPT_BASE_URL", "").strip() or DEFAULT_BASE_URL)


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
        raise ConfigError(
            f"MUSICGPT_MCP_AUTH must be one of {', '.join(AUTH_MODES)}; got {raw_auth!r}.", variable="MUSICGPT_MCP_AUTH"
        )
    public_url = env.get("MUSICGPT_MCP_PUBLIC_URL", "").strip() or None
    if public_url is not None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ConfigError(
                f"MUSICGPT_MCP_PUBLIC_URL must be the http(s) URL clients use, such as "
                f"https://stems.example.com/mcp; got {public_url!r}.",
                variable="MUSICGPT_MCP_PUBLIC_URL",
            )
    issuer = env.get("MUSICGPT_MCP_OAUTH_ISSUER", "").strip() or None
    if issuer is not None and urlsplit(issuer).scheme not in ("http", "https"):
        raise ConfigError(
            f"MUSICGPT_MCP_OAUTH_ISSUER must be an http(s) URL; got {issuer!r}.", variable="MUSICGPT_MCP_OAUTH_ISSUER"
        )
    scopes = tuple(s for s in re.split(r"[\s,]+", env.get("MUSICGPT_MCP_OAUTH_SCOPES", "")) if s)
    database = env.get("MUSICGPT_MCP_DATABASE_URL", "").strip()
    if database and urlsplit(database).scheme not in ("postgresql", "postgres"):
        # Never echo the URL: it may hold a password.
        raise ConfigError(
            "MUSICGPT_MCP_DATABASE_URL must be a postgresql:// URL.", variable="MUSICGPT_MCP_DATABASE_URL"
        )
    secret = env.get("MUSICGPT_MCP_SERVER_SECRET", "").strip()
    if secret and len(secret) < 32:
        raise ConfigError(
            "MUSICGPT_MCP_SERVER_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`).",
            variable="MUSICGPT_MCP_SERVER_SECRET",
        )
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
