"""The remote mode through the protocol: Streamable HTTP at /mcp, as a hosted client reaches it, in both
protocol eras, with sign-in by OAuth tokens from a real issuer on loopback or by the caller's own key.
MusicGPT is the sandbox; jobs of one caller are never another's."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import SecretStr

from musicgpt_mcp.auth import JwtVerifier
from musicgpt_mcp.config import ConfigError, Remote, Settings
from musicgpt_mcp.musicgpt import transport
from musicgpt_mcp.sandbox import Fault, Sandbox
from musicgpt_mcp.web import plan

from .conftest import PYTHON, SECRET_KEY, make_settings, subprocess_env
from .support.http_server import serve_http
from .support.issuer import TokenIssuer
from .test_status import text_of

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
SERVER_SECRET = "a-test-server-secret-of-more-than-32-characters"


def remote(sandbox: Sandbox, **remote_options: Any) -> Settings:
    settings = make_settings(sandbox, allowed_dirs=None)
    return dataclasses.replace(settings, remote=Remote(server_secret=SecretStr(SERVER_SECRET), **remote_options))


@asynccontextmanager
async def connect_http(
    url: str, *, token: str | None = None, key: str | None = None, mode: str = "auto", **options: Any
) -> AsyncIterator[Client]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if key is not None:
        headers["X-MusicGPT-Api-Key"] = key
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **options) as client,  # type: ignore[arg-type]
    ):
        yield client


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


# --- the transport, without sign-in (loopback) ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_journey_over_http_in_both_eras(sandbox: Sandbox, mode: str, song: Path) -> None:
    sandbox.state.eta = 2
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with serve_http(remote(sandbox)) as server:
        async with connect_http(server.url, mode=mode) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            local = await client.call_tool("extract_stems", {"audio_file": str(song)})
            submitted = structured(
                await client.call_tool("extract_stems", {"audio_url": "https://example.com/song.mp3"})
            )
            status = await client.call_tool(
                "get_extraction", {"task_id": submitted["task_id"], "wait_seconds": 20}, progress_callback=on_progress
            )
        health = httpx2.get(server.origin + "/healthz")
    # The server's disk is not the user's: no local files.
    # No download_stems without an operator's folder; no app-only read_stem_audio for a client without Apps.
    assert tools == ["extract_stems", "get_extraction", "list_extractions"]
    assert local.is_error and "audio_url" in text_of(local) and "Nothing was submitted" in text_of(local)
    assert structured(status)["succeeded"] is True
    # Progress notifications flow over SSE in a stateless server, in both eras.
    assert progress and progress[-1][2] == "finished"
    # Instead of saving files, a finished job links each stem file.
    links = [b for b in status.content if b.type == "resource_link"]
    assert {(b.name, b.mime_type) for b in links} >= {("drums.mp3", "audio/mpeg"), ("drums.wav", "audio/wav")}
    assert all(str(b.uri).startswith(sandbox.origin + "/files/") for b in links)
    assert "linked below" in text_of(status)
    assert health.status_code == 200 and health.json() == {"status": "ok", "ledger": "sqlite"}


async def test_an_operator_folder_offers_downloads(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.state.eta = 0
    settings = dataclasses.replace(remote(sandbox), output_dir=tmp_path / "out", output_dir_configured=True)
    with serve_http(settings) as server:
        async with connect_http(server.url) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            task = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"}))
            saved = structured(await client.call_tool("download_stems", {"task_id": task["task_id"]}))
            status = await client.call_tool("get_extraction", {"task_id": task["task_id"]})
    assert "download_stems" in tools
    assert Path(saved["directory"]).is_relative_to(tmp_path / "out")
    assert not [b for b in status.content if b.type == "resource_link"]
    assert "download_stems" in text_of(status)


async def test_tools_list_is_answered_from_its_first_answer(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tools of a running server never change: over HTTP their listing is built once per protocol
    version (musicgpt_mcp/tool_list_cache.py) and every later answer is that one. A request the cache
    must not answer (params beyond _meta) still goes the SDK's way, validation included."""
    built: list[str] = []
    list_tools = MCPServer.list_tools

    async def counted(self: MCPServer[Any]) -> list[Any]:
        built.append(self.name)
        return await list_tools(self)

    monkeypatch.setattr(MCPServer, "list_tools", counted)
    answers: dict[str, list[dict[str, Any]]] = {}
    with serve_http(remote(sandbox)) as server:
        for mode in ("legacy", "auto"):
            async with connect_http(server.url, mode=mode) as client:
                answers[mode] = [(await client.list_tools()).model_dump() for _ in range(3)]
        listings = len(built)
        legacy = {**ACCEPT, "MCP-Protocol-Version": "2025-06-18"}
        bad_cursor = httpx2.post(
            server.url,
            headers=legacy,
            json={"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"cursor": 5}},
        )
        bad_meta = httpx2.post(
            server.url, headers=legacy, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"_meta": 5}}
        )
        good_cursor = httpx2.post(
            server.url,
            headers=legacy,
            json={"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {"cursor": "x"}},
        )
    assert listings == 2  # one per era, however often asked
    assert len(built) == 3  # the request with a cursor was built by the SDK, not taken from the cache
    for mode, replies in answers.items():
        assert replies[0]["tools"], mode
        assert all(reply == replies[0] for reply in replies), mode
    assert answers["legacy"][0]["tools"] == answers["auto"][0]["tools"]
    assert answers["auto"][0]["meta"]  # the 2026-era answer keeps the SDK's serverInfo stamp
    for refused in (bad_cursor, bad_meta):  # the SDK's validation still answers what the cache must not
        assert '"error"' in refused.text and '"tools"' not in refused.text
    assert '"tools"' in good_cursor.text


def test_unsafe_start_ups_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigError, match="without sign-in"):
        plan(remote(sandbox), "0.0.0.0", 8000)
    with pytest.raises(ConfigError, match="without sign-in"):
        plan(remote(sandbox, public_url="https://stems.example.com/mcp"), "127.0.0.1", 8000)
    with pytest.raises(ConfigError, match="MUSICGPT_MCP_OAUTH_ISSUER"):
        plan(remote(sandbox, auth="oauth"), "127.0.0.1", 8000)
    with pytest.raises(ConfigError, match="MUSICGPT_MCP_PUBLIC_URL"):
        plan(remote(sandbox, auth="oauth", oauth_issuer="https://id.example.com"), "0.0.0.0", 8000)
    no_secret = dataclasses.replace(
        remote(sandbox, auth="header"),
        remote=Remote(auth="header", database_url=SecretStr("postgresql://u:p@db/x")),
    )
    with pytest.raises(ConfigError, match="MUSICGPT_MCP_SERVER_SECRET"):
        plan(no_secret, "0.0.0.0", 8000)


