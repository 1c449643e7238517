"""MusicGPT accounts as this process sees them: what the ledger calls each one, and each one's share of
MusicGPT's per-key rate limits.

An account is a MusicGPT key at a base URL. The ledger never holds the key: it names the account by an HMAC
under a key derived from the server secret (secret.py), so a job paid with one key is never reused for another,
and a leaked ledger cannot be used to test guessed keys. The rate limits (200 status calls and 60 submits a
minute per key) are counted per account name: in the ledger's PostgreSQL when replicas share one, so they hold
in sum, else in this process.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

from pydantic import SecretStr

from .config import ConfigError, Settings, default_state_dir
from .ledger import Ledger, LedgerError, shared_limiter
from .musicgpt import contract
from .ratelimit import Limiter, SharedLimiter
from .secret import account_name, derived, kept_secret, legacy_account_name

log = logging.getLogger(__name__)

# Rate-limit counters kept for accounts of callers who bring their own key (header mode), least recently used
# dropped first (a dropped one starts counting afresh: MusicGPT's own 429 still applies).
KEYED_ACCOUNTS: Final = 4096

LedgerOpener = Callable[[], Awaitable[Ledger | None]]
Limiters = tuple[Limiter, Limiter]  # (status calls, submits)


class Accounts:
    def __init__(self, settings: Settings, secret: SecretStr | None, ledger: LedgerOpener) -> None:
        self._settings = settings
        self._secret = secret
        self._ledger = ledger
        self._key: bytes | None = None
        self._view_key: bytes | None = None
        self._limits: OrderedDict[str, Limiters] = OrderedDict()
        self._adopted: set[str] = set()

    def name(self, base_url: str, api_key: str | None) -> str:
        """The ledger's name for the MusicGPT account of `api_key` at `base_url`."""
        key = self._naming_key()
        return account_name(key, base_url, api_key) if key else legacy_account_name(base_url, api_key)

    def _naming_key(self) -> bytes:
        """The server secret's key for account names. Over stdio that is MUSICGPT_MCP_SERVER_SECRET, else the one
        kept in the state folder; but servers sharing a PostgreSQL ledger must name an account alike, so without a
        configured secret they name it as earlier releases did, unkeyed."""
        if self._key is None:
            settings = self._settings
            secret = self._secret or settings.remote.server_secret
            if secret is None and settings.remote.database_url is None:
                try:
                    secret = kept_secret(settings.state_dir or default_state_dir())
                except ConfigError as exc:
                    # No secret means no state folder, so no ledger either: nothing is recorded under the name.
                    log.warning("accounts are named without a key: %s", exc)
            self._key = derived(secret, "musicgpt accounts").encode() if secret is not None else b""
        return self._key

    def view_key(self) -> bytes:
        """The key the stem view's tokens (quotes, uploads) are derived with: the server secret's (configured, or
        kept in the state folder), so every replica checks them alike and none stores them."""
        if self._view_key is None:
            settings = self._settings
            secret = self._secret or settings.remote.server_secret
            secret = secret or kept_secret(settings.state_dir or default_state_dir())  # ConfigError: no secret
            self._view_key = derived(secret, "stem view tokens").encode()
        return self._view_key

    async def adopt(self, ledger: Ledger, owner: str, base_url: str, api_key: str | None) -> None:
        """Rename the owner's jobs recorded under the account's unkeyed name (earlier releases) to its keyed one,
        once per process, so reuse and the unknown-outcome guard still find them."""
        new, old = self.name(base_url, api_key), legacy_account_name(base_url, api_key)
        if new in self._adopted or new == old:
            return
        try:
            await ledger.rename_account(owner, old, new)
        except LedgerError as exc:
            log.warning("could not rename the jobs of an account to its keyed name: %s", exc)
            return
        self._adopted.add(new)

    def limiters_for_key(self, base_url: str, key: SecretStr) -> Limiters:
        """A caller's own key's budgets, kept by account (a hash, never the key) from one request to the next."""
        account = self.name(base_url, key.get_secret_value())
        limits = self._limits.get(account)
        if limits is None:
            limits = self._limits[account] = self.limiters(account)
            while len(self._limits) > KEYED_ACCOUNTS:
                self._limits.popitem(last=False)
        else:
            self._limits.move_to_end(account)
        return limits

    def limiters(self, account: str | Callable[[], str]) -> Limiters:
        """MusicGPT's status and submit budgets for one account (named now, or on first use): shared with every
        replica when the ledger is PostgreSQL, else this process's own."""

        def shared(kind: str, calls: int) -> Limiter:
            async def make() -> Limiter | None:
                ledger = await self._ledger()
                if ledger is None:
                    return None
                name = account if isinstance(account, str) else account()
                return shared_limiter(ledger, f"{kind}:{name}", calls, contract.RATE_WINDOW)

            return SharedLimiter(make, calls, contract.RATE_WINDOW)

        # The documented limits, unless the operator says MusicGPT granted this account others.
        status = self._settings.status_calls_per_minute or contract.STATUS_CALLS_PER_MINUTE
        submits = self._settings.submits_per_minute or contract.SUBMITS_PER_MINUTE
        return shared("status", status), shared("submit", submits)

    def forget(self) -> None:
        self._limits.clear()


__all__ = ["Accounts", "Limiters"]
