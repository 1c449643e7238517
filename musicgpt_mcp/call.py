"""One tool call's view of the server: who is calling, the MusicGPT client that pays with their key, their jobs.

The SDK makes a `Call` for every tool that asks for one (a parameter annotated `CurrentCall`, tools/args.py), so
no tool repeats the preamble of finding the process's state, checking the configuration and naming the caller.
Over stdio there is one caller; over HTTP each request says who it is (identity.py), and a caller who brings
their own key (header mode) gets a client for that key, for this call only, on the process's shared pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mcp.server.mcpserver import Context

from .accounts import Accounts
from .config import ConfigError, Settings
from .identity import current_caller
from .jobs import JobBook
from .ledger import Ledger
from .musicgpt import MusicGPTClient
from .state import LedgerHandle, ServerState, server_state


@dataclass(frozen=True)
class Call:
    ctx: Context[ServerState]
    state: ServerState
    settings: Settings
    owner: str
    client: MusicGPTClient  # pays with the caller's key: the operator's, or their own in header mode
    account: str  # the ledger's name for that key's MusicGPT account
    api_key: str | None  # for the account's one-time rename (accounts.adopt); never stored, never shown
    accounts: Accounts
    ledgers: LedgerHandle
    # Configuration problems with settings this tool does not use: said after its result, so they get fixed.
    notes: tuple[str, ...] = ()

    @cached_property
    def book(self) -> JobBook:
        isolated, wait = self.state.isolated, self.settings.max_wait
        signals = self.state.signals
        return JobBook(self.ledgers, self.owner, self.client, isolated=isolated, max_wait=wait, signals=signals)

    async def ledger(self) -> Ledger:
        """The ledger, or the one explanation of why it cannot be used."""
        ledger = await self.ledgers.require()
        await self.accounts.adopt(ledger, self.owner, self.client.base_url, self.api_key)
        return ledger

    def redact(self, text: str) -> str:
        """`text` without the caller's key, nor the operator's."""
        text = self.client.redact(text)
        operator = self.state.client
        return operator.redact(text) if operator is not None and operator is not self.client else text

    async def progress(self, done: float, total: float | None, message: str) -> None:
        await self.ctx.report_progress(done, total, message)


def open_call(ctx: Context[Any], needs: frozenset[str] | None = None) -> Call:
    """The call being served, for a tool that uses the settings named in `needs` (None: all of them). Raises a
    configuration problem with one of those, or NotSignedIn, as a Failure; other problems become `notes`."""
    state = server_state(ctx)
    settings, operator, accounts, ledgers = state.settings, state.client, state.accounts, state.ledger
    if settings is None or operator is None or accounts is None or ledgers is None:
        raise state.config_error or ConfigError("The server is not configured.")
    blocking = [p for p in settings.problems if needs is None or p.variable is None or p.variable in needs]
    if blocking:
        raise ConfigError(f"The server's configuration is invalid: {blocking[0]}")
    caller = current_caller(state.auth, settings.api_key)
    client = operator
    if caller.own_key and caller.api_key is not None:
        status, submit = accounts.limiters_for_key(operator.base_url, caller.api_key)
        client = MusicGPTClient(
            operator.base_url, caller.api_key, operator.pools, status_limiter=status, submit_limiter=submit
        )
    key = caller.api_key.get_secret_value() if caller.api_key is not None else None
    account = accounts.name(client.base_url, key)
    notes = tuple(str(p) for p in settings.problems)
    return Call(ctx, state, settings, caller.owner, client, account, key, accounts, ledgers, notes)


__all__ = ["Call", "open_call"]
