"""The third hostile review's findings (issue 24), each re-enacted through the protocol as the review did it."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.types import ListRootsResult, Root

from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import connect, make_settings, wav_bytes
from .support.http_server import serve_http
from .test_ledger import elicitation
from .test_remote import ACCEPT, connect_http, remote, structured
from .test_status import text_of

pytestmark = pytest.mark.anyio


# --- 1. a remote caller's roots are not folders on the server's disk -------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_remote_clients_roots_do_not_open_the_servers_disk(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    """A hosted server with an output folder and no MUSICGPT_MCP_ALLOWED_DIRS: a client offering a root
    elsewhere on the server's disk must not get stems written there, nor even be asked for its roots."""
    sandbox.state.eta = 0
    elsewhere = tmp_path / "not-the-output-folder"
    elsewhere.mkdir()
    asked: list[str] = []

    async def roots(context: Any) -> ListRootsResult:
        asked.append("roots/list")
        return ListRootsResult(roots=[Root(uri=elsewhere.as_uri(), name="evil")])  # type: ignore[arg-type]

    settings = dataclasses.replace(remote(sandbox), output_dir=tmp_path / "out", output_dir_configured=True)
    with serve_http(settings) as server:
        async with connect_http(server.url, mode=mode, list_roots_callback=roots) as client:
            task = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"}))
            target = elsewhere / "planted"
            refused = await client.call_tool("download_stems", {"task_id": task["task_id"], "output_dir": str(target)})
            local = await client.call_tool("extract_stems", {"audio_file": str(elsewhere / "song.wav")})
    assert refused.is_error, text_of(refused)
    assert "outside the allowed output folder" in text_of(refused)
    assert not target.exists() and list(elsewhere.iterdir()) == []
    assert local.is_error and "local files are refused here" in text_of(local)
    assert asked == []  # the server never asked: a remote client's roots mean nothing on this disk


# --- 2. the daily credit limit cannot be raced, and an unknown cost is never free -------------------------


def _posts(sandbox: Sandbox) -> int:
    return len([s for s in sandbox.state.submits() if s.complete])


async def test_distinct_calls_at_once_cannot_race_past_the_credit_limit(sandbox: Sandbox) -> None:
    """Eight different songs at once against a 2-credit limit: a claim counts its estimate (1.5 credits for one
    stem, nothing having been seen yet) from the moment it is made, so only one fits."""
    sandbox.state.submit_delay = 0.5  # every submit is in the air while the others are decided
    settings = make_settings(sandbox, max_credits_per_day=2.0)
    async with connect(settings) as client:
        results: list[Any] = []

        async def one(n: int) -> None:
            args = {"audio_url": f"https://example.com/song-{n}.mp3", "stems": ["bass"]}
            results.append(await client.call_tool("extract_stems", args))

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(one, n)
    assert _posts(sandbox) == 1
    refused = [r for r in results if r.is_error]
    assert len(refused) == 7
    assert all("daily spending limit would be passed" in text_of(r) for r in refused)


@pytest.mark.parametrize("reply", ["no stated cost", "outcome unknown"])
async def test_a_job_of_unknown_cost_still_counts(sandbox: Sandbox, reply: str) -> None:
    """A reply without credit_estimate, or a submit whose outcome is unknown, kept counting 0: four jobs in a
    row passed a 1-credit limit. It counts the claim's estimate until MusicGPT states a cost."""
    if reply == "no stated cost":
        body = json.dumps({"success": True, "task_id": "t-unpriced", "eta": 5}).encode()
        sandbox.state.queue_fault("submit", Fault(status=200, body=body))
    else:
        sandbox.state.queue_fault("submit", Fault(status=502, body=b"<html>bad gateway</html>"))
    settings = make_settings(sandbox, max_credits_per_day=2.0)
    async with connect(settings) as client:
        await client.call_tool("extract_stems", {"audio_url": "https://example.com/first.mp3", "stems": ["bass"]})
        second = await client.call_tool(
            "extract_stems", {"audio_url": "https://example.com/second.mp3", "stems": ["bass"]}
        )
        listed = structured(await client.call_tool("list_extractions", {}))
    assert second.is_error and "daily spending limit would be passed" in text_of(second)
    assert "count 1.5 credits" in text_of(second)
    assert _posts(sandbox) == 1
    assert listed["credits_last_24_hours"] == 1.5


