"""The SQL both ledger engines run, written once: `?` marks each value, and `{jobs}`, `{downloads}`,
`{answers}` and `{fingerprints}` name the tables. An engine describes its `Dialect` (table names, its mark,
its case-blind LIKE, how it stores a list of texts), and `Statements` renders every shared statement for it
once, each bound to its values by codec.py, with the rows they read made back into Jobs.

What only one engine can say stays in that engine: its schema and migrations, its locking (SQLite's
`BEGIN IMMEDIATE`; PostgreSQL's advisory locks, `FOR NO KEY UPDATE`), `RETURNING`, its upserts and how it
adds up an owner's spending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .base import ANSWER_MEMORY, DEAD_CLAIM_NOTE, Accepted, Download, Job, JobRequest, Noted, StatusUpdate
from .codec import (
    DOWNLOAD_COLUMNS,
    JOB_COLUMNS,
    LoadTexts,
    Row,
    StoreTexts,
    Value,
    accepted_values,
    claim_values,
    download_values,
    job_from_row,
    jobs_with_heartbeats,
    listing_filter,
    read_values,
    recent_costs_values,
    same_request_values,
    status_values,
    stored,
)

# Jobs that may have cost money: a claim in the air may have too, so every state counts.
CHARGEABLE: Final = "state IN ('submitting', 'submitted', 'unknown')"
# How a job counts against the credit limit: MusicGPT's stated cost, else its estimate, else what the claim
# reserved. Only rows from before reservations existed can fall to 0.
SPENT: Final = "coalesce(conversion_cost, credit_estimate, reserved, 0)"
# Newest first; the id breaks ties between jobs submitted in the same instant.
NEWEST: Final = "ORDER BY submitted_at DESC, id DESC"
# What a status reply sets in a job's row (codec._said binds it): its cost only once stated, the moment it
# finished only the first time, its stem maps only when it has some.
STATUS_SET: Final = (
    "status = ?, status_message = ?, conversion_cost = coalesce(?, conversion_cost), "
    "finished_at = CASE WHEN ? THEN coalesce(finished_at, ?) ELSE finished_at END, "
    "stem_urls = CASE WHEN ? THEN ? ELSE stem_urls END"
)

# A statement and the values it binds, ready for `execute(*bound)`.
Bound = tuple[str, Sequence[Value]]


@dataclass(frozen=True)
class Dialect:
    """What the shared SQL says differently in one engine."""

    prefix: str  # before each table's name
    mark: str  # what marks a value: "?" for sqlite3, "%s" for psycopg
    like: str  # the operator that matches a pattern, ASCII case aside at least
    store_texts: StoreTexts  # a job's stems and options as the engine stores them
    load_texts: LoadTexts  # and back
    # A statement that serializes one owner's transactions (lock id, key), where row locks and the engine's own
    # transactions do not already: PostgreSQL's advisory lock; SQLite's BEGIN IMMEDIATE needs none.
    owner_lock: str = ""

    def render(self, template: str) -> str:
        """`template` in this dialect. Only for statements that bind values: psycopg reads `%` only then."""
        text = template.format(
            jobs=f"{self.prefix}jobs",
            downloads=f"{self.prefix}downloads",
            answers=f"{self.prefix}answers",
            fingerprints=f"{self.prefix}fingerprints",
            quotes=f"{self.prefix}quotes",
            uploads=f"{self.prefix}uploads",
            upload_chunks=f"{self.prefix}upload_chunks",
            columns=JOB_COLUMNS,
            download_columns=DOWNLOAD_COLUMNS,
            chargeable=CHARGEABLE,
            spent=SPENT,
            newest=NEWEST,
            status_set=STATUS_SET,
        )
        if self.mark == "?":
            return text
        # psycopg reads every % as its own: a literal one is doubled before each ? becomes its mark.
        return text.replace("%", "%%").replace("?", self.mark)


class Statements:
    """Every statement both engines run, rendered for one dialect and bound to its values; where an engine adds
    a clause of its own (RETURNING, a row lock), it passes it as `tail`."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        sql = dialect.render
        self._claim = sql(
            "INSERT INTO {jobs} (owner, account, state, submitted_at, heartbeat_at, source_kind, source_name, "
            "fingerprint, stems, stems_key, options, options_key, reserved) "
            "VALUES (?, ?, 'submitting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._same_request = sql(
            "SELECT {columns}, heartbeat_at FROM {jobs} WHERE owner = ? AND account = ? AND fingerprint = ? "
            "AND stems_key = ? AND options_key = ? AND submitted_at >= ? {newest}"
        )
        self._mark_dead = sql("UPDATE {jobs} SET state = 'unknown', note = ? WHERE id = ?")
        self._recent_costs = sql(
            "SELECT coalesce(conversion_cost, credit_estimate) FROM {jobs} WHERE owner = ? AND account = ? "
            "AND stems_key = ? AND options_key = ? AND state = 'submitted' "
            "AND coalesce(conversion_cost, credit_estimate) IS NOT NULL {newest} LIMIT ?"
        )
        self._heartbeat = sql("UPDATE {jobs} SET heartbeat_at = ? WHERE id = ? AND state = 'submitting'")
        self._accepted = sql(
            "UPDATE {jobs} SET state = 'submitted', task_id = ?, conversion_id = ?, eta = ?, "
            "credit_estimate = ?, server_webhook = ?, heartbeat_at = NULL WHERE id = ?"
        )
        self._outcome_unknown = sql("UPDATE {jobs} SET state = 'unknown', note = ?, heartbeat_at = NULL WHERE id = ?")
        self._release = sql("DELETE FROM {jobs} WHERE id = ? AND state = 'submitting'")
        self._forget_answers = sql("DELETE FROM {answers} WHERE spent_at < ?")
        self._rename_account = sql("UPDATE {jobs} SET account = ? WHERE owner = ? AND account = ?")
        self._job_by_task = sql("SELECT {columns} FROM {jobs} WHERE owner = ? AND task_id = ? {newest} LIMIT 1")
        self._job_id_by_task = sql("SELECT id FROM {jobs} WHERE owner = ? AND task_id = ? {newest} LIMIT 1")
        self._update_status = sql(
            "UPDATE {jobs} SET {status_set} WHERE owner = ? AND task_id = ? AND state = 'submitted'"
        )
        self._add_download = sql(
            "INSERT INTO {downloads} (job_id, stem, path, format, bytes, at, sha256) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._saved_paths = sql(
            "SELECT d.path FROM {downloads} d JOIN {jobs} j ON j.id = d.job_id WHERE j.owner = ? AND j.task_id = ? "
            "AND d.stem = ? AND d.format = ? ORDER BY d.at DESC, d.id DESC"
        )
        self._job_by_id = sql("SELECT {columns} FROM {jobs} WHERE id = ?")
        self._prepare_hooks()

    def _prepare_hooks(self) -> None:
        """The statements of the server's webhook and a job's shared status read (watching.py)."""
        sql = self.dialect.render
        self._finished = sql("SELECT finished_at IS NOT NULL FROM {jobs} WHERE id = ?")
        # A delivery for a job known to have finished changes nothing: replaying one is harmless. Nor does one that
        # comes while another waits to be confirmed or a read is under way (MusicGPT's second copy): that read, or
        # the one it asks for, answers it (watching.next_read).
        self._delivered = sql(
            "UPDATE {jobs} SET delivered_at = ?, unconfirmed = ? WHERE id = ? AND finished_at IS NULL "
            "AND NOT unconfirmed AND coalesce(reading_until, 0) <= ?"
        )
        # Taken only if nobody took a read since the taker looked (read_at as it saw it), no reader's hold is
        # alive, and the job is still to finish: one read for all its waiters, on every replica.
        self._take_read = sql(
            "UPDATE {jobs} SET read_at = ?, reading_until = ?, unconfirmed = ? WHERE id = ? AND state = 'submitted' "
            "AND finished_at IS NULL AND coalesce(reading_until, 0) <= ? AND coalesce(read_at, 0) = ?"
        )
        self._read_done = sql(
            "UPDATE {jobs} SET {status_set}, reading_until = NULL WHERE id = ? AND state = 'submitted'"
        )
        self._read_failed = sql(
            "UPDATE {jobs} SET read_at = ?, reading_until = NULL, unconfirmed = (unconfirmed OR ?) "
            "WHERE id = ? AND read_at = ?"
        )

    # --- the paid path ---------------------------------------------------------------------------------------

    def claim(self, request: JobRequest, now: float, reserved: float, tail: str = "") -> Bound:
        """A new claim of `request`, alive since `now`, counting `reserved` credits until MusicGPT prices it."""
        return self._claim + tail, claim_values(request, now, reserved, self.dialect.store_texts)

    def same_request(self, request: JobRequest, since: float, tail: str = "") -> Bound:
        """The owner's jobs identical to `request` submitted since `since`, newest first, each with its last
        heartbeat: read them with `identical`."""
        return self._same_request + tail, same_request_values(request, since)

    def mark_dead(self, job_id: int) -> Bound:
        """A claim found dead (rules.sift_identical) recorded as an unknown outcome."""
        return self._mark_dead, (DEAD_CLAIM_NOTE, job_id)

    def recent_costs(self, request: JobRequest, limit: int) -> Bound:
        """The last `limit` known costs of jobs with `request`'s stems and options, newest first."""
        return self._recent_costs, recent_costs_values(request, limit)

    def heartbeat(self, job_id: int, now: float) -> Bound:
        return self._heartbeat, (now, job_id)

    def accepted(self, job_id: int, reply: Accepted, tail: str = "") -> Bound:
        return self._accepted + tail, accepted_values(job_id, reply)

    def outcome_unknown(self, job_id: int, note: str) -> Bound:
        return self._outcome_unknown, (*stored(note[:500]), job_id)

    def release(self, job_id: int) -> Bound:
        """A claim removed: its submit certainly charged nothing."""
        return self._release, (job_id,)

    def forget_answers(self, now: float) -> Bound:
        """The consent answers spent so long ago that they cannot come back (base.ANSWER_MEMORY)."""
        return self._forget_answers, (now - ANSWER_MEMORY,)

    def rename_account(self, owner: str, old: str, new: str) -> Bound:
        return self._rename_account, (*stored(new, owner), old)

    # --- what happened afterwards ----------------------------------------------------------------------------

    def job_by_task(self, owner: str, task_id: str) -> Bound:
        return self._job_by_task, stored(owner, task_id)

    def job_id_by_task(self, owner: str, task_id: str) -> Bound:
        return self._job_id_by_task, stored(owner, task_id)

    def update_status(self, owner: str, task_id: str, update: StatusUpdate, now: float) -> Bound:
        return self._update_status, status_values(owner, task_id, update, now)

    def job_by_id(self, job_id: int) -> Bound:
        return self._job_by_id, (job_id,)

    def delivered(self, job_id: int, now: float) -> Bound:
        """Its row count says whether it noted the delivery; when not, `finished` says why."""
        return self._delivered, (now, True, job_id, now)

    def finished(self, job_id: int) -> Bound:
        """One row (whether the job has finished) when there is such a job, else none."""
        return self._finished, (job_id,)

    @staticmethod
    def noted(count: int, finished: Row | None) -> Noted:
        """What `delivered` did, from its row count and, when that is 0, the row `finished` read."""
        if count:
            return "noted"
        if finished is None:
            return "unknown"
        return "finished" if finished[0] else "pending"

    def take_read(self, job_id: int, seen: float | None, now: float, until: float) -> Bound:
        return self._take_read, (now, until, False, job_id, now, seen or 0.0)

    def read_done(self, job_id: int, update: StatusUpdate, now: float) -> Bound:
        return self._read_done, read_values(job_id, update, now)

    def read_failed(self, job_id: int, taken: float, seen: float | None, unconfirmed: bool) -> Bound:
        return self._read_failed, (seen, unconfirmed, job_id, taken)

    def add_downloads(self, job_id: int, files: Sequence[Download]) -> tuple[str, list[tuple[Value, ...]]]:
        """For `executemany`: one row a saved stem of job `job_id`."""
        return self._add_download, download_values(job_id, files)

    def saved_paths(self, owner: str, task_id: str, stem: str, fmt: str) -> Bound:
        """Where the stem was saved in that format, newest first."""
        return self._saved_paths, stored(owner, task_id, stem, fmt)

    def listing(self, owner: str, limit: int, status: str | None, query: str | None) -> Bound:
        """`Ledger.jobs`, newest first (codec.listing_filter says which jobs)."""
        where, values = listing_filter(owner, status, query, self.dialect.like)
        statement = self.dialect.render(f"SELECT {{columns}} FROM {{jobs}} WHERE {where} {{newest}} LIMIT ?")
        return statement, [*values, max(limit, 0)]

    # --- the rows they read -----------------------------------------------------------------------------------

    def job(self, row: Row) -> Job:
        """A job read with JOB_COLUMNS (job_by_task, listing, or an engine's own), without its downloads."""
        return job_from_row(row, self.dialect.load_texts)

    def identical(self, rows: Sequence[Row]) -> list[tuple[Job, float | None]]:
        """What `same_request` read, as rules.sift_identical takes it."""
        return jobs_with_heartbeats(rows, self.dialect.load_texts)
