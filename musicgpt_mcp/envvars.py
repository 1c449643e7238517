"""Every environment variable the server reads, with its default and what it does: the single list that
`--help`, the configuration tables (README.md, docs/hosting.md) and the tests read. Parsing them is config.py's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_BASE_URL: Final = "https://api.musicgpt.com/api/public"


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    help: str


# The single list of variables; `--help` and the configuration tables are written from it.
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
        "Its host is what the server answers to (DNS-rebinding protection), and with OAuth it is the tokens' audience. "
        "MusicGPT's webhook for the jobs the server submits goes to its origin, under /webhooks/musicgpt/.",
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
