"""The studio's view in a real browser (issues 19 and 20): the quote approved in the stem view, the song picked in
it, the job followed, the model told, the stems saved.

Headless Chromium renders the view through the official ext-apps AppBridge (tests/player_host/, as in
test_player.py); this test is the host's MCP client, over stdio (a real subprocess), over Streamable HTTP, or in
process. The server's side of the same flows, without a browser, is test_quotes.py's.

The README's screenshots come from here: `STUDIO_SCREENSHOTS=docs uv run pytest tests/test_studio.py -k issue`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from musicgpt_mcp import player, quotes
from musicgpt_mcp.catalog import STEMS
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.sandbox.audio import stem_mp3, wav_tone
from musicgpt_mcp.server import create_server

from .conftest import PYTHON, SECRET_KEY, make_settings, renders_apps, subprocess_env
from .support.http_server import serve_http
from .test_player import Host, assert_only_bridge_traffic, launch_browser, open_host, wire
from .test_remote import KEY_A, KEY_B, connect_http, remote, structured
from .test_status import text_of

pytestmark = pytest.mark.anyio

URL = "https://cdn.example.com/songs/night-drive.mp3"
QUOTE = "musicgpt-mcp/quote"
# A host like claude.ai: it saves files for a view, takes context updates and messages from it.
CLAUDE_LIKE = {"downloadFile": {}, "updateModelContext": {"text": {}, "structuredContent": {}}, "message": {"text": {}}}
# A host like ChatGPT: no ui/download-file.
NO_DOWNLOADS = {"updateModelContext": {"text": {}, "structuredContent": {}}, "message": {"text": {}}}
APPROVE = re.compile(r"split|confirm|approve|start", re.IGNORECASE)
TELLS = ("ui/update-model-context", "ui/message")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so one browser serves every test here


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_browser() as launched:
        yield launched


def posts(sandbox: Sandbox) -> list[Any]:
    return [s for s in sandbox.state.submits() if s.complete]


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def studio_client(sandbox: Sandbox, **overrides: Any) -> Client:
    """In process, a host that renders MCP Apps and cannot ask (claude.ai, ChatGPT): the user approves in the view."""
    return Client(create_server(make_settings(sandbox, **overrides)), raise_exceptions=True, **renders_apps())


async def until_asked(host: Host, method: str, count: int = 1, seconds: float = 30) -> list[dict[str, Any]]:
    with anyio.fail_after(seconds):
        while len(host.asked(method)) < count:
            await anyio.sleep(0.05)
    return host.asked(method)


async def screenshot(host: Host, tmp_path: Path, name: str) -> None:
    """Every run saves one beside the test's files; STUDIO_SCREENSHOTS=folder also copies it there."""
    out = tmp_path / name
    await host.page.locator("#view").screenshot(path=str(out))
    assert out.stat().st_size > 5000
    folder = os.environ.get("STUDIO_SCREENSHOTS")
    if folder:
        shutil.copyfile(out, Path(folder) / name)


