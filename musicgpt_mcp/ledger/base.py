"""What the ledger remembers (jobs, requests, replies, downloads, file keys), the `Ledger` interface both engines
implement, the windows and limits its rules use, and how a text is made storable. No storage engine, no rule and
no SQL in here: the rules are rules.py's, the SQL sql.py's.

A job row goes through: `submitting` (claimed; the paid POST may be in flight) -> `submitted`
(MusicGPT accepted it; it has a task_id) or `unknown` (the POST may have reached MusicGPT, but no
reply says so). A submit that certainly did not charge (nothing sent, or refused) removes its row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

State = Literal["submitting", "submitted", "unknown"]
# What noting a webhook delivery did (Ledger.delivered): noted it; nothing, as one is noted already or a read is
# under way (pending), or as the job has finished; or found no job.
Noted = Literal["noted", "pending", "finished", "unknown"]
SourceKind = Literal["file", "url"]

# The statuses a job shows in the ledger: MusicGPT's own, plus two of ours.
SUBMITTED: Final = "SUBMITTED"  # accepted; nobody has asked MusicGPT about it since
OUTCOME_UNKNOWN: Final = "OUTCOME_UNKNOWN"  # the submit may have been charged; no task_id
JOB_STATUSES: Final = (SUBMITTED, "IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "ERROR", OUTCOME_UNKNOWN)
FAILED_STATUSES: Final = frozenset({"FAILED", "ERROR"})

HOUR: Final = 3600.0
DAY: Final = 24 * HOUR
# An unknown outcome blocks identical submits this long, whatever the reuse window: money first.
UNKNOWN_GUARD: Final = DAY
# A claim whose process has not touched it for this long is taken to be dead (it crashed or was
# killed mid-submit); its outcome is then unknown. The submitting process refreshes it every few seconds.
STALE_CLAIM: Final = 60.0
HEARTBEAT: Final = 5.0
# How long a spent consent answer is remembered: far past the 600 s for which the sealed state carrying it is
# valid, so it cannot be spent twice.
ANSWER_MEMORY: Final = DAY
# The note a dead claim gets when another call finds it.
DEAD_CLAIM_NOTE: Final = "the server stopped while it was submitting this job"
# The largest ETA stored: MusicGPT's reply is not ours to trust, and an absurd number must not stop a
# paid job from being recorded (68 years is "unknown" for any purpose).
MAX_ETA: Final = 2**31 - 1


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobRequest:
    """What identifies a paid job for reuse: who, which account, which audio, which stems and options."""

    owner: str
    account: str
    fingerprint: str
    source_kind: SourceKind
    source_name: str
    stems: tuple[str, ...]
    options: tuple[str, ...]

    @property
    def stems_key(self) -> str:
        return ",".join(sorted(set(self.stems)))

    @property
    def options_key(self) -> str:
        return ",".join(sorted(set(self.options)))


@dataclass(frozen=True)
class Download:
    stem: str
    path: str
    format: str
    bytes: int
    at: float
    # SHA-256 (hex) of the bytes saved, so a repeated download can tell the file on disk is still what was
    # fetched; None for rows written before it was recorded (those files are fetched again).
    sha256: str | None = None


@dataclass(frozen=True)
class Job:
    id: int
    owner: str
    account: str
    state: State
    task_id: str | None
    conversion_id: str | None
    submitted_at: float
    source_kind: SourceKind
    source_name: str
    fingerprint: str
    stems: tuple[str, ...]
    options: tuple[str, ...]
    eta: int | None
    credit_estimate: float | None
    status: str | None
    status_message: str | None
    conversion_cost: float | None
    finished_at: float | None
    mp3_urls: dict[str, str]
    wav_urls: dict[str, str]
    note: str | None
    downloads: tuple[Download, ...] = field(default=())
    # The server's own webhook (hooks.py): whether the submit carried it; when an authentic delivery last came
    # for the unfinished job, and whether one came that no status read has answered yet (a flag, not a time: the
    # replicas' clocks need not agree); and its shared status read (watching.py): when one was last taken, and
    # until when its taker may finish it before another waiter may take the next.
    server_webhook: bool = False
    delivered_at: float | None = None
    unconfirmed: bool = False
    read_at: float | None = None
    reading_until: float | None = None

    @property
    def credits(self) -> float | None:
        """What the job cost: MusicGPT's stated cost when known, else its estimate."""
        return self.conversion_cost if self.conversion_cost is not None else self.credit_estimate

    @property
    def display_status(self) -> str:
        if self.state == "unknown" or (self.state == "submitting" and self.task_id is None):
            return OUTCOME_UNKNOWN if self.state == "unknown" else "SUBMITTING"
        return self.status or SUBMITTED

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class Policy:
    """The money rules a claim applies, from the server's settings and the call."""

    reuse_seconds: float
    max_credits_per_day: float | None
    max_jobs_per_hour: int
    force_new: bool = False


