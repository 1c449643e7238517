#!/usr/bin/env sh
# Register the server with Claude Code (user scope, so every project sees it).
claude mcp add musicgpt --scope user --env MUSICGPT_API_KEY="$MUSICGPT_API_KEY" -- uvx musicgpt-mcp
