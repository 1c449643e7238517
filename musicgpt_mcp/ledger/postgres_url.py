"""The database URL (MUSICGPT_MCP_DATABASE_URL), read once for everything that connects with it: the ledger's
pool and the cross-replica signals (signals.py). Here: the connection string with our defaults, a name for the
database that holds no password, a redactor that removes every form of the password from a text, and libpq's
many-line errors on one line.

Only imported when a database URL is configured (psycopg is the optional extra `musicgpt-mcp[postgres]`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import DatabaseLedgerError

Redact = Callable[[str], str]

CONNECT_TIMEOUT: Final = 10  # seconds, unless the URL sets connect_timeout
EXPECTED: Final = "postgresql://user:password@host:port/database"


def read_url(url: str) -> tuple[str, str]:
    """The connection string to use (with our defaults where the URL sets none), and a password-free name."""
    if not url.strip():
        raise DatabaseLedgerError(f"the database URL is empty; expected {EXPECTED}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme is not None and scheme not in ("postgresql", "postgres"):
        raise DatabaseLedgerError(
            f"the database URL starts with {scheme}://, which is not PostgreSQL; expected {EXPECTED}"
        )
    try:
        params = conninfo_to_dict(url)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in params:
            extra["application_name"] = "musicgpt-mcp"
        conninfo = make_conninfo(url, **extra)
    except psycopg.Error as exc:
        raise DatabaseLedgerError(
            f"the database URL cannot be read ({redactor(url)(reason(exc))}); expected {EXPECTED}"
        ) from None
    user = params.get("user") or "(default user)"
    host = params.get("host") or params.get("hostaddr") or "(default host)"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or "(default database)"
    return conninfo, f"postgresql://{user}@{host}:{port}/{dbname}"


def redactor(url: str) -> Redact:
    """A function that removes every form of the URL's password (and the URL itself) from a text."""
    secrets: set[str] = set()
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        secrets |= {password, unquote(password)}
    for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)", url, re.IGNORECASE):
        value = match.group(1).strip("'")
        secrets |= {value, unquote(value)}
    try:
        found = conninfo_to_dict(url).get("password")
        if found:
            secrets.add(str(found))
    except psycopg.Error:
        pass
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)

    def redact(text: str) -> str:
        text = text.replace(url, "(the database URL)")
        for secret in ordered:
            text = text.replace(secret, "***")
        return text

    return redact


def reason(exc: BaseException) -> str:
    """An error's own words on one line (libpq's have several: one per address tried, and hints)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__
