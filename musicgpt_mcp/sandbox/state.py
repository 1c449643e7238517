"""What the sandbox knows: accepted jobs, what it received (for tests), and faults queued by tests.

The HTTP handlers run on the sandbox's own thread while tests read and queue from theirs, so all
access goes through one lock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Endpoint = Literal["submit", "status", "download", "webhook"]
StemShape = Literal["prefixed-string", "json-string", "object", "plain-url"]
MapKeys = Literal["conversion_path", "audio_url"]


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by the next request to its endpoint.

    action "respond" answers `status` with `body` (and `headers`) after `delay` seconds;
    "hang" waits `delay` seconds and then answers like "respond" (set a delay past the client's
    timeout to simulate a hang). "reset" aborts the TCP connection with an RST instead of
    answering; on submit with `size` > 0 it does so after reading only `size` bytes of the upload
    (a reset mid-upload). For downloads, "truncate" declares the whole file's length but sends
    only `size` bytes of it and drops the connection, and "stream" sends `size` bytes of zeros
    (declaring them only when `declare_length`), for files bigger than any stem. "drip" answers
    `status` with the whole length declared but sends the body `size` bytes (at least one) at a
    time, `delay` seconds apart: `body`, or for downloads the real stem file. Each read arrives
    well within any read timeout, so only an overall deadline ends it. A lying Content-Length is a
    "respond" fault with that header set.
    """

    status: int = 500
    body: bytes = b'{"success": false, "error": "Internal Server Error"}'
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    action: Literal["respond", "hang", "reset", "truncate", "stream", "drip"] = "respond"
    size: int = 0
    declare_length: bool = True


@dataclass(frozen=True)
class ReceivedFile:
    field: str
    filename: str | None
    content_type: str | None
    size: int
    sha256: str


@dataclass(frozen=True)
class ReceivedSubmit:
    """One POST /v1/Extraction as the sandbox saw it, including rejected ones."""

    authorization: str | None
    content_type: str
    fields: dict[str, str]
    files: tuple[ReceivedFile, ...]
    # False when the connection was reset before the whole body arrived.
    complete: bool = True


@dataclass(frozen=True)
class ReceivedDownload:
    path: str
    authorization: str | None


@dataclass(frozen=True)
class WebhookDelivery:
    url: str
    payload: dict[str, object]
    status: int | None
    error: str | None


@dataclass
class Job:
    task_id: str
    conversion_id: str
    created: float
    eta: int
    stems: tuple[str, ...]
    preprocessing_options: tuple[str, ...]
    source: str
    webhook_url: str | None
    credit_estimate: float
    # Test hooks: make the job fail with a reason, pin its status, or replace its stem maps.
    fail_reason: str | None = None
    status_override: str | None = None
    mp3_override: dict[str, str] | None = None
    wav_override: dict[str, str] | None = None


def _margin(eta: int) -> float:
    return min(1.0, eta * 0.2)


