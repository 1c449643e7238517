"""Every failure reaches the model as an isError result that says what happened and what to do."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import SECRET_KEY, closed_port, connect, make_settings, subprocess_env
from .test_status import text_of

pytestmark = pytest.mark.anyio

URL_ARGS = {"audio_url": "https://example.com/song.mp3", "stems": ["vocals"]}
MAY_OR_MAY_NOT = "may or may not have been submitted"
CHECK_DASHBOARD = "Check the extractions in your MusicGPT dashboard before submitting again"


async def call(sandbox: Sandbox, args: dict[str, Any] | None = None, **settings: Any) -> str:
    async with connect(make_settings(sandbox, **settings)) as client:
        result = await client.call_tool("extract_stems", URL_ARGS if args is None else args)
    assert result.is_error, result.structured_content
    assert result.structured_content is None
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Error executing tool extract_stems: ")
    assert SECRET_KEY not in text
    return text.removeprefix("Error executing tool extract_stems: ")


def json_fault(status: int, body: dict[str, Any], **kw: Any) -> Fault:
    return Fault(status=status, body=json.dumps(body).encode(), **kw)


async def test_missing_key_explains_how_to_set_it(sandbox: Sandbox) -> None:
    text = await call(sandbox, api_key=None)
    assert "No MusicGPT API key is configured, so nothing was sent." in text
    assert "MUSICGPT_API_KEY" in text and "--sandbox" in text
    assert sandbox.state.submits() == []


async def test_invalid_key_401(sandbox: Sandbox) -> None:
    text = await call(sandbox, api_key=SecretStr("not-the-key"))
    assert text.startswith("MusicGPT rejected the API key (HTTP 401: Invalid API key). Nothing was charged.")
    assert "without a 'Bearer' prefix" in text


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            403,
            {"success": False, "error": "Forbidden"},
            "MusicGPT refused the request (HTTP 403: Forbidden): the API key lacks permission for this.",
        ),
        (
            402,
            {"success": False, "error": "Insufficient credits"},
            "MusicGPT says the account does not have enough credits (HTTP 402: Insufficient credits). "
            "Nothing was charged. Add credits in the MusicGPT dashboard, then submit again.",
        ),
        (
            400,
            {"success": False, "error": "Bad request: stems"},
            "MusicGPT rejected the request (HTTP 400): Bad request: stems. Nothing was charged.",
        ),
        (
            404,
            {"success": False, "message": "Not found"},
            "MusicGPT rejected the request (HTTP 404): Not found. Nothing was charged.",
        ),
        (
            409,
            {"success": False, "error": "Conflict:\n  duplicate   request"},
            "MusicGPT rejected the request (HTTP 409): Conflict: duplicate request. Nothing was charged.",
        ),
        (
            422,
            {"success": False, "error": "Either audio_url or audio_file must be provided."},
            "MusicGPT rejected the request (HTTP 422): Either audio_url or audio_file must be provided. "
            "Nothing was charged. Fix the arguments and submit again.",
        ),
    ],
)
async def test_client_errors_carry_musicgpt_message(
    sandbox: Sandbox, status: int, body: dict[str, Any], expected: str
) -> None:
    sandbox.state.queue_fault("submit", json_fault(status, body))
    text = await call(sandbox)
    assert text.startswith(expected)
    assert len(sandbox.state.submits()) == 1


async def test_rate_limit_with_retry_after(sandbox: Sandbox) -> None:
    sandbox.state.queue_fault(
        "submit", json_fault(429, {"success": False, "error": "Too many requests"}, headers=(("Retry-After", "17"),))
    )
    text = await call(sandbox)
    assert text == (
        "MusicGPT's rate limit was reached (HTTP 429: Too many requests; it allows 60 extraction submits a "
        "minute). The job was not accepted. Wait 17 seconds before submitting again."
    )


async def test_rate_limit_of_one_second_is_singular(sandbox: Sandbox) -> None:
    sandbox.state.queue_fault(
        "submit", json_fault(429, {"error": "Too many requests"}, headers=(("Retry-After", "1"),))
    )
    text = await call(sandbox)
    assert text.endswith("The job was not accepted. Wait 1 second before submitting again.")


async def test_rate_limit_without_retry_after(sandbox: Sandbox) -> None:
    sandbox.state.queue_fault("submit", Fault(status=429, body=b"", content_type="text/plain"))
    text = await call(sandbox)
    assert text.endswith("The job was not accepted. Wait a minute before submitting again.")
    assert "(HTTP 429 (an empty body);" in text


async def test_server_error_is_not_retried(sandbox: Sandbox) -> None:
    sandbox.state.queue_fault("submit", Fault())
    text = await call(sandbox)
    assert text.startswith("MusicGPT had a server error (HTTP 500: Internal Server Error).")
    assert CHECK_DASHBOARD in text
    assert len(sandbox.state.submits()) == 1


async def test_gateway_error_with_html_body(sandbox: Sandbox) -> None:
    sandbox.state.queue_fault(
        "submit", Fault(status=502, body=b"<html><body>Bad Gateway</body></html>", content_type="text/html")
    )
    text = await call(sandbox)
    assert text.startswith("MusicGPT had a server error (HTTP 502 (an HTML page)).")
    assert len(sandbox.state.submits()) == 1


async def test_timeout_after_upload_says_outcome_unknown(sandbox: Sandbox) -> None:
    sandbox.state.queue_fault("submit", Fault(status=200, action="hang", delay=3.0))
    text = await call(sandbox, read_timeout=0.3)
    assert text.startswith("MusicGPT did not answer in time (no reply within 0.3 s).")
    assert MAY_OR_MAY_NOT in text and CHECK_DASHBOARD in text
    assert len(sandbox.state.submits()) == 1


async def test_refused_connection_says_nothing_was_sent(sandbox: Sandbox) -> None:
    port = closed_port()
    text = await call(sandbox, base_url=f"http://127.0.0.1:{port}/api/public")
    assert text.startswith(
        f"Could not connect to MusicGPT at http://127.0.0.1:{port}/api/public (the connection was refused or the "
        "host is unreachable; tried 3 times)."
    )
    assert "Nothing was sent, so nothing was charged." in text


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            b"<!doctype html><h1>Hello</h1>",
            "text/html",
            "MusicGPT answered HTTP 200 with an HTML page instead of JSON.",
        ),
        (b"", "application/json", "MusicGPT answered HTTP 200 with an empty body instead of JSON."),
        (b"task_id=abc", "text/plain", "MusicGPT answered HTTP 200 with a body that is not JSON instead of JSON."),
        (b"[1, 2]", "application/json", "MusicGPT answered HTTP 200 with a body that is not JSON instead of JSON."),
        (
            b'{"success": false, "error": "queue full"}',
            "application/json",
            "MusicGPT answered HTTP 200 without a task_id. It said: queue full.",
        ),
        (b'{"success": true, "task_id": 42}', "application/json", "MusicGPT answered HTTP 200 without a task_id."),
        (
            b'{"success": true, "task_id": "../../x y"}',
            "application/json",
            "MusicGPT answered HTTP 200 without a task_id.",
        ),
    ],
)
async def test_unusable_success_replies(sandbox: Sandbox, body: bytes, content_type: str, expected: str) -> None:
    sandbox.state.queue_fault("submit", Fault(status=200, body=body, content_type=content_type))
    text = await call(sandbox)
    assert text.startswith(expected)
    assert MAY_OR_MAY_NOT in text
    assert len(sandbox.state.submits()) == 1


async def test_key_echoed_by_server_is_redacted(sandbox: Sandbox) -> None:
    sandbox.state.queue_fault("submit", json_fault(400, {"error": f"bad key {SECRET_KEY} given"}))
    text = await call(sandbox)
    assert text.startswith("MusicGPT rejected the request (HTTP 400): bad key [redacted] given.")


# --- refused before any request ---------------------------------------------------------------


async def test_missing_file(sandbox: Sandbox, tmp_path: Path) -> None:
    text = await call(sandbox, {"audio_file": str(tmp_path / "nope.mp3")})
    assert (
        text
        == f"No file at {tmp_path / 'nope.mp3'}. Check the path (and its spelling) and try again. Nothing was submitted."
    )
    assert sandbox.state.submits() == []


async def test_directory(sandbox: Sandbox, tmp_path: Path) -> None:
    text = await call(sandbox, {"audio_file": str(tmp_path)})
    assert text == f"{tmp_path} is a directory. Give the path of one audio file inside it. Nothing was submitted."
    assert sandbox.state.submits() == []


async def test_relative_path(sandbox: Sandbox) -> None:
    text = await call(sandbox, {"audio_file": "Music/song.mp3"})
    assert text.startswith("audio_file must be an absolute path (or start with ~), got 'Music/song.mp3'.")
    assert sandbox.state.submits() == []


async def test_empty_file(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.touch()
    text = await call(sandbox, {"audio_file": str(path)})
    assert text == f"{path} is empty (0 bytes); give an audio file. Nothing was submitted."
    assert sandbox.state.submits() == []


async def test_fifo_is_not_a_regular_file(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "pipe.mp3"
    os.mkfifo(path)
    text = await call(sandbox, {"audio_file": str(path)})
    assert "is not a regular file" in text
    assert sandbox.state.submits() == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
async def test_unreadable_file(sandbox: Sandbox, song: Path) -> None:
    song.chmod(0)
    text = await call(sandbox, {"audio_file": str(song)})
    assert "permission denied" in text
    assert sandbox.state.submits() == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, "Give the audio to split: audio_file"),
        ({"audio_file": "", "audio_url": "  "}, "Give the audio to split: audio_file"),
        ({"audio_file": "/x.mp3", "audio_url": "https://a.b/c.mp3"}, "Give either audio_file or audio_url, not both."),
        (
            {"audio_url": "file:///etc/passwd"},
            "audio_url must be an http:// or https:// URL; got 'file:///etc/passwd'.",
        ),
        ({"audio_url": "https://u:p@a.b/c.mp3"}, "audio_url must not carry a user name or password"),
        (
            {"audio_url": "https://a.b/c.mp3", "webhook_url": "ftp://a.b/"},
            "webhook_url must be an http:// or https:// URL",
        ),
    ],
)
async def test_argument_rules(sandbox: Sandbox, args: dict[str, Any], expected: str) -> None:
    text = await call(sandbox, args)
    assert text.startswith(expected)
    assert text.endswith("Nothing was submitted.")
    assert sandbox.state.submits() == []


async def test_key_never_logged(sandbox: Sandbox, song: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect(make_settings(sandbox)) as client:
        ok = await client.call_tool("extract_stems", {"audio_file": str(song)})
        sandbox.state.queue_fault("submit", json_fault(401, {"error": f"key {SECRET_KEY} unknown"}))
        failed = await client.call_tool("extract_stems", URL_ARGS)
    assert not ok.is_error and failed.is_error
    assert SECRET_KEY not in json.dumps([ok.model_dump(mode="json"), failed.model_dump(mode="json")])
    assert "extraction submitted" in caplog.text  # the log did capture the calls
    assert SECRET_KEY not in caplog.text


@pytest.mark.parametrize("change", ["shrank", "replaced"])
async def test_a_file_not_as_checked_is_not_uploaded(sandbox: Sandbox, song: Path, change: str) -> None:
    """Checked file != file at the path when the submit starts: nothing is sent, and the error says so."""
    from dataclasses import replace

    from musicgpt_mcp.files import allowed_dirs, check_audio_file
    from musicgpt_mcp.musicgpt import ExtractionRequest, MusicGPTClient, MusicGPTError, Pools

    part = check_audio_file(str(song), allowed_dirs([song.parent], None), 10**9)
    if change == "shrank":
        part = replace(part, size=part.size + 10, identity=replace(part.identity, size=part.size + 10))
    else:
        part = replace(part, identity=replace(part.identity, ino=part.identity.ino + 1))
    pools = Pools()
    client = MusicGPTClient(sandbox.base_url, SecretStr(SECRET_KEY), pools)
    try:
        with pytest.raises(MusicGPTError) as caught:
            await client.submit_extraction(ExtractionRequest(stems=[], preprocessing_options=[], audio_file=part))
    finally:
        await pools.aclose()
    assert str(caught.value).startswith(
        "The audio file changed after it was checked (it was replaced, or written to), so it was not uploaded. "
        "Nothing was sent, so nothing was charged."
    )
    assert caught.value.outcome == "not_charged"
    assert sandbox.state.submits() == []  # not even a partial request


NBSP_KEY = SECRET_KEY[:8] + "\u00a0" + SECRET_KEY[8:]
KEY_PROBLEM = (
    "contains a character that cannot be sent (a space, a non-ASCII character such as a non-breaking space, or "
    "a control character), which usually comes from copying it out of a web page. Paste the key again, exactly "
    "as the MusicGPT dashboard shows it, and restart the server."
)


async def test_key_with_a_character_that_cannot_be_sent(sandbox: Sandbox) -> None:
    """A pasted non-breaking space: a readable error on each call, which never echoes the key."""
    text = await call(sandbox, api_key=SecretStr(NBSP_KEY))
    assert text == f"MUSICGPT_API_KEY {KEY_PROBLEM} Nothing was sent."
    assert NBSP_KEY not in text and SECRET_KEY[8:] not in text
    assert sandbox.state.submits() == []


def test_key_with_a_character_that_cannot_be_sent_from_the_environment(sandbox: Sandbox) -> None:
    from .test_stdio import HANDSHAKE, _rpc, run_raw

    requests = b"".join(
        [*HANDSHAKE, _rpc(3, "tools/call", {"name": "extract_stems", "arguments": {"audio_url": "https://a.b/c.mp3"}})]
    )
    env = subprocess_env(MUSICGPT_API_KEY=NBSP_KEY, MUSICGPT_BASE_URL=sandbox.base_url)
    messages, stderr, _ = run_raw(requests, env, {1, 2, 3})
    [reply] = [m for m in messages if m.get("id") == 3]
    assert reply["result"]["isError"] is True
    text = reply["result"]["content"][0]["text"]
    assert text.endswith("The server's configuration is invalid: MUSICGPT_API_KEY " + KEY_PROBLEM)
    assert SECRET_KEY[8:] not in json.dumps(messages) + stderr
    assert sandbox.state.submits() == []


async def test_fifo_swapped_in_after_the_checks_does_not_hang(
    sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO put in the file's place between the checks and the upload: the upload opens it without
    blocking, sees it is not the file that was checked, and sends nothing, with an honest message."""
    import anyio

    from musicgpt_mcp.tools import extract_plan as extract

    fifo = song.with_name("swap.fifo")
    os.mkfifo(fifo)
    fingerprint = extract.fingerprint_file

    async def fingerprint_then_swap(part: Any, ledger: Any) -> str:
        digest = await fingerprint(part, ledger)  # the last look at the file before the upload
        os.replace(fifo, part.path)
        return digest

    monkeypatch.setattr(extract, "fingerprint_file", fingerprint_then_swap)
    released = False

    async def release_after(seconds: float) -> None:
        # Were the open blocked on the FIFO (the old behaviour), a writer releases it, so a failure
        # ends as a failed assertion instead of hanging the suite.
        nonlocal released
        await anyio.sleep(seconds)
        with contextlib.suppress(OSError):
            os.close(os.open(song, os.O_WRONLY | os.O_NONBLOCK))
            released = True

    async with connect(make_settings(sandbox)) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_after, 15)
            started = anyio.current_time()
            result = await client.call_tool("extract_stems", {"audio_file": str(song)})
            elapsed = anyio.current_time() - started
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):  # the server still answers
            after = await client.call_tool("extract_stems", URL_ARGS)
    assert not released, "the upload blocked on the FIFO until a writer came"
    assert elapsed < 10
    assert result.is_error
    assert text_of(result).startswith(
        "Error executing tool extract_stems: The audio file changed after it was checked (it was replaced, or "
        "written to), so it was not uploaded. Nothing was sent, so nothing was charged."
    )
    assert not after.is_error
    assert len(sandbox.state.submits()) == 1  # only the URL submit reached MusicGPT


