"""The one place where failures become tool errors the model can act on.

Every tool is wrapped by `tool_errors`: a failure from the client, the file policy or the output
policy reaches the model as a `ToolError` carrying its explanation; anything else would reach it
as the SDK's bare "Error executing tool".
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from .downloads import OutputRefused
from .files import FileRefused
from .ledger import LedgerError
from .musicgpt import MusicGPTClient, MusicGPTError
from .submission import Refused
from .urls import URLRefused
from .visible import defused

P = ParamSpec("P")
R = TypeVar("R")


def explain(exc: Exception) -> ToolError | None:
    """The tool error for a failure we can explain, or None."""
    if isinstance(exc, MusicGPTError):
        return ToolError(str(exc))
    if isinstance(exc, FileRefused | URLRefused):
        return ToolError(f"{exc} Nothing was submitted.")
    if isinstance(exc, OutputRefused):
        return ToolError(f"{exc} Nothing was downloaded.")
    if isinstance(exc, Refused):
        return ToolError(str(exc))
    if isinstance(exc, LedgerError):
        return ToolError(
            f"The job ledger could not be used ({exc}). Check where it is kept: the PostgreSQL database in "
            "MUSICGPT_MCP_DATABASE_URL when that is set (up, reachable), else MUSICGPT_MCP_STATE_DIR or the default "
            "state folder (writable, with space on its disk)."
        )
    return None


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn the failures `explain` knows into tool errors, and take the API key (and any hidden character that
    could move or fake a line: visible.defused) out of whatever the tool returns or raises. The signature is kept (functools.wraps), so the SDK still builds the
    tool's schema from the wrapped function."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        redact = _chain([_redactor([*args, *kwargs.values()]), defused])
        try:
            return scrub(await fn(*args, **kwargs), redact)
        except ToolError as exc:
            raise ToolError(redact(str(exc))) from None
        except Exception as exc:
            error = explain(exc)
            if error is None:
                raise
            raise ToolError(redact(str(error))) from None

    return wrapper


def _redactor(arguments: list[object]) -> Callable[[str], str]:
    """The clients' `redact`, reached through the Context argument every tool takes: the operator's
    key, and on a shared server in header mode the caller's own key too."""
    for value in arguments:
        if isinstance(value, Context):
            state = value.request_context.lifespan_context
            redactors: list[Callable[[str], str]] = []
            client = getattr(state, "client", None)
            if isinstance(client, MusicGPTClient):
                redactors.append(client.redact)
            who = getattr(state, "who", None)
            if callable(who):
                try:
                    caller = who()
                except Exception:  # not configured, or no caller: the operator's key is all there is
                    caller = None
                if caller is not None and caller.client is not client:
                    redactors.append(caller.client.redact)
            return _chain(redactors)
    return _unchanged


def _chain(redactors: list[Callable[[str], str]]) -> Callable[[str], str]:
    def redact(text: str) -> str:
        for one in redactors:
            text = one(text)
        return text

    return redact


def _unchanged(text: str) -> str:
    return text


T = TypeVar("T")


def scrub(value: T, redact: Callable[[str], str]) -> T:
    """`value` with `redact` applied to every string in it: text blocks, structured content, links.

    The last line of defence: replies are redacted where they are parsed, but a result is also
    built from file names, paths and whatever else, and none of it may carry the key. A model
    is rebuilt only when something changed, so ordinary results pass untouched.
    """
    if isinstance(value, str):
        return redact(value)  # type: ignore[return-value]
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json", by_alias=True)
        cleaned = scrub(data, redact)
        return value if cleaned == data else type(value).model_validate(cleaned)
    if isinstance(value, dict):
        # Values only: keys are the schema's field names and the catalog's stem names, never the caller's text.
        return {k: scrub(v, redact) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(scrub(v, redact) for v in value)
    return value
