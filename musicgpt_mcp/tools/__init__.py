"""The tools, one module each (named after its tool), and the table `create_server` builds them from."""

from __future__ import annotations

from mcp.server.mcpserver.tools import Tool

from ..config import Settings
from ..state import Transport
from . import (
    confirm_extraction,
    download_stems,
    extract_stems,
    get_extraction,
    list_extractions,
    read_stem_audio,
    upload_audio,
)
from .spec import ToolSpec

TOOLS: tuple[ToolSpec, ...] = (
    extract_stems.SPEC,
    get_extraction.SPEC,
    download_stems.SPEC,
    list_extractions.SPEC,
    read_stem_audio.SPEC,
    confirm_extraction.SPEC,
    upload_audio.SPEC,
)


def build(settings: Settings | None, transport: Transport) -> list[Tool]:
    """The SDK's tools a server with these settings offers on this transport (every tool when the settings are
    not known yet: each call then explains the configuration error)."""
    return [spec.build() for spec in TOOLS if settings is None or spec.available(settings, transport)]


__all__ = ["TOOLS", "ToolSpec", "build"]
