"""The MCP surface, wired: the process's state built in a lifespan, then tools, resources, prompts.

Nothing here decides anything: each tool lives in its own module under `tools/`, failures become tool errors in
`errors`, a call's caller and jobs are `call`/`jobs`, MusicGPT is `musicgpt`, file rules are `files` and
`downloads`. The transports (stdio in cli.py, HTTP in web.py) pass what only they know.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from . import (
    __version__,
    answers,
    clients,
    completions,
    downloads,
    janitor,
    logs,
    player,
    prompts,
    resources,
    signals,
    tools,
)
from .accounts import Accounts
from .config import ConfigError, Settings
from .musicgpt import MusicGPTClient, Pools
from .state import LedgerHandle, ServerState, Transport

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Splits songs into stems (vocals, drums, bass, guitar, piano, and more) with MusicGPT. The flow: "
    "extract_stems (paid; returns a task_id) -> get_extraction with wait_seconds until done -> download_stems "
    "(saves the files and returns their paths). The resource musicgpt://stems lists every stem with what it holds."
)

SettingsSource = Settings | Callable[[], Settings] | None


def create_server(
    settings: SettingsSource = None,
    *,
    transport: Transport = "stdio",
    on_state: Callable[[ServerState], object] | None = None,
    secret: SecretStr | None = None,
    **server_options: Any,
) -> MCPServer[ServerState]:
    """The server. Configuration is `settings`, or made by calling it, or (None) read from the environment, at
    start-up; a configuration error then surfaces in each tool call. Over HTTP the settings are needed at once
    (they decide which tools a shared server offers), and `server_options` carry the transport's sign-in,
    state-sealing and middleware options to MCPServer."""
    if transport == "http" and not isinstance(settings, Settings):
        raise TypeError("the HTTP transport needs its Settings up front")
    server: MCPServer[ServerState] = MCPServer(
        "musicgpt-mcp",
        title="MusicGPT stem extraction",
        description="Split songs into stems (vocals, drums, bass, ...) with MusicGPT.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan(settings, transport, secret, on_state),
        log_level="INFO",
        extensions=[player.apps()],
        tools=tools.build(settings if isinstance(settings, Settings) else None, transport),
        # The transport's own middleware (HTTP: sessions, cancellation, the listing cache) runs outside ours.
        middleware=[*server_options.pop("middleware", ()), clients.AppOnlyTools()],
        **server_options,
    )
    answers.install(server)
    resources.register(server)
    prompts.register(server)
    completions.register(server, prompts.CHOICES)
    return server


def lifespan(
    settings: SettingsSource,
    transport: Transport,
    secret: SecretStr | None,
    on_state: Callable[[ServerState], object] | None,
) -> Callable[[MCPServer[ServerState]], Any]:
    """The process's state, built once when the server starts and closed when it stops."""

    @asynccontextmanager
    async def run(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        try:
            resolved = _resolve(settings)
        except ConfigError as exc:
            # Start anyway: a host shows a crashed server as a red dot and nothing else, whereas a tool error
            # tells the user what to fix.
            log.error("configuration error: %s", exc)
            yield ServerState(None, transport, ConfigError(f"The server's configuration is invalid: {exc}"))
            return
        state = _build(resolved, transport, secret)
        if on_state is not None:
            on_state(state)  # the HTTP transport's health check reads the ledger through it
        url = resolved.remote.database_url
        try:
            async with signals.open_signals(url.get_secret_value() if url is not None else None) as hub:
                state.signals = hub
                async with janitor.running(state):
                    yield state
        finally:
            await state.close()
            assert state.client is not None
            await state.client.pools.aclose()

    return run


def _resolve(settings: SettingsSource) -> Settings:
    if settings is None:
        return Settings.from_env()
    return settings if isinstance(settings, Settings) else settings()


def _build(settings: Settings, transport: Transport, secret: SecretStr | None) -> ServerState:
    pools = Pools(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        write_timeout=settings.write_timeout,
        storage_hosts=settings.storage_hosts,
    )
    client = MusicGPTClient(settings.base_url, settings.api_key, pools)
    _check_output_dir(settings, transport)
    if settings.api_key is None:
        log.warning("MUSICGPT_API_KEY is not set; tools will explain how to set it")
    else:
        logs.redact(settings.api_key.get_secret_value())
    ledger = LedgerHandle(settings)
    accounts = Accounts(settings, secret, ledger.get)
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    # Named on first use: over stdio the name's key is read from the state folder, which listing tools never touches.
    client.status_limiter, client.submit_limiter = accounts.limiters(lambda: accounts.name(client.base_url, key))
    return ServerState(settings, transport, client=client, accounts=accounts, ledger=ledger)


def _check_output_dir(settings: Settings, transport: Transport) -> None:
    if transport == "http" and not settings.output_dir_configured:
        return  # a shared server without a folder of its own saves nothing: download_stems is not offered
    problem = downloads.unwritable(settings.output_dir)
    if problem:
        source = "MUSICGPT_MCP_OUTPUT_DIR" if settings.output_dir_configured else "the default output folder"
        log.warning("%s: %s; download_stems cannot save stems until that is fixed", source, problem)


__all__ = ["ServerState", "create_server"]
