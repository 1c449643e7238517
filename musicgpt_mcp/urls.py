"""Rules for URLs a model hands us: what may be passed to MusicGPT, and where MusicGPT may call back.

A webhook is where MusicGPT POSTs a finished job, with links to the stems of the user's audio; a
steered model could point it at anyone. So a webhook_url must start with a prefix the user
configured (MUSICGPT_MCP_WEBHOOK_URLS). Prefixes are compared on parsed parts (scheme, host,
port, then whole path segments), never as raw strings: `https://hooks.example.com` must not admit
`https://hooks.example.com.evil.net` nor `https://hooks.example.com@evil.net`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

from .failures import Failure
from .visible import codepoint, first_hidden

WEBHOOK_VARIABLE: Final = "MUSICGPT_MCP_WEBHOOK_URLS"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_PATH_BREAKERS: Final = (";", "\\", "\0")
# Percent-escapes of ".", "/", "\\", ";", NUL and "%" itself (a double encoding).
_ESCAPED_BREAKERS: Final = re.compile(r"%(?:2e|2f|5c|3b|00|25)", re.IGNORECASE)


class URLRefused(Failure):
    """A URL argument breaks a rule; the message names the rule and what to do."""

    consequence = "Nothing was submitted."


def check_url(name: str, url: str) -> None:
    """An http(s) URL without credentials, spaces, or control, format or separator characters, or URLRefused.

    The URL is shown to the user in the consent question and to the model: a line separator (U+2028) or a
    bidirectional override (U+202E) in it would let it add or reorder lines the user reads as the server's."""
    odd = first_hidden(url)
    if odd is not None or " " in url:
        what = f"an invisible or line-breaking character ({codepoint(odd)})" if odd else "a space"
        raise URLRefused(f"{name} contains {what}; give the URL with such characters percent-encoded, or without them.")
    parts = _split(name, url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise URLRefused(f"{name} must be an http:// or https:// URL; got {url[:100]!r}.")
    if parts.username is not None or parts.password is not None:
        raise URLRefused(f"{name} must not carry a user name or password (user:pass@host); use a URL without them.")


def _split(name: str, url: str) -> SplitResult:
    """`urlsplit`, whose refusals (a host with a full-width @ or / that NFKC normalisation turns into a real one,
    a bracket out of place) become URLRefused instead of an error the model cannot read."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise URLRefused(
            f"{name} {url[:100]!r} cannot be read as a URL (its host has characters such as a full-width @ or / "
            "that are not allowed there, or its port is not a number). Give a plain http(s) URL."
        ) from None
    return parts


def check_webhook_url(url: str, prefixes: Sequence[str]) -> None:
    """`url` is an acceptable URL that starts with one of `prefixes`, or URLRefused."""
    check_url("webhook_url", url)
    if not prefixes:
        raise URLRefused(
            "webhook_url was refused: no webhook addresses are configured. MusicGPT would POST the finished "
            "job, with links to the stems, to that address, so only addresses the user listed in "
            f"{WEBHOOK_VARIABLE} are allowed. Omit webhook_url, or ask the user to add its prefix to "
            f"{WEBHOOK_VARIABLE} in the server's environment and restart the server."
        )
    if _origin_and_path(url) is None:
        raise URLRefused(
            f"webhook_url {url[:100]!r} was refused: its path has a dot segment, an encoded dot, slash or percent "
            "sign, a ';', a backslash or a NUL, which a server may read as another path than the one it spells "
            "out. Give the address exactly as the user configured it."
        )
    if not any(webhook_allowed(url, prefix) for prefix in prefixes):
        raise URLRefused(
            f"webhook_url {url[:100]!r} does not start with any of the addresses in {WEBHOOK_VARIABLE}, so it was "
            "refused. Omit webhook_url, use an address the user configured, or ask the user to add this one to "
            f"{WEBHOOK_VARIABLE} and restart the server."
        )


def webhook_allowed(url: str, prefix: str) -> bool:
    """Whether `url` lies under `prefix`: same scheme, host and port, and the prefix's path segments."""
    candidate, allowed = _origin_and_path(url), _origin_and_path(prefix)
    if candidate is None or allowed is None:
        return False
    (origin, segments), (allowed_origin, allowed_segments) = candidate, allowed
    return origin == allowed_origin and segments[: len(allowed_segments)] == allowed_segments


def _origin_and_path(url: str) -> tuple[tuple[str, str, int], list[str]] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    raw = parts.path
    # A server may resolve dot segments, decode a path twice (%252e%252e), treat ';' as the start of path
    # parameters (Tomcat reads "..;" as ".."), a backslash or an encoded slash as a slash, or stop at a NUL: any
    # of them lets a path that spells out the prefix reach another path on the host. Such a path is under no
    # prefix, however it is spelled.
    if any(ch in raw for ch in _PATH_BREAKERS) or _ESCAPED_BREAKERS.search(raw):
        return None
    segments = [unquote(s) for s in raw.split("/") if s]
    if any(s in (".", "..") for s in segments):
        return None
    return (scheme, parts.hostname, port or _DEFAULT_PORTS[scheme]), segments


def parse_webhook_prefixes(raw: str | None) -> tuple[str, ...]:
    """The prefixes in MUSICGPT_MCP_WEBHOOK_URLS: URLs separated by spaces (or newlines).

    Raises ValueError naming the entry when one is not an http(s) URL, carries credentials, a
    query or a fragment (a prefix is an address, not a pattern).
    """
    prefixes = []
    for item in (raw or "").split():
        parts: SplitResult = urlsplit(item)
        if _origin_and_path(item) is None:
            shown = "an entry" if "@" in parts.netloc else repr(item[:100])  # never echo a password
            raise ValueError(
                f"{WEBHOOK_VARIABLE} must list http(s) URLs separated by spaces, without user:password@; "
                f"{shown} is not one."
            )
        if parts.query or parts.fragment:
            raise ValueError(f"{WEBHOOK_VARIABLE} entries are address prefixes, without ?query or #fragment.")
        prefixes.append(item)
    return tuple(prefixes)
