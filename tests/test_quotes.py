"""The studio's server side through the protocol (issues 19 and 20): in a host that renders the stem view but
cannot ask the user, a paid job waits for the user's approval in the view, and a song can come from the view.

The test plays both the model (tools/call with what a model can see) and the view (tools/call with what only the
view is handed: the result's _meta). The view itself, in a browser, is tests/test_studio.py's."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import ElicitRequestParams, ElicitResult
from pydantic import SecretStr

from musicgpt_mcp import janitor, quotes, uploads
from musicgpt_mcp.sandbox import Sandbox

from .conftest import connect, make_settings, renders_apps, wav_bytes
from .support.http_server import serve_http
from .test_remote import connect_http, remote, structured
from .test_status import text_of

pytestmark = pytest.mark.anyio

URL = "https://example.com/song.mp3"
QUOTE = "musicgpt-mcp/quote"
UPLOAD = "musicgpt-mcp/upload"


def posts(sandbox: Sandbox) -> list[Any]:
    return [s for s in sandbox.state.submits() if s.complete]


def long_strings(value: Any, at_least: int = 16) -> set[str]:
    if isinstance(value, str):
        return {value} if len(value) >= at_least else set()
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return set().union(set(), *(long_strings(item, at_least) for item in items))


def offer_of(result: Any) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    return dict((result.meta or {})[QUOTE])


async def test_an_apps_host_that_cannot_ask_gets_a_quote_and_nothing_is_sent(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox), **renders_apps()) as client:
        quoted = await client.call_tool("extract_stems", {"audio_url": URL, "stems": ["vocals", "drums", "bass"]})
        again = await client.call_tool("extract_stems", {"audio_url": URL, "stems": ["bass", "vocals", "drums"]})
        forced = await client.call_tool(
            "extract_stems", {"audio_url": URL, "stems": ["vocals", "drums", "bass"], "force_new": True}
        )
    offer = offer_of(quoted)
    assert structured(quoted)["state"] == "awaiting_approval" and structured(quoted)["task_id"] is None
    assert "Nothing was submitted and nothing was spent yet" in text_of(quoted)
    assert "approves this paid extraction" in text_of(quoted) and "stem view" in text_of(quoted)
    # What only the view gets never reaches what the model reads.
    seen = text_of(quoted) + json.dumps(quoted.structured_content)
    assert offer["approval"] not in seen and offer["id"] not in seen
    assert [s for s in long_strings(quoted.meta) if s in seen] == []  # nothing of the view's _meta at all
    assert "Audio: https://example.com/song.mp3 (MusicGPT fetches it)" in offer["question"]
    # An identical call, with force_new or not, is the same quote.
    assert offer_of(again)["id"] == offer_of(forced)["id"] == offer["id"]
    assert posts(sandbox) == []


async def test_the_model_cannot_approve_with_what_it_has_seen(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox), **renders_apps()) as client:
        quoted = await client.call_tool("extract_stems", {"audio_url": URL})
        seen = structured(quoted)
        attempts = [
            await client.call_tool("confirm_extraction", {"quote": "", "approval": ""}),
            await client.call_tool("confirm_extraction", {"quote": seen["source"], "approval": seen["source"]}),
            await client.call_tool(
                "confirm_extraction", {"quote": offer_of(quoted)["id"], "approval": "0" * 40, "decision": "approve"}
            ),
            await client.call_tool(
                "upload_audio",
                {"upload": "x", "ticket": "y", "file_name": "a.wav", "total_bytes": 4, "offset": 0, "data": "AAAA"},
            ),
        ]
    for attempt in attempts:
        assert attempt.is_error
        assert len(text_of(attempt).split(": ", 1)[-1]) > 40, text_of(attempt)  # a reason, not a bare error
    assert "only the stem view holds it" in text_of(attempts[2])
    assert "Nothing was submitted and nothing was charged" in text_of(attempts[2])
    assert posts(sandbox) == []


async def test_one_quote_buys_one_job_however_often_it_is_approved(sandbox: Sandbox) -> None:
    sandbox.state.submit_delay = 0.5  # every click arrives while the first POST is in the air
    async with connect(make_settings(sandbox), **renders_apps()) as client:
        offer = offer_of(await client.call_tool("extract_stems", {"audio_url": URL, "force_new": True}))
        answers: list[Any] = []

        async def click() -> None:
            answers.append(
                await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
            )

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(click)
        later = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
        listed = structured(await client.call_tool("list_extractions", {}))
    jobs = {structured(a)["task_id"] for a in [*answers, later]}
    assert len(posts(sandbox)) == 1 and len(jobs) == 1
    assert posts(sandbox)[0].fields["audio_url"] == URL
    assert "The user approved the job in the stem view" in text_of(answers[0])
    assert [e["task_id"] for e in listed["extractions"]] == list(jobs)


async def test_a_cancelled_quote_sends_nothing(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox), **renders_apps()) as client:
        offer = offer_of(await client.call_tool("extract_stems", {"audio_url": URL}))
        ids = {"quote": offer["id"], "approval": offer["approval"]}
        cancelled = await client.call_tool("confirm_extraction", {**ids, "decision": "cancel"})
        approved = await client.call_tool("confirm_extraction", ids)
        fresh = offer_of(await client.call_tool("extract_stems", {"audio_url": URL}))
    assert structured(cancelled)["state"] == "cancelled" and "nothing was submitted" in text_of(cancelled)
    assert approved.is_error and "cancelled in the view" in text_of(approved)
    assert fresh["id"] != offer["id"]  # a cancelled quote no longer stands: the next call makes a new one
    assert posts(sandbox) == []


async def test_an_expired_quote_sends_nothing(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quotes, "QUOTE_TTL", 0.5)
    async with connect(make_settings(sandbox), **renders_apps()) as client:
        offer = offer_of(await client.call_tool("extract_stems", {"audio_url": URL}))
        await anyio.sleep(0.7)
        late = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
        fresh = offer_of(await client.call_tool("extract_stems", {"audio_url": URL}))
    assert late.is_error and "This quote expired at" in text_of(late)
    assert fresh["id"] != offer["id"]
    assert posts(sandbox) == []


async def test_a_quote_survives_a_restart(sandbox: Sandbox) -> None:
    settings = make_settings(sandbox)  # one state folder: the ledger and the kept server secret
    async with connect(settings, **renders_apps()) as client:
        offer = offer_of(await client.call_tool("extract_stems", {"audio_url": URL}))
    async with connect(settings, **renders_apps()) as client:
        approved = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
    assert structured(approved)["state"] == "submitted" and len(posts(sandbox)) == 1


async def test_limits_are_checked_when_the_user_approves(sandbox: Sandbox) -> None:
    settings = make_settings(sandbox, max_jobs_per_hour=1)
    async with connect(settings, **renders_apps()) as client:
        offer = offer_of(await client.call_tool("extract_stems", {"audio_url": URL}))
    async with connect(dataclasses.replace(settings, confirm="never")) as other:
        structured(await other.call_tool("extract_stems", {"audio_url": "https://example.com/other.mp3"}))
    async with connect(settings, **renders_apps()) as client:
        refused = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
    assert refused.is_error and "MUSICGPT_MCP_MAX_JOBS_PER_HOUR" in text_of(refused)
    assert len(posts(sandbox)) == 1
    # The refusal took nothing: once the operator raises the limit, the same approval goes through.
    async with connect(dataclasses.replace(settings, max_jobs_per_hour=2), **renders_apps()) as client:
        approved = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
    assert structured(approved)["state"] == "submitted" and len(posts(sandbox)) == 2


async def test_an_elicitation_host_is_asked_and_always_mode_uses_the_view(sandbox: Sandbox) -> None:
    asked: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"submit": True})

    async with connect(make_settings(sandbox), elicitation_callback=answer, **renders_apps()) as both:
        submitted = structured(await both.call_tool("extract_stems", {"audio_url": URL}))
    async with connect(make_settings(sandbox, confirm="always"), **renders_apps()) as view_only:
        quoted = await view_only.call_tool("extract_stems", {"audio_url": "https://example.com/b.mp3"})
    assert submitted["state"] == "submitted" and len(asked) == 1  # path 1: the question, as before
    assert structured(quoted)["state"] == "awaiting_approval"  # path 2, even when it must always ask
    assert len(posts(sandbox)) == 1


# --- isolation and replicas ----------------------------------------------------------------------------------

KEY_A = "mgpt-user-A-key-0123456789"
KEY_B = "mgpt-user-B-key-9876543210"


async def test_only_the_caller_who_got_the_quote_can_approve_it(sandbox: Sandbox) -> None:
    sandbox.state.accept_any_key = True
    with serve_http(dataclasses.replace(remote(sandbox, auth="header"), api_key=None)) as server:
        async with connect_http(server.url, key=KEY_A, **renders_apps()) as as_a:
            offer = offer_of(await as_a.call_tool("extract_stems", {"audio_url": URL}))
        async with connect_http(server.url, key=KEY_B, **renders_apps()) as as_b:
            stolen = await as_b.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
        async with connect_http(server.url, key=KEY_A, **renders_apps()) as as_a:
            mine = await as_a.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
    assert stolen.is_error and "does not match a quote of this user" in text_of(stolen)
    assert structured(mine)["state"] == "submitted"
    assert [s.authorization for s in posts(sandbox)] == [KEY_A]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_studio_works_over_http_in_both_eras(sandbox: Sandbox, mode: str) -> None:
    """claude.ai connects with the 2025-11-25 handshake (legacy): what it declared rides in the signed session ID,
    so the stateless server still knows to quote rather than send, and to take a song from the view."""
    song = wav_bytes(1.0)
    with serve_http(remote(sandbox)) as server:
        async with connect_http(server.url, mode=mode, **renders_apps()) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            quoted = await client.call_tool("extract_stems", {"audio_url": URL})
            ticket = dict((await client.call_tool("extract_stems", {"stems": ["vocals"]})).meta or {})[UPLOAD]
            picked = offer_of(await upload(client, ticket, song))
            offer = offer_of(quoted)
            approved = await client.call_tool(
                "confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]}
            )
            assert posts(sandbox) and posts(sandbox)[0].fields["audio_url"] == URL
            sent = await client.call_tool("confirm_extraction", {"quote": picked["id"], "approval": picked["approval"]})
    assert {"confirm_extraction", "upload_audio"} <= listed
    assert structured(quoted)["state"] == "awaiting_approval"
    assert structured(approved)["state"] == structured(sent)["state"] == "submitted"
    assert len(posts(sandbox)) == 2 and posts(sandbox)[1].files[0].sha256 == hashlib.sha256(song).hexdigest()


async def test_a_quote_made_on_one_replica_is_approved_on_another(sandbox: Sandbox, postgres_url: str) -> None:
    base = remote(sandbox)
    settings = dataclasses.replace(base, remote=dataclasses.replace(base.remote, database_url=SecretStr(postgres_url)))
    with serve_http(settings) as one, serve_http(settings) as two:
        async with connect_http(one.url, **renders_apps()) as first:
            offer = offer_of(await first.call_tool("extract_stems", {"audio_url": URL}))
        async with connect_http(two.url, **renders_apps()) as second:
            again = offer_of(await second.call_tool("extract_stems", {"audio_url": URL}))
            approved = await second.call_tool(
                "confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]}
            )
    assert again["id"] == offer["id"] and again["approval"] == offer["approval"]
    assert structured(approved)["state"] == "submitted" and len(posts(sandbox)) == 1


# --- a song from the view ------------------------------------------------------------------------------------


async def upload(client: Any, ticket: dict[str, Any], data: bytes, name: str = "My Take.wav", size: int = 65536) -> Any:
    """What the view does with a picked file: slices, in order; the last answer."""
    last = None
    for start in range(0, len(data), size):
        piece = base64.b64encode(data[start : start + size]).decode()
        args = {"upload": ticket["id"], "ticket": ticket["ticket"], "file_name": name, "total_bytes": len(data),
                "offset": start, "data": piece}  # fmt: skip
        last = await client.call_tool("upload_audio", args)
        assert not last.is_error, text_of(last)
    return last


async def test_a_song_picked_in_the_view_is_sent_once_approved(sandbox: Sandbox) -> None:
    song = wav_bytes(2.0)
    async with connect(make_settings(sandbox), **renders_apps()) as client:
        asked = await client.call_tool("extract_stems", {"stems": ["vocals", "drums"]})
        ticket = dict((asked.meta or {})[UPLOAD])
        done = await upload(client, ticket, song)
        offer = offer_of(done)
        first = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
        second = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
    assert structured(asked)["state"] == "awaiting_audio" and "they pick or drop a file there" in text_of(asked)
    seen = text_of(asked) + json.dumps(asked.structured_content)
    assert [s for s in long_strings(asked.meta) if s in seen] == []
    assert ticket["ticket"] not in text_of(asked) + json.dumps(asked.structured_content)
    job = structured(done)["job"]
    assert job["state"] == "awaiting_approval" and job["source"] == "My Take.wav" and job["source_type"] == "upload"
    assert "Audio: My Take.wav" in offer["question"]
    assert structured(first)["task_id"] == structured(second)["task_id"]
    [sent] = posts(sandbox)
    [part] = sent.files
    assert (part.filename, part.content_type) == ("My Take.wav", "audio/wav")
    assert part.sha256 == hashlib.sha256(song).hexdigest()


async def test_uploads_are_checked_like_any_file(sandbox: Sandbox, tmp_path: Path) -> None:
    async with connect(make_settings(sandbox), **renders_apps()) as client:
        ticket = dict((await client.call_tool("extract_stems", {})).meta or {})[UPLOAD]
        start = {"upload": ticket["id"], "ticket": ticket["ticket"], "file_name": "a.wav", "total_bytes": 8}
        skipped = await client.call_tool("upload_audio", {**start, "offset": 4, "data": "AAAA"})
        wrong = await client.call_tool("upload_audio", {**start, "ticket": "0" * 40, "offset": 0, "data": "AAAA"})
        huge = await client.call_tool("upload_audio", {**start, "total_bytes": 10**12, "offset": 0, "data": "AAAA"})
        not_audio = dict((await client.call_tool("extract_stems", {})).meta or {})[UPLOAD]
        refused = None
        try:
            await upload(client, not_audio, b"PK\x03\x04" + bytes(5000), name="song.wav")
        except AssertionError as exc:
            refused = str(exc)
    assert skipped.is_error and "must start at byte 0, not 4" in text_of(skipped)
    assert wrong.is_error and "only the stem view can send the song" in text_of(wrong)
    assert huge.is_error and "through the view" in text_of(huge)
    assert refused is not None and "'song.wav' does not look like an audio file" in refused
    assert "/uploads/" not in refused  # the server's own folder is not the user's business
    assert posts(sandbox) == []


async def test_a_declined_or_lapsed_song_is_not_kept_on_the_server(sandbox: Sandbox) -> None:
    settings = make_settings(sandbox)
    assert settings.state_dir is not None
    folder = settings.state_dir / "uploads"
    async with connect(settings, **renders_apps()) as client:
        ticket = dict((await client.call_tool("extract_stems", {})).meta or {})[UPLOAD]
        offer = offer_of(await upload(client, ticket, wav_bytes(1.0)))
        kept = sorted(p.name for p in folder.iterdir())
        await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"],
                                                      "decision": "cancel"})  # fmt: skip
        after_cancel = sorted(p.name for p in folder.iterdir())
        stale, fresh = folder / "0123abcd.wav", folder / "4567ef01.wav"
        stale.write_bytes(b"old"), fresh.write_bytes(b"new")
        os.utime(stale, (time.time() - 2 * uploads.UPLOAD_TTL,) * 2)
        await client.call_tool("extract_stems", {})  # the next upload sweeps what lapsed
    assert kept == [f"{ticket['id']}.wav"]  # the checked copy of the song, named by the server
    assert after_cancel == []
    assert not stale.exists() and fresh.exists()
    assert posts(sandbox) == []


async def test_a_song_nobody_approved_is_forgotten_when_its_quote_lapses(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if nobody uses the view again: the server's housekeeping forgets the upload (ledger and disk)."""
    monkeypatch.setattr(quotes, "QUOTE_TTL", 0.5)
    monkeypatch.setattr(uploads, "APPROVAL_MARGIN", 0.0)
    monkeypatch.setattr(janitor, "EVERY", 0.2)
    settings = make_settings(sandbox)
    assert settings.state_dir is not None
    folder, ledger = settings.state_dir / "uploads", settings.state_dir / "ledger.sqlite3"

    def stored() -> int:
        with contextlib.closing(sqlite3.connect(ledger)) as db:
            return int(db.execute("SELECT count(*) FROM upload_chunks").fetchone()[0])

    async with connect(settings, **renders_apps()) as client:
        ticket = dict((await client.call_tool("extract_stems", {})).meta or {})[UPLOAD]
        offer = offer_of(await upload(client, ticket, wav_bytes(1.0), size=16384))
        before = (stored(), sorted(p.name for p in folder.iterdir()))
        await anyio.sleep(1.5)
        after = (stored(), sorted(p.name for p in folder.iterdir()))
        late = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
    assert before[0] > 1 and before[1] == [f"{ticket['id']}.wav"]
    assert after == (0, [])
    assert late.is_error and posts(sandbox) == []


