"""The studio and the webhook under a hostile review (after issues 19-21): each test is one finding, reproduced
through the protocol, that a quote must still buy at most one job, a song must arrive as it was picked, and a
leaked address must buy nothing. On both ledger engines where the finding was in shared SQL."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from pydantic import SecretStr

from musicgpt_mcp import quotes, uploads
from musicgpt_mcp.config import Settings
from musicgpt_mcp.ledger import LedgerError
from musicgpt_mcp.ledger import studio as ledger_studio
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.tools import studio

from .conftest import connect, make_settings, renders_apps, wav_bytes
from .test_quotes import UPLOAD, URL, offer_of, posts, upload
from .test_remote import structured
from .test_server_webhook import client_of, hosted, submit
from .test_status import text_of

pytestmark = pytest.mark.anyio

SLICE = 16384


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def settings_for(sandbox: Sandbox, engine: str, request: pytest.FixtureRequest, **overrides: Any) -> Settings:
    settings = make_settings(sandbox, **overrides)
    if engine == "postgres":
        url = request.getfixturevalue("postgres_url")
        settings = dataclasses.replace(
            settings, remote=dataclasses.replace(settings.remote, database_url=SecretStr(url))
        )
    return settings


@asynccontextmanager
async def view_host(settings: Settings) -> AsyncIterator[Client]:
    async with connect(settings, **renders_apps()) as client:
        yield client


async def ticket_of(client: Client, **arguments: Any) -> dict[str, Any]:
    asked = await client.call_tool("extract_stems", arguments)
    assert not asked.is_error, text_of(asked)
    return dict((asked.meta or {})[UPLOAD])


def slice_args(ticket: dict[str, Any], song: bytes, start: int, size: int = SLICE) -> dict[str, Any]:
    return {"upload": ticket["id"], "ticket": ticket["ticket"], "file_name": "take.wav", "total_bytes": len(song),
            "offset": start, "data": base64.b64encode(song[start : start + size]).decode()}  # fmt: skip


def approve(offer: dict[str, Any]) -> dict[str, Any]:
    return {"quote": offer["id"], "approval": offer["approval"]}


async def test_a_cleanup_that_fails_after_the_job_was_accepted_does_not_reopen_the_quote(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found: forgetting the uploaded song after MusicGPT accepted the job failed once (a locked ledger), the quote
    went back to open and the view was told nothing had been sent; approving again paid a second job."""
    real, failures = ledger_studio.delete_upload, [1]

    async def flaky(*args: Any) -> None:
        if failures:
            failures.pop()
            raise LedgerError("the ledger could not be used: database is locked")
        await real(*args)

    async with view_host(make_settings(sandbox)) as client:
        offer = offer_of(await upload(client, await ticket_of(client, force_new=True), wav_bytes(1.0)))
        monkeypatch.setattr(uploads, "delete_upload", flaky)
        first = await client.call_tool("confirm_extraction", approve(offer))
        second = await client.call_tool("confirm_extraction", approve(offer))
    assert not first.is_error and not second.is_error, text_of(first) + text_of(second)
    assert structured(first)["task_id"] == structured(second)["task_id"] is not None
    assert failures == [] and len(posts(sandbox)) == 1


