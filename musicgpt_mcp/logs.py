"""The server's log: stderr only (stdout is the MCP wire), and never the API key."""

from __future__ import annotations

import logging
import os
import sys

from .musicgpt.key import scrub


def configure() -> None:
    level = os.environ.get("MUSICGPT_MCP_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
