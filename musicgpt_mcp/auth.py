"""Sign-in for the HTTP transport: OAuth 2.1 bearer tokens (this server is a resource server), or the
caller's own MusicGPT key in a header.

OAuth: tokens are JWTs from one issuer, verified with PyJWT against the keys the issuer publishes
(found through its metadata, cached, fetched again when a token names a key id not seen yet, at most
every few seconds so random key ids cannot make us hammer the issuer). The SDK's middleware answers
401/403 with the WWW-Authenticate header and serves the protected resource metadata; this module only
says whether a token is good.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import jwt
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from .identity import key_owner, request_key
from .musicgpt.contract import MIN_KEY_LENGTH

log = logging.getLogger(__name__)

# Asymmetric algorithms only: a symmetric one (HS256) would let anyone holding the public key sign.
ALGORITHMS: Final = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
# Clocks differ a little between the issuer and us.
LEEWAY: Final = 30
JWKS_MAX_AGE: Final = 600.0
HEADER: Final = "x-musicgpt-api-key"


class JwtVerifier:
    """The SDK's TokenVerifier for JWT access tokens from `issuer`, for `audience` (our public URL)."""

    # Seconds between fetches of the key set forced by an unknown key id (a class attribute so tests
    # that rotate keys can lower it).
    refetch_floor: float = 10.0

    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self._jwks_uri: str | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = anyio.Lock()

    async def verify_token(self, token: str) -> AccessToken | None:
        # Never raise: the SDK's middleware turns anything but None into a 500, not a 401.
        try:
            header = jwt.get_unverified_header(token)
            key = await self._key(str(header.get("kid", "")))
            if key is None:
                return None
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[a for a in ALGORITHMS if a == (key.algorithm_name or header.get("alg"))],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            log.info("access token refused: %s", type(exc).__name__)
            return None
        except Exception as exc:  # the issuer is unreachable, its answer is not JSON, ...
            log.warning("access token not verified: %s", type(exc).__name__)
            return None
        scope = claims.get("scope", claims.get("scp", ""))
        scopes = scope.split() if isinstance(scope, str) else [str(s) for s in scope] if isinstance(scope, list) else []
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims["sub"]),
            scopes=scopes,
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=str(claims["sub"]),
            claims={"iss": claims["iss"]},
        )

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        async with self._lock:
            now = time.monotonic()
            stale = now - self._fetched > JWKS_MAX_AGE
            unknown = kid not in self._keys and now - self._fetched > self.refetch_floor
            if not self._keys or stale or unknown:
                await self._fetch_keys()
            return self._keys.get(kid)

    async def _fetch_keys(self) -> None:
        import httpx2

        async with httpx2.AsyncClient(timeout=10.0, follow_redirects=False) as http:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover(http)
            response = await http.get(self._jwks_uri)
            response.raise_for_status()
            keys: dict[str, jwt.PyJWK] = {}
            for entry in response.json().get("keys", []):
                try:
                    key = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue  # a key of a kind we do not use
                if key.key_id and entry.get("use", "sig") == "sig":
                    keys[key.key_id] = key
            self._keys = keys
            self._fetched = time.monotonic()
            log.info("fetched %d signing key(s) from %s", len(keys), self._jwks_uri)

    async def _discover(self, http: Any) -> str:
        """RFC 8414: <origin>/.well-known/oauth-authorization-server<path>, else OpenID Connect discovery."""
        parts = urlsplit(self.issuer)
        origin = f"{parts.scheme}://{parts.netloc}"
        path = parts.path.rstrip("/")
        for url in (
            f"{origin}/.well-known/oauth-authorization-server{path}",
            f"{origin}/.well-known/openid-configuration{path}",
            f"{self.issuer.rstrip('/')}/.well-known/openid-configuration",
        ):
            response = await http.get(url)
            if response.status_code != 200:
                continue
            metadata = response.json()
            if metadata.get("issuer") != self.issuer:
                raise ValueError(f"the metadata at {url} names another issuer")
            jwks_uri = metadata.get("jwks_uri")
            if isinstance(jwks_uri, str) and urlsplit(jwks_uri).scheme in ("http", "https"):
                return jwks_uri
        raise ValueError(f"no authorization server metadata with a jwks_uri for {self.issuer}")


class ApiKeyHeader:
    """Header mode: every request to the MCP endpoint carries the caller's MusicGPT key in
    X-MusicGPT-Api-Key. The key is used for that request only; the caller is a keyed hash of it."""

    def __init__(self, app: ASGIApp, *, path: str, secret: SecretStr) -> None:
        self.app = app
        self.path = path.rstrip("/") or "/"
        self.secret = secret.get_secret_value().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope["headers"] if k == HEADER.encode()), b"")
        try:
            key = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            key = ""
        if not key or not key.isprintable() or len(key) < MIN_KEY_LENGTH:
            await _unauthorized(send, raw, len(key))
            return
        owner = key_owner(key, self.secret)
        # The SDK binds sessions and round-trip state to the authenticated user: give it the hash, never the key.
        user = AuthenticatedUser(AccessToken(token=owner, client_id=owner, subject=owner, scopes=[]))
        scope["user"] = user
        key_token = request_key.set(SecretStr(key))
        user_token = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            request_key.reset(key_token)
            auth_context_var.reset(user_token)


async def _unauthorized(send: Send, raw: bytes, length: int) -> None:
    if not raw:
        reason = (
            "This server runs each request with the caller's own MusicGPT API key: send it in the "
            "X-MusicGPT-Api-Key header (your MCP client's server configuration takes custom headers)."
        )
    elif 0 < length < MIN_KEY_LENGTH and raw.decode("ascii", "replace").strip().isprintable():
        reason = (
            f"The X-MusicGPT-Api-Key header holds {length} characters, too few for a MusicGPT API key (they are "
            f"{MIN_KEY_LENGTH} or more). Paste the whole key from the MusicGPT API dashboard."
        )
    else:
        reason = "The X-MusicGPT-Api-Key header holds a character a key cannot have; paste the key again."
    body = json.dumps({"error": "missing_api_key" if not raw else "invalid_api_key", "error_description": reason})
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                # A 401 names what it wants (RFC 9110): here, a header rather than a bearer token.
                (b"www-authenticate", b'MusicGPT-Api-Key header="X-MusicGPT-Api-Key"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
