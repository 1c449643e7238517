"""What the client of a request can do: render MCP Apps (the player view)? show the user a form
(elicitation)? One answer for every transport and protocol era, for tools and for the listing.

Where it is known:
- stdio and in-process: the `initialize` handshake, kept by the connection;
- 2026-07-28: the capabilities each request carries in its `_meta` (none there means none declared);
- 2025-era stateless HTTP: nowhere in the SDK, which forgets a handshake by the next request. The HTTP
  transport hands such a client a signed session ID at `initialize` that carries what it declared
  (sessions.py), and puts it here, in `restored`, for each request that sends it back. A client that
  sends none back cannot be told apart: `renders_apps` is then None ("cannot tell").

No HTTP in here, so any tool can import it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mcp.server.apps import APP_MIME_TYPE
from mcp.server.apps import EXTENSION_ID as APPS_EXTENSION
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.types import ClientCapabilities
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS


@dataclass(frozen=True)
class Declared:
    """What a 2025-era HTTP client declared at `initialize`, as its session ID carries it."""

    apps: bool
    form: bool  # form elicitation (a bare `elicitation: {}` counts, as in the SDK)


@dataclass(frozen=True)
class Abilities:
    # True or False when known; None when the server cannot tell (a 2025-era HTTP client without a session ID).
    renders_apps: bool | None
    # Whether a question can reach the user now: declared, and the request has a way to carry it (2026:
    # an input-required result; before: a request back to the client, which stateless HTTP cannot send).
    can_elicit: bool


# Set by the HTTP transport for the request being served (sessions.py); None elsewhere.
restored: ContextVar[Declared | None] = ContextVar("musicgpt_client_declared", default=None)


def declared(capabilities: ClientCapabilities | None) -> Declared:
    if capabilities is None:
        return Declared(apps=False, form=False)
    settings = (capabilities.extensions or {}).get(APPS_EXTENSION)
    mime_types = settings.get("mimeTypes") if isinstance(settings, dict) else None
    elicitation = capabilities.elicitation
    return Declared(
        # The SDK's rule (client_supports_apps): the extension, listing the MCP Apps MIME type.
        apps=isinstance(mime_types, list | tuple) and APP_MIME_TYPE in mime_types,
        # A url-only client cannot show a form; a bare `elicitation: {}` predates modes and means form.
        form=elicitation is not None and (elicitation.form is not None or elicitation.url is None),
    )


def abilities(ctx: Context[Any] | ServerRequestContext[Any, Any]) -> Abilities:
    """What the client of this request can do (see the module's docstring for where each answer comes from)."""
    request = ctx.request_context if isinstance(ctx, Context) else ctx
    session = request.session
    handshake_era = request.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
    capabilities = session.client_capabilities
    renders: bool | None
    if handshake_era and capabilities is None and session.client_params is None:
        # No handshake on this connection: 2025-era stateless HTTP.
        found = restored.get()
        renders, form = (found.apps, found.form) if found is not None else (None, False)
    else:
        known = declared(capabilities)
        renders, form = known.apps, known.form
    return Abilities(renders_apps=renders, can_elicit=form and (not handshake_era or session.can_send_request))


def app_only(tool: dict[str, Any]) -> bool:
    """A tool for MCP Apps views alone (`_meta.ui.visibility == ["app"]`), in its wire form."""
    meta = tool.get("_meta")
    ui = meta.get("ui") if isinstance(meta, dict) else None
    return isinstance(ui, dict) and ui.get("visibility") == ["app"]


class AppOnlyTools:
    """A `ServerMiddleware`: tools/list leaves out app-only tools for a client known not to render MCP
    Apps, whose host would otherwise offer them to the model. Where the server cannot tell, they stay."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list":
            return await call_next(ctx)
        result = await call_next(ctx)
        if not isinstance(result, dict) or abilities(ctx).renders_apps is not False:
            return result
        tools = result.get("tools")
        if not isinstance(tools, list):
            return result
        return {**result, "tools": [t for t in tools if not (isinstance(t, dict) and app_only(t))]}


__all__ = ["Abilities", "AppOnlyTools", "Declared", "abilities", "app_only", "declared", "restored"]
