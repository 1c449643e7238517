"""What one server process holds while it runs, built once at start (server.py's lifespan): the settings, the
operator's MusicGPT client and its pools, the accounts' names and rate budgets, the job ledger (opened on first
use), the wake-ups shared with other replicas, and the player's stem cache.

Over HTTP this object is shared by every caller (the SDK enters the lifespan once per process), so nothing here
is "the" user: a tool call's caller, client and jobs are its `Call` (call.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import anyio
from mcp.server.mcpserver import Context

from .accounts import Accounts
from .config import ConfigError, Settings, default_state_dir
from .ledger import DatabaseLedgerError, Ledger, LedgerError, open_ledger
from .musicgpt import MusicGPTClient
from .signals import Signals
from .stem_cache import StemCache

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http"]


class LedgerHandle:
    """The ledger, opened on first use (listing tools touches no disk) and tried again after a failed open."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ledger: Ledger | None = None
        self._error: LedgerError | None = None
        self._lock = anyio.Lock()

    async def get(self) -> Ledger | None:
        """The ledger, or None when it cannot be opened now (the reason is kept for `require`)."""
        async with self._lock:
            if self._ledger is None:
                url = self._settings.remote.database_url  # PostgreSQL when set, on any transport
                try:
                    folder = self._settings.state_dir or default_state_dir()
                    self._ledger = await open_ledger(folder, url.get_secret_value() if url is not None else None)
                    self._error = None
                    log.info("job ledger: %s", self._ledger.where)
                except LedgerError as exc:
                    if self._error is None or str(self._error) != str(exc):
                        log.error("the job ledger cannot be used: %s", exc)
                    self._error = exc
            return self._ledger

    @property
    def opened(self) -> Ledger | None:
        """The ledger if a call has opened it already; never opens it."""
        return self._ledger

    async def require(self) -> Ledger:
        """The ledger, or the LedgerError that says why it cannot be used and what to do."""
        ledger = await self.get()
        if ledger is None:
            raise self.unavailable(self._error or "it could not be opened")
        return ledger

    def unavailable(self, reason: str | LedgerError) -> LedgerError:
        kind = DatabaseLedgerError if self._settings.remote.database_url is not None else LedgerError
        return kind(str(reason))

    async def close(self) -> None:
        if self._ledger is not None:
            await self._ledger.close()
            self._ledger = None


@dataclass
class ServerState:
    """The process's state. `settings` is None when the configuration is invalid: then `config_error` says why,
    and every tool call says it too (a host shows a crashed server as a red dot and nothing else)."""

    settings: Settings | None
    transport: Transport = "stdio"
    config_error: ConfigError | None = None
    client: MusicGPTClient | None = None  # the operator's key, and the pools every caller's client shares
    accounts: Accounts | None = None
    ledger: LedgerHandle | None = None
    # Wake-ups shared with the other replicas (the lifespan replaces this with PostgreSQL's when configured).
    signals: Signals = field(default_factory=Signals)
    # Stems the player fetched from storage (made on first use).
    stem_cache: StemCache = field(default_factory=StemCache)

    @property
    def auth(self) -> str:
        return self.settings.remote.auth if self.transport == "http" and self.settings is not None else "none"

    @property
    def offers_downloads(self) -> bool:
        """Whether download_stems saves for callers: over HTTP only into a folder the operator chose."""
        return self.transport == "stdio" or (self.settings is not None and self.settings.output_dir_configured)

    @property
    def local_files_allowed(self) -> bool:
        """Whether audio_file may name a file: over HTTP the server's disk is not the caller's, so only in
        folders the operator listed."""
        return self.transport == "stdio" or (self.settings is not None and self.settings.allowed_dirs is not None)

    @property
    def isolated(self) -> bool:
        """Whether callers are told apart: then each sees only their own jobs."""
        return self.auth != "none"

    async def close(self) -> None:
        if self.accounts is not None:
            self.accounts.forget()
        if self.ledger is not None:
            await self.ledger.close()


def server_state(ctx: Context[ServerState]) -> ServerState:
    return ctx.request_context.lifespan_context


__all__ = ["LedgerHandle", "ServerState", "Transport", "server_state"]