# --- 3. the consent question cannot be spoofed with hidden characters -----------------------------------------

SPOOFS = ["\u2028", "\u2029", "\u0085", "\u202e", "\u200b", "\x7f"]


@pytest.mark.parametrize("mark", SPOOFS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("field", ["audio_url", "webhook_url"])
async def test_urls_with_line_breaks_or_overrides_are_refused(sandbox: Sandbox, field: str, mark: str) -> None:
    asked, callback = elicitation("accept", {"submit": True})
    settings = make_settings(sandbox, webhook_urls=("https://hooks.example.com/",))
    url = f"https://example.com/a.mp3{mark}Cost: none, this job is prepaid"
    if field == "webhook_url":
        args = {"audio_url": "https://example.com/a.mp3", "webhook_url": f"https://hooks.example.com/x{mark}Cost: none"}
    else:
        args = {"audio_url": url}
    async with connect(settings, elicitation_callback=callback) as client:
        result = await client.call_tool("extract_stems", args)
    assert result.is_error
    assert f"{field} contains an invisible or line-breaking character (U+{ord(mark):04X})" in text_of(result)
    assert mark not in text_of(result)
    assert asked == [] and _posts(sandbox) == 0


@pytest.mark.parametrize("mark", [*SPOOFS, "\n", "\r"], ids=lambda c: f"U+{ord(c):04X}")
async def test_a_file_name_cannot_add_a_line_to_the_question(sandbox: Sandbox, tmp_path: Path, mark: str) -> None:
    song = tmp_path / f"song{mark}Cost: none, this job is prepaid.wav"
    song.write_bytes(wav_bytes())
    asked, callback = elicitation("accept", {"submit": True})
    async with connect(make_settings(sandbox), elicitation_callback=callback) as client:
        done = await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]})
        listed = await client.call_tool("list_extractions", {})
    assert not done.is_error, text_of(done)
    [question] = asked
    assert [line for line in question.splitlines() if line.startswith("Cost:")] == [
        "Cost: MusicGPT states the cost when the job is accepted."
    ]
    audio = next(line for line in question.splitlines() if line.startswith("Audio: "))
    assert f"song\\u{ord(mark):04x}Cost: none, this job is prepaid.wav" in audio
    if mark != "\n":  # our own texts are written with line breaks; the Audio line above shows the name's escaped
        for seen in (question, text_of(done), json.dumps(done.structured_content, ensure_ascii=False), text_of(listed)):
            assert mark not in seen
    assert structured(done)["source"] == f"song\\u{ord(mark):04x}Cost: none, this job is prepaid.wav"


# --- 10. no bare "Error executing tool" ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil\uff20example.com", "example.com\uff0fx", "a\uff03b.com"])
@pytest.mark.parametrize("field", ["audio_url", "webhook_url"])
async def test_full_width_signs_in_a_host_are_explained(sandbox: Sandbox, field: str, host: str) -> None:
    settings = make_settings(sandbox, webhook_urls=("https://hooks.example.com/",))
    url = f"https://{host}/a.mp3"
    args = (
        {"audio_url": url} if field == "audio_url" else {"audio_url": "https://example.com/a.mp3", "webhook_url": url}
    )
    async with connect(settings) as client:
        result = await client.call_tool("extract_stems", args)
    assert result.is_error
    assert f"{field} " in text_of(result) and "cannot be read as a URL" in text_of(result)
    assert _posts(sandbox) == 0


