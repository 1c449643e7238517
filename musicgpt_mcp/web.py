"""The HTTP transport: the same server for hosted use (claude.ai, ChatGPT, mobile apps, remote agents).

Streamable HTTP at /mcp, stateless (any replica answers any request) with SSE responses (so progress
notifications still flow), for clients of both protocol eras. Around it: sign-in (`auth`), the
DNS-rebinding guard (only the public URL's host and loopback are answered), signed session IDs and
cancellation for 2025-era clients (`sessions`, `cancellation`), GET /healthz, which answers
without sign-in and checks the ledger's database, and, with a public URL, POST /webhooks/musicgpt/<secret>,
where MusicGPT says a job finished (`hooks`, `deliveries`).

Start-up refuses what cannot be safe: serving anywhere but loopback without sign-in, OAuth without an
issuer, replicas without a shared secret. A message says which variable to set.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import RequestStateSecurity
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import deliveries
from .cancellation import RemoteCancel
from .config import ConfigError, Settings, default_state_dir
from .hooks import HOOK_PATH, HookContext, ServerHooks
from .http_guard import uvicorn_config
from .secret import derived, kept_secret
from .sessions import RestoreSession, SessionIds, SessionSeal
from .state import ServerState
from .tool_list_cache import ToolListCache

log = logging.getLogger(__name__)

MCP_PATH: Final = "/mcp"
LOOPBACK_NAMES: Final = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class HttpPlan:
    """What the HTTP server will be, decided (and refused if unsafe) before anything listens."""

    host: str
    port: int
    public_url: str
    secret: SecretStr


def plan(settings: Settings, host: str, port: int) -> HttpPlan:
    settings.check()  # an operator is watching: an unusable setting stops the start, whatever it is
    remote = settings.remote
    public_url = remote.public_url or f"http://{_url_host(host)}:{port}{MCP_PATH}"
    public_host = urlsplit(public_url).hostname or ""
    if remote.auth == "none" and not (is_loopback(host) and is_loopback(public_host)):
        raise ConfigError(
            f"Refusing to serve on {host} (public URL {public_url}) without sign-in: anyone who reaches it could "
            "spend the MusicGPT credits. Set MUSICGPT_MCP_AUTH=oauth (with MUSICGPT_MCP_OAUTH_ISSUER) or "
            "MUSICGPT_MCP_AUTH=header, or serve on 127.0.0.1 only."
        )
    if remote.auth == "oauth":
        if remote.oauth_issuer is None:
            raise ConfigError("MUSICGPT_MCP_AUTH=oauth needs MUSICGPT_MCP_OAUTH_ISSUER: the issuer of the tokens.")
        if remote.public_url is None and not is_loopback(host):
            raise ConfigError(
                "MUSICGPT_MCP_AUTH=oauth needs MUSICGPT_MCP_PUBLIC_URL: the URL clients use, which tokens must name "
                "as their audience."
            )
    return HttpPlan(host=host, port=port, public_url=public_url, secret=_secret(settings))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _secret(settings: Settings) -> SecretStr:
    """The server secret: configured, or (one machine only) generated once and kept in the state folder."""
    if settings.remote.server_secret is not None:
        return settings.remote.server_secret
    if settings.remote.database_url is not None:
        raise ConfigError(
            "MUSICGPT_MCP_DATABASE_URL is set, so replicas share one ledger: they must share MUSICGPT_MCP_SERVER_SECRET "
            "too (at least 32 characters, e.g. `openssl rand -hex 32`), or a replica could not read what another "
            "handed a client, and header-mode users would change names between replicas."
        )
    return kept_secret(settings.state_dir or default_state_dir())


def transport_security(public_url: str) -> TransportSecuritySettings:
    """Answer only to the public host and to loopback: a web page cannot point its own DNS name at
    this server and call it from a browser (DNS rebinding)."""
    parts = urlsplit(public_url)
    host = _url_host(parts.hostname or "")
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    hosts = [f"{host}:{port}"] + ([host] if port == default_port else [])
    origin = f"{parts.scheme}://{host}" + ("" if port == default_port else f":{port}")
    loopback = [_url_host(name) for name in LOOPBACK_NAMES]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        # The SDK matches "host:*" only when a port is present; a Host header without one needs its own entry.
        allowed_hosts=[*hosts, *loopback, *(f"{h}:*" for h in loopback)],
        allowed_origins=[origin, *(f"{scheme}://{h}:*" for scheme in ("http", "https") for h in loopback)],
    )


def build_app(settings: Settings, http: HttpPlan) -> Starlette:
    """The ASGI app: MCP at /mcp behind sign-in and the Host/Origin guard, /healthz, and the webhook."""
    from .server import create_server

    remote = settings.remote
    options: dict[str, Any] = {
        # A replica must read the state another one sealed for a client between rounds of one call
        # (elicitation on 2026-07-28 clients): one key for all, from the shared secret.
        "request_state_security": RequestStateSecurity(keys=[derived(http.secret, "mcp request state")]),
    }
    if remote.auth == "oauth":
        from .auth import JwtVerifier

        assert remote.oauth_issuer is not None  # plan() refused otherwise
        options["token_verifier"] = JwtVerifier(remote.oauth_issuer, http.public_url)
        options["auth"] = AuthSettings(
            issuer_url=remote.oauth_issuer,  # type: ignore[arg-type] # pydantic parses the URL
            resource_server_url=http.public_url,  # type: ignore[arg-type]
            required_scopes=list(remote.oauth_scopes) or None,
            # The verifier already requires the audience to be this URL; the SDK checks it once more.
            validate_token_resource=True,
        )
    # 2025-era clients get a signed session ID: what they declared, and who they are among a user's clients.
    seal = SessionSeal(derived(http.secret, "legacy session ids"))
    options["middleware"] = [
        RestoreSession(seal),
        RemoteCancel(),
        # Only because the app is stateless: every connection is born ready, so no handshake gate is skipped.
        ToolListCache(),
    ]
    states: list[ServerState] = []
    server = create_server(settings, transport="http", on_state=states.append, secret=http.secret, **options)

    async def healthz(request: Request) -> Response:
        return await health(states)

    # The SDK's decorator is untyped; calling it as a function keeps healthz typed.
    server.custom_route("/healthz", methods=["GET"])(healthz)
    hooks = _webhook(server, settings, http, states)

    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        # SSE, not plain JSON: with JSON responses the SDK drops progress notifications on both eras.
        json_response=False,
        transport_security=transport_security(http.public_url),
    )
    app.add_middleware(SessionIds, path=MCP_PATH, seal=seal)
    if hooks is not None:
        app.add_middleware(HookContext, hooks=hooks)
    if remote.auth == "header":
        from .auth import ApiKeyHeader

        app.add_middleware(ApiKeyHeader, path=MCP_PATH, secret=SecretStr(derived(http.secret, "header users")))
    return app


def _webhook(
    server: MCPServer[ServerState], settings: Settings, http: HttpPlan, states: list[ServerState]
) -> ServerHooks | None:
    """The server's own webhook and its route, when MUSICGPT_MCP_PUBLIC_URL says where MusicGPT can reach it
    (without one, the URL is this machine's own, which MusicGPT cannot reach: jobs are polled)."""
    if settings.remote.public_url is None:
        return None
    hooks = ServerHooks(settings.remote.public_url, http.secret)
    # No sign-in: MusicGPT has none. The secret in the path is the guard (deliveries.py).
    server.custom_route(HOOK_PATH + "{secret}", methods=["POST"])(deliveries.endpoint(hooks, states))
    return hooks


async def health(states: list[ServerState]) -> Response:
    """Up, and able to reach the ledger's database: what a load balancer needs to route to a replica."""
    if not states:
        return JSONResponse({"status": "starting"}, status_code=503)
    handle = states[-1].ledger
    ledger = await handle.get() if handle is not None else None
    if ledger is None:
        return JSONResponse({"status": "unavailable", "ledger": "cannot be opened (see the server's log)"}, 503)
    try:
        await ledger.check()
    except Exception as exc:  # any failure means "do not route here"
        log.warning("health check: the ledger failed: %s", type(exc).__name__)
        return JSONResponse({"status": "unavailable", "ledger": "not answering"}, status_code=503)
    return JSONResponse({"status": "ok", "ledger": ledger.kind})


def serve(settings: Settings, host: str, port: int, on_ready: Callable[[HttpPlan], None] | None = None) -> None:
    """Run the HTTP server under uvicorn until it is stopped (SIGINT/SIGTERM: uvicorn finishes what runs).
    A port that cannot be had is a ConfigError, raised before anything starts."""
    import uvicorn

    # The port first: when it is taken, that is the one thing to say (and no secret is made for nothing).
    sock = _listen(host, port)
    try:
        http = plan(settings, host, port)
        app = build_app(settings, http)
    except BaseException:
        sock.close()
        raise
    # Everything built so far (modules, schemas, the app) lives as long as the process: moved out of
    # the collector's reach, it is not walked again by every full collection under load.
    gc.collect()
    gc.freeze()
    # One line per request at INFO from the SDK's stateless transport is noise in a server's log.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    # get_extraction holds a request open while it waits: let running calls finish on shutdown.
    config = uvicorn_config(app, host, port, timeout_graceful_shutdown=60)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # Said only once the app has started and accepts connections, never before a failure.
            if self.started and not self.should_exit:
                log.info("serving MCP at %s (auth: %s) on %s:%d", http.public_url, settings.remote.auth, host, port)
                if on_ready is not None:
                    on_ready(http)

    with sock:
        Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, so that a taken port is one clear error before uvicorn starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc}. Check --host.") from None
    try:
        # As uvicorn does, so a restart need not wait out TIME_WAIT; not on Windows, where two servers could share it.
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"Cannot listen on {host}:{port}: {reason}. If another server (perhaps another musicgpt-mcp) "
            "is using that port, stop it or choose another with --port."
        ) from None
    sock.set_inheritable(True)
    return sock


__all__ = ["HttpPlan", "build_app", "is_loopback", "plan", "serve", "transport_security"]
