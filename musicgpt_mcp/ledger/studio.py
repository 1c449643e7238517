"""What the ledger keeps for the studio: quotes (a paid job the user approves in the view before anything is
sent) and uploads (a song the view sends in slices). Written once for both engines: each operation is a few
shared statements that an engine runs in one transaction (`Ledger.run_steps`), every decision taken by a single
conditional statement, so it holds across processes and replicas without engine-specific locks.

A quote moves open -> approving (one approval took it) -> approved (it bought its job), or open -> cancelled,
or open -> expired. A partial unique index allows one open quote per request (owner, account, identity).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .base import STALE_CLAIM, storable
from .codec import Row, Value
from .locks import LOCK_UPLOADS, lock_key
from .sql import Dialect

QuoteState = Literal["open", "approving", "approved", "cancelled", "expired"]
QUOTE_COLUMNS = "id, owner, account, identity, spec, created_at, expires_at, state, taken_at, job_id, task_id"
HOUR = 3600.0
UPLOAD_COLUMNS = "id, owner, spec, file_name, total_bytes, received, sha256, state, created_at, expires_at"


@dataclass(frozen=True)
class Step:
    """One statement of an operation, and whether its rows are wanted back. A `guard` that changes no row ends
    the operation there and undoes it: the steps after it are answered as if they changed nothing."""

    statement: str
    values: Sequence[Value]
    fetch: bool = False
    guard: bool = False


@dataclass(frozen=True)
class Done:
    rowcount: int
    rows: list[Row]


class Unchanged(Exception):
    """Raised inside an engine's transaction when a guard step changed no row, to roll it back."""


def answered(done: list[Done], steps: Sequence[Step]) -> list[Done]:
    """`done`, with the steps a guard stopped answered as having changed nothing."""
    return done + [Done(0, []) for _ in steps[len(done) :]]


class Runner(Protocol):
    dialect: Dialect

    async def run_steps(self, steps: Sequence[Step]) -> list[Done]: ...


@dataclass(frozen=True)
class Quote:
    id: str
    owner: str
    account: str
    identity: str  # what makes two requests the same: audio fingerprint, stems, options
    spec: dict[str, Any]  # what the approval sends (the request, the audio, the options), as JSON
    created_at: float
    expires_at: float
    state: QuoteState
    taken_at: float | None
    job_id: int | None
    task_id: str | None

    def expired(self, now: float) -> bool:
        return self.state == "expired" or (self.state == "open" and now >= self.expires_at)


@dataclass(frozen=True)
class Upload:
    id: str
    owner: str
    spec: dict[str, Any]  # the call that asked for a song: stems, options, force_new
    file_name: str | None
    total_bytes: int | None
    received: int
    sha256: str | None
    state: Literal["receiving", "complete"]
    created_at: float
    expires_at: float


def _quote(row: Row) -> Quote:
    (id_, owner, account, identity, spec, created, expires, state, taken, job_id, task_id) = row
    return Quote(
        id_, owner, account, identity, json.loads(spec), float(created), float(expires), state,
        float(taken) if taken is not None else None, int(job_id) if job_id is not None else None, task_id,
    )  # fmt: skip


def _upload(row: Row) -> Upload:
    (id_, owner, spec, name, total, received, sha256, state, created, expires) = row
    return Upload(
        id_, owner, json.loads(spec), name, int(total) if total is not None else None, int(received), sha256,
        state, float(created), float(expires),
    )  # fmt: skip


def _spec(spec: dict[str, Any]) -> str:
    return storable(json.dumps(spec, separators=(",", ":"), sort_keys=True))


# --- quotes ----------------------------------------------------------------------------------------------------


async def open_quote(ledger: Runner, quote: Quote, now: float) -> Quote:
    """`quote`, or the open one already standing for the same request (the same quote for an identical call,
    however often it is made, and whatever its force_new)."""
    sql = ledger.dialect.render
    done = await ledger.run_steps(
        [
            Step(sql("UPDATE {quotes} SET state = 'expired' WHERE owner = ? AND state = 'open' AND expires_at <= ?"),
                 (storable(quote.owner), now)),
            Step(sql(f"INSERT INTO {{quotes}} ({QUOTE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', NULL, NULL, "
                     "NULL) ON CONFLICT DO NOTHING"),
                 (quote.id, storable(quote.owner), storable(quote.account), storable(quote.identity),
                  _spec(quote.spec), quote.created_at, quote.expires_at)),
            Step(sql(f"SELECT {QUOTE_COLUMNS} FROM {{quotes}} WHERE owner = ? AND account = ? AND identity = ? "
                     "AND state = 'open'"),
                 (storable(quote.owner), storable(quote.account), storable(quote.identity)), fetch=True),
        ]
    )  # fmt: skip
    rows = done[-1].rows
    return _quote(rows[0]) if rows else quote


