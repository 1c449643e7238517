"""The test token issuer is a real authorization server: its metadata, JWKS and tokens satisfy PyJWT's verifier."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx2
import jwt
import pytest

from tests.support.issuer import Algorithm, TokenIssuer

AUDIENCE = "https://stems.example.com/mcp"


def verify(issuer: TokenIssuer, token: str, *, audience: str = AUDIENCE) -> dict[str, Any]:
    """What a resource server does: the key by the token's kid from the published JWKS, then every check."""
    key = jwt.PyJWKClient(issuer.jwks_uri, cache_jwk_set=False).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key,
        algorithms=[issuer.algorithm],
        audience=audience,
        issuer=issuer.issuer,
        options={"require": ["exp", "iss", "sub", "aud"]},
    )


@pytest.mark.parametrize(("algorithm", "path"), [("RS256", ""), ("ES256", "realms/team")])
def test_metadata_and_jwks_verify_a_minted_token(algorithm: Algorithm, path: str) -> None:
    with TokenIssuer(algorithm=algorithm, path=path) as issuer:
        metadata = httpx2.get(issuer.metadata_url).raise_for_status().json()
        assert metadata["issuer"] == issuer.issuer
        assert metadata["jwks_uri"] == issuer.jwks_uri
        assert issuer.issuer.endswith(f"/{path}" if path else str(issuer.port))
        # Both OpenID discovery locations serve the same document.
        for url in (
            f"{issuer.origin}/.well-known/openid-configuration{issuer.path}",
            f"{issuer.issuer}/.well-known/openid-configuration",
        ):
            assert httpx2.get(url).raise_for_status().json() == metadata

        jwks = httpx2.get(metadata["jwks_uri"]).raise_for_status().json()
        assert [key["kid"] for key in jwks["keys"]] == [issuer.current.kid]
        assert "d" not in jwks["keys"][0]  # public halves only

        token = issuer.mint(subject="bob", audience=AUDIENCE, scopes=["stems:read", "stems:write"])
        assert jwt.get_unverified_header(token) == {"alg": algorithm, "kid": issuer.current.kid, "typ": "at+jwt"}
        claims = verify(issuer, token)
        assert claims["sub"] == "bob"
        assert claims["scope"] == "stems:read stems:write"
        assert claims["exp"] > claims["iat"]


def test_bad_tokens_fail_verification_each_for_its_own_reason(token_issuer: TokenIssuer) -> None:
    issuer = token_issuer
    assert verify(issuer, issuer.mint(audience=AUDIENCE))["sub"] == "alice"
    cases: list[tuple[str, type[Exception]]] = [
        (issuer.mint(audience=AUDIENCE, expires_in=-120), jwt.ExpiredSignatureError),
        (issuer.mint(audience="https://elsewhere.example/mcp"), jwt.InvalidAudienceError),
        (issuer.mint(audience=AUDIENCE, issuer="https://evil.example"), jwt.InvalidIssuerError),
        (issuer.mint(audience=AUDIENCE, claims={"exp": None}), jwt.MissingRequiredClaimError),
        # Signed by a key whose kid the issuer never published.
        (issuer.mint(audience=AUDIENCE, key=issuer.unpublished_key()), jwt.PyJWKClientError),
        # The current key, labelled with a kid that is not published.
        (issuer.mint(audience=AUDIENCE, kid="no-such-kid"), jwt.PyJWKClientError),
        # A published kid on a token signed by another key: a forgery.
        (issuer.mint(audience=AUDIENCE, key=issuer.unpublished_key(issuer.current.kid)), jwt.InvalidSignatureError),
    ]
    for token, error in cases:
        with pytest.raises(error):
            verify(issuer, token)


def test_rotation_publishes_the_new_key_and_drops_the_old_unless_kept(token_issuer: TokenIssuer) -> None:
    issuer = token_issuer
    old_token = issuer.mint(audience=AUDIENCE)
    old_kid = issuer.current.kid

    new = issuer.rotate(keep_previous=True)
    assert new.kid != old_kid
    assert [k["kid"] for k in issuer.jwks()["keys"]] == [new.kid, old_kid]
    assert verify(issuer, old_token)["sub"] == "alice"
    new_token = issuer.mint(audience=AUDIENCE)
    assert jwt.get_unverified_header(new_token)["kid"] == new.kid

    issuer.rotate()
    with pytest.raises(jwt.PyJWKClientError, match="Unable to find a signing key"):
        verify(issuer, old_token)
    with pytest.raises(jwt.PyJWKClientError):
        verify(issuer, new_token)
    assert verify(issuer, issuer.mint(audience=AUDIENCE))["sub"] == "alice"


def test_client_credentials_grant(token_issuer: TokenIssuer) -> None:
    issuer = token_issuer
    issuer.add_client("robot", "s3cret", scopes=["stems:read"])
    reply = httpx2.post(
        issuer.token_endpoint,
        data={"grant_type": "client_credentials", "scope": "stems:read", "resource": AUDIENCE},
        auth=("robot", "s3cret"),
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "stems:read"
    claims = verify(issuer, body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("robot", "robot", "stems:read")

    wrong_secret = httpx2.post(issuer.token_endpoint, data={"grant_type": "client_credentials"}, auth=("robot", "x"))
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    too_much = httpx2.post(
        issuer.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "scope": "stems:write",
            "client_id": "robot",
            "client_secret": "s3cret",
        },
    )
    assert (too_much.status_code, too_much.json()["error"]) == (400, "invalid_scope")


def test_authorization_code_with_pkce_after_dynamic_registration(token_issuer: TokenIssuer) -> None:
    issuer = token_issuer
    issuer.login_as = "carol"
    redirect_uri = "http://127.0.0.1:1/callback"
    registered = httpx2.post(
        issuer.metadata()["registration_endpoint"],
        json={"redirect_uris": [redirect_uri], "client_name": "test host", "token_endpoint_auth_method": "none"},
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    authorize = httpx2.get(
        issuer.metadata()["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "xyz",
            "scope": "stems:read",
            "resource": AUDIENCE,
        },
    )
    assert authorize.status_code == 302
    location = urlparse(authorize.headers["location"])
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.path == "/callback"
    assert (params["state"], params["iss"]) == ("xyz", issuer.issuer)

    exchange = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": redirect_uri,
        "client_id": client_id,
    }
    wrong = httpx2.post(issuer.token_endpoint, data={**exchange, "code_verifier": "not-the-verifier"})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    # The failed attempt spent the code (single use): a fresh authorization is needed.
    again = httpx2.post(issuer.token_endpoint, data={**exchange, "code_verifier": verifier})
    assert again.json()["error"] == "invalid_grant"

    code = parse_qs(urlparse(httpx2.get(str(authorize.request.url)).headers["location"]).query)["code"][0]
    reply = httpx2.post(issuer.token_endpoint, data={**exchange, "code": code, "code_verifier": verifier})
    assert reply.status_code == 200, reply.text
    claims = verify(issuer, reply.json()["access_token"])
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("carol", client_id, "stems:read")


def test_down_issuer_answers_503_and_requests_are_counted(token_issuer: TokenIssuer) -> None:
    issuer = token_issuer
    httpx2.get(issuer.jwks_uri).raise_for_status()
    issuer.down = True
    assert httpx2.get(issuer.jwks_uri).status_code == 503
    assert httpx2.get(issuer.metadata_url).status_code == 503
    assert issuer.requests["/jwks.json"] == 2
    issuer.down = False
    assert httpx2.get(issuer.jwks_uri).status_code == 200
