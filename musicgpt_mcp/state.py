"""What one server process holds while it runs: settings, the MusicGPT clients, and the job ledger.

Over HTTP this object is shared by every caller (the SDK enters the lifespan once per process), so
nothing here is "the" user: `who()` names the caller of the request being served.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import SecretStr

from . import contract
from .config import ConfigError, Settings, default_state_dir
from .identity import LOCAL_OWNER, current_caller
from .ledger import Download, Job, Ledger, LedgerError, StatusUpdate, open_ledger
from .musicgpt import MusicGPTClient, TaskNotFoundError
from .ratelimit import Limiter, SharedLimiter
from .secret import account_name, derived, kept_secret, legacy_account_name
from .signals import Signals
from .stem_cache import StemCache

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http"]
# Rate-limit counters kept for accounts of callers who bring their own key (header mode), least
# recently used dropped first (a dropped one starts counting afresh: MusicGPT's own 429 still applies).
KEYED_ACCOUNTS: Final = 4096


@dataclass(frozen=True)
class Who:
    """The caller of one request: who owns the jobs, and the client that pays with their key."""

    owner: str
    client: MusicGPTClient
    account: str
    # The unkeyed name earlier releases gave the same account, until its jobs are renamed (`adopt_account`).
    legacy_account: str


@dataclass
class AppState:
    client: MusicGPTClient | None
    settings: Settings | None
    config_error: str | None = None
    transport: Transport = "stdio"
    _keyed_limits: OrderedDict[str, tuple[Limiter, Limiter]] = field(default_factory=OrderedDict)
    _ledger: Ledger | None = None
    _ledger_error: str | None = None
    _ledger_lock: anyio.Lock = field(default_factory=anyio.Lock)
    # Stems the player fetched from storage (made on first use).
    stem_cache: StemCache = field(default_factory=StemCache)
    # The server secret (HTTP: always given); over stdio the one kept in the state folder, read on first use.
    secret: SecretStr | None = None
    _account_key: bytes | None = None
    _adopted: set[str] = field(default_factory=set)
    # Wake-ups shared with the other replicas (the lifespan replaces this with PostgreSQL's when configured).
    signals: Signals = field(default_factory=Signals)

    def require(self) -> tuple[MusicGPTClient, Settings]:
        if self.client is None or self.settings is None:
            raise ToolError(self.config_error or "The server is not configured.")
        return self.client, self.settings

    @property
    def auth(self) -> str:
        return self.settings.remote.auth if self.transport == "http" and self.settings is not None else "none"

    @property
    def offers_downloads(self) -> bool:
        """Whether download_stems saves for callers: over HTTP only into a folder the operator chose."""
        return self.transport == "stdio" or (self.settings is not None and self.settings.output_dir_configured)

    @property
    def local_files_allowed(self) -> bool:
        """Whether audio_file may name a file: over HTTP the server's disk is not the caller's, so only
        in folders the operator listed."""
        return self.transport == "stdio" or (self.settings is not None and self.settings.allowed_dirs is not None)

    @property
    def isolated(self) -> bool:
        """Whether callers are told apart: then each sees only their own jobs."""
        return self.auth != "none"

    def who(self) -> Who:
        client, settings = self.require()
        caller = current_caller(self.auth, settings.api_key)
        if caller.own_key and caller.api_key is not None:
            client = self._client_for(caller.api_key)
        key = caller.api_key.get_secret_value() if caller.api_key is not None else None
        return Who(
            owner=caller.owner,
            client=client,
            account=self.account(client.base_url, key),
            legacy_account=legacy_account_name(client.base_url, key),
        )

    def account(self, base_url: str, api_key: str | None) -> str:
        """The ledger's name for the MusicGPT account of `api_key`: keyed with the server secret."""
        key = self._key_for_accounts()
        return account_name(key, base_url, api_key) if key else legacy_account_name(base_url, api_key)

    def _key_for_accounts(self) -> bytes:
        """The key account names are made with: the server secret. Over stdio that is MUSICGPT_MCP_SERVER_SECRET,
        else the one kept in the state folder; but servers sharing a PostgreSQL ledger must name an account alike,
        so without a configured secret they name it as earlier releases did, unkeyed."""
        if self._account_key is None:
            settings = self.settings
            secret = self.secret or (settings.remote.server_secret if settings is not None else None)
            if secret is None and settings is not None and settings.remote.database_url is None:
                try:
                    secret = kept_secret(settings.state_dir or default_state_dir())
                except ConfigError as exc:
                    # No secret means no state folder, so no ledger either: nothing is recorded under the name.
                    log.warning("accounts are named without a key: %s", exc)
            self._account_key = derived(secret, "musicgpt accounts").encode() if secret is not None else b""
        return self._account_key

    async def adopt_account(self, ledger: Ledger, who: Who) -> None:
        """Rename this caller's jobs recorded under the account's unkeyed name (earlier releases) to its keyed
        one, once per process, so reuse and the unknown-outcome guard still find them."""
        if who.account in self._adopted or who.account == who.legacy_account:
            return
        try:
            await ledger.rename_account(who.owner, who.legacy_account, who.account)
        except LedgerError as exc:
            log.warning("could not rename the jobs of an account to its keyed name: %s", exc)
            return
        self._adopted.add(who.account)

    def _client_for(self, key: SecretStr) -> MusicGPTClient:
        """A client for a caller's own key, for this request only (the key is not kept past it). It
        uses the operator client's connection pools; its share of MusicGPT's per-key rate limits is
        kept by account (a hash, never the key) so it holds from one request to the next."""
        client, _ = self.require()
        account = self.account(client.base_url, key.get_secret_value())
        limits = self._keyed_limits.get(account)
        if limits is None:
            limits = self._keyed_limits[account] = self.limiters(account)
            while len(self._keyed_limits) > KEYED_ACCOUNTS:
                self._keyed_limits.popitem(last=False)
        else:
            self._keyed_limits.move_to_end(account)
        status, submit = limits
        return client.with_key(key, status_limiter=status, submit_limiter=submit)

    def limiters(self, account: str | Callable[[], str]) -> tuple[Limiter, Limiter]:
        """MusicGPT's status and submit budgets for one account (named now, or on first use): shared with every
        replica when the ledger is PostgreSQL, else this process's own."""

        def shared(kind: str, calls: int) -> Limiter:
            async def make() -> Limiter | None:
                ledger = await self.ledger()
                if ledger is None:
                    return None
                name = account if isinstance(account, str) else account()
                return ledger.rate_limiter(f"{kind}:{name}", calls, contract.RATE_WINDOW)

            return SharedLimiter(make, calls, contract.RATE_WINDOW)

        settings = self.settings
        # The documented limits, unless the operator says MusicGPT granted this account others.
        status = (settings.status_calls_per_minute if settings else None) or contract.STATUS_CALLS_PER_MINUTE
        submits = (settings.submits_per_minute if settings else None) or contract.SUBMITS_PER_MINUTE
        return shared("status", status), shared("submit", submits)

    async def ledger(self) -> Ledger | None:
        """The ledger, opened on first use (listing tools touches no disk); None when it cannot be
        opened, with the reason kept for `require_ledger`. A failed open is tried again next time."""
        async with self._ledger_lock:
            if self._ledger is None and self.settings is not None:
                folder = self.settings.state_dir or default_state_dir()
                try:
                    url = self.settings.remote.database_url  # PostgreSQL when set, on any transport
                    self._ledger = await open_ledger(folder, url.get_secret_value() if url is not None else None)
                    self._ledger_error = None
                    log.info("job ledger: %s", self._ledger.where)
                except LedgerError as exc:
                    if self._ledger_error != str(exc):
                        log.error("the job ledger cannot be used: %s", exc)
                    self._ledger_error = str(exc)
            return self._ledger

    def ledger_fix(self) -> str:
        """What an operator does about a ledger that cannot be used, for the store in use."""
        if self.settings is not None and self.settings.remote.database_url is not None:
            return (
                "Check that the PostgreSQL database in MUSICGPT_MCP_DATABASE_URL is up and reachable and the "
                "user may use it; the server tries again on the next call."
            )
        return (
            "Set MUSICGPT_MCP_STATE_DIR in the server's environment to a folder this server can write, then restart it."
        )

    async def require_ledger(self) -> Ledger:
        ledger = await self.ledger()
        if ledger is None:
            raise ToolError(
                f"No paid job can be submitted: the job ledger, which keeps the user from paying twice for the "
                f"same job, cannot be used ({self._ledger_error or 'the server is not configured'}). "
                f"{self.ledger_fix()} Nothing was submitted. The free tools still work."
            )
        return ledger

    # The free tools use the ledger when they can and carry on without it when they cannot.

    async def known_job(self, who: Who, task_id: str) -> Job | None:
        """The caller's job with `task_id`, as the ledger remembers it. On a shared server a job the
        caller does not own is "not found", in MusicGPT's own words; locally any task ID may be asked."""
        ledger = await self.ledger()
        job = None
        if ledger is not None:
            try:
                job = await ledger.job(who.owner, task_id)
            except LedgerError as exc:
                log.warning("could not read job %s from the ledger: %s", task_id, exc)
                if self.isolated:
                    raise ToolError(f"The job ledger could not be read ({exc}); try again in a moment.") from None
        if job is None and self.isolated:
            raise TaskNotFoundError(task_id)
        return job

    async def remember_status(self, who: Who, task_id: str, status: contract.StatusReply, known: Job | None) -> None:
        """Record a status MusicGPT gave for a job the ledger knows (`known`, as read before the
        call); a status the row already holds is not written again."""
        ledger = await self.ledger()
        if ledger is None or known is None:
            return
        update = StatusUpdate(
            status=status.status,
            status_message=status.status_message,
            conversion_cost=status.conversion_cost,
            done=status.done,
            mp3_urls=dict(status.mp3),
            wav_urls=dict(status.wav),
        )
        if not update.changes(known):
            return
        try:
            await ledger.update_status(who.owner, task_id, update, time.time())
        except LedgerError as exc:
            log.warning("could not record the status of job %s: %s", task_id, exc)

    async def saved_stem(self, who: Who, task_id: str, stem: str, fmt: str) -> Path | None:
        """The file download_stems saved for this caller's stem in this format, if it still exists;
        the player reads it instead of fetching the stem again."""
        ledger = await self.ledger()
        if ledger is None:
            return None
        try:
            return await ledger.saved_file(who.owner, task_id, stem, fmt)
        except LedgerError as exc:
            log.warning("could not look up the saved %s stem of job %s: %s", stem, task_id, exc)
            return None

    async def remember_downloads(self, who: Who, task_id: str, files: list[Download]) -> None:
        ledger = await self.ledger()
        if ledger is None or not files:
            return
        try:
            await ledger.record_downloads(who.owner, task_id, files)
        except LedgerError as exc:
            log.warning("could not record the downloads of job %s: %s", task_id, exc)

    async def close(self) -> None:
        self._keyed_limits.clear()
        if self._ledger is not None:
            await self._ledger.close()
            self._ledger = None


def app_state(ctx: Context[AppState]) -> AppState:
    return ctx.request_context.lifespan_context


__all__ = ["LOCAL_OWNER", "AppState", "Who", "app_state"]