async def find_quote(ledger: Runner, owner: str, quote_id: str) -> Quote | None:
    sql = ledger.dialect.render
    step = Step(sql(f"SELECT {QUOTE_COLUMNS} FROM {{quotes}} WHERE owner = ? AND id = ?"), (storable(owner), quote_id))
    rows = (await ledger.run_steps([Step(step.statement, step.values, fetch=True)]))[0].rows
    return _quote(rows[0]) if rows else None


async def take_quote(ledger: Runner, owner: str, quote_id: str, now: float) -> tuple[Quote | None, bool]:
    """The quote, and whether this approval took it (open and not expired; or taken by an approval that died
    before it claimed a job). Anything else (approving elsewhere, approved, cancelled, expired) is for the
    caller to read off the quote."""
    sql = ledger.dialect.render
    done = await ledger.run_steps(
        [
            Step(sql("UPDATE {quotes} SET state = 'approving', taken_at = ? WHERE owner = ? AND id = ? AND "
                     "expires_at > ? AND (state = 'open' OR (state = 'approving' AND job_id IS NULL AND taken_at < ?))"),
                 (now, storable(owner), quote_id, now, now - STALE_CLAIM)),
            Step(sql(f"SELECT {QUOTE_COLUMNS} FROM {{quotes}} WHERE owner = ? AND id = ?"), (storable(owner), quote_id),
                 fetch=True),
        ]
    )  # fmt: skip
    rows = done[1].rows
    return (_quote(rows[0]) if rows else None), done[0].rowcount == 1


async def touch_quote(ledger: Runner, quote_id: str, now: float) -> None:
    """The approval that took the quote is alive and has not claimed its job yet: no other may take it over."""
    sql = ledger.dialect.render
    statement = sql("UPDATE {quotes} SET taken_at = ? WHERE id = ? AND state = 'approving' AND job_id IS NULL")
    await ledger.run_steps([Step(statement, (now, quote_id))])


async def set_quote(
    ledger: Runner, quote_id: str, state: QuoteState, *, job_id: int | None = None, task_id: str | None = None
) -> None:
    """Record what became of a taken quote: the job its approval claimed (still approving), the job it bought
    (approved), or back to open (the approval charged nothing: a limit, a refusal)."""
    sql = ledger.dialect.render
    statement = sql(
        "UPDATE {quotes} SET state = ?, job_id = coalesce(?, job_id), task_id = coalesce(?, task_id), "
        "taken_at = CASE WHEN ? = 'open' THEN NULL ELSE taken_at END WHERE id = ?"
    )
    await ledger.run_steps([Step(statement, (state, job_id, storable(task_id) if task_id else None, state, quote_id))])


async def cancel_quote(ledger: Runner, owner: str, quote_id: str) -> bool:
    """Cancel an open quote; False when it was not open (approving, approved, cancelled or expired)."""
    sql = ledger.dialect.render
    statement = sql("UPDATE {quotes} SET state = 'cancelled' WHERE owner = ? AND id = ? AND state = 'open'")
    return (await ledger.run_steps([Step(statement, (storable(owner), quote_id))]))[0].rowcount == 1


# --- uploads ---------------------------------------------------------------------------------------------------


async def open_upload(ledger: Runner, upload: Upload, now: float, per_hour: int) -> Upload | None:
    """A new upload; None when the owner opened `per_hour` in the last hour already (uploads that lapsed, were
    discarded or cancelled in that hour count: their rows are kept that long). Lapsed ones are forgotten by
    `forget_lapsed_uploads`, which the caller runs first."""
    sql = ledger.dialect.render
    owner = storable(upload.owner)
    steps = [
        Step(sql(f"INSERT INTO {{uploads}} ({UPLOAD_COLUMNS}) SELECT ?, ?, ?, NULL, NULL, 0, NULL, 'receiving', ?, ? "
                 "WHERE (SELECT count(*) FROM {uploads} WHERE owner = ? AND created_at >= ?) < ?"),
             (upload.id, owner, _spec(upload.spec), upload.created_at, upload.expires_at, owner, now - HOUR, per_hour)),
    ]  # fmt: skip
    if ledger.dialect.owner_lock:  # PostgreSQL: the count and the insert, one owner at a time
        steps.insert(0, Step(ledger.dialect.owner_lock, (LOCK_UPLOADS, lock_key(upload.owner))))
    done = await ledger.run_steps(steps)
    return upload if done[-1].rowcount == 1 else None


async def find_upload(ledger: Runner, owner: str, upload_id: str) -> Upload | None:
    sql = ledger.dialect.render
    statement = sql(f"SELECT {UPLOAD_COLUMNS} FROM {{uploads}} WHERE owner = ? AND id = ?")
    rows = (await ledger.run_steps([Step(statement, (storable(owner), upload_id), fetch=True)]))[0].rows
    return _upload(rows[0]) if rows else None


