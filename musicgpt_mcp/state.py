"""What one server process holds while it runs: settings, the MusicGPT client, what it remembers of jobs."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from .config import Settings
from .musicgpt import MusicGPTClient
from .stem_cache import StemCache
from .waiting import EtaHint

# Jobs this process submitted, remembered for their ETA and source name (for polling and folders).
REMEMBERED_JOBS = 1000


@dataclass(frozen=True)
class Submitted:
    hint: EtaHint
    source: str


@dataclass
class AppState:
    client: MusicGPTClient | None
    settings: Settings | None
    config_error: str | None = None
    jobs: OrderedDict[str, Submitted] = field(default_factory=OrderedDict)
    # Stems the player fetched from storage (made on first use).
    stem_cache: StemCache = field(default_factory=StemCache)

    def require(self) -> tuple[MusicGPTClient, Settings]:
        if self.client is None or self.settings is None:
            raise ToolError(self.config_error or "The server is not configured.")
        return self.client, self.settings

    async def saved_stem(self, task_id: str, stem: str, fmt: str) -> Path | None:
        """The file download_stems saved for this stem in this format, if it did; the player reads it."""
        return None  # seam: the lead wires this to the job ledger's record of saved files

    def remember(self, task_id: str, job: Submitted) -> None:
        self.jobs[task_id] = job
        while len(self.jobs) > REMEMBERED_JOBS:
            self.jobs.popitem(last=False)


def app_state(ctx: Context[AppState]) -> AppState:
    return ctx.request_context.lifespan_context
