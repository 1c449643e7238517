"""Why the ledger cannot be used: `LedgerError`, and its one text for every tool and resource (`explained()`).

The text says what the operator does about it for the store in use: the state folder for SQLite, the database
for PostgreSQL (`DatabaseLedgerError`). Both engines, the database URL's reader and the state that opens the
ledger raise or catch these, and nothing else.
"""

from __future__ import annotations

from typing import ClassVar

from ..failures import Failure


class LedgerError(Failure):
    """The ledger cannot be used. The message says why; `explained()` is the one text every tool and resource
    gives for it, with what the operator does about it for the store in use."""

    # A PostgreSQL ledger (MUSICGPT_MCP_DATABASE_URL) rather than the state folder's SQLite file.
    database: ClassVar[bool] = False

    def explained(self, *, detail: bool = True) -> str:
        """The text for the user; without `detail` (a remote caller), neither where the ledger is nor what failed
        inside it, which the server's log has."""
        if not detail:
            return (
                "The job ledger, which keeps the user from paying twice for the same job, cannot be used right now "
                "(the server's log says why; tell the server's operator if this lasts). Nothing was submitted, and "
                "no paid job will be until it can."
            )
        if self.database:
            fix = (
                "Check that the PostgreSQL database in MUSICGPT_MCP_DATABASE_URL is up and reachable and the user may "
                "use it; the server tries again on the next call."
            )
        else:
            fix = "Set MUSICGPT_MCP_STATE_DIR in the server's environment to a folder this server can write, then restart it."
        return (
            f"The job ledger, which keeps the user from paying twice for the same job, cannot be used ({self}). "
            f"{fix} Nothing was submitted, and no paid job will be until it can."
        )


class DatabaseLedgerError(LedgerError):
    database = True
