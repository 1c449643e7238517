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

Endpoint = Literal["submit", "status", "download"]


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by the next request to its endpoint.

    action "respond" answers `status` with `body` (and `headers`) after `delay` seconds;
    "hang" waits `delay` seconds and then answers like "respond" (set a delay past the client's
    timeout to simulate a hang).
    """

    status: int = 500
    body: bytes = b'{"success": false, "error": "Internal Server Error"}'
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    action: Literal["respond", "hang"] = "respond"


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
    fail_reason: str | None = None


@dataclass
class SandboxState:
    api_key: str
    eta: int = 5
    clock: Callable[[], float] = time.monotonic
    received: list[ReceivedSubmit] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    _faults: dict[Endpoint, deque[Fault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self.jobs.clear()
            self._faults.clear()