@dataclass
class SandboxState:
    api_key: str
    eta: int = 5
    # Accept every non-empty key (a shared server whose callers bring their own), not only `api_key`.
    accept_any_key: bool = False
    # Finish jobs a fifth of the eta (at most a second) before it, for the offline trial. The server counts the
    # eta from when it began to submit, before the upload, so a job done exactly at its eta was still running
    # when the server looked at the eta: every trial job looked late ("MusicGPT's estimate has passed") and took
    # a further poll (2 s) to finish. Tests keep the exact timing (False): done at the eta, to the tick.
    finish_early: bool = False
    clock: Callable[[], float] = time.monotonic
    # Jobs age this many times faster than the clock, so tests need not wait out an eta.
    time_scale: float = 1.0
    # How stem maps are encoded in status replies and webhooks; the default is what the live API is
    # reported to send. `cost_as_string` sends conversion_cost as a string, as has been seen.
    stem_shape: StemShape = "prefixed-string"
    map_keys: MapKeys = "conversion_path"
    cost_as_string: bool = False
    # Length of the generated stem audio.
    stem_seconds: float = 2.0
    # Seconds an accepted submit takes to answer, so tests can make concurrent submits overlap.
    submit_delay: float = 0.0
    # Webhook prefixes the sandbox may call (the server's MUSICGPT_MCP_WEBHOOK_URLS rule); kept by reset().
    webhook_urls: tuple[str, ...] = ()
    # How many times a finished job is POSTed to its webhook: MusicGPT sends several a job [seen].
    webhook_copies: int = 2
    received: list[ReceivedSubmit] = field(default_factory=list)
    downloads: list[ReceivedDownload] = field(default_factory=list)
    status_calls: int = 0
    # When each status call arrived (monotonic), for tests of rate limits.
    status_times: list[float] = field(default_factory=list)
    webhooks: list[WebhookDelivery] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    _faults: dict[Endpoint, deque[Fault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def key_ok(self, authorization: str | None) -> bool:
        return bool(authorization) and (self.accept_any_key or authorization == self.api_key)

    def __post_init__(self) -> None:
        self._initial_webhook_urls = self.webhook_urls
        self._initial_accept_any_key = self.accept_any_key

    def queue_fault(self, endpoint: Endpoint, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.setdefault(endpoint, deque()).extend([fault] * times)

    def take_fault(self, endpoint: Endpoint) -> Fault | None:
        with self._lock:
            queue = self._faults.get(endpoint)
            return queue.popleft() if queue else None

    def record(self, submit: ReceivedSubmit) -> None:
        with self._lock:
            self.received.append(submit)

    def submits(self) -> list[ReceivedSubmit]:
        with self._lock:
            return list(self.received)

    def record_download(self, download: ReceivedDownload) -> None:
        with self._lock:
            self.downloads.append(download)

    def record_webhook(self, delivery: WebhookDelivery) -> None:
        with self._lock:
            self.webhooks.append(delivery)

    def count_status_call(self) -> None:
        with self._lock:
            self.status_calls += 1
            self.status_times.append(time.monotonic())

    def job_status(self, job: Job) -> str:
        """IN_QUEUE for the first fifth of the eta (at most a second), IN_PROGRESS until the eta (or, with
        `finish_early`, a fifth of it sooner), then COMPLETED (or FAILED when a reason is set)."""
        if job.status_override is not None:
            return job.status_override
        elapsed = (self.clock() - job.created) * self.time_scale
        if elapsed < _margin(job.eta):
            return "IN_QUEUE"
        if elapsed < self._done_after(job.eta):
            return "IN_PROGRESS"
        return "FAILED" if job.fail_reason else "COMPLETED"

    def seconds_to_completion(self, job: Job) -> float:
        elapsed = (self.clock() - job.created) * self.time_scale
        return max(0.0, (self._done_after(job.eta) - elapsed) / self.time_scale)

    def _done_after(self, eta: int) -> float:
        """Seconds from a job's arrival until it is done."""
        return eta - _margin(eta) if self.finish_early else float(eta)

    def new_job(
        self,
        *,
        stems: tuple[str, ...],
        preprocessing_options: tuple[str, ...],
        source: str,
        webhook_url: str | None,
        credit_estimate: float,
    ) -> Job:
        job = Job(
            task_id=str(uuid.uuid4()),
            conversion_id=str(uuid.uuid4()),
            created=self.clock(),
            eta=self.eta,
            stems=stems,
            preprocessing_options=preprocessing_options,
            source=source,
            webhook_url=webhook_url,
            credit_estimate=credit_estimate,
        )
        with self._lock:
            self.jobs[job.task_id] = job
        return job

    def clear_records(self) -> None:
        """Forget what was received, keeping jobs, faults and settings."""
        with self._lock:
            self.received.clear()
            self.downloads.clear()
            self.webhooks.clear()
            self.status_calls = 0
            self.status_times.clear()

    def reset(self) -> None:
        self.clear_records()
        with self._lock:
            self.jobs.clear()
            self._faults.clear()
        self.time_scale = 1.0
        self.stem_shape = "prefixed-string"
        self.map_keys = "conversion_path"
        self.cost_as_string = False
        self.stem_seconds = 2.0
        self.submit_delay = 0.0
        self.webhook_copies = 2
        self.accept_any_key = self._initial_accept_any_key
        self.webhook_urls = self._initial_webhook_urls
