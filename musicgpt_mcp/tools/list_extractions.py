"""list_extractions: what was submitted, what it cost, where it was saved. Free; reads the ledger only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal, get_args

from mcp.types import CallToolResult
from pydantic import Field

from .. import summaries
from ..catalog import PREPROCESSING_OPTIONS, STEMS
from ..ledger import JOB_STATUSES, Job, Ledger, iso
from ..models import ExtractionList, ExtractionRecord
from ..visible import shown
from .args import LedgerCall, result
from .spec import ToolSpec

JobStatus = Literal[
    "SUBMITTED", "IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "ERROR", "OUTCOME_UNKNOWN"
]  # fmt: skip
if get_args(JobStatus) != JOB_STATUSES:
    raise RuntimeError("JobStatus is out of step with the ledger's statuses")

DESCRIPTION = """\
List recent stem extraction jobs from this server's ledger, newest first, with what each cost and \
where its stems were saved, plus the credits spent in the last 24 hours and 30 days. Free; it does not \
contact MusicGPT (statuses are as last seen: call get_extraction for a fresh one)."""


Limit = Annotated[int, Field(description="How many jobs to return, newest first.", ge=1, le=200)]
StatusFilter = Annotated[JobStatus | None, Field(description="Only jobs whose last known status is this.")]
Query = Annotated[str | None, Field(description="Only jobs whose song name or URL contains this text.", max_length=200)]


async def list_extractions(
    call: LedgerCall, limit: Limit = 20, status: StatusFilter = None, query: Query = None
) -> Annotated[CallToolResult, ExtractionList]:
    listing = await listing_for(await call.ledger(), call.owner, limit, status, query.strip() if query else None)
    return result(summaries.extractions(listing, status, query), listing)


async def listing_for(ledger: Ledger, owner: str, limit: int, status: str | None, query: str | None) -> ExtractionList:
    jobs = await ledger.jobs(owner, limit, status, query or None)
    spending = await ledger.spending(owner, time.time())
    return ExtractionList(
        extractions=[record(job) for job in jobs],
        credits_last_24_hours=round(spending.credits_last_day, 4),
        credits_last_30_days=round(spending.credits_last_30_days, 4),
    )


def record(job: Job) -> ExtractionRecord:
    folders = list(dict.fromkeys(str(Path(d.path).parent) for d in job.downloads))
    return ExtractionRecord(
        task_id=job.task_id,
        source=shown(job.source_name),
        source_type=job.source_kind,
        stems=[s for s in job.stems if s in STEMS],
        preprocessing_options=[o for o in job.options if o in PREPROCESSING_OPTIONS],
        status=job.display_status,
        status_message=job.status_message or job.note,
        submitted_at=iso(job.submitted_at),
        finished_at=iso(job.finished_at) if job.finished_at is not None else None,
        credits=job.credits,
        saved_to=folders,
    )


SPEC = ToolSpec(
    fn=list_extractions,
    name="list_extractions",
    title="List stem extraction jobs",
    description=DESCRIPTION,
    read_only=True,
    idempotent=True,
)
