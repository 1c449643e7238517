"""MCP server for MusicGPT stem extraction."""

__version__ = "0.1.0"