@dataclass(frozen=True)
class Reused:
    job: Job


@dataclass(frozen=True)
class InFlight:
    """An identical submit is under way in this or another process: wait for it."""

    job: Job


@dataclass(frozen=True)
class Unknown:
    """An identical earlier submit may have been charged; do not submit again on our own."""

    job: Job


@dataclass(frozen=True)
class LimitReached:
    kind: Literal["credits", "jobs"]
    used: float
    limit: float
    # For "credits": what this job counts at, by `estimate_credits`.
    needed: float = 0.0


@dataclass(frozen=True)
class Claimed:
    job_id: int


ClaimResult = Reused | InFlight | Unknown | LimitReached | Claimed


@dataclass(frozen=True)
class Spending:
    credits_last_day: float
    credits_last_30_days: float
    jobs_last_hour: int


@dataclass(frozen=True)
class Accepted:
    """What MusicGPT's 200 reply said, as the ledger stores it."""

    task_id: str
    conversion_id: str | None
    eta: int
    credit_estimate: float | None
    # Whether the submit carried the server's own webhook, so the job's waiters wait for its delivery.
    server_webhook: bool = False


@dataclass(frozen=True)
class StatusUpdate:
    status: str
    status_message: str | None
    conversion_cost: float | None
    done: bool
    mp3_urls: dict[str, str]
    wav_urls: dict[str, str]

    def changes(self, job: Job | None) -> bool:
        """Whether writing this update would change `job`'s row, as `Ledger.update_status` writes it.
        A poll that only repeats what the row holds skips the write: status polls are the busiest
        call, and a write (one transaction, a WAL fsync, a PostgreSQL round trip) costs more than
        the read that already fetched the row."""
        if job is None or job.state != "submitted":
            return False  # update_status touches only submitted jobs
        message = storable(self.status_message) if self.status_message is not None else None
        return (
            job.status != storable(self.status)
            or job.status_message != message
            or (self.conversion_cost is not None and job.conversion_cost != self.conversion_cost)
            or (self.done and job.finished_at is None)
            or (
                bool(self.mp3_urls or self.wav_urls)
                and (job.mp3_urls, job.wav_urls) != (storable_urls(self.mp3_urls), storable_urls(self.wav_urls))
            )
        )


@dataclass(frozen=True)
class FileKey:
    """What says a file's content is unchanged since it was checked or hashed: same device, inode, size,
    mtime and ctime. Device and inode alone are not enough: ext4 and tmpfs hand a freed inode number to
    the next file created, so a file deleted and re-created at the same path often gets it back. The
    ctime is the kernel's (a user can set the mtime, never the ctime), and creating or writing a file
    sets it anew, so the replacement differs there."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileKey:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def storable(text: str) -> str:
    """`text` without what a database cannot store: NUL (PostgreSQL refuses it) and lone surrogates
    (a file name that is not valid UTF-8 arrives with them; neither engine can encode them). Each
    becomes U+FFFD, as a failed decode shows it."""
    if text.isascii() and "\x00" not in text:
        return text
    return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in text)


def storable_eta(eta: int) -> int:
    return max(-1, min(eta, MAX_ETA))


def storable_urls(urls: dict[str, str]) -> dict[str, str]:
    return {storable(k): storable(v) for k, v in urls.items()}