def test_the_command_refuses_to_serve_the_world_without_sign_in() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "musicgpt_mcp", "--transport", "http", "--host", "0.0.0.0", "--sandbox"],
        capture_output=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert b"Refusing to serve on 0.0.0.0" in proc.stderr and b"MUSICGPT_MCP_AUTH" in proc.stderr
    assert proc.stdout == b""


def test_dns_rebinding_is_refused(sandbox: Sandbox) -> None:
    with serve_http(remote(sandbox)) as server:
        good = httpx2.post(server.url, headers=ACCEPT, json=PING)
        rebound = httpx2.post(server.url, headers={**ACCEPT, "Host": "evil.example"}, json=PING)
        foreign = httpx2.post(server.url, headers={**ACCEPT, "Origin": "http://evil.example"}, json=PING)
        browser_here = httpx2.post(server.url, headers={**ACCEPT, "Origin": server.origin}, json=PING)
    assert good.status_code == 200
    assert rebound.status_code == 421
    assert foreign.status_code == 403
    assert browser_here.status_code == 200


def test_the_public_host_is_answered(sandbox: Sandbox) -> None:
    with serve_http(remote(sandbox, auth="header"), public_url="https://stems.example.com/mcp") as server:
        key = {"X-MusicGPT-Api-Key": SECRET_KEY}
        for host in ("stems.example.com", "stems.example.com:443"):
            ok = httpx2.post(server.url, headers={**ACCEPT, **key, "Host": host}, json=PING)
            assert ok.status_code == 200, host
        wrong_port = httpx2.post(server.url, headers={**ACCEPT, **key, "Host": "stems.example.com:8443"}, json=PING)
        assert wrong_port.status_code == 421


