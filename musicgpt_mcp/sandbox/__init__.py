"""A MusicGPT double on loopback, for offline use (`musicgpt-mcp --sandbox`) and for the tests.

It runs on its own thread with its own event loop, so it serves the same way whether the caller
is a synchronous test fixture or the stdio server's event loop.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

from .app import API_PREFIX, build_app
from .state import Fault, Job, ReceivedDownload, ReceivedFile, ReceivedSubmit, SandboxState, WebhookDelivery

__all__ = [
    "Fault",
    "Job",
    "ReceivedDownload",
    "ReceivedFile",
    "ReceivedSubmit",
    "Sandbox",
    "SandboxState",
    "WebhookDelivery",
]

log = logging.getLogger(__name__)

DEFAULT_SANDBOX_KEY = "sandbox-key"


class Sandbox:
    def __init__(
        self,
        *,
        api_key: str = DEFAULT_SANDBOX_KEY,
        eta: int = 5,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_urls: tuple[str, ...] = (),
        accept_any_key: bool = False,
        finish_early: bool = False,
    ) -> None:
        """`webhook_urls`: the prefixes (as in MUSICGPT_MCP_WEBHOOK_URLS) the sandbox may POST to;
        like the server, it calls no other webhook. `accept_any_key`: take every caller's own key (a
        shared server in header mode), not only `api_key`. `port` 0: any free one. `finish_early`: keep
        the eta with room to spare, as the offline trial should (SandboxState.finish_early)."""
        self.state = SandboxState(
            api_key=api_key,
            eta=eta,
            webhook_urls=webhook_urls,
            accept_any_key=accept_any_key,
            finish_early=finish_early,
        )
        self._host = host
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def netloc(self) -> str:
        """host:port, as MUSICGPT_MCP_STORAGE_HOSTS lists it."""
        return f"{self._host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.netloc}"

    @property
    def base_url(self) -> str:
        """What MUSICGPT_BASE_URL would be set to."""
        return self.origin + API_PREFIX

    def start(self, timeout: float = 10.0) -> Sandbox:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self.port))
            # Listening at once makes a taken port fail here, in the caller's thread, not in the server's.
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.state),
            log_config=None,  # uvicorn's default config logs to stdout, which is the stdio wire
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="musicgpt-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the MusicGPT sandbox did not start")
            time.sleep(0.01)
        log.info("MusicGPT sandbox listening on %s (key: %s)", self.base_url, self.api_key)
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        import uvicorn

        server = self._server
        if isinstance(server, uvicorn.Server):
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=1.5)
            if self._thread.is_alive() and isinstance(server, uvicorn.Server):
                # A double need not wait for its last connections (a busy machine once took past 5 s to):
                # Ctrl-C of `musicgpt-mcp sandbox` must stop it.
                server.force_exit = True
                self._thread.join(timeout=3)
        self._thread = None
        self._server = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
