"""The one place where failures become what the MCP surface answers, and the last scrub of what leaves.

Below the surface, code raises `Failure`s (failures.py): a person's text, with what happened to money as data.
Here, and only here, they become the SDK's errors: a tool error (an `isError` result the model reads) or a
resource error. Anything else would reach the model as the SDK's bare "Error executing tool". Every tool and
every resolver is wrapped by `tool_errors`, every resource by `resource_errors`; both also take the API key out
of whatever leaves (and any hidden character that could move or fake a line: visible.defused).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import BaseModel

from .call import Call
from .failures import Failure
from .ledger.errors import LedgerError
from .visible import defused

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Failures become tool errors; the result and every error text are scrubbed. The signature is kept
    (functools.wraps), so the SDK still builds the tool's schema from the wrapped function."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        redact = _redactor([*args, *kwargs.values()])
        try:
            return scrub(await fn(*args, **kwargs), redact)
        except ToolError as exc:
            raise ToolError(redact(str(exc))) from None
        except Failure as exc:
            raise ToolError(redact(_told(exc, [*args, *kwargs.values()]))) from None

    return wrapper


def resource_errors(fn: Callable[P, Awaitable[str]]) -> Callable[P, Awaitable[str]]:
    """The same for a resource: failures become resource errors, and what it returns is scrubbed."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
        redact = _redactor([*args, *kwargs.values()])
        try:
            return redact(await fn(*args, **kwargs))
        except ResourceError as exc:
            raise ResourceError(redact(str(exc))) from None
        except Failure as exc:
            raise ResourceError(redact(_told(exc, [*args, *kwargs.values()]))) from None

    return wrapper


def _told(exc: Failure, arguments: list[object]) -> str:
    """What the caller is told. A remote caller is not told where the server's ledger is (a database's host, port
    and name; a path) nor what failed inside it: that goes to the operator's log."""
    if isinstance(exc, LedgerError) and _remote(arguments):
        log.error("the job ledger cannot be used: %s", exc.explained())
        return exc.explained(detail=False)
    return exc.explained()


def _remote(arguments: list[object]) -> bool:
    for value in arguments:
        if isinstance(value, Call):
            return value.state.transport != "stdio"
        if isinstance(value, Context):
            return getattr(value.request_context.lifespan_context, "transport", "stdio") != "stdio"
    return False


def _redactor(arguments: list[object]) -> Callable[[str], str]:
    """The call's redaction (the caller's key and the operator's), else the operator's alone, reached through
    the Context every tool and resource takes; always with `defused`."""
    for value in arguments:
        if isinstance(value, Call):
            return _chain([value.redact, defused])
    for value in arguments:
        if isinstance(value, Context):
            client = getattr(value.request_context.lifespan_context, "client", None)
            redact = getattr(client, "redact", None)
            return _chain([redact, defused] if callable(redact) else [defused])
    return defused


def _chain(redactors: list[Callable[[str], str]]) -> Callable[[str], str]:
    def redact(text: str) -> str:
        for one in redactors:
            text = one(text)
        return text

    return redact


def scrub(value: T, redact: Callable[[str], str]) -> T:
    """`value` with `redact` applied to every string in it: text blocks, structured content, links.

    The last line of defence: replies are redacted where they are parsed, but a result is also built from file
    names, paths and whatever else, and none of it may carry the key. A model is rebuilt only when something
    changed, so ordinary results pass untouched.
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


__all__ = ["resource_errors", "scrub", "tool_errors"]
