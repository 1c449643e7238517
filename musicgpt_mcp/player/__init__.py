"""The in-chat stem player: an MCP App view (one self-contained HTML file) and the Apps extension serving it.

A host that renders MCP Apps shows the view beside get_extraction's and download_stems' results
(their tool `_meta.ui` names it). The view reaches the server only through the host: it calls
get_extraction while a job runs and the app-only read_stem_audio for the audio, so it needs no
network access of its own and never sees the API key.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Final, Literal

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp
from mcp.server.mcpserver.resources import FunctionResource

URI: Final = "ui://musicgpt-mcp/player.html"
# In get_extraction's result `_meta`, for hosts with Apps only: seconds left by MusicGPT's estimate,
# so the view can count down (the model reads the same in the text).
ETA_META: Final = "musicgpt-mcp/eta_seconds"
# In a finished job's get_extraction `_meta`, for hosts with Apps: "server" when the view may save the stems through
# download_stems (the server saves into its output folder), for hosts that cannot save a file themselves.
SAVES_META: Final = "musicgpt-mcp/saves"


@cache
def html() -> str:
    return resources.files(__package__).joinpath("player.html").read_text(encoding="utf-8")


def ui(*visibility: Literal["model", "app"]) -> dict[str, Any]:
    """A tool's `_meta` linking it to the player: who may call it (the model, the view, or both)."""
    return {"ui": {"resourceUri": URI, "visibility": list(visibility)}}


def apps() -> Apps:
    """The Apps extension with the player registered. Tools link to it through their own `meta` (the tool
    table), not `Apps.tool`, so a host without Apps sees the same tools and results. The HTML is read when a
    host first asks for the view, not when the server starts (a host listing tools never needs it)."""
    extension = Apps()
    csp = ResourceCsp(connect_domains=[], resource_domains=[])
    extension.add_resource(
        FunctionResource(
            uri=URI,
            name="stem_player",
            title="Stem player",
            description="Plays and mixes a stem extraction job's stems: a waveform, mute, solo and volume per stem.",
            mime_type=APP_MIME_TYPE,
            # The narrowest policy: no origin at all. Audio arrives as tool results and is decoded in memory (no
            # fetch, no <audio src>, no blob: or data: URLs, which some hosts strip anyway).
            meta={"ui": {"csp": csp.model_dump(by_alias=True, exclude_none=True), "prefersBorder": True}},
            fn=html,
        )
    )
    return extension
