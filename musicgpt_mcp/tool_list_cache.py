"""tools/list over HTTP, answered from its first answer.

A hosted server is asked for its tools by every client, often before every turn, and the answer (five
tools with their input and output schemas, about 17.5 KB) never changes while the process runs. The
SDK builds it anew each time: the tool models, their dump, then the per-version sieve that validates
and dumps it again. Measured with wrk on one core, that serialization was most of what set a
tools/list apart from a one-tool server's. This middleware keeps the finished wire answer per
protocol version and per kind of client: one that renders MCP Apps, one that does not (the app-only
tools are left out for it, by clients.AppOnlyTools inside this cache), one the server cannot tell.

Only for the stateless HTTP transport (web.build_app adds it), where every connection is born ready:
a middleware that answers without `call_next` skips the SDK's handshake gate and params validation,
so only a request with no params but a well-formed `_meta` is answered here (a cursor, or anything
else, goes the SDK's way), and only after the SDK itself answered the same version and kind once.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from .clients import abilities

MAX_ANSWERS: Final = 48  # protocol versions are a short list, times three kinds of client; a bound all the same


class ToolListCache:
    """A `ServerMiddleware` for a server whose tools are fixed once it is built."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, bool | None], dict[str, Any]] = {}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list" or not _plain(ctx):
            return await call_next(ctx)
        key = (ctx.protocol_version, abilities(ctx).renders_apps)
        cached = self._answers.get(key)
        if cached is not None:
            # A fresh top level per reply; below it nothing in the SDK's pipeline writes (it only dumps).
            return dict(cached)
        result = await call_next(ctx)
        if isinstance(result, dict) and len(self._answers) < MAX_ANSWERS:
            self._answers[key] = copy.deepcopy(result)
        return result


def _plain(ctx: ServerRequestContext[Any, Any]) -> bool:
    """No params but a `_meta` the SDK could read (`ctx.meta` is None when it is malformed, and the SDK
    then refuses the request: so must we)."""
    params = ctx.params
    if params is None:
        return True
    return all(key == "_meta" for key in params) and ("_meta" not in params or ctx.meta is not None)


__all__ = ["ToolListCache"]
