"""The tools, one module each, and the table `create_server` builds them from."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.tools import Tool

from ..errors import tool_errors
from . import download, extract, history, status, stem_audio
from .common import ToolSpec

TOOLS: tuple[ToolSpec, ...] = (extract.SPEC, status.SPEC, download.SPEC, history.SPEC, stem_audio.SPEC)


def build(tools: tuple[ToolSpec, ...] = TOOLS) -> list[Tool]:
    """The SDK's tools for these rows, each wrapped in the one error wrapper."""
    built = []
    for spec in tools:
        tool = Tool.from_function(
            tool_errors(spec.fn),
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=spec.annotations(),
            meta=spec.meta,
        )
        lean(tool.parameters)
        if tool.output_schema is not None:
            # Not sent to the model, but in every tools/list answer: 1.3 KB of its 19.1 KB.
            lean(tool.output_schema)
        built.append(tool)
    return built


def lean(schema: dict[str, Any]) -> None:
    """Drop the titles pydantic derives from names ("Audio File", "extract_stemsArguments"): hosts send
    every tool's input schema to the model on every turn, and these say nothing the names do not
    (measured: about 380 bytes of the four model-visible tools' 6.9 KB). Validation is unaffected:
    arguments are checked against the pydantic model, not this copy."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    for definition in schema.get("$defs", {}).values():
        if isinstance(definition, dict):
            lean(definition)


__all__ = ["TOOLS", "ToolSpec", "build", "lean"]
