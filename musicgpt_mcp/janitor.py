"""Housekeeping while the server runs: songs handed over in the stem view that nobody approved are forgotten
once their upload or quote lapses, even if no one uses the view again. It never opens the ledger itself
(listing tools touches no disk), so it sweeps only once a tool has opened it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import anyio

from . import uploads
from .ledger import LedgerError
from .state import ServerState
from .tools.studio import uploads_in

log = logging.getLogger(__name__)

EVERY: Final = 60.0


async def sweep_once(state: ServerState) -> None:
    ledger = state.ledger.opened if state.ledger is not None else None
    if ledger is None or state.settings is None:
        return
    try:
        await uploads.tidy(ledger, uploads_in(state.settings), time.time())
    except (LedgerError, OSError) as exc:  # the next round tries again; tool calls report the ledger's trouble
        log.warning("could not forget lapsed uploads: %s", exc)
    except Exception:  # housekeeping must never take the server down with it
        log.exception("could not forget lapsed uploads")


@asynccontextmanager
async def running(state: ServerState) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            await anyio.sleep(EVERY)
            await sweep_once(state)

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
