"""Who is calling: the owner of the jobs (whose history, reuse and limits) and the key that pays.

Over stdio there is one person. Over HTTP each request says who it is: an OAuth access token (its
subject owns the jobs; the operator's MUSICGPT_API_KEY pays), or the caller's own MusicGPT key in a
header (a keyed hash of it owns the jobs, and it pays). The transport puts the identity in context
variables for the request; tools read it here and never from the lifespan, which every user shares.
"""

from __future__ import annotations

import hashlib
import hmac
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

from mcp.server.auth.middleware.auth_context import get_access_token
from pydantic import SecretStr

from .failures import Failure

# Over stdio, and over HTTP without sign-in (loopback only), there is one user.
LOCAL_OWNER: Final = "local"

# Header mode: the caller's MusicGPT key for this request only. Never stored, never logged.
request_key: ContextVar[SecretStr | None] = ContextVar("musicgpt_request_key", default=None)


class NotSignedIn(Failure):
    """A request on a shared server that carries no usable identity (the transport refuses these first)."""


@dataclass(frozen=True)
class Caller:
    owner: str
    api_key: SecretStr | None
    # True when this caller brought their own key (header mode): the server's clients are theirs alone.
    own_key: bool = False


def key_owner(key: str, secret: bytes) -> str:
    """The owner name for a MusicGPT key: a keyed hash, so a copy of the ledger cannot be used to test
    guessed keys, and the same key is the same user on every replica sharing the secret."""
    return "key:" + hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:32]


def current_caller(auth: str, operator_key: SecretStr | None) -> Caller:
    """The caller of the request being served, by the server's sign-in mode."""
    if auth == "oauth":
        token = get_access_token()
        if token is None or not token.subject:
            # The transport refuses unauthenticated requests before a tool runs; this is the second lock.
            raise NotSignedIn("This request carries no valid sign-in; sign in to the server again.")
        return Caller(owner=f"oauth:{token.subject}", api_key=operator_key)
    if auth == "header":
        key = request_key.get()
        token = get_access_token()
        if key is None or token is None or not token.subject:
            raise NotSignedIn("This request carries no MusicGPT API key; send it in the X-MusicGPT-Api-Key header.")
        return Caller(owner=token.subject, api_key=key, own_key=True)
    return Caller(owner=LOCAL_OWNER, api_key=operator_key)