async def test_the_same_song_uploaded_twice_is_one_job(sandbox: Sandbox) -> None:
    song = wav_bytes(1.0)
    async with connect(make_settings(sandbox, confirm="never"), **renders_apps()) as client:
        first = await upload(client, dict((await client.call_tool("extract_stems", {})).meta or {})[UPLOAD], song)
        second = await upload(client, dict((await client.call_tool("extract_stems", {})).meta or {})[UPLOAD], song)
    assert structured(first)["job"]["state"] == "submitted"  # nobody is asked with MUSICGPT_MCP_CONFIRM=never
    assert structured(second)["job"]["reused"] is True
    assert structured(first)["job"]["task_id"] == structured(second)["job"]["task_id"]
    assert len(posts(sandbox)) == 1


async def test_slices_may_reach_either_replica(sandbox: Sandbox, postgres_url: str) -> None:
    base = remote(sandbox)
    settings = dataclasses.replace(base, remote=dataclasses.replace(base.remote, database_url=SecretStr(postgres_url)))
    song = wav_bytes(2.0)
    with serve_http(settings) as one, serve_http(settings) as two:
        async with connect_http(one.url, **renders_apps()) as a, connect_http(two.url, **renders_apps()) as b:
            ticket = dict((await a.call_tool("extract_stems", {"stems": ["vocals"]})).meta or {})[UPLOAD]
            last = None
            for n, start in enumerate(range(0, len(song), 32768)):
                args = {"upload": ticket["id"], "ticket": ticket["ticket"], "file_name": "take.wav",
                        "total_bytes": len(song), "offset": start,
                        "data": base64.b64encode(song[start : start + 32768]).decode()}  # fmt: skip
                last = await (a if n % 2 else b).call_tool("upload_audio", args)
                assert not last.is_error, text_of(last)
            offer = offer_of(last)
            approved = await a.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
    assert structured(approved)["state"] == "submitted"
    [sent] = posts(sandbox)
    assert sent.files[0].sha256 == hashlib.sha256(song).hexdigest()


async def test_without_the_view_a_missing_song_is_still_an_error(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"stems": ["vocals"]})
    assert result.is_error and "Give the audio to split" in text_of(result)


async def test_a_file_attached_in_chatgpt_is_fetched_by_its_link(sandbox: Sandbox) -> None:
    attached = {
        "download_url": "https://files.oaiusercontent.com/file-abc?sig=1",
        "file_id": "file-abc",
        "file_name": "Demo Take.mp3",
        "mime_type": "audio/mpeg",
    }
    async with connect(make_settings(sandbox)) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        job = structured(await client.call_tool("extract_stems", {"file": attached, "stems": ["vocals"]}))
    assert listed["extract_stems"].meta and listed["extract_stems"].meta["openai/fileParams"] == ["file"]
    [sent] = posts(sandbox)
    assert sent.fields["audio_url"] == attached["download_url"]
    assert job["source"] == "Demo Take.mp3"
