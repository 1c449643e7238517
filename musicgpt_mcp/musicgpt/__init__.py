"""MusicGPT's Extraction API as a client, layered like httpx; no MCP in here (errors carry text for a person).

From the bottom up, each module using only those below it:
- `contract`: the wire contract as far as it is known (paths, field names, reply shapes, their parsing); the
  sandbox serves the same module, so the two cannot drift apart.
- `errors`: MusicGPTError and its family, as Failures whose `outcome` says whether money may have moved, and
  which error a refused submit's HTTP status is.
- `key`: the API key: its header, why one cannot be sent, its redaction from everything said or logged.
- `transport`: the `Pools` (API and storage connections, timeouts, download slots) made once per process and
  passed in to every client; the submit's connect-only retry; reads retried with backoff and Retry-After.
- `replies`: a reply's status and body turned into the parsed reply or the error that explains it.
- `storage` (with `netguard` and `addresses`): stem downloads, public addresses only, redirects hop by hop.
- `multipart`: the streaming upload body.
- `client`: `MusicGPTClient`, submit, status and download for one key, each putting the layers in order.

What callers use is re-exported here, imported on first use: `contract`, `key` and `addresses` are read while
the configuration loads and by the ledger, which must not load the client with them; and the client reaches
the ledger's file identity through `multipart`, so importing it from here at once would run in a circle when
the ledger is imported first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import ExtractionRequest, MusicGPTClient
    from .errors import CHECK_BEFORE_RETRY, DownloadError, MissingAPIKeyError, MusicGPTError, TaskNotFoundError
    from .transport import Pools

_HOMES = {
    "CHECK_BEFORE_RETRY": "errors",
    "DownloadError": "errors",
    "ExtractionRequest": "client",
    "MissingAPIKeyError": "errors",
    "MusicGPTClient": "client",
    "MusicGPTError": "errors",
    "Pools": "transport",
    "TaskNotFoundError": "errors",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "CHECK_BEFORE_RETRY",
    "DownloadError",
    "ExtractionRequest",
    "MissingAPIKeyError",
    "MusicGPTClient",
    "MusicGPTError",
    "Pools",
    "TaskNotFoundError",
]
