"""The row codec both ledger engines share: the columns a job is read from, a row made into a `Job`, and the
values each shared statement (sql.py) binds, made from a request, a reply, a status update or a file key.

Written once, so the engines cannot drift apart (the status filter of `jobs` once did). Every text bound goes
through `storable` here. The one thing the engines store differently, a list of texts (a JSON array in SQLite,
`text[]` in PostgreSQL), is passed in both ways (`StoreTexts`, `LoadTexts`) from the engine's sql.Dialect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

from .base import (
    Accepted,
    Download,
    FileKey,
    Job,
    JobRequest,
    StatusUpdate,
    storable,
    storable_eta,
    storable_urls,
)

# A job as every engine reads it, in the order `job_from_row` takes it.
JOB_COLUMNS: Final = (
    "id, owner, account, state, task_id, conversion_id, submitted_at, source_kind, source_name, fingerprint, "
    "stems, options, eta, credit_estimate, status, status_message, conversion_cost, finished_at, stem_urls, note, "
    "server_webhook, delivered_at, unconfirmed, read_at, reading_until"
)
# A saved stem as every engine reads it, in the order `with_downloads` takes it.
DOWNLOAD_COLUMNS: Final = "job_id, stem, path, format, bytes, at, sha256"

Row = Sequence[Any]
# A value a statement binds: a text, a number, a flag, NULL, or an engine's list of texts.
Value = Any
# How an engine stores a list of texts (a job's stems and options), and reads one back.
StoreTexts = Callable[[list[str]], Value]
LoadTexts = Callable[[Value], Iterable[str]]


def job_from_row(row: Row, load: LoadTexts) -> Job:
    """A `Job` from the first 25 columns of a row read with JOB_COLUMNS (downloads come separately)."""
    (id_, owner, account, state, task_id, conversion_id, submitted_at, source_kind, source_name, fingerprint) = row[:10]
    (stems, options, eta, credit, status, message, cost, finished, urls, note) = row[10:20]
    (server_webhook, delivered_at, unconfirmed, read_at, reading_until) = row[20:25]
    mp3, wav = loads_urls(urls)
    return Job(
        id=int(id_),
        owner=owner,
        account=account,
        state=state,
        task_id=task_id,
        conversion_id=conversion_id,
        submitted_at=float(submitted_at),
        source_kind=source_kind,
        source_name=source_name,
        fingerprint=fingerprint,
        stems=tuple(load(stems)),
        options=tuple(load(options)),
        eta=eta,
        credit_estimate=credit,
        status=status,
        status_message=message,
        conversion_cost=cost,
        finished_at=finished,
        mp3_urls=mp3,
        wav_urls=wav,
        note=note,
        server_webhook=bool(server_webhook),
        delivered_at=delivered_at,
        unconfirmed=bool(unconfirmed),
        read_at=read_at,
        reading_until=reading_until,
    )


def jobs_with_heartbeats(rows: Sequence[Row], load: LoadTexts) -> list[tuple[Job, float | None]]:
    """Rows read with JOB_COLUMNS and then `heartbeat_at` (sql.Statements.same_request), as the claim rules
    take them."""
    return [(job_from_row(r[:-1], load), float(r[-1]) if r[-1] is not None else None) for r in rows]


def with_downloads(jobs: list[Job], rows: Sequence[Row]) -> list[Job]:
    """`jobs` with their saved stems, from rows read with DOWNLOAD_COLUMNS in the order they were saved."""
    found: dict[int, list[Download]] = {}
    for job_id, stem, path, fmt, size, at, sha256 in rows:
        found.setdefault(int(job_id), []).append(Download(stem, path, fmt, int(size), float(at), sha256))
    return [replace(j, downloads=tuple(found.get(j.id, ()))) for j in jobs]


# --- what each shared statement binds, in the order of its `?` marks ------------------------------------------


def claim_values(request: JobRequest, now: float, reserved: float, store: StoreTexts) -> tuple[Value, ...]:
    """For sql.Statements.claim: a new claim, alive since `now`, counting `reserved` credits until priced."""
    return (
        storable(request.owner),
        storable(request.account),
        now,
        now,
        request.source_kind,
        storable(request.source_name),
        storable(request.fingerprint),
        store([storable(s) for s in request.stems]),
        storable(request.stems_key),
        store([storable(o) for o in request.options]),
        storable(request.options_key),
        reserved,
    )


def same_request_values(request: JobRequest, since: float) -> tuple[Value, ...]:
    """For sql.Statements.same_request: the owner's identical jobs submitted since `since`."""
    r = request
    return (*stored(r.owner, r.account, r.fingerprint, r.stems_key, r.options_key), since)


