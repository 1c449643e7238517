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
from .musicgpt import MusicGPTError
from .urls import URLRefused

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