def model_calls(seen: dict[str, Any], tools: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every tool but extract_stems, called as a model would with what it has read (the quote's text and
    structuredContent), the app-only ones included: it never had the view's _meta."""
    guesses = [str(seen["source"]), str(seen["expires_at"]), "awaiting_approval"]
    calls: list[tuple[str, dict[str, Any]]] = [("list_extractions", {}), ("list_extractions", {"query": URL})]
    slice_of_three_bytes = {"file_name": "song.wav", "total_bytes": 3, "offset": 0, "data": "AAAA"}
    for guess in guesses:
        calls += [
            ("confirm_extraction", {"quote": guess, "approval": guess, "decision": "approve"}),
            ("confirm_extraction", {"quote": guess, "approval": guess}),
            ("upload_audio", {"upload": guess, "ticket": guess, **slice_of_three_bytes}),
            ("get_extraction", {"task_id": guess}),
            ("read_stem_audio", {"task_id": guess, "stem": "vocals", "format": "mp3"}),
            ("download_stems", {"task_id": guess}),
        ]
    assert {name for name, _ in calls} == tools - {"extract_stems"}, "every tool the model was offered"
    return calls


async def test_issue_19_a_host_that_renders_apps_but_cannot_ask_over_stdio(
    sandbox: Sandbox, browser: Any, tmp_path: Path
) -> None:
    sandbox.state.eta = 3  # a job takes a few seconds
    params = StdioServerParameters(
        command=PYTHON,
        args=["-m", "musicgpt_mcp"],
        env=subprocess_env(
            MUSICGPT_API_KEY=SECRET_KEY,
            MUSICGPT_BASE_URL=sandbox.base_url,
            MUSICGPT_MCP_STORAGE_HOSTS=sandbox.netloc,
            MUSICGPT_MCP_OUTPUT_DIR=str(tmp_path / "out"),
        ),
    )
    stems = ["vocals", "drums", "bass"]
    args = {"audio_url": URL, "stems": stems}
    async with Client(params, **renders_apps()) as client, open_host(client, browser) as host:
        tools = {t.name: t for t in (await client.list_tools()).tools}

        # 1. A quote: no error, nothing sent, the view linked, the user approves in it; nothing of its _meta shows.
        quoted = await client.call_tool("extract_stems", args)
        assert not quoted.is_error, text_of(quoted)
        assert (tools["extract_stems"].meta or {})["ui"]["resourceUri"] == player.URI
        seen = structured(quoted)
        assert seen["state"] == "awaiting_approval" and seen["task_id"] is None
        assert re.search(r"the user approves .* in the stem view", text_of(quoted)), text_of(quoted)
        hidden = {s for s in strings(quoted.meta) if len(s) >= 16}
        offer = (quoted.meta or {})[QUOTE]
        assert {offer["id"], offer["approval"]} <= hidden
        readable = json.dumps(wire(quoted)["content"]) + json.dumps(quoted.structured_content)
        assert [s for s in hidden if s in readable] == []
        assert posts(sandbox) == []

        # 2. The model calls every tool with what it has seen, and asks again (with force_new too): still nothing.
        answers = {}
        for name, arguments in model_calls(seen, set(tools)):
            answers[(name, json.dumps(arguments))] = await client.call_tool(name, arguments)
        for (name, arguments), answer in answers.items():
            if name in ("confirm_extraction", "upload_audio"):
                assert answer.is_error and "stem view" in text_of(answer), (name, arguments, text_of(answer))
        again = [
            await client.call_tool("extract_stems", args),
            await client.call_tool("extract_stems", {**args, "force_new": True}),
        ]
        assert [(a.meta or {})[QUOTE]["id"] for a in again] == [offer["id"]] * 2
        assert posts(sandbox) == []

        # 3. The view names the song; its approve button, clicked twice, makes one POST with that audio_url.
        view = await host.render(args, quoted, capabilities=CLAUDE_LIKE)
        await host.until("s.phase === 'quote'", timeout=10_000)
        shown = await view.locator("#quote").inner_text()
        assert URL in shown and "vocals, drums, bass" in shown and "Cost" in shown, shown
        approve = view.get_by_role("button", name=APPROVE)
        assert await approve.is_enabled()
        await screenshot(host, tmp_path, "quote.png")
        await approve.click(click_count=2)
        await host.until("s.phase === 'ready'")
        [post] = posts(sandbox)
        assert post.fields["audio_url"] == URL and post.authorization == SECRET_KEY
        assert host.view_calls().count("confirm_extraction") == 1  # the view sent one approval, not two
        task_id = (await host.state())["taskId"]
        assert task_id in sandbox.state.jobs

        # 4. The stems, each with a save button; saving sends ui/download-file with the stem's very bytes.
        assert [x["name"] for x in (await host.state())["stems"]] == stems
        await view.get_by_role("button", name="Save drums").click()
        [download] = await until_asked(host, "ui/download-file")
        [item] = download["contents"]
        assert item["type"] == "resource" and item["resource"]["mimeType"] == "audio/mpeg"
        assert item["resource"]["uri"] == "file:///night-drive-drums.mp3"
        assert base64.b64decode(item["resource"]["blob"]) == stem_mp3(sandbox.state.stem_seconds, STEMS.index("drums"))

        # 5. The model is told the task_id (on approval, and once the job is done), and list_extractions lists it.
        await until_asked(host, "ui/message")
        told = [(m, params) for m, params in host.calls if m in TELLS]
        assert [m for m, _ in told] == ["ui/update-model-context", "ui/update-model-context", "ui/message"]
        for _, params in told:
            assert task_id in json.dumps(params)
            assert [s for s in hidden if s in json.dumps(params)] == []  # never a token
        assert "finished and succeeded" in told[-1][1]["content"][0]["text"]
        listed = structured(await client.call_tool("list_extractions", {}))
        assert [e["task_id"] for e in listed["extractions"]] == [task_id]
    assert_only_bridge_traffic(host)
    assert len(posts(sandbox)) == 1


def header_mode(sandbox: Sandbox) -> Any:
    sandbox.state.accept_any_key = True
    return dataclasses.replace(remote(sandbox, auth="header"), api_key=None)  # callers pay with their own keys


async def test_issue_20_a_remote_user_picks_their_song_in_the_view(
    sandbox: Sandbox, browser: Any, tmp_path: Path
) -> None:
    sandbox.state.eta = 1
    wav = wav_tone(9.1, 440.0)  # 0.4 MB (mono 16-bit at 22,050 Hz: 44,100 bytes a second)
    song = tmp_path / "Morning Take 3.wav"
    song.write_bytes(wav)
    args = {"stems": ["vocals", "drums"]}
    with serve_http(header_mode(sandbox)) as server:
        async with (
            connect_http(server.url, key=KEY_A, **renders_apps()) as as_a,
            open_host(as_a, browser) as host,
        ):
            tools = {t.name: t for t in (await as_a.list_tools()).tools}
            # 1. No song named: no error, nothing sent, the view linked (it asks for the song).
            asked = await as_a.call_tool("extract_stems", args)
            assert not asked.is_error, text_of(asked)
            assert structured(asked)["state"] == "awaiting_audio"
            assert (tools["extract_stems"].meta or {})["ui"]["resourceUri"] == player.URI
            assert posts(sandbox) == []

            # 2. The file picked in the view, named in its quote, approved twice: one POST of those bytes, A's key.
            view = await host.render(args, asked, capabilities=NO_DOWNLOADS)
            await host.until("s.phase === 'picking'", timeout=10_000)
            picker = view.locator("input[type=file]")
            assert await picker.count() == 1
            await screenshot(host, tmp_path, "picker.png")
            await picker.set_input_files(str(song))
            await host.until("s.phase === 'quote'")
            assert "Morning Take 3.wav" in await view.locator("#quote").inner_text()
            await view.get_by_role("button", name=APPROVE).click(click_count=2)
            await host.until("s.phase === 'ready'")
            # A host without downloadFile, a server without an output folder: no way to save, so no button.
            assert await view.get_by_role("button", name=re.compile("save", re.IGNORECASE)).count() == 0
            task_id = (await host.state())["taskId"]
            mine = structured(await as_a.call_tool("list_extractions", {}))
        async with connect_http(server.url, key=KEY_B) as as_b:
            theirs = structured(await as_b.call_tool("list_extractions", {}))
    [post] = posts(sandbox)
    [part] = post.files
    assert (part.field, part.filename, part.content_type) == ("audio_file", song.name, "audio/wav")
    assert part.sha256 == hashlib.sha256(wav).hexdigest() and part.size == len(wav)
    assert post.authorization == KEY_A
    assert host.view_calls().count("confirm_extraction") == 1
    assert_only_bridge_traffic(host)  # the view reached nothing itself: its CSP declares no origin
    assert [e["task_id"] for e in mine["extractions"]] == [task_id]
    assert theirs["extractions"] == []


async def test_issue_20_a_file_attached_in_chatgpt_is_fetched_by_musicgpt(sandbox: Sandbox) -> None:
    attached = {
        "download_url": "https://files.oaiusercontent.com/file-abc123/Lullaby.mp3?sig=x",
        "file_id": "file-abc123",
        "file_name": "Lullaby.mp3",
        "mime_type": "audio/mpeg",
    }
    with serve_http(header_mode(sandbox)) as server:
        async with connect_http(server.url, key=KEY_A) as client:  # neither Apps nor elicitation
            tool = next(t for t in (await client.list_tools()).tools if t.name == "extract_stems")
            submitted = structured(await client.call_tool("extract_stems", {"file": attached, "stems": ["vocals"]}))
    [param] = (tool.meta or {})["openai/fileParams"]
    assert "audio_url" in tool.input_schema["properties"][param]["description"]
    [post] = posts(sandbox)
    assert post.fields["audio_url"] == attached["download_url"] and post.files == ()
    assert post.authorization == KEY_A
    assert submitted["state"] == "submitted" and submitted["source"] == "Lullaby.mp3"


async def test_an_expired_quote_says_so_and_pays_nothing(
    sandbox: Sandbox, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quotes, "QUOTE_TTL", 4.0)
    args = {"audio_url": URL}
    async with studio_client(sandbox) as client, open_host(client, browser) as host:
        quoted = await client.call_tool("extract_stems", args)
        view = await host.render(args, quoted, capabilities=CLAUDE_LIKE)
        await host.until("s.phase === 'quote' || s.phase === 'expired'", timeout=10_000)
        assert URL in await view.locator("#quote").inner_text()
        await host.until("s.phase === 'expired'", timeout=15_000)
        status = (await host.state())["status"]
        assert re.fullmatch(r"This quote expired at \d\d:\d\d( [AP]M)?: nothing was spent\. .+", status), status
        approve = view.get_by_role("button", name=APPROVE)
        assert await approve.is_disabled()
        await approve.click(force=True)  # a disabled button sends nothing
        # And the server agrees, once its clock has passed the expiry too (the view's, to the second, may be ahead).
        expires = datetime.fromisoformat(structured(quoted)["expires_at"]).timestamp()
        await anyio.sleep(max(0.0, expires + 1.1 - time.time()))
        offer = (quoted.meta or {})[QUOTE]
        late = await client.call_tool("confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]})
    assert late.is_error and "expired" in text_of(late)
    assert "confirm_extraction" not in host.view_calls()
    assert posts(sandbox) == []


async def test_cancel_in_one_view_and_the_other_shows_why_it_cannot_approve(sandbox: Sandbox, browser: Any) -> None:
    args = {"audio_url": URL, "stems": ["vocals"]}
    async with studio_client(sandbox) as client, open_host(client, browser) as one, open_host(client, browser) as two:
        quoted = await client.call_tool("extract_stems", args)
        hidden = {s for s in strings(quoted.meta) if len(s) >= 16}
        for host in (one, two):
            await host.render(args, quoted, capabilities=CLAUDE_LIKE)
            await host.until("s.phase === 'quote'", timeout=10_000)
        await one.view.get_by_role("button", name="Cancel").click()
        await one.until("s.phase === 'cancelled'", timeout=10_000)
        assert (await one.state())["status"] == "Cancelled: nothing was submitted and nothing was spent."
        assert await one.view.get_by_role("button", name=APPROVE).is_disabled()
        [context] = await until_asked(one, "ui/update-model-context")
        assert "cancelled" in json.dumps(context) and [s for s in hidden if s in json.dumps(context)] == []

        await two.view.get_by_role("button", name=APPROVE).click()
        await two.view.locator("#error").wait_for(state="visible", timeout=10_000)
        assert "cancelled in the view" in await two.view.locator("#error").inner_text()
        assert await two.view.get_by_role("button", name=APPROVE).is_disabled()  # nothing left to approve
    assert posts(sandbox) == []


async def test_a_quote_approved_in_two_open_views_buys_one_job(sandbox: Sandbox, browser: Any) -> None:
    sandbox.state.eta = 1
    sandbox.state.submit_delay = 0.5  # the second approval arrives while the first POST is in the air
    args = {"audio_url": URL, "stems": ["bass", "piano"]}
    async with studio_client(sandbox) as client, open_host(client, browser) as one, open_host(client, browser) as two:
        quoted = await client.call_tool("extract_stems", args)
        for host in (one, two):
            await host.render(args, quoted, capabilities=CLAUDE_LIKE)
            await host.until("s.phase === 'quote'", timeout=10_000)
        async with anyio.create_task_group() as tg:
            for host in (one, two):
                tg.start_soon(host.view.get_by_role("button", name=APPROVE).click)
        for host in (one, two):
            await host.until("s.phase === 'ready'")
        ids = {(await host.state())["taskId"] for host in (one, two)}
    assert [host.view_calls().count("confirm_extraction") for host in (one, two)] == [1, 1]
    assert len(posts(sandbox)) == 1 and len(ids) == 1 and ids <= set(sandbox.state.jobs)


async def drop(view: Any, path: Path) -> None:
    """Drop a file on the view's drop zone, as a drag from the desktop does."""
    await view.evaluate(
        """([name, b64]) => {
             const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
             const files = new DataTransfer();
             files.items.add(new File([bytes], name, { type: "audio/wav" }));
             document.getElementById("drop").dispatchEvent(
               new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true }));
           }""",
        [path.name, base64.b64encode(path.read_bytes()).decode()],
    )


async def test_the_picker_refuses_a_file_too_big_and_sends_another_in_slices(
    sandbox: Sandbox, browser: Any, tmp_path: Path
) -> None:
    sandbox.state.eta = 1
    too_big, song = tmp_path / "Too Big.wav", tmp_path / "Long Take.wav"
    too_big.write_bytes(wav_tone(40.0, 220.0))  # 1.76 MB
    wav = wav_tone(24.0, 330.0)  # 1.06 MB: three slices of at most 512 KiB
    song.write_bytes(wav)
    async with studio_client(sandbox, max_upload_bytes=1_400_000) as client, open_host(client, browser) as host:
        view = await host.show("extract_stems", {"stems": ["bass"]}, capabilities=CLAUDE_LIKE)
        await host.until("s.phase === 'picking'", timeout=10_000)
        await drop(view, too_big)
        await view.locator("#error").wait_for(state="visible", timeout=5000)
        refused = await view.locator("#error").inner_text()
        assert refused == (
            "Too Big.wav is 1.7 MB; this server takes songs of up to 1.3 MB. Pick a shorter or compressed file "
            "(an MP3, say)."
        )
        assert "upload_audio" not in host.view_calls()

        await view.evaluate(
            """() => { window.statuses = [];
                       new MutationObserver(() => statuses.push(document.getElementById('status').textContent))
                         .observe(document.getElementById('status'), { childList: true, subtree: true }); }"""
        )
        await view.locator("input[type=file]").set_input_files(str(song))
        await host.until("s.phase === 'quote'")
        assert "Long Take.wav" in await view.locator("#quote").inner_text()
        slices = [params["arguments"] for method, params in host.calls if params.get("name") == "upload_audio"]
        assert [(s["offset"], len(base64.b64decode(s["data"]))) for s in slices] == [
            (0, 524288), (524288, 524288), (1048576, len(wav) - 1048576)
        ]  # fmt: skip
        assert b"".join(base64.b64decode(s["data"]) for s in slices) == wav
        statuses = await view.evaluate("statuses")
        assert statuses[:3] == [
            "Sending Long Take.wav: 0 KB of 1.0 MB (0%)…",
            "Sending Long Take.wav: 512 KB of 1.0 MB (49%)…",
            "Sending Long Take.wav: 1.0 MB of 1.0 MB (99%)…",
        ], statuses
        await view.get_by_role("button", name=APPROVE).click()
        await host.until("s.phase === 'ready'")
    [post] = posts(sandbox)
    assert post.files[0].sha256 == hashlib.sha256(wav).hexdigest() and post.files[0].filename == "Long Take.wav"


async def test_without_download_file_the_view_saves_through_the_server(
    sandbox: Sandbox, browser: Any, tmp_path: Path
) -> None:
    sandbox.state.eta = 1
    out = tmp_path / "out"
    args = {"audio_url": URL, "stems": ["vocals", "guitar"]}
    async with studio_client(sandbox, output_dir=out) as client, open_host(client, browser) as host:
        view = await host.show("extract_stems", args, capabilities=NO_DOWNLOADS)
        await host.until("s.phase === 'quote'", timeout=10_000)
        await view.get_by_role("button", name=APPROVE).focus()
        await host.page.keyboard.press(" ")  # the player's Space (play/pause) leaves the quote's buttons alone
        await host.until("s.phase === 'ready'")
        assert await view.locator("button.save").count() == 0  # the host cannot save a file
        await view.get_by_role("button", name="Save to the output folder").click()
        await view.locator("#saved").wait_for(state="visible", timeout=20_000)
        saved = await view.locator("#saved").inner_text()
    task_id = next(iter(sandbox.state.jobs))
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    assert saved == f"Saved 2 files in {folder}."
    for stem in ("vocals", "guitar"):
        assert (folder / f"{stem}.mp3").read_bytes() == stem_mp3(sandbox.state.stem_seconds, STEMS.index(stem))
    assert host.view_calls().count("download_stems") == 1
    assert task_id in json.dumps(host.asked("ui/update-model-context"))


async def test_with_confirm_never_a_picked_song_is_sent_at_once_and_followed(
    sandbox: Sandbox, browser: Any, tmp_path: Path
) -> None:
    sandbox.state.eta = 1
    song = tmp_path / "Demo.wav"
    song.write_bytes(wav_tone(2.0, 440.0))
    async with studio_client(sandbox, confirm="never") as client, open_host(client, browser) as host:
        view = await host.show("extract_stems", {"stems": ["vocals"]}, capabilities=CLAUDE_LIKE)
        await host.until("s.phase === 'picking'", timeout=10_000)
        await view.locator("input[type=file]").set_input_files(str(song))
        await host.until("s.phase === 'ready'")
        [context, *_] = await until_asked(host, "ui/update-model-context")
        task_id = (await host.state())["taskId"]
    assert "confirm_extraction" not in host.view_calls()  # nobody was asked: no quote to approve
    [post] = posts(sandbox)
    assert post.files[0].filename == "Demo.wav" and task_id in sandbox.state.jobs
    assert context["content"][0]["text"].startswith("The user picked Demo.wav in the stem view: it was submitted.")
