"""The tools, one module each, and the table `create_server` registers them from."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from ..errors import tool_errors
from ..state import AppState
from . import download, extract, history, status, stem_audio
from .common import ToolSpec

TOOLS: tuple[ToolSpec, ...] = (extract.SPEC, status.SPEC, download.SPEC, history.SPEC, stem_audio.SPEC)


def register(server: MCPServer[AppState], tools: tuple[ToolSpec, ...] = TOOLS) -> None:
    for spec in tools:
        server.add_tool(
            tool_errors(spec.fn),
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=spec.annotations(),
            meta=spec.meta,
        )


__all__ = ["TOOLS", "ToolSpec", "register"]