async def test_a_saved_stem_that_became_a_link_is_fetched_again_not_followed(
    sandbox: Sandbox, song: Path, tmp_path: Path
) -> None:
    sandbox.state.eta = 0
    secret = tmp_path / "private.txt"
    secret.write_text("not audio, and not to be read through the player")
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task = structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["drums"]}))
        saved = structured(await client.call_tool("download_stems", {"task_id": task["task_id"], "format": "wav"}))
        path = Path(saved["files"][0]["path"])
        path.unlink()
        path.symlink_to(secret)
        sandbox.state.clear_records()
        read = await client.call_tool("read_stem_audio", {"task_id": task["task_id"], "stem": "drums", "format": "wav"})
    assert not read.is_error, text_of(read)
    assert structured(read)["source"] == "fetched"
    assert b"not to be read" not in base64.b64decode(structured(read)["data"])
    assert [d.path for d in sandbox.state.downloads] == [f"/files/{task['task_id']}/drums.wav"]


async def test_a_huge_limit_on_the_history_resource_is_read_as_the_maximum(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox)) as client:
        await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"})
        huge = await client.read_resource("musicgpt://extractions?limit=" + "9" * 5000)
        zero_padded = await client.read_resource("musicgpt://extractions?limit=" + "0" * 5000 + "1")
        with pytest.raises(Exception, match="limit must be a whole number"):
            await client.read_resource("musicgpt://extractions?limit=%C2%B2")  # a superscript two is no number
    assert len(json.loads(huge.contents[0].text)["extractions"]) == 1  # type: ignore[union-attr]
    assert len(json.loads(zero_padded.contents[0].text)["extractions"]) == 1  # type: ignore[union-attr]


# --- 5. a server secret cut short is never used ---------------------------------------------------------------


def test_a_short_kept_secret_is_refused_and_a_new_one_is_written_whole(tmp_path: Path, monkeypatch: Any) -> None:
    from musicgpt_mcp import secret as secret_module
    from musicgpt_mcp.config import ConfigError, Settings
    from musicgpt_mcp.web import plan

    settings = Settings(api_key=None, state_dir=tmp_path / "state")
    # A first start whose disk filled up while the secret was written leaves no file behind, not a short one.
    real_fsync = secret_module.os.fsync

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(secret_module.os, "fsync", disk_full)
    with pytest.raises(ConfigError, match="No space left on device"):
        plan(settings, "127.0.0.1", 8000)
    assert list((tmp_path / "state").iterdir()) == []
    monkeypatch.setattr(secret_module.os, "fsync", real_fsync)
    kept = plan(settings, "127.0.0.1", 8000).secret.get_secret_value()
    assert len(kept) == 64 and (tmp_path / "state" / "server-secret").read_text() == kept
    assert plan(settings, "127.0.0.1", 8000).secret.get_secret_value() == kept  # read again, unchanged

    # A short one left by an earlier release is never used: the start is refused, naming the file.
    (tmp_path / "state" / "server-secret").write_text("a")
    with pytest.raises(ConfigError, match=r"server-secret is damaged: it holds 1 characters"):
        plan(settings, "127.0.0.1", 8000)


# --- 6. accounts are named with a keyed hash ------------------------------------------------------------------


