"""Resources: the stem catalog, and a job's status by task ID."""

from __future__ import annotations

import json
import re

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from . import summaries
from .call import open_call
from .catalog import catalog_json
from .errors import resource_errors
from .ledger import JOB_STATUSES
from .musicgpt import contract
from .state import ServerState
from .tools.args import LEDGER_SETTINGS, STATUS_SETTINGS
from .tools.list_extractions import listing_for


def stems_catalog() -> str:
    return json.dumps(catalog_json(), indent=2)


@resource_errors
async def extraction(task_id: str, ctx: Context[ServerState]) -> str:
    if not re.fullmatch(contract.TASK_ID_PATTERN, task_id):
        raise ResourceError(f"{task_id[:100]!r} is not a task ID; use the task_id extract_stems returned.")
    # On a shared server, only the caller's own jobs; as for tool results, the key never leaves in a resource
    # (resource_errors scrubs it), whatever MusicGPT put in its reply.
    refreshed = await open_call(ctx, STATUS_SETTINGS).book.refresh(task_id)
    return summaries.status_model(task_id, refreshed.status, 0.0).model_dump_json(indent=2)


@resource_errors
async def extractions(
    ctx: Context[ServerState], status: str | None = None, query: str | None = None, limit: str | None = None
) -> str:
    call = open_call(ctx, LEDGER_SETTINGS)
    count = _limit(limit)
    wanted = status.upper() if status else None
    if wanted is not None and wanted not in JOB_STATUSES:
        raise ResourceError(f"status must be one of {', '.join(JOB_STATUSES)}; got {wanted[:40]!r}.")
    listing = await listing_for(await call.ledger(), call.owner, count, wanted, query)
    return listing.model_dump_json(indent=2)


def _limit(raw: str | None) -> int:
    """?limit=N as a number of jobs from 1 to 200. Read by digits, never by int() on the whole text: a
    5,000-digit number is over Python's limit for int() and raised an error the caller could not read."""
    if not raw:
        return 200
    digits = raw.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ResourceError(f"limit must be a whole number from 1 to 200; got {raw[:40]!r}.")
    significant = digits.lstrip("0")
    return 200 if len(significant) > 3 else max(1, min(int(significant or "0"), 200))


def register(server: MCPServer[ServerState]) -> None:
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
    server.resource(
        # A template only because the SDK gives Context (who is asking) to templates alone; reading
        # musicgpt://extractions as such lists everything.
        "musicgpt://extractions{?status,query,limit}",
        name="extractions",
        title="Recent stem extraction jobs",
        description=(
            "The newest jobs (up to 200) in this server's ledger with their cost and saved files, and credit "
            "totals (JSON). Read musicgpt://extractions, optionally with ?status=COMPLETED, ?query=text, ?limit=N."
        ),
        mime_type="application/json",
    )(extractions)
