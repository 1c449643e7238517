"""The PostgreSQL advisory lock keys, in one place: the ledger's engine and the shared rate limiter both take
them, and neither should have to import the other to agree on a number.

Advisory locks take two int4 keys: the first is ours alone (so a lock never meets another application's in a
shared database), the second names what is locked. No psycopg in here: the numbers are plain data.
"""

from __future__ import annotations

import hashlib
from typing import Final

LOCK_MIGRATE: Final = 0x6D675001  # the schema, while one replica migrates it (second key 0)
LOCK_OWNER: Final = 0x6D675002  # an owner's jobs, while a claim reads, decides and inserts
LOCK_RATE: Final = 0x6D675003  # a rate-limit bucket, while a call is counted in it
LOCK_UPLOADS: Final = 0x6D675004  # an owner's uploads, while one is counted against the hourly cap and opened

# The statement every lock here is taken with: held until the transaction ends, released by COMMIT or ROLLBACK.
TAKE: Final = "SELECT pg_advisory_xact_lock(%s, %s)"


def lock_key(text: str) -> int:
    """A stable int4 for an advisory lock's second key (a collision only makes two keys wait for each other)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:4], "big", signed=True)