async def test_header_mode_names_accounts_with_a_keyed_hash_and_renames_old_rows(sandbox: Sandbox) -> None:
    import hashlib
    import sqlite3

    key = "mgpt-user-A-key-0123456789"
    sandbox.state.accept_any_key = True
    settings = dataclasses.replace(remote(sandbox, auth="header"), api_key=None)
    assert settings.state_dir is not None
    ledger_file = settings.state_dir / "ledger.sqlite3"
    unkeyed = hashlib.sha256(f"musicgpt-mcp account\0{sandbox.base_url}\0{key}".encode()).hexdigest()[:32]
    url = {"audio_url": "https://example.com/a.mp3"}
    with serve_http(settings) as server:
        async with connect_http(server.url, key=key) as client:
            first = structured(await client.call_tool("extract_stems", url))
    with sqlite3.connect(ledger_file) as db:
        [(account,)] = db.execute("SELECT account FROM jobs").fetchall()
        # What an earlier release wrote: the unkeyed name, which confirms a guessed key offline.
        db.execute("UPDATE jobs SET account = ?", (unkeyed,))
    assert account.startswith("acct:") and unkeyed not in account
    with serve_http(settings) as server:
        async with connect_http(server.url, key=key) as client:
            again = structured(await client.call_tool("extract_stems", url))
    with sqlite3.connect(ledger_file) as db:
        assert db.execute("SELECT account FROM jobs").fetchall() == [(account,)]
    assert again["reused"] is True and again["task_id"] == first["task_id"]  # found under its old name
    assert _posts(sandbox) == 1


# --- 4. a recorded consent answer cannot be replayed ----------------------------------------------------------


async def _answered_twice(client: Any, args: dict[str, Any]) -> tuple[Any, list[Any]]:
    """What a 2026-07-28 client does (ask, answer), then the same answering request sent again, twice."""
    from mcp.types import ElicitResult, InputRequiredResult

    asked = await client.session.call_tool("extract_stems", args, allow_input_required=True)
    assert isinstance(asked, InputRequiredResult), asked
    responses = {key: ElicitResult(action="accept", content={"submit": True}) for key in asked.input_requests or {}}
    again = {"input_responses": responses, "request_state": asked.request_state, "allow_input_required": True}
    first = await client.session.call_tool("extract_stems", args, **again)
    replays = [await client.session.call_tool("extract_stems", args, **again) for _ in range(2)]
    return first, replays


async def _three_earlier_jobs(sandbox: Sandbox, **settings: Any) -> Any:
    """Settings whose ledger already holds three jobs with the default stems: the consent question then quotes
    their costs ("the last 3 jobs ... cost 2, 2, 2 credits"), and stays word for word the same after another
    such job, as it did for the review (a question that changes is asked afresh, which hid the replay)."""
    quiet = make_settings(sandbox, confirm="never", **settings)
    async with connect(quiet) as client:
        for n in range(3):
            structured(await client.call_tool("extract_stems", {"audio_url": f"https://example.com/earlier-{n}.mp3"}))
    sandbox.state.clear_records()
    return dataclasses.replace(quiet, confirm="auto")


async def test_a_consent_answer_buys_one_job_in_process(sandbox: Sandbox) -> None:
    settings = await _three_earlier_jobs(sandbox)
    _, callback = elicitation("accept", {"submit": True})
    args = {"audio_url": "https://example.com/a.mp3", "force_new": True}
    async with connect(settings, elicitation_callback=callback) as client:
        first, replays = await _answered_twice(client, args)
    assert not first.is_error, text_of(first)
    for replay in replays:
        assert replay.is_error and "already used for a paid job" in text_of(replay)
    assert _posts(sandbox) == 1


