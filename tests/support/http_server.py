"""Our server over Streamable HTTP, in this process: uvicorn on a loopback port in a thread, built exactly as
`musicgpt-mcp --transport http` builds it (`web.plan` and `web.build_app`), so tests can run one or two
replicas beside the sandbox, the token issuer and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from musicgpt_mcp.config import Remote, Settings
from musicgpt_mcp.http_guard import Limits, uvicorn_config
from musicgpt_mcp.web import HttpPlan, build_app, plan


@dataclass(frozen=True)
class Running:
    url: str  # the MCP endpoint
    origin: str
    plan: HttpPlan


@contextmanager
def serve_http(
    settings: Settings,
    *,
    public_url: str | None = None,
    limits: Limits | None = None,
    protocol: type[asyncio.Protocol] | None = None,
    public: bool = False,
) -> Iterator[Running]:
    """Serve `settings` over HTTP on a free loopback port until the block ends, with the command's connection
    limits (or `limits`). `public_url`, or with `public` the server's own loopback URL, is set as
    MUSICGPT_MCP_PUBLIC_URL would set it (the server then gives MusicGPT a webhook of its own under it); without
    either (nor one in the settings) it is unset, and the server's URL is its loopback one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    origin = f"http://127.0.0.1:{port}"
    remote: Remote = settings.remote
    if public_url is not None or public:
        remote = dataclasses.replace(remote, public_url=public_url or f"{origin}/mcp")
    settings = dataclasses.replace(settings, remote=remote)
    http = plan(settings, "127.0.0.1", port)
    app = build_app(settings, http)
    config = uvicorn_config(app, "127.0.0.1", port, limits, protocol, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="musicgpt-mcp-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.01)
    try:
        yield Running(url=f"{origin}/mcp", origin=origin, plan=http)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
