"""Resources: the stem catalog, and a job's status by task ID."""

from __future__ import annotations

import json
import re

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from . import contract, summaries
from .catalog import catalog_json
from .ledger import JOB_STATUSES, LedgerError
from .musicgpt import MusicGPTError
from .state import AppState, app_state
from .tools.history import listing_for


def stems_catalog() -> str:
    return json.dumps(catalog_json(), indent=2)


async def extraction(task_id: str, ctx: Context[AppState]) -> str:
    state = app_state(ctx)
    if not re.fullmatch(contract.TASK_ID_PATTERN, task_id):
        raise ResourceError(f"{task_id[:100]!r} is not a task ID; use the task_id extract_stems returned.")
    try:
        who = state.who()
    except ToolError as exc:
        raise ResourceError(str(exc)) from None
    try:
        job = await state.known_job(who, task_id)  # on a shared server, only the caller's own jobs
        status = await who.client.get_status(task_id)
    except (ToolError, MusicGPTError) as exc:
        raise ResourceError(who.client.redact(str(exc))) from None
    await state.remember_status(who, task_id, status, job)
    # As for tool results, the key never leaves in a resource, whatever MusicGPT put in its reply.
    return who.client.redact(summaries.status_model(task_id, status, 0.0).model_dump_json(indent=2))


async def extractions(
    ctx: Context[AppState], status: str | None = None, query: str | None = None, limit: str | None = None
) -> str:
    state = app_state(ctx)
    ledger = await state.ledger()
    if ledger is None:
        raise ResourceError("The job ledger cannot be used; see the server's log (MUSICGPT_MCP_STATE_DIR).")
    try:
        count = _limit(limit)
        wanted = status.upper() if status else None
        if wanted is not None and wanted not in JOB_STATUSES:
            raise ResourceError(f"status must be one of {', '.join(JOB_STATUSES)}; got {wanted[:40]!r}.")
        listing = await listing_for(ledger, state.who().owner, max(1, min(count, 200)), wanted, query)
    except LedgerError as exc:
        raise ResourceError(f"The job ledger could not be read: {exc}") from None
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