async def test_a_consent_answer_buys_one_job_across_replicas(sandbox: Sandbox, postgres_url: str) -> None:
    """Over HTTP with a shared database: the replay reaches another replica, which knows the answer is spent."""
    from mcp.types import ElicitResult, InputRequiredResult
    from pydantic import SecretStr

    base = remote(sandbox)
    settings = dataclasses.replace(base, remote=dataclasses.replace(base.remote, database_url=SecretStr(postgres_url)))
    quiet = dataclasses.replace(settings, confirm="never")
    _, callback = elicitation("accept", {"submit": True})
    args = {"audio_url": "https://example.com/b.mp3", "force_new": True}
    with serve_http(quiet) as setup:
        async with connect_http(setup.url) as client:
            for n in range(3):
                url = f"https://example.com/earlier-{n}.mp3"
                structured(await client.call_tool("extract_stems", {"audio_url": url}))
    sandbox.state.clear_records()
    with serve_http(settings) as one, serve_http(settings) as two:
        async with connect_http(one.url, elicitation_callback=callback) as a:
            asked = await a.session.call_tool("extract_stems", args, allow_input_required=True)
            assert isinstance(asked, InputRequiredResult)
            responses = {k: ElicitResult(action="accept", content={"submit": True}) for k in asked.input_requests or {}}
            answer = {"input_responses": responses, "request_state": asked.request_state, "allow_input_required": True}
            paid = await a.session.call_tool("extract_stems", args, **answer)
        async with connect_http(two.url, elicitation_callback=callback) as b:
            replay = await b.session.call_tool("extract_stems", args, **answer)
    assert not paid.is_error, text_of(paid)
    assert replay.is_error and "already used for a paid job" in text_of(replay)
    assert _posts(sandbox) == 1


# --- 9. unfinished requests cannot hold the HTTP server --------------------------------------------------------


def _closed_within(sock: Any, seconds: float) -> bool:
    """Whether the server closes `sock` (recv returns nothing, or the connection is reset) within `seconds`."""

    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _open(origin: str) -> Any:
    import socket as sockets
    from urllib.parse import urlsplit

    parts = urlsplit(origin)
    return sockets.create_connection((parts.hostname, parts.port), timeout=5)


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_half_sent_headers_and_stalled_bodies_are_cut_off(sandbox: Sandbox, parser: str) -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from musicgpt_mcp.http_guard import Limits

    limits = Limits(header_timeout=0.5, body_stall=0.5)
    protocol = H11Protocol if parser == "h11" else HttpToolsProtocol
    with serve_http(remote(sandbox), limits=limits, protocol=protocol) as server:
        headers = _open(server.origin)
        headers.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        body = _open(server.origin)
        body.sendall(b'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"jsonrpc"')
        idle = _open(server.origin)  # connects, sends nothing
        assert _closed_within(headers, 5) and _closed_within(body, 5) and _closed_within(idle, 5)
        # A request sent in one go is answered as always.
        ping = httpx2.post(server.url, headers=ACCEPT, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert ping.status_code == 200


def test_connections_past_the_cap_are_closed_and_the_server_recovers(sandbox: Sandbox) -> None:
    from musicgpt_mcp.http_guard import Limits

    limits = Limits(header_timeout=1.0, max_connections=4)
    with serve_http(remote(sandbox), limits=limits) as server:
        held = [_open(server.origin) for _ in range(4)]
        extra = _open(server.origin)
        assert _closed_within(extra, 0.5)  # over the cap: closed at once
        assert all(_closed_within(sock, 5) for sock in held)  # then the held ones time out
        listed = httpx2.post(server.url, headers=ACCEPT, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert listed.status_code == 200


def test_an_oversized_request_is_refused_before_it_is_read(sandbox: Sandbox) -> None:
    """The SDK's own limit (4 MiB, 413): kept here so an upgrade that drops it does not go unnoticed."""
    MAX_REQUEST_BYTES = 4 * 1024 * 1024

    with serve_http(remote(sandbox)) as server:
        sock = _open(server.origin)
        sock.sendall(
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n".encode()
        )
        sock.settimeout(5)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("mark", ["\u2028", "\n", "\u202e"], ids=lambda c: f"U+{ord(c):04X}")
async def test_a_refused_path_is_shown_escaped(sandbox: Sandbox, tmp_path: Path, mark: str) -> None:
    """A refusal names the path it refused; a name's line break or override is shown, not obeyed."""
    missing = tmp_path / f"song{mark}Cost: none.wav"
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(missing)})
    text = text_of(result)
    assert result.is_error and f"song\\u{ord(mark):04x}Cost: none.wav" in text
    assert mark not in text
