"""Session IDs for 2025-era clients of the stateless HTTP transport, which remember nothing server-side.

A 2025-era client declares its capabilities once, in `initialize`; the next request may reach another
replica, which never saw it. So the answer to `initialize` carries an `Mcp-Session-Id` that holds what the
client declared (MCP Apps, form elicitation) and a random nonce, signed with a key derived from the server
secret: any replica can read it back, nothing is stored, and a client cannot claim what it did not declare
without the key. The SDK's stateless transport lets the header through untouched, and clients send it back
on every request: clients.py then answers "what can this client do", and the nonce tells apart two clients
of one user that both number their requests from 1 (cancellation.py).

A session ID that does not verify (forged, or signed with a secret since replaced) is ignored: the request
is served as from a client that sent none. A stateless server has no stream to offer on GET: a 2025-era
GET is answered 405, as the spec allows, instead of holding a connection open that nothing writes to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import ClientCapabilities
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import clients

log = logging.getLogger(__name__)

HEADER: Final = "mcp-session-id"
PREFIX: Final = "m1."
NONCE_BYTES: Final = 16
MAC_BYTES: Final = 16
# Bits of the flags byte: what the client declared.
APPS: Final = 1
FORM: Final = 2
# An initialize request is small; a bigger body is not one we mint for, and is not copied.
MAX_OBSERVED: Final = 64 * 1024


@dataclass(frozen=True)
class Session:
    nonce: str  # hex: which client, among those of one user
    declared: clients.Declared


# The 2025-era HTTP session of the request being served, when it sent back a valid session ID.
current: ContextVar[Session | None] = ContextVar("musicgpt_http_session", default=None)


class SessionSeal:
    """Makes and reads session IDs with one key (derived from the server secret, shared by replicas)."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def mint(self, declared: clients.Declared) -> str:
        flags = (APPS if declared.apps else 0) | (FORM if declared.form else 0)
        body = bytes([flags]) + secrets.token_bytes(NONCE_BYTES)
        return PREFIX + base64.urlsafe_b64encode(body + self._mac(body)).decode("ascii").rstrip("=")

    def open(self, token: str) -> Session | None:
        if not token.startswith(PREFIX) or len(token) > 100:
            return None
        text = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if len(body) != 1 + NONCE_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            return None
        flags = body[0]
        return Session(
            nonce=body[1:].hex(), declared=clients.Declared(apps=bool(flags & APPS), form=bool(flags & FORM))
        )

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, b"musicgpt-mcp session\0" + body, hashlib.sha256).digest()[:MAC_BYTES]


def legacy_era(scope: Scope) -> bool:
    """Whether this request takes the SDK's 2025-era (stateless) path: no protocol version header, or a
    handshake-era one (the SDK routes by the header alone)."""
    version = next((v for k, v in scope["headers"] if k == b"mcp-protocol-version"), None)
    return version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS


class SessionIds:
    """ASGI middleware around the MCP endpoint: an `Mcp-Session-Id` on each 2025-era `initialize` answer,
    and 405 to a 2025-era GET."""

    def __init__(self, app: ASGIApp, *, path: str, seal: SessionSeal) -> None:
        self.app = app
        self.path = path.rstrip("/") or "/"
        self.seal = seal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path or not legacy_era(scope):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            await _no_stream(send)
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = bytearray()

        async def observed() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) <= MAX_OBSERVED:
                body.extend(message.get("body", b""))
            return message

        async def stamped(message: Message) -> None:
            # The SDK reads the whole body before it answers, so the request is known by now.
            if message["type"] == "http.response.start" and message["status"] == 200:
                declared = _initialize(bytes(body))
                if declared is not None:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER.encode()]
                    headers.append((HEADER.encode(), self.seal.mint(declared).encode("ascii")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, observed, stamped)


def _initialize(body: bytes) -> clients.Declared | None:
    """What an `initialize` request declared, or None when the body is not one."""
    if len(body) > MAX_OBSERVED or b'"initialize"' not in body:
        return None
    try:
        message: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "initialize" or "id" not in message:
        return None
    params = message.get("params")
    raw = params.get("capabilities") if isinstance(params, dict) else None
    try:
        capabilities = ClientCapabilities.model_validate(raw) if isinstance(raw, dict) else None
    except ValidationError:
        capabilities = None
    return clients.declared(capabilities)


async def _no_stream(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 405,
            "headers": [(b"allow", b"POST"), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class RestoreSession:
    """A `ServerMiddleware`: on a 2025-era HTTP request that sends back a session ID this server signed,
    puts what it carries where tools find it (`clients.restored`, `current`) for the request's duration."""

    def __init__(self, seal: SessionSeal) -> None:
        self.seal = seal

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        session = self.session_of(ctx)
        if session is None:
            return await call_next(ctx)
        declared_token = clients.restored.set(session.declared)
        session_token = current.set(session)
        try:
            return await call_next(ctx)
        finally:
            current.reset(session_token)
            clients.restored.reset(declared_token)

    def session_of(self, ctx: ServerRequestContext[Any, Any]) -> Session | None:
        request = ctx.request
        if not isinstance(request, Request) or ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return None
        token = request.headers.get(HEADER)
        if token is None:
            return None
        session = self.seal.open(token)
        if session is None:
            # Debug only: a client keeps sending a stale ID with every request after the secret changed.
            log.debug("ignored a session ID this server did not sign (another secret, or made up)")
        return session


__all__ = ["RestoreSession", "Session", "SessionIds", "SessionSeal", "current", "legacy_era"]
