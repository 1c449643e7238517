"""A consent answer buys at most one submission.

On 2026-07-28 clients the consent question is an input-required round trip: the server answers the first
`tools/call` with the question and a sealed `requestState`, and the client calls again carrying the user's
answer and that state. The SDK checks the seal, the caller and the expiry (600 s), but not whether the same
answer was already used: replaying that second request, with `force_new=true`, paid for another job each time
without asking. So the sealed state that carried an accepted answer is remembered (a digest, in the ledger, so
every replica knows) once it has bought a submission, and never buys another.

The digest is taken from the wire before the SDK unseals it: the sealed text is unique to one question asked
(fresh randomness each time), whereas what it unseals to is the same for every asking of the same question.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from typing import Any, Final

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import RequestStateBoundary

_answer: ContextVar[str | None] = ContextVar("musicgpt_consent_answer", default=None)

TOKEN_CHARS: Final = 40


def current() -> str | None:
    """The digest of the sealed state that carried this request's answers, when it carried any."""
    return _answer.get()


class AnswerDigest:
    """A `ServerMiddleware` outside the SDK's request-state boundary: it sees the sealed state as sent."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params
        sealed = params.get("requestState") if params is not None and ctx.method == "tools/call" else None
        if not isinstance(sealed, str) or not params or not params.get("inputResponses"):
            return await call_next(ctx)
        token = _answer.set(hashlib.sha256(sealed.encode("utf-8", "surrogatepass")).hexdigest()[:TOKEN_CHARS])
        try:
            return await call_next(ctx)
        finally:
            _answer.reset(token)


def install(server: MCPServer[Any]) -> None:
    """Put AnswerDigest just outside the SDK's request-state boundary (the chain is outermost first)."""
    chain = server.middleware
    at = next((i for i, m in enumerate(chain) if isinstance(m, RequestStateBoundary)), 0)
    chain.insert(at, AnswerDigest())
