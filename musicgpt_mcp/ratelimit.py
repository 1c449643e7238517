"""A sliding-window limit on calls per period, shared by every task in the process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio


class Limiter(Protocol):
    async def acquire(self) -> None:
        """Wait until one more call fits in the window, then count it."""
        ...


class RateLimiter:
    def __init__(self, max_calls: int, period: float) -> None:
        self.max_calls = max_calls
        self.period = period
        self._calls: deque[float] = deque()
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        """Wait until one more call fits in the window, then count it."""
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._calls and now - self._calls[0] >= self.period:
                    self._calls.popleft()
                if len(self._calls) < self.max_calls:
                    self._calls.append(now)
                    return
                await anyio.sleep(self.period - (now - self._calls[0]))


class SharedLimiter:
    """MusicGPT's per-key budget, counted where every replica sees it (the ledger's database) once the
    ledger is open and shares one; until then, and on a single machine, counted in this process."""

    def __init__(self, shared: Callable[[], Awaitable[Limiter | None]], max_calls: int, period: float) -> None:
        self._shared = shared
        self._local = RateLimiter(max_calls, period)
        self._resolved: Limiter | None = None

    async def acquire(self) -> None:
        if self._resolved is None:
            self._resolved = await self._shared() or self._local
        await self._resolved.acquire()