async def append_upload(
    ledger: Runner, owner: str, upload_id: str, name: str, total: int, start: int, data: bytes, now: float
) -> bool:
    """Add the slice that starts at `start` (the next byte expected); False, and nothing kept, when it is not that
    one, the upload is not receiving any more, or has expired. The first slice names the file and its size for
    good."""
    sql = ledger.dialect.render
    done = await ledger.run_steps(
        [
            Step(sql("UPDATE {uploads} SET received = received + ?, file_name = coalesce(file_name, ?), "
                     "total_bytes = coalesce(total_bytes, ?) WHERE owner = ? AND id = ? AND state = 'receiving' "
                     "AND received = ? AND expires_at > ? AND coalesce(total_bytes, ?) = ? AND received + ? <= ?"),
                 (len(data), storable(name), total, storable(owner), upload_id, start, now, total, total, len(data),
                  total), guard=True),
            Step(sql("INSERT INTO {upload_chunks} (upload_id, start, data) VALUES (?, ?, ?)"),
                 (upload_id, start, data)),
        ]
    )  # fmt: skip
    return done[0].rowcount == 1 and done[1].rowcount == 1


async def upload_chunk_at(ledger: Runner, owner: str, upload_id: str, start: int) -> bytes | None:
    """The slice the owner's upload holds at `start`, if any (to tell a slice sent again from a wrong one)."""
    sql = ledger.dialect.render
    statement = sql(
        "SELECT c.data FROM {upload_chunks} c JOIN {uploads} u ON u.id = c.upload_id WHERE u.owner = ? AND "
        "c.upload_id = ? AND c.start = ?"
    )
    rows = (await ledger.run_steps([Step(statement, (storable(owner), upload_id, start), fetch=True)]))[0].rows
    return bytes(rows[0][0]) if rows else None


async def complete_upload(ledger: Runner, upload_id: str, sha256: str, keep_until: float) -> None:
    """The whole song is here: kept until `keep_until`, as long as the quote made for it stands."""
    sql = ledger.dialect.render
    statement = sql(
        "UPDATE {uploads} SET state = 'complete', sha256 = ?, expires_at = ? WHERE id = ? AND received = total_bytes"
    )
    await ledger.run_steps([Step(statement, (sha256, keep_until, upload_id))])


async def forget_lapsed_uploads(ledger: Runner, now: float) -> int:
    """Delete the songs of every upload that has lapsed; how many there were. Their rows (no song, no name)
    stay for the hour in which they count against the owner's uploads."""
    sql = ledger.dialect.render
    lapsed = "SELECT id FROM {uploads} WHERE expires_at <= ?"
    done = await ledger.run_steps(
        [
            Step(sql(f"SELECT count(DISTINCT upload_id) FROM {{upload_chunks}} WHERE upload_id IN ({lapsed})"), (now,),
                 fetch=True),
            Step(sql(f"DELETE FROM {{upload_chunks}} WHERE upload_id IN ({lapsed})"), (now,)),
            Step(sql("UPDATE {uploads} SET file_name = NULL, spec = '{{}}' WHERE expires_at <= ? AND file_name IS NOT "
                     "NULL"), (now,)),
            Step(sql("DELETE FROM {uploads} WHERE expires_at <= ? AND created_at < ?"), (now, now - HOUR)),
        ]
    )  # fmt: skip
    return int(done[0].rows[0][0])


async def upload_chunks(ledger: Runner, upload_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
    """Up to `limit` of the upload's slices that start at or after `after`, in order."""
    sql = ledger.dialect.render
    statement = sql("SELECT start, data FROM {upload_chunks} WHERE upload_id = ? AND start >= ? ORDER BY start LIMIT ?")
    rows = (await ledger.run_steps([Step(statement, (upload_id, after, limit), fetch=True)]))[0].rows
    return [(int(start), bytes(data)) for start, data in rows]


async def delete_upload(ledger: Runner, upload_id: str, now: float) -> None:
    """Forget the song (its job was accepted, or it failed its checks): its slices go now, and its row lapses
    (kept, empty, for the hour in which it counts against the owner's uploads)."""
    sql = ledger.dialect.render
    await ledger.run_steps(
        [
            Step(sql("DELETE FROM {upload_chunks} WHERE upload_id = ?"), (upload_id,)),
            Step(sql("UPDATE {uploads} SET expires_at = ?, file_name = NULL, spec = '{{}}' WHERE id = ?"),
                 (now, upload_id)),
        ]
    )  # fmt: skip


__all__ = [
    "Done",
    "Quote",
    "Runner",
    "Step",
    "Upload",
    "append_upload",
    "cancel_quote",
    "complete_upload",
    "delete_upload",
    "find_quote",
    "find_upload",
    "forget_lapsed_uploads",
    "open_quote",
    "open_upload",
    "set_quote",
    "take_quote",
    "touch_quote",
    "upload_chunk_at",
    "upload_chunks",
]
