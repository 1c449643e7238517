"""The one place where failures become tool errors the model can act on.

Every tool is wrapped by `tool_errors`: a failure from the client, the file policy or the output
policy reaches the model as a `ToolError` carrying its explanation; anything else would reach it
as the SDK's bare "Error executing tool".
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from .downloads import OutputRefused
from .files import FileRefused
from .ledger import LedgerError
from .musicgpt import MusicGPTError
from .submission import Refused

P = ParamSpec("P")
R = TypeVar("R")


def explain(exc: Exception) -> ToolError | None:
    """The tool error for a failure we can explain, or None."""
    if isinstance(exc, MusicGPTError):
        return ToolError(str(exc))
    if isinstance(exc, FileRefused):
        return ToolError(f"{exc} Nothing was submitted.")
    if isinstance(exc, OutputRefused):
        return ToolError(f"{exc} Nothing was downloaded.")
    if isinstance(exc, Refused):
        return ToolError(str(exc))
    if isinstance(exc, LedgerError):
        return ToolError(
            f"The job ledger could not be used ({exc}). Check that MUSICGPT_MCP_STATE_DIR (or the default state "
            "folder) is writable and the disk has space."
        )
    return None


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn the failures `explain` knows into tool errors. The signature is kept (functools.wraps),
    so the SDK still builds the tool's schema from the wrapped function."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except Exception as exc:
            error = explain(exc)
            if error is None:
                raise
            raise error from None

    return wrapper
