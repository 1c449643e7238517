"""The server's own webhook: the address where MusicGPT tells this server that a job finished, so that nobody has
to ask it again and again.

When the HTTP server has a public URL (MUSICGPT_MCP_PUBLIC_URL), every submit without a caller's own webhook_url
carries `<public origin>/webhooks/musicgpt/<secret>` (submission.py). The secret is `<row id>-<MAC>`: the job's
ledger row, and an HMAC-SHA256 of it under a key derived from the server secret, cut to 128 bits. So it is
different for every job, cannot be guessed or made for another row without the server secret, and any replica
can check it without storing anything. It holds no MusicGPT key, nor anything a key could be learnt from, and
the server never logs it. The transport hands it to the paid path per request (`current`), as it hands over the
caller's key: tools pass nothing.

What a delivery says is not trusted (SECURITY.md says why): an authentic one only wakes the job's waiters, and
one status read confirms it (watching.py). A delivery is a wake-up when it says the job ended, or says nothing of
its status: MusicGPT sends several a job, some without one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from .musicgpt import contract
from .secret import derived

# Where MusicGPT's deliveries arrive, under the public URL's origin (the reverse proxy must route it).
HOOK_PATH: Final = "/webhooks/musicgpt/"
# The signals channel (signals.py) on which a job's waiters are woken; the key is the job's ledger row id.
JOB_CHANNEL: Final = "job"
# 32 hex digits: 128 bits of the MAC, as unguessable as a random token of that length.
_MAC_CHARS: Final = 32
_TOKEN: Final = re.compile(rf"([1-9][0-9]{{0,17}})-([0-9a-f]{{{_MAC_CHARS}}})")


def hook_prefix(public_url: str) -> str:
    """Where every delivery to a server with this public URL goes, as a webhook prefix (urls.webhook_allowed)."""
    parts = urlsplit(public_url)
    return f"{parts.scheme}://{parts.netloc}{HOOK_PATH}"


class ServerHooks:
    """The webhook addresses of one server: made for a job's row, and checked when a delivery comes."""

    def __init__(self, public_url: str, secret: SecretStr) -> None:
        self.origin = hook_prefix(public_url).removesuffix(HOOK_PATH)
        self._key = derived(secret, "musicgpt webhooks").encode()

    def __repr__(self) -> str:  # the key must not reach a log through a repr
        return f"ServerHooks({self.origin})"

    def url_for(self, job_id: int) -> str:
        return f"{self.origin}{HOOK_PATH}{job_id}-{self._mac(job_id)}"

    def job_of(self, secret: str) -> int | None:
        """The ledger row a delivery's secret names, or None when this server did not make it."""
        match = _TOKEN.fullmatch(secret)
        if match is None:
            return None
        job_id = int(match.group(1))
        return job_id if hmac.compare_digest(match.group(2), self._mac(job_id)) else None

    def _mac(self, job_id: int) -> str:
        return hmac.new(self._key, f"job {job_id}".encode(), hashlib.sha256).hexdigest()[:_MAC_CHARS]


# The server's webhook for the request being served: set by the HTTP transport when the server has a public URL
# (None over stdio and without one: jobs are then polled, as before).
current: ContextVar[ServerHooks | None] = ContextVar("musicgpt_server_hooks", default=None)


class HookContext:
    """ASGI middleware: every request of this app sees the server's webhook as `current`."""

    def __init__(self, app: ASGIApp, hooks: ServerHooks) -> None:
        self.app = app
        self.hooks = hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = current.set(self.hooks)
        try:
            await self.app(scope, receive, send)
        finally:
            current.reset(token)


@dataclass(frozen=True)
class Delivery:
    """What a delivery's body says, as far as deciding whether it is a wake-up; never trusted beyond that."""

    status: str | None

    @property
    def wakes(self) -> bool:
        """Whether it may mean the job ended: it says so, or says nothing of its status (or cannot be read)."""
        return self.status is None or self.status in contract.SUCCESS_STATUSES | contract.FAILURE_STATUSES


def read_delivery(body: bytes) -> Delivery:
    """The status a delivery states, at its top level or in a `conversion` object as a status reply has it."""
    reply = contract.parse_json_object(body)
    if reply is None:
        return Delivery(None)
    inner: Any = reply.get("conversion")
    where = inner if isinstance(inner, dict) else reply
    status = contract.reply_text(where.get("status"), contract.STATUS_CHARS)
    return Delivery(status.upper() if status else None)


__all__ = [
    "HOOK_PATH",
    "JOB_CHANNEL",
    "Delivery",
    "HookContext",
    "ServerHooks",
    "current",
    "hook_prefix",
    "read_delivery",
]
