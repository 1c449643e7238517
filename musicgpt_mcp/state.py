"""What one server process holds while it runs: settings, the MusicGPT client, and the job ledger."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from . import contract
from .config import Settings, default_state_dir
from .ledger import Download, Job, Ledger, LedgerError, StatusUpdate, open_ledger
from .musicgpt import MusicGPTClient

log = logging.getLogger(__name__)

# Whose jobs these are. One person runs a local server; the remote mode names each caller.
LOCAL_OWNER = "local"


def account_of(base_url: str, api_key: str | None) -> str:
    """Which MusicGPT account (and endpoint) a job belongs to, without storing the key: a job
    submitted with one key is never reused for another, nor a sandbox job for the real API."""
    material = f"musicgpt-mcp account\0{base_url}\0{api_key or ''}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


@dataclass
class AppState:
    client: MusicGPTClient | None
    settings: Settings | None
    config_error: str | None = None
    owner: str = LOCAL_OWNER
    _ledger: Ledger | None = None
    _ledger_error: str | None = None
    _ledger_lock: anyio.Lock = field(default_factory=anyio.Lock)

    def require(self) -> tuple[MusicGPTClient, Settings]:
        if self.client is None or self.settings is None:
            raise ToolError(self.config_error or "The server is not configured.")
        return self.client, self.settings

    @property
    def account(self) -> str:
        client, settings = self.require()
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        return account_of(client.base_url, key)

    async def ledger(self) -> Ledger | None:
        """The ledger, opened on first use (listing tools touches no disk); None when it cannot be
        opened, with the reason kept for `require_ledger`. A failed open is tried again next time."""
        async with self._ledger_lock:
            if self._ledger is None and self.settings is not None:
                folder = self.settings.state_dir or default_state_dir()
                try:
                    self._ledger = await open_ledger(folder)
                    self._ledger_error = None
                    log.info("job ledger: %s", self._ledger.where)
                except LedgerError as exc:
                    if self._ledger_error != str(exc):
                        log.error("the job ledger cannot be used: %s", exc)
                    self._ledger_error = str(exc)
            return self._ledger

    async def require_ledger(self) -> Ledger:
        ledger = await self.ledger()
        if ledger is None:
            raise ToolError(
                f"No paid job can be submitted: the job ledger, which keeps the user from paying twice for the "
                f"same job, cannot be used ({self._ledger_error or 'the server is not configured'}). Set "
                "MUSICGPT_MCP_STATE_DIR in the server's environment to a folder this server can write, then "
                "restart it. Nothing was submitted. get_extraction and download_stems still work."
            )
        return ledger

    # The free tools use the ledger when they can and carry on without it when they cannot.

    async def known_job(self, task_id: str) -> Job | None:
        """This owner's job with `task_id`, as the ledger remembers it (None if unknown or no ledger)."""
        ledger = await self.ledger()
        if ledger is None:
            return None
        try:
            return await ledger.job(self.owner, task_id)
        except LedgerError as exc:
            log.warning("could not read job %s from the ledger: %s", task_id, exc)
            return None

    async def remember_status(self, task_id: str, status: contract.StatusReply) -> None:
        ledger = await self.ledger()
        if ledger is None:
            return
        update = StatusUpdate(
            status=status.status,
            status_message=status.status_message,
            conversion_cost=status.conversion_cost,
            done=status.done,
            mp3_urls=dict(status.mp3),
            wav_urls=dict(status.wav),
        )
        try:
            await ledger.update_status(self.owner, task_id, update, time.time())
        except LedgerError as exc:
            log.warning("could not record the status of job %s: %s", task_id, exc)

    async def remember_downloads(self, task_id: str, files: list[Download]) -> None:
        ledger = await self.ledger()
        if ledger is None or not files:
            return
        try:
            await ledger.record_downloads(self.owner, task_id, files)
        except LedgerError as exc:
            log.warning("could not record the downloads of job %s: %s", task_id, exc)

    async def close(self) -> None:
        if self._ledger is not None:
            await self._ledger.close()
            self._ledger = None


def app_state(ctx: Context[AppState]) -> AppState:
    return ctx.request_context.lifespan_context