def recent_costs_values(request: JobRequest, limit: int) -> tuple[Value, ...]:
    """For sql.Statements.recent_costs. A negative limit is 0: SQLite reads a negative LIMIT as "no limit"."""
    return (*stored(request.owner, request.account, request.stems_key, request.options_key), max(limit, 0))


def accepted_values(job_id: int, reply: Accepted) -> tuple[Value, ...]:
    """For sql.Statements.accepted: what MusicGPT's 200 reply said about claim `job_id`."""
    return (
        storable(reply.task_id),
        storable(reply.conversion_id) if reply.conversion_id is not None else None,
        storable_eta(reply.eta),
        reply.credit_estimate,
        reply.server_webhook,
        job_id,
    )


def status_values(owner: str, task_id: str, update: StatusUpdate, now: float) -> tuple[Value, ...]:
    """For sql.Statements.update_status: what a status reply said, seen at `now`."""
    return (*_said(update, now), storable(owner), storable(task_id))


def read_values(job_id: int, update: StatusUpdate, now: float) -> tuple[Value, ...]:
    """For sql.Statements.read_done: what the status read of job `job_id` found, seen at `now`."""
    return (*_said(update, now), job_id)


def _said(update: StatusUpdate, now: float) -> tuple[Value, ...]:
    """The values of sql.STATUS_SET, in the order of its marks."""
    return (
        storable(update.status),
        storable(update.status_message) if update.status_message is not None else None,
        update.conversion_cost,
        update.done,
        now,
        bool(update.mp3_urls or update.wav_urls),
        dumps_urls(storable_urls(update.mp3_urls), storable_urls(update.wav_urls)),
    )


def download_values(job_id: int, files: Sequence[Download]) -> list[tuple[Value, ...]]:
    """For sql.Statements.add_download, one tuple a saved stem of job `job_id`."""
    return [(job_id, storable(f.stem), storable(f.path), storable(f.format), f.bytes, f.at, f.sha256) for f in files]


def key_values(key: FileKey) -> tuple[int, ...]:
    """A file's identity as both engines' fingerprint tables hold it: dev, ino, size, mtime_ns, ctime_ns."""
    return (signed64(key.dev), signed64(key.ino), key.size, key.mtime_ns, key.ctime_ns)


def listing_filter(owner: str, status: str | None, query: str | None, like: str) -> tuple[str, list[Value]]:
    """The WHERE clause (with `?` marks) and its values for `Ledger.jobs`: the owner's jobs, of one status as
    `Job.display_status` names it, whose source name holds `query` (case aside; `like` is the engine's operator
    for that)."""
    where, args = ["owner = ?"], [storable(owner)]
    if status is not None:
        clause, extra = status_clause(status)
        where.append(clause)
        args += extra
    if query:
        escaped = storable(query).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(f"source_name {like} ? ESCAPE '\\'")
        args.append(f"%{escaped}%")
    return " AND ".join(where), args


def status_clause(status: str) -> tuple[str, list[Value]]:
    """The jobs `Job.display_status` shows as `status`."""
    if status == "OUTCOME_UNKNOWN":
        return "state = 'unknown'", []
    if status == "SUBMITTED":
        return "state = 'submitted' AND status IS NULL", []
    return "state = 'submitted' AND status = ?", [storable(status)]


# --- how values are stored -------------------------------------------------------------------------------------


def stored(*texts: str) -> tuple[str, ...]:
    """`texts` as a statement binds them: each `storable`."""
    return tuple(storable(t) for t in texts)


def signed64(n: int) -> int:
    """A 64-bit unsigned number (st_dev, st_ino) as the signed one both engines store; one to one."""
    n &= 2**64 - 1
    return n - 2**64 if n >= 2**63 else n


def dumps_urls(mp3: dict[str, str], wav: dict[str, str]) -> str:
    return json.dumps({"mp3": mp3, "wav": wav}, separators=(",", ":"))


def loads_urls(raw: str | None) -> tuple[dict[str, str], dict[str, str]]:
    if not raw:
        return {}, {}
    try:
        data = json.loads(raw)
        return dict(data.get("mp3") or {}), dict(data.get("wav") or {})
    except (ValueError, AttributeError, TypeError):
        return {}, {}