# --- OAuth ------------------------------------------------------------------------------------------------


@pytest.fixture
def oauth(sandbox: Sandbox, token_issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(JwtVerifier, "refetch_floor", 0.0)  # a rotated key is fetched at once in tests
    return remote(sandbox, auth="oauth", oauth_issuer=token_issuer.issuer, oauth_scopes=("stems",))


def test_oauth_refusals(oauth: Settings, token_issuer: TokenIssuer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with serve_http(oauth) as server:
        token_issuer.default_audience = server.url
        tokens = {
            "good": token_issuer.mint(scopes=["stems"]),
            "expired": token_issuer.mint(scopes=["stems"], expires_in=-120),
            "wrong audience": token_issuer.mint(scopes=["stems"], audience="https://elsewhere.example/mcp"),
            "wrong issuer": token_issuer.mint(scopes=["stems"], issuer="https://evil.example"),
            "unknown key id": token_issuer.mint(scopes=["stems"], kid="not-published"),
            "forged": token_issuer.mint(scopes=["stems"], key=token_issuer.unpublished_key(token_issuer.current.kid)),
            "no subject": token_issuer.mint(scopes=["stems"], claims={"sub": None}),
            "missing scope": token_issuer.mint(scopes=["other"]),
        }
        answers = {
            name: httpx2.post(server.url, headers={**ACCEPT, "Authorization": f"Bearer {token}"}, json=PING)
            for name, token in tokens.items()
        }
        none = httpx2.post(server.url, headers=ACCEPT, json=PING)
        metadata = httpx2.get(server.origin + "/.well-known/oauth-protected-resource/mcp")
        health = httpx2.get(server.origin + "/healthz")
    assert answers.pop("good").status_code == 200
    assert answers.pop("missing scope").status_code == 403
    for name, answer in answers.items():
        assert answer.status_code == 401, name
    assert none.status_code == 401
    challenge = none.headers["WWW-Authenticate"]
    assert (
        challenge.startswith("Bearer ")
        and f'resource_metadata="{server.origin}/.well-known/oauth-protected' in challenge
    )
    assert metadata.status_code == 200
    assert metadata.json()["resource"] == server.url
    assert metadata.json()["authorization_servers"] == [token_issuer.issuer]
    assert health.status_code == 200  # a load balancer's check needs no token
    for token in tokens.values():
        assert token not in caplog.text


def test_a_rotated_key_is_fetched_again(oauth: Settings, token_issuer: TokenIssuer) -> None:
    with serve_http(oauth) as server:
        token_issuer.default_audience = server.url
        before = httpx2.post(
            server.url, headers={**ACCEPT, "Authorization": f"Bearer {token_issuer.mint(scopes=['stems'])}"}, json=PING
        )
        token_issuer.rotate()
        after = httpx2.post(
            server.url, headers={**ACCEPT, "Authorization": f"Bearer {token_issuer.mint(scopes=['stems'])}"}, json=PING
        )
    assert (before.status_code, after.status_code) == (200, 200)
    assert token_issuer.requests["/jwks.json"] == 2  # cached between, fetched again for the new key id


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_users_see_only_their_own_jobs(
    oauth: Settings, token_issuer: TokenIssuer, sandbox: Sandbox, mode: str
) -> None:
    sandbox.state.eta = 0
    with serve_http(oauth) as server:
        token_issuer.default_audience = server.url
        alice = token_issuer.mint(subject="alice", scopes=["stems"])
        bob = token_issuer.mint(subject="bob", scopes=["stems"])
        async with connect_http(server.url, token=alice, mode=mode) as as_alice:
            job = structured(await as_alice.call_tool("extract_stems", {"audio_url": "https://example.com/alice.mp3"}))
            mine = structured(await as_alice.call_tool("get_extraction", {"task_id": job["task_id"]}))
            alice_list = structured(await as_alice.call_tool("list_extractions", {}))
        async with connect_http(server.url, token=bob, mode=mode) as as_bob:
            theirs = await as_bob.call_tool("get_extraction", {"task_id": job["task_id"]})
            audio = await as_bob.call_tool("read_stem_audio", {"task_id": job["task_id"], "stem": "drums"})
            unknown = await as_bob.call_tool("get_extraction", {"task_id": "no-such-task"})
            bob_list = structured(await as_bob.call_tool("list_extractions", {}))
            # Reuse is per user too: the same song for bob is bob's own job (and paid by the operator's key).
            bobs_job = structured(
                await as_bob.call_tool("extract_stems", {"audio_url": "https://example.com/alice.mp3"})
            )
            resource = None
            try:
                await as_bob.read_resource(f"musicgpt://extractions/{job['task_id']}")
            except Exception as exc:  # a resource error is a protocol error
                resource = str(exc)
    assert mine["succeeded"] is True
    assert [e["task_id"] for e in alice_list["extractions"]] == [job["task_id"]]
    assert theirs.is_error and audio.is_error and unknown.is_error
    # Someone else's job reads exactly like a job that does not exist.
    assert text_of(theirs).replace(job["task_id"], "X") == text_of(unknown).replace("no-such-task", "X")
    assert "has no extraction with task_id" in text_of(theirs)
    assert bob_list["extractions"] == []
    assert bobs_job["reused"] is False and bobs_job["task_id"] != job["task_id"]
    assert resource is not None and "has no extraction" in resource
    assert all(s.authorization == SECRET_KEY for s in sandbox.state.submits())


class _Memory:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.info = client_info


async def test_the_sdk_oauth_client_signs_in_by_itself(oauth: Settings, token_issuer: TokenIssuer) -> None:
    """What a hosted client does: 401 -> protected resource metadata -> the issuer's metadata -> a token for
    this resource -> the call."""
    token_issuer.add_client("robot", "s3cret", scopes=["stems"])
    with serve_http(oauth) as server:
        provider = ClientCredentialsOAuthProvider(
            server_url=server.url,
            storage=_Memory(),
            client_id="robot",
            client_secret="s3cret",
            scope="stems",
            issuer=token_issuer.issuer,
        )
        async with (
            httpx2.AsyncClient(auth=provider, timeout=30) as http,
            Client(streamable_http_client(server.url, http_client=http)) as client,
        ):
            listed = structured(await client.call_tool("list_extractions", {}))
    assert listed["extractions"] == []


# --- the caller's own key in a header --------------------------------------------------------------------


KEY_A = "mgpt-user-A-key-0123456789"
KEY_B = "mgpt-user-B-key-9876543210"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_header_mode(sandbox: Sandbox, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.state.eta = 0
    sandbox.state.accept_any_key = True
    settings = dataclasses.replace(remote(sandbox, auth="header"), api_key=None)  # no operator key: callers pay
    with serve_http(settings) as server:
        missing = httpx2.post(server.url, headers=ACCEPT, json=PING)
        async with connect_http(server.url, key=KEY_A, mode=mode) as as_a:
            job = structured(await as_a.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"}))
            results = [job, structured(await as_a.call_tool("get_extraction", {"task_id": job["task_id"]}))]
        async with connect_http(server.url, key=KEY_B, mode=mode) as as_b:
            theirs = await as_b.call_tool("get_extraction", {"task_id": job["task_id"]})
            listed = structured(await as_b.call_tool("list_extractions", {}))
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/json"
    assert "X-MusicGPT-Api-Key" in missing.json()["error_description"]
    assert [s.authorization for s in sandbox.state.submits()] == [KEY_A]  # A's job, paid with A's key
    assert theirs.is_error and "has no extraction" in text_of(theirs)
    assert listed["extractions"] == []
    everything = json.dumps(results) + text_of(theirs) + caplog.text
    assert KEY_A not in everything and KEY_B not in everything


async def test_callers_with_their_own_keys_share_the_download_slots(sandbox: Sandbox, tmp_path: Path) -> None:
    """Each caller's key gets a client of its own, on the process's pools: downloads of all callers together
    never exceed MAX_DOWNLOADS in flight, as a pool per key would let each key have as many."""
    sandbox.state.eta = 0
    sandbox.state.accept_any_key = True
    settings = dataclasses.replace(
        remote(sandbox, auth="header"), api_key=None, output_dir=tmp_path / "out", output_dir_configured=True
    )
    song = {"audio_url": "https://example.com/a.mp3", "stems": ["vocals", "drums", "bass", "piano"]}
    with serve_http(settings) as server:
        async with connect_http(server.url, key=KEY_A) as as_a, connect_http(server.url, key=KEY_B) as as_b:
            jobs = [(c, structured(await c.call_tool("extract_stems", song))["task_id"]) for c in (as_a, as_b)]
            sandbox.state.queue_fault("download", Fault(status=200, action="hang", delay=5), times=100)
            async with anyio.create_task_group() as tg:
                for client, task_id in jobs * 3:  # 12 stems asked for per key, 24 in all
                    tg.start_soon(client.call_tool, "download_stems", {"task_id": task_id})
                with anyio.fail_after(10):
                    while len(sandbox.state.downloads) < transport.MAX_DOWNLOADS:
                        await anyio.sleep(0.05)
                await anyio.sleep(0.5)  # time for any download beyond the limit to show up
                in_flight = [d.authorization for d in sandbox.state.downloads]
                tg.cancel_scope.cancel()
    assert in_flight == [None] * transport.MAX_DOWNLOADS  # and storage is never sent a key
    assert [s.authorization for s in sandbox.state.submits()] == [KEY_A, KEY_B]


async def test_a_header_key_echoed_by_musicgpt_is_scrubbed(sandbox: Sandbox) -> None:
    from musicgpt_mcp.sandbox import Fault

    sandbox.state.accept_any_key = True
    echo = json.dumps({"success": True, "task_id": "t-1", "conversion_id": f"id {KEY_A}", "eta": 1}).encode()
    sandbox.state.queue_fault("submit", Fault(status=200, body=echo))
    with serve_http(remote(sandbox, auth="header")) as server:
        async with connect_http(server.url, key=KEY_A) as client:
            result = await client.call_tool("extract_stems", {"audio_url": "https://example.com/echo.mp3"})
    assert KEY_A not in json.dumps(result.model_dump(mode="json"))
    assert structured(result)["conversion_id"] == "id [redacted]"


async def test_a_remote_caller_is_not_told_where_the_ledger_is(sandbox: Sandbox) -> None:
    """A ledger that cannot be used is named to the operator (the log), not to a remote caller: its text carried
    the database's host, port and name, or the ledger file's path on the server."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql://musicgpt:secret-password@127.0.0.1:{port}/stems_db"
    settings = remote(sandbox, database_url=SecretStr(url))
    with serve_http(settings) as server:
        async with connect_http(server.url) as client:
            refused = await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"})
            listed = await client.call_tool("list_extractions", {})
    for answer in (refused, listed):
        said = text_of(answer)
        assert answer.is_error and "job ledger" in said and "server's log says why" in said, said
        assert str(port) not in said and "stems_db" not in said and "127.0.0.1" not in said
    assert sandbox.state.submits() == []