async def test_a_slow_approval_is_not_taken_over_by_a_retry(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: an approval still copying a big upload out of the ledger looked dead after STALE_CLAIM, and a retry
    from the view took the quote again and paid a second job (force_new: no identical job to wait for).
    Scaled down: STALE_CLAIM 1 s, the copy 2.5 s slower."""
    monkeypatch.setattr(ledger_studio, "STALE_CLAIM", 1.0)
    monkeypatch.setattr(quotes, "STALE_CLAIM", 1.0)
    real = uploads.local_copy

    async def slow(*args: Any) -> Any:
        await anyio.sleep(2.5)
        return await real(*args)

    got: list[Any] = []
    async with view_host(make_settings(sandbox)) as client:
        offer = offer_of(await upload(client, await ticket_of(client, force_new=True), wav_bytes(1.0)))
        monkeypatch.setattr(uploads, "local_copy", slow)

        async def click(after: float) -> None:
            await anyio.sleep(after)
            got.append(await client.call_tool("confirm_extraction", approve(offer)))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(click, 0.0)
            tasks.start_soon(click, 1.6)  # past the (scaled) stale age, while the first still copies
    assert [r.is_error for r in got] == [False, False], [text_of(r) for r in got]
    assert structured(got[0])["task_id"] == structured(got[1])["task_id"]
    assert len(posts(sandbox)) == 1


async def test_a_refused_slice_leaves_nothing_behind(
    sandbox: Sandbox, engine: str, request: pytest.FixtureRequest
) -> None:
    """Found: a slice refused for starting one byte early was stored anyway, and the song sent (and paid for)
    was one byte longer than the one picked."""
    song = wav_bytes(1.0)
    async with view_host(settings_for(sandbox, engine, request)) as client:
        ticket = await ticket_of(client)
        assert not (await client.call_tool("upload_audio", slice_args(ticket, song, 0))).is_error
        early = await client.call_tool("upload_audio", {**slice_args(ticket, song, SLICE - 1), "data": "AA=="})
        last = None
        for start in range(SLICE, len(song), SLICE):
            last = await client.call_tool("upload_audio", slice_args(ticket, song, start))
            assert not last.is_error, text_of(last)
        assert not (await client.call_tool("confirm_extraction", approve(offer_of(last)))).is_error
    assert early.is_error and f"must start at byte {SLICE}, not {SLICE - 1}" in text_of(early)
    [sent] = posts(sandbox)
    assert (sent.files[0].size, sent.files[0].sha256) == (len(song), hashlib.sha256(song).hexdigest())


async def test_a_slice_sent_again_is_no_error_and_a_different_one_is_refused(
    sandbox: Sandbox, engine: str, request: pytest.FixtureRequest
) -> None:
    """Found: a slice sent again (its answer lost on the way) broke the ledger's unique key, and the view was told
    that the job ledger could not be used, with the server's ledger path."""
    song = wav_bytes(1.0)
    async with view_host(settings_for(sandbox, engine, request)) as client:
        ticket = await ticket_of(client)
        first = await client.call_tool("upload_audio", slice_args(ticket, song, 0))
        again = await client.call_tool("upload_audio", slice_args(ticket, song, 0))
        changed = await client.call_tool("upload_audio", {**slice_args(ticket, song, 0), "data": "AAAA"})
    assert not first.is_error and not again.is_error, text_of(again)
    assert structured(again)["received"] == structured(first)["received"] == SLICE
    assert changed.is_error and f"must start at byte {SLICE}, not 0" in text_of(changed)
    assert "ledger" not in text_of(again) + text_of(changed)


async def test_numbers_and_ids_the_ledger_cannot_hold_are_refused_in_words(
    sandbox: Sandbox, engine: str, request: pytest.FixtureRequest
) -> None:
    """Found: an offset of 2**63 gave the SDK's bare "Error executing tool" on SQLite; it, and a NUL in an id,
    gave PostgreSQL's ledger alarm, naming the database, to a remote caller."""
    song = wav_bytes(0.5)
    async with view_host(settings_for(sandbox, engine, request)) as client:
        ticket = await ticket_of(client)
        offer = offer_of(await client.call_tool("extract_stems", {"audio_url": URL}))
        answers = [
            await client.call_tool("upload_audio", {**slice_args(ticket, song, 0), "offset": 2**63}),
            await client.call_tool("upload_audio", {**slice_args(ticket, song, 0), "total_bytes": 2**63}),
            await client.call_tool("upload_audio", {**slice_args(ticket, song, 0), "upload": "ab\x00cd"}),
            await client.call_tool("confirm_extraction", {**approve(offer), "quote": "ab\x00cd"}),
            await client.call_tool("confirm_extraction", {**approve(offer), "quote": offer["id"].upper()}),
        ]
    for answer in answers:
        assert answer.is_error
        bare, _, said = text_of(answer).partition(": ")  # the SDK's "Error executing tool <name>", then ours
        assert bare.startswith("Error executing tool") and said, text_of(answer)
        assert len(said) > 20 and "ledger" not in said and "postgresql" not in said and "pydantic" not in said, said
    assert posts(sandbox) == []


async def test_a_quote_shows_what_its_approval_sends(sandbox: Sandbox) -> None:
    """Found: a call naming a webhook and one naming none got the same quote, and the view showed the second
    call's question (no webhook) while the approval sent the first call's webhook."""
    hook = "https://hooks.example.com/x"
    settings = make_settings(sandbox, webhook_urls=("https://hooks.example.com/",))
    async with view_host(settings) as client:
        with_hook = offer_of(await client.call_tool("extract_stems", {"audio_url": URL, "webhook_url": hook}))
        without = offer_of(await client.call_tool("extract_stems", {"audio_url": URL}))
        again = offer_of(await client.call_tool("extract_stems", {"audio_url": URL, "force_new": True}))
        assert not (await client.call_tool("confirm_extraction", approve(without))).is_error
    assert with_hook["id"] != without["id"] and again["id"] == without["id"]
    assert again["question"] == without["question"]
    assert hook in with_hook["question"] and hook not in without["question"]
    [sent] = posts(sandbox)
    assert "webhook_url" not in sent.fields


async def test_uploads_that_were_thrown_away_still_count_against_the_hourly_cap(
    sandbox: Sandbox, engine: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found: the cap counted only the uploads still kept, so songs refused by the audio check (or cancelled)
    made room for more, and the count and the insert could be raced."""
    monkeypatch.setattr(studio, "UPLOADS_PER_HOUR", 4)
    async with view_host(settings_for(sandbox, engine, request)) as client:
        for _ in range(2):
            refused = await client.call_tool("upload_audio", slice_args(await ticket_of(client), bytes(4096), 0))
            assert refused.is_error and "does not look like an audio file" in text_of(refused)
        answers: list[Any] = []

        async def ask() -> None:
            answers.append(await client.call_tool("extract_stems", {}))

        async with anyio.create_task_group() as tasks:
            for _ in range(6):
                tasks.start_soon(ask)
    opened = [a for a in answers if not a.is_error]
    capped = [a for a in answers if a.is_error]
    assert len(opened) == 2 and len(capped) == 4
    assert all("4 uploads in the last hour" in text_of(a) and "MUSICGPT_MCP_MAX" not in text_of(a) for a in capped)


async def test_replaying_a_leaked_webhook_address_buys_no_status_read_each(sandbox: Sandbox) -> None:
    """Found: each replay of a delivery, once the read it asked for had ended, bought another status read: 57
    reads in 20 s from one address, near MusicGPT's 200 a minute for the key. Now one per CONFIRM_PAUSE (5 s)."""
    sandbox.state.eta = 30
    codes: list[int] = []
    looked: dict[str, Any] = {}
    with hosted(sandbox) as server:
        async with client_of(server) as client:
            task_id = await submit(client)
            hook = sandbox.state.submits()[0].fields["webhook_url"]
            forged = {"success": True, "task_id": task_id, "conversion": {"status": "COMPLETED",
                      "conversion_path": json.dumps({"vocals": "https://evil.example/v.mp3"})}}  # fmt: skip

            async def wait() -> None:
                args = {"task_id": task_id, "wait_seconds": 12}
                looked.update(structured(await client.call_tool("get_extraction", args)))

            async def replay() -> None:
                await anyio.sleep(0.5)
                async with httpx2.AsyncClient() as http:
                    for _ in range(30):
                        codes.append((await http.post(hook, json=forged)).status_code)
                        await anyio.sleep(0.33)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait)
                tasks.start_soon(replay)
    assert set(codes) == {202}
    assert "evil.example" not in json.dumps(looked) and looked["status"] != "COMPLETED"
    # About 10 s of replays: a read at the first, then at most one every 5 s (before: one a replay, 30).
    assert 1 <= sandbox.state.status_calls <= 3, sandbox.state.status_calls
