"""A row of the tool table: a tool's function and how a host presents it; and how a row becomes the SDK's tool."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from ..call import Call
from ..config import Settings
from ..errors import tool_errors
from ..state import Transport

P = ParamSpec("P")
R = TypeVar("R")


def everywhere(settings: Settings, transport: Transport) -> bool:
    return True


@dataclass(frozen=True)
class ToolSpec:
    fn: Any
    name: str
    title: str
    description: str
    read_only: bool
    idempotent: bool
    meta: dict[str, Any] | None = None
    # Whether a server with these settings, on this transport, offers the tool.
    available: Callable[[Settings, Transport], bool] = everywhere

    def annotations(self) -> ToolAnnotations:
        # None of our tools deletes anything; all of them talk to MusicGPT.
        return ToolAnnotations(
            title=self.title,
            read_only_hint=self.read_only,
            destructive_hint=False,
            idempotent_hint=self.idempotent,
            open_world_hint=True,
        )

    def build(self) -> Tool:
        """The SDK's tool for this row, its function wrapped in the one error wrapper."""
        tool = Tool.from_function(
            tool_errors(_noted(self.fn)),
            name=self.name,
            title=self.title,
            description=self.description,
            annotations=self.annotations(),
            meta=self.meta,
        )
        lean(tool.parameters)
        if tool.output_schema is not None:
            # Not sent to the model, but in every tools/list answer: 1.3 KB of its 19.1 KB.
            lean(tool.output_schema)
        return tool


def _noted(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """The tool's result, followed by the configuration problems its call set aside (Call.notes): settings it
    does not use, which stop another tool. The model reads them, and the user learns what to fix."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        result = await fn(*args, **kwargs)
        call = next((value for value in kwargs.values() if isinstance(value, Call)), None)
        if call is not None and call.notes and isinstance(result, CallToolResult):
            problems = " ".join(call.notes)
            note = f"Note: the server's configuration has a problem, and the tools that use that setting refuse to run until it is fixed: {problems}"
            result.content.append(TextContent(type="text", text=note))
        return result

    return wrapper


def lean(schema: dict[str, Any]) -> None:
    """Drop the titles pydantic derives from names ("Audio File", "extract_stemsArguments"): hosts send every
    tool's input schema to the model on every turn, and these say nothing the names do not (measured: about 380
    bytes of the four model-visible tools' 6.9 KB). Validation is unaffected: arguments are checked against the
    pydantic model, not this copy."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    for definition in schema.get("$defs", {}).values():
        if isinstance(definition, dict):
            lean(definition)
