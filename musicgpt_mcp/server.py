"""The MCP surface, wired: configuration and the client in a lifespan, then tools, resources, prompts.

Nothing here decides anything: each tool lives in its own module under `tools/`, errors become tool
errors in `errors`, MusicGPT calls live in `musicgpt`, file rules in `files` and `downloads`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from . import __version__, answers, clients, completions, downloads, logs, player, prompts, resources, signals, tools
from .config import ConfigError, Settings
from .musicgpt import MusicGPTClient
from .state import AppState, Transport

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Splits songs into stems (vocals, drums, bass, guitar, piano, and more) with MusicGPT. The flow: "
    "extract_stems (paid; returns a task_id) -> get_extraction with wait_seconds until done -> download_stems "
    "(saves the files and returns their paths). The resource musicgpt://stems lists every stem with what it holds."
)


def _resolve(settings: Settings | Callable[[], Settings] | None) -> Settings:
    if settings is None:
        return Settings.from_env()
    return settings if isinstance(settings, Settings) else settings()


def create_server(
    settings: Settings | Callable[[], Settings] | None = None,
    *,
    transport: Transport = "stdio",
    on_state: Callable[[AppState], object] | None = None,
    secret: SecretStr | None = None,
    **server_options: Any,
) -> MCPServer[AppState]:
    """The server. Configuration is `settings`, or made by calling it, or (None) read from the
    environment, at start-up; a configuration error then surfaces in each tool call.

    Over HTTP the settings are needed at once (they decide which tools a shared server offers), and
    `server_options` carry the transport's sign-in, state-sealing and middleware options to MCPServer."""
    offered = tools.TOOLS
    if transport == "http":
        if not isinstance(settings, Settings):
            raise TypeError("the HTTP transport needs its Settings up front")
        if not settings.output_dir_configured:
            # The server's disk is not the user's: without a folder the operator chose, there is
            # nowhere to save for them. get_extraction then links the stem files instead.
            offered = tuple(spec for spec in offered if spec.name != "download_stems")

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        try:
            resolved = _resolve(settings)
        except ConfigError as exc:
            # Start anyway: a host shows a crashed server as a red dot and nothing else, whereas a
            # tool error tells the user what to fix.
            log.error("configuration error: %s", exc)
            yield AppState(client=None, settings=None, config_error=f"The server's configuration is invalid: {exc}")
            return
        client = MusicGPTClient(
            resolved.base_url,
            resolved.api_key,
            connect_timeout=resolved.connect_timeout,
            read_timeout=resolved.read_timeout,
            write_timeout=resolved.write_timeout,
            storage_hosts=resolved.storage_hosts,
        )
        _check_output_dir(resolved, transport)
        if resolved.api_key is None:
            log.warning("MUSICGPT_API_KEY is not set; tools will explain how to set it")
        else:
            logs.redact(resolved.api_key.get_secret_value())
        state = AppState(client=client, settings=resolved, transport=transport, secret=secret)
        key = resolved.api_key.get_secret_value() if resolved.api_key is not None else None
        # Named on first use: over stdio the name's key is read from the state folder, which listing tools never touches.
        client.status_limiter, client.submit_limiter = state.limiters(lambda: state.account(client.base_url, key))
        if on_state is not None:
            on_state(state)  # the HTTP transport's health check reads the ledger through it
        url = resolved.remote.database_url
        try:
            async with signals.open_signals(url.get_secret_value() if url is not None else None) as hub:
                state.signals = hub
                yield state
        finally:
            await state.close()
            await client.aclose()

    server: MCPServer[AppState] = MCPServer(
        "musicgpt-mcp",
        title="MusicGPT stem extraction",
        description="Split songs into stems (vocals, drums, bass, ...) with MusicGPT.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level="INFO",
        extensions=[player.apps()],
        tools=tools.build(offered),
        # The transport's own middleware (HTTP: sessions, cancellation, the listing cache) runs outside ours.
        middleware=[*server_options.pop("middleware", ()), clients.AppOnlyTools()],
        **server_options,
    )
    answers.install(server)
    resources.register(server)
    prompts.register(server)
    completions.register(server, prompts.CHOICES)
    return server


def _check_output_dir(settings: Settings, transport: Transport) -> None:
    if transport == "http" and not settings.output_dir_configured:
        return  # a shared server without a folder of its own saves nothing: download_stems is not offered
    problem = downloads.unwritable(settings.output_dir)
    if problem:
        source = "MUSICGPT_MCP_OUTPUT_DIR" if settings.output_dir_configured else "the default output folder"
        log.warning("%s: %s; download_stems cannot save stems until that is fixed", source, problem)


__all__ = ["AppState", "create_server"]
