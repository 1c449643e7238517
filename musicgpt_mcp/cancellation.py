"""Cancellation for 2025-era clients of the stateless HTTP transport.

Such a client (both TypeScript SDKs, Python's) cancels a call by POSTing `notifications/cancelled` and keeps
reading the call's stream. The SDK's stateless transport serves each POST on a connection of its own, so the
notice finds no request with that id and is dropped, while the call it names goes on: a `get_extraction`
wait polled MusicGPT for its full 40 s. Here each such `tools/call` subscribes to a signal under a key, and
the notice publishes that key (signals.py): in this process, and through the database in whichever replica
serves the call. The call then ends as the SDK ends one it cancelled itself: error -32800 on its stream.

The key names whose call it is: the signed-in user, the client's session nonce (sessions.py: two clients
of one user both number their requests from 1) and the request id. A client that sent back no session ID
cannot be told apart from the user's other clients, so nothing it sends cancels anything this way; its
calls end at their own time (a wait is capped at MUSICGPT_MCP_MAX_WAIT).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Final

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.streamable_http import REQUEST_CANCELLED
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from mcp.types import RequestId

from . import sessions
from .signals import Signals

log = logging.getLogger(__name__)

CHANNEL: Final = "cancel"


def key(nonce: str, request_id: RequestId) -> str:
    """Whose call: the signed-in user of this request (none on a loopback server without sign-in, which
    has one user), the client's session nonce, the request id ("7" and 7 are one id, as in the SDK)."""
    token = get_access_token()
    user = (token.subject or token.client_id) if token is not None else ""
    material = json.dumps([user, nonce, coerce_request_id(request_id)], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:40]


class RemoteCancel:
    """A `ServerMiddleware` for the HTTP transport, inside `sessions.RestoreSession`."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        session = sessions.current.get()
        signals = getattr(ctx.lifespan_context, "signals", None)
        if session is None or not isinstance(signals, Signals):
            return await call_next(ctx)
        if ctx.method == "notifications/cancelled" and ctx.request_id is None:
            cancelled = cancelled_request_id_from_params(ctx.params)
            if cancelled is not None:
                # Shielded: the stateless transport tears this connection down as soon as it has answered
                # 202, and the notice must still reach the other replicas.
                with anyio.CancelScope(shield=True):
                    await signals.publish(CHANNEL, key(session.nonce, cancelled))
            return await call_next(ctx)
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        with anyio.CancelScope() as scope, signals.subscribe(CHANNEL, key(session.nonce, ctx.request_id), scope.cancel):
            return await call_next(ctx)
        log.info("call %s cancelled by its client", ctx.request_id)
        # What the SDK's 2025-era transport writes for a call it cancelled itself: it ends the call's stream.
        raise MCPError(code=REQUEST_CANCELLED, message="Request cancelled")


__all__ = ["CHANNEL", "RemoteCancel", "key"]
