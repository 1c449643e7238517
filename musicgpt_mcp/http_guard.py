"""Connection hygiene for the HTTP transport: how long a client may take to send a request, and how many
connections may be open. (How big a request to /mcp may be, the SDK limits itself: 4 MiB, answered 413.)

uvicorn times out idle keep-alive connections, but not a request that is never finished: the third hostile
review held 1,100 connections open with half-sent headers, needing no sign-in, until the server ran out of file
descriptors and answered no one. So every connection here must send its request headers within HEADER_TIMEOUT
seconds of opening (or of the previous response), and a request body may not stall for longer than BODY_STALL
seconds between chunks; connections past MAX_CONNECTIONS are closed as they arrive. A reverse proxy in front
should still do the same with its own limits (docs/hosting.md says which).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import ASGIApp

log = logging.getLogger(__name__)

HEADER_TIMEOUT: Final = 10.0
BODY_STALL: Final = 30.0
# File descriptors kept for everything but client connections: the ledger's pool, MusicGPT's pools, files.
RESERVED_DESCRIPTORS: Final = 128


@dataclass(frozen=True)
class Limits:
    header_timeout: float = HEADER_TIMEOUT
    body_stall: float = BODY_STALL
    max_connections: int | None = None  # None: what the descriptor limit allows (`connection_budget`)


def connection_budget() -> int:
    """As many connections as the process may open files, less what it needs for itself. The soft limit is
    raised to the hard one first (often 1,024 of 524,288 on Linux)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(16, min(soft, 1_000_000) - RESERVED_DESCRIPTORS)


def guarded(base: type[asyncio.Protocol], limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (h11 or httptools: both keep `cycle`, `connections` and
    `on_response_complete`) with the timers and the connection cap above."""
    cap = limits.max_connections or connection_budget()

    class Guarded(base):  # type: ignore[valid-type, misc]
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > cap:
                log.warning("refusing a connection: %d are open, the most this server keeps (see docs/hosting.md)", cap)
                transport.abort()
                return
            self._arm(limits.header_timeout)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                return  # the headers of the next request are still coming: their timer runs on
            if cycle.more_body:
                self._arm(limits.body_stall)  # each chunk restarts it: a stall is refused, a slow upload is not
            else:
                self._disarm()  # the request is in; the time the answer takes is the application's

        def on_response_complete(self) -> None:
            super().on_response_complete()
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                self._arm(limits.header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            cycle = self.cycle
            waiting = cycle is None or cycle.response_complete or cycle.more_body
            if waiting and not self.transport.is_closing():
                self.transport.close()

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


def uvicorn_config(
    app: ASGIApp,
    host: str,
    port: int,
    limits: Limits | None = None,
    protocol: type[asyncio.Protocol] | None = None,
    **options: Any,
) -> Any:
    """The uvicorn configuration every HTTP server of ours runs with (the command's, and the tests'): uvicorn's
    HTTP protocol (httptools when installed, else h11; or `protocol`) behind the guard."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded(protocol or AutoHTTPProtocol, limits or Limits()),
        # uvicorn's own logging config writes access lines to stdout; ours goes to stderr only.
        log_config=None,
        access_log=False,
        lifespan="on",
        **options,
    )
