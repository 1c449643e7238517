"""Resources: the stem catalog, and a job's status by task ID."""

from __future__ import annotations

import json
import re

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from . import contract, summaries
from .catalog import catalog_json
from .musicgpt import MusicGPTError
from .state import AppState, app_state


def stems_catalog() -> str:
    return json.dumps(catalog_json(), indent=2)


async def extraction(task_id: str, ctx: Context[AppState]) -> str:
    try:
        client, _ = app_state(ctx).require()
    except ToolError as exc:
        raise ResourceError(str(exc)) from None
    if not re.fullmatch(contract.TASK_ID_PATTERN, task_id):
        raise ResourceError(f"{task_id[:100]!r} is not a task ID; use the task_id extract_stems returned.")
    try:
        status = await client.get_status(task_id)
    except MusicGPTError as exc:
        raise ResourceError(client.redact(str(exc))) from None
    # As for tool results, the key never leaves in a resource, whatever MusicGPT put in its reply.
    return client.redact(summaries.status_model(task_id, status, 0.0).model_dump_json(indent=2))


def register(server: MCPServer[AppState]) -> None:
    server.resource(
        "musicgpt://stems",
        name="stems",
        title="MusicGPT stems and preprocessing options",
        description="Every stem MusicGPT can separate, with what it holds, and the preprocessing options.",
        mime_type="application/json",
    )(stems_catalog)
    server.resource(
        "musicgpt://extractions/{task_id}",
        name="extraction",
        title="A stem extraction job",
        description="The status of a MusicGPT extraction job, with stem URLs once it has finished (JSON).",
        mime_type="application/json",
    )(extraction)
