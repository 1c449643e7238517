"""A real OAuth 2.1 authorization server on loopback, for testing the server as a resource server.

It has its own signing keys (RSA or EC, made with `cryptography`), publishes RFC 8414 metadata (also as OpenID
discovery) and a JWKS, and issues RFC 9068-style JWT access tokens signed with PyJWT:

- from the test side, `mint(...)`: any subject, audience, scopes, lifetime, issuer, key or key id, so a test can make
  every kind of bad token (expired, wrong audience or issuer, missing scope, unknown or forged key id);
- over HTTP, like a real issuer: `client_credentials` for registered clients (what the SDK's
  `ClientCredentialsOAuthProvider` uses), and `authorization_code` with PKCE (S256), auto-approved as `login_as`,
  for clients registered by hand or by dynamic client registration (what claude.ai and ChatGPT do).

`rotate()` publishes a new key, `unpublished_key()` makes one it never publishes, `down = True` makes every
endpoint answer 503, and `requests` counts hits per path (to check a verifier's key caching).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

logger = logging.getLogger(__name__)

Algorithm = Literal["RS256", "ES256"]


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: Algorithm
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(cls, algorithm: Algorithm = "RS256", kid: str | None = None) -> SigningKey:
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if algorithm == "RS256":
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            private_key = ec.generate_private_key(ec.SECP256R1())
        return cls(kid=kid or f"key-{uuid.uuid4().hex[:12]}", algorithm=algorithm, private_key=private_key)

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    scopes: frozenset[str]
    redirect_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: tuple[str, ...]
    resource: str | None
    subject: str
    expires_at: float


class TokenIssuer:
    """The authorization server. Use as a context manager; `issuer` is its identifier (its base URL + `path`)."""

    def __init__(
        self,
        *,
        algorithm: Algorithm = "RS256",
        path: str = "",
        scopes_supported: Sequence[str] = ("stems:read", "stems:write"),
        host: str = "127.0.0.1",
    ) -> None:
        self.algorithm: Algorithm = algorithm
        self.path = "/" + path.strip("/") if path.strip("/") else ""
        self.scopes_supported = tuple(scopes_supported)
        self.host = host
        self.port = 0
        self.current = SigningKey.generate(algorithm)
        self.published: list[SigningKey] = [self.current]
        self.default_audience: str | None = None
        self.login_as = "alice"
        self.token_lifetime = 300
        self.down = False
        self.requests: Counter[str] = Counter()
        self.clients: dict[str, Client] = {}
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- addresses -------------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.origin + self.path

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/jwks.json"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/token"

    @property
    def metadata_url(self) -> str:
        """RFC 8414: the well-known segment goes between the host and the issuer's path."""
        return f"{self.origin}/.well-known/oauth-authorization-server{self.path}"

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.token_endpoint,
            "registration_endpoint": self.issuer + "/register",
            "jwks_uri": self.jwks_uri,
            "scopes_supported": list(self.scopes_supported),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            # OpenID discovery requires these; harmless for RFC 8414 readers.
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
        }

    # -- keys ------------------------------------------------------------------------------------------

    def rotate(self, *, keep_previous: bool = False) -> SigningKey:
        """Sign with a new key from now on and publish it (with the old one too when `keep_previous`)."""
        new = SigningKey.generate(self.algorithm)
        with self._lock:
            self.published = [new, *self.published] if keep_previous else [new]
            self.current = new
        return new

    def unpublished_key(self, kid: str | None = None) -> SigningKey:
        """A key this issuer never publishes (give it a published kid to make a forged token)."""
        return SigningKey.generate(self.algorithm, kid)

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.public_jwk() for key in self.published]}

    # -- tokens ----------------------------------------------------------------------------------------

    def mint(
        self,
        *,
        subject: str = "alice",
        audience: str | Sequence[str] | None = None,
        scopes: Iterable[str] = (),
        expires_in: float | None = None,
        issued_at: float | None = None,
        issuer: str | None = None,
        key: SigningKey | None = None,
        kid: str | None = None,
        client_id: str = "test-client",
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed JWT access token. Claims set to None in `claims` are left out (e.g. `{"exp": None}`)."""
        now = time.time() if issued_at is None else issued_at
        signer = key or self.current
        scope_list = list(scopes)
        payload: dict[str, Any] = {
            "iss": self.issuer if issuer is None else issuer,
            "sub": subject,
            "aud": audience if audience is not None else self.default_audience,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + (self.token_lifetime if expires_in is None else expires_in)),
            "jti": uuid.uuid4().hex,
            "client_id": client_id,
        }
        if scope_list:
            payload["scope"] = " ".join(scope_list)
        payload.update(claims or {})
        payload = {name: value for name, value in payload.items() if value is not None}
        headers = {"kid": signer.kid if kid is None else kid, "typ": "at+jwt"}
        return jwt.encode(payload, signer.private_key, algorithm=signer.algorithm, headers=headers)

    def add_client(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        scopes: Iterable[str] | None = None,
        redirect_uris: Iterable[str] = (),
    ) -> Client:
        """Register a client (a secret for `client_credentials`; none for a public PKCE client)."""
        client = Client(
            client_id=client_id,
            client_secret=client_secret,
            scopes=frozenset(self.scopes_supported if scopes is None else scopes),
            redirect_uris=tuple(redirect_uris),
        )
        self.clients[client_id] = client
        return client

    # -- server ----------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> TokenIssuer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_config=None,  # uvicorn's default config logs to stdout
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="test-token-issuer", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test token issuer did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> TokenIssuer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _app(self) -> Starlette:
        p = self.path
        metadata_paths = [
            f"/.well-known/oauth-authorization-server{p}",
            f"/.well-known/openid-configuration{p}",  # RFC 8414 section 5 form
            f"{p}/.well-known/openid-configuration",  # OpenID Connect Discovery form
        ]
        routes = [Route(path, self._metadata, methods=["GET"]) for path in dict.fromkeys(metadata_paths)]
        routes += [
            Route(f"{p}/jwks.json", self._jwks, methods=["GET"]),
            Route(f"{p}/token", self._token, methods=["POST"]),
            Route(f"{p}/authorize", self._authorize, methods=["GET"]),
            Route(f"{p}/register", self._register, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def _count(self, request: Request) -> Response | None:
        self.requests[request.url.path] += 1
        if self.down:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
        return None

    async def _metadata(self, request: Request) -> Response:
        return self._count(request) or JSONResponse(self.metadata())

    async def _jwks(self, request: Request) -> Response:
        return self._count(request) or JSONResponse(self.jwks(), headers={"Cache-Control": "max-age=300"})

    async def _register(self, request: Request) -> Response:
        """RFC 7591 dynamic client registration: any client may register (as a public client by default)."""
        if failed := self._count(request):
            return failed
        body = await request.json()
        redirect_uris = [str(uri) for uri in body.get("redirect_uris") or []]
        method = body.get("token_endpoint_auth_method", "none")
        secret = secrets.token_urlsafe(24) if method != "none" else None
        client = self.add_client(f"dcr-{uuid.uuid4().hex[:12]}", secret, redirect_uris=redirect_uris)
        reply = {**body, "client_id": client.client_id, "token_endpoint_auth_method": method}
        reply["client_id_issued_at"] = int(time.time())
        if secret:
            reply["client_secret"] = secret
        return JSONResponse(reply, status_code=201)

    async def _authorize(self, request: Request) -> Response:
        """Approves at once, as `login_as`; errors that cannot go back to the client are a 400 here."""
        if failed := self._count(request):
            return failed
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            return _oauth_error("invalid_request", "unknown client_id or redirect_uri")
        state = q.get("state")

        def back(**params: str | None) -> Response:
            params.update(state=state, iss=self.issuer)
            query = urlencode({k: v for k, v in params.items() if v is not None})
            return RedirectResponse(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}", status_code=302)

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        scopes = tuple(q.get("scope", "").split())
        if not set(scopes) <= client.scopes:
            return back(error="invalid_scope")
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            code_challenge=q["code_challenge"],
            scopes=scopes,
            resource=q.get("resource"),
            subject=self.login_as,
            expires_at=time.time() + 60,
        )
        return back(code=code)

    async def _token(self, request: Request) -> Response:
        if failed := self._count(request):
            return failed
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if auth := request.headers.get("authorization"):
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "basic":
                client_id, _, secret = base64.b64decode(value).decode().partition(":")
        client = self.clients.get(client_id or "")
        if client is None or (client.client_secret is not None and secret != client.client_secret):
            return _oauth_error("invalid_client", "unknown client or wrong secret", status=401)
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            if client.client_secret is None:
                return _oauth_error("unauthorized_client", "a public client cannot use client_credentials")
            scopes = tuple(form.get("scope", " ".join(sorted(client.scopes))).split())
            if not set(scopes) <= client.scopes:
                return _oauth_error("invalid_scope", "scope not allowed for this client")
            return self._token_response(client.client_id, client.client_id, scopes, form.get("resource"))
        if grant_type == "authorization_code":
            grant = self._grants.pop(form.get("code", ""), None)
            if grant is None or grant.client_id != client.client_id or grant.expires_at < time.time():
                return _oauth_error("invalid_grant", "unknown, used or expired code")
            if form.get("redirect_uri") != grant.redirect_uri:
                return _oauth_error("invalid_grant", "redirect_uri does not match")
            verifier = form.get("code_verifier", "").encode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if challenge != grant.code_challenge:
                return _oauth_error("invalid_grant", "PKCE verification failed")
            resource = form.get("resource") or grant.resource
            return self._token_response(grant.subject, client.client_id, grant.scopes, resource)
        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def _token_response(self, subject: str, client_id: str, scopes: Sequence[str], resource: str | None) -> Response:
        token = self.mint(subject=subject, audience=resource, scopes=scopes, client_id=client_id)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        if scopes:
            body["scope"] = " ".join(scopes)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