async def test_cancelling_an_upload_ends_it(sandbox: Sandbox, song: Path) -> None:
    """The client cancels while MusicGPT sits on the upload: the call ends, the server goes on answering."""
    import anyio

    sandbox.state.queue_fault("submit", Fault(status=200, action="hang", delay=30))
    async with connect(make_settings(sandbox)) as client:
        started = anyio.current_time()
        with anyio.move_on_after(1):
            await client.call_tool("extract_stems", {"audio_file": str(song)})
        assert anyio.current_time() - started < 3
        with anyio.fail_after(10):
            after = await client.call_tool("extract_stems", URL_ARGS)
    assert not after.is_error


async def test_file_swapped_right_after_the_checks_is_not_sent(
    sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Swapped between the checks and the fingerprint (read from the very file that was checked): refused
    before anything leaves the machine, with a reason, not a crash."""
    from musicgpt_mcp import files

    fifo = song.with_name("swap.fifo")
    os.mkfifo(fifo)
    check = files.examine

    def examine_then_swap(resolved: Path, info: os.stat_result) -> Any:
        verdict = check(resolved, info)  # the last of the checks
        os.replace(fifo, resolved)
        return verdict

    monkeypatch.setattr(files, "examine", examine_then_swap)
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(song)})
    assert result.is_error
    assert "changed (it was replaced, or is being written) right after it was checked" in text_of(result)
    assert "Nothing was submitted" in text_of(result)
    assert sandbox.state.submits() == []
