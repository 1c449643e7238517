"""The server's log: stderr only (stdout is the MCP wire), never the API key, and never a webhook's secret."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Final

from .hooks import HOOK_PATH
from .musicgpt.key import scrub

# A server webhook's address, up to the end of its secret (hooks.py).
_HOOK_SECRET: Final = re.compile(re.escape(HOOK_PATH) + r"[^\s\"'<>]+")


def configure() -> None:
    level = os.environ.get("MUSICGPT_MCP_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, HideHookSecrets) for f in handler.filters):
            handler.addFilter(HideHookSecrets())


class HideHookSecrets(logging.Filter):
    """No log line shows a server webhook's secret, whichever library wrote it: the server never logs one, but
    an HTTP client logs each request's URL (the sandbox's deliveries, with --sandbox, run in the same process)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if HOOK_PATH in message:
            record.msg, record.args = _HOOK_SECRET.sub(HOOK_PATH + "[secret]", message), None
        return True


class _Redact(logging.Filter):
    """Defence in depth: no log line carries the key, whichever library wrote it."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = scrub(message, self.secret), None
        return True


def redact(secret: str) -> None:
    if not secret:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _Redact) and f.secret == secret for f in handler.filters):
            handler.addFilter(_Redact(secret))
