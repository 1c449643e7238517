"""The player's server side, through the protocol: the ui:// view, the tools linked to it, and read_stem_audio.

The view itself runs in a real browser in test_player.py.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.extension import advertise

from musicgpt_mcp import player
from musicgpt_mcp.catalog import STEMS
from musicgpt_mcp.sandbox import Fault, Sandbox
from musicgpt_mcp.sandbox.audio import stem_mp3, stem_wav
from musicgpt_mcp.server import create_server
from musicgpt_mcp.stem_cache import StemCache

from .conftest import SECRET_KEY, connect, make_settings
from .test_status import submit, text_of

pytestmark = pytest.mark.anyio

APPS = "io.modelcontextprotocol/ui"
APP_MIME = "text/html;profile=mcp-app"


def apps_client(settings: Any) -> Client:
    """A client that says it renders MCP Apps, as Claude or VS Code do."""
    return Client(
        create_server(settings), raise_exceptions=True, extensions=[advertise(APPS, {"mimeTypes": [APP_MIME]})]
    )


async def read_all(client: Client, task_id: str, stem: str, fmt: str, length: int) -> tuple[bytes, list[Any]]:
    data, offset, slices = b"", 0, []
    while True:
        result = await client.call_tool(
            "read_stem_audio", {"task_id": task_id, "stem": stem, "format": fmt, "offset": offset, "length": length}
        )
        assert not result.is_error, text_of(result)
        slices.append(result)
        chunk = result.structured_content
        assert chunk is not None
        piece = base64.b64decode(chunk["data"])
        assert chunk["offset"] == offset and chunk["length"] == len(piece) <= length
        data += piece
        offset += len(piece)
        if chunk["eof"]:
            assert offset == chunk["total_bytes"]
            return data, slices


async def test_the_view_is_a_ui_resource_linked_from_the_tools(sandbox: Sandbox) -> None:
    async with apps_client(make_settings(sandbox)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert APPS in (client.server_capabilities.extensions or {})
        read = await client.read_resource(player.URI)
    assert tools["get_extraction"].meta == {"ui": {"resourceUri": player.URI, "visibility": ["model", "app"]}}
    # The view shows what download_stems saved, and may call it to save the stems when the host cannot.
    assert tools["download_stems"].meta == {"ui": {"resourceUri": player.URI, "visibility": ["model", "app"]}}
    # read_stem_audio is for the view only: a host keeps it out of the model's tool list.
    assert tools["read_stem_audio"].meta == {"ui": {"resourceUri": player.URI, "visibility": ["app"]}}
    # The view shows extract_stems' result too: a quote to approve, a song to pick, then the job.
    assert tools["extract_stems"].meta == {
        "ui": {"resourceUri": player.URI, "visibility": ["model"]},
        "anthropic/requiresUserInteraction": True,
        "openai/fileParams": ["file"],
    }
    for view_only in ("confirm_extraction", "upload_audio"):
        assert tools[view_only].meta == {"ui": {"resourceUri": player.URI, "visibility": ["app"]}}
    [content] = read.contents
    assert content.mime_type == APP_MIME
    # No origin allowed: the view never reaches the network itself.
    assert content.meta == {"ui": {"csp": {"connectDomains": [], "resourceDomains": []}, "prefersBorder": True}}
    html = content.text  # type: ignore[union-attr]
    assert len(html.encode()) < 80 * 1024
    assert html.lstrip().lower().startswith("<!doctype html>")
    # Self-contained: nothing loaded from anywhere (no src/href attributes, no CSS url() or @import).
    assert not re.search(r"\s(src|href)\s*=|url\(|@import", html)


async def test_read_stem_audio_returns_the_stem_in_bounded_slices_fetched_once(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song, ["vocals", "drums"])
        sandbox.state.clear_records()
        data, slices = await read_all(client, task_id, "drums", "mp3", 1000)
    assert data == stem_mp3(sandbox.state.stem_seconds, STEMS.index("drums"))
    assert len(slices) == -(-len(data) // 1000) > 5
    for result in slices:
        assert result.structured_content["source"] == "fetched"
        assert result.structured_content["mime_type"] == "audio/mpeg"
        # What a model could see stays one short line; the audio is only in structured content.
        [block] = result.content
        assert block.type == "text" and len(block.text) < 80, block.text
        assert result.structured_content["data"][:40] not in block.text
    # Many slices, one download (and never with the key).
    assert [d.path for d in sandbox.state.downloads] == [f"/files/{task_id}/drums.mp3"]
    assert sandbox.state.downloads[0].authorization is None
    assert SECRET_KEY not in str([s.content for s in slices])


async def test_read_stem_audio_slices_are_at_most_512_kib(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.eta = 0
    sandbox.state.stem_seconds = 15.0  # a 660 KB WAV
    async with connect(make_settings(sandbox)) as client:
        task_id = await submit(client, song, ["bass"])
        first = await client.call_tool("read_stem_audio", {"task_id": task_id, "stem": "bass", "format": "wav"})
        too_long = await client.call_tool(
            "read_stem_audio", {"task_id": task_id, "stem": "bass", "format": "wav", "length": 512 * 1024 + 1}
        )
        data, _ = await read_all(client, task_id, "bass", "wav", 512 * 1024)
    chunk = first.structured_content
    assert chunk is not None
    assert chunk["length"] == 512 * 1024 and chunk["eof"] is False and chunk["mime_type"] == "audio/wav"
    assert chunk["total_bytes"] == len(stem_wav(15.0, STEMS.index("bass")))
    assert too_long.is_error
    assert data == stem_wav(15.0, STEMS.index("bass"))


async def test_read_stem_audio_explains_what_cannot_be_played(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox)) as client:
        running = await submit(client, song, ["vocals"])
        not_yet = await client.call_tool("read_stem_audio", {"task_id": running, "stem": "vocals"})
        sandbox.state.eta = 0
        failed = await submit(client, song, ["vocals"])
        sandbox.state.jobs[failed].fail_reason = "Audio too quiet to separate"
        failure = await client.call_tool("read_stem_audio", {"task_id": failed, "stem": "vocals"})
        done = await submit(client, song, ["vocals"])
        absent = await client.call_tool("read_stem_audio", {"task_id": done, "stem": "piano"})
        sandbox.state.queue_fault("download", Fault(status=403, body=b"<Error>AccessDenied</Error>"))
        refused = await client.call_tool("read_stem_audio", {"task_id": done, "stem": "vocals"})
        retried = await client.call_tool("read_stem_audio", {"task_id": done, "stem": "vocals"})
        past_end = await client.call_tool("read_stem_audio", {"task_id": done, "stem": "vocals", "offset": 10**9})
    assert not_yet.is_error
    assert text_of(not_yet).endswith(
        f"Extraction {running} is not finished yet (status IN_QUEUE); its stems cannot be played yet."
    )
    assert failure.is_error
    assert text_of(failure).endswith(
        f"Extraction {failed} FAILED: Audio too quiet to separate. It produced no stems to play."
    )
    assert absent.is_error
    assert text_of(absent).endswith(f"Extraction {done} has no mp3 file for piano. Stems available as mp3: vocals.")
    assert refused.is_error
    assert text_of(refused).endswith(
        "Could not fetch the vocals stem (mp3) from MusicGPT's storage: the storage server answered HTTP 403"
    )
    # A failed fetch leaves nothing cached: the next call fetches again, and succeeds.
    assert not retried.is_error and retried.structured_content["data"]  # type: ignore[index]
    assert past_end.is_error
    assert "offset 1000000000 is past the end of the vocals stem" in text_of(past_end)


async def test_a_saved_stem_is_read_from_its_file(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    """When download_stems saved the stem (the ledger remembers where), its file is what the view hears."""
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task_id = await submit(client, song, ["drums", "bass"])
        saved = await client.call_tool("download_stems", {"task_id": task_id, "format": "wav"})
        files = {f["stem"]: Path(f["path"]) for f in saved.structured_content["files"]}  # type: ignore[index]
        sandbox.state.clear_records()
        from_disk = await client.call_tool("read_stem_audio", {"task_id": task_id, "stem": "drums", "format": "wav"})
        assert sandbox.state.downloads == []  # nothing fetched: read from the saved file
        files["bass"].unlink()  # the user deleted it since
        gone = await client.call_tool("read_stem_audio", {"task_id": task_id, "stem": "bass", "format": "wav"})
    assert from_disk.structured_content["source"] == "saved"  # type: ignore[index]
    whole = base64.b64decode(from_disk.structured_content["data"])  # type: ignore[index]
    assert whole == files["drums"].read_bytes()[: len(whole)]
    # A saved file that has gone since is fetched again instead.
    assert gone.structured_content["source"] == "fetched"  # type: ignore[index]
    assert [d.path for d in sandbox.state.downloads] == [f"/files/{task_id}/bass.wav"]


async def test_get_extraction_adds_only_an_eta_for_hosts_with_apps(sandbox: Sandbox, song: Path) -> None:
    """A host without Apps gets exactly what it got before the player; one with Apps gets the same
    content and structured content, plus the ETA in the result's _meta for the view's countdown."""
    sandbox.state.eta = 30
    settings = make_settings(sandbox, confirm="never")  # the job itself, not a quote for the view to approve
    async with connect(settings) as plain, apps_client(settings) as rich:
        task_id = await submit(rich, song, ["vocals"])
        with_apps = await rich.call_tool("get_extraction", {"task_id": task_id})
        # The same job through a client without Apps (this process did not submit it: no ETA).
        without = await plain.call_tool("get_extraction", {"task_id": task_id})
        own = await submit(plain, song, ["vocals"])
        without_own = await plain.call_tool("get_extraction", {"task_id": own})
    # (In-process, the SDK stamps its serverInfo into every result's _meta; that is all there is.)
    assert own_meta(without) == own_meta(without_own) == {}
    assert "s left by MusicGPT's estimate" in text_of(without_own)
    meta = own_meta(with_apps)
    assert list(meta) == [player.ETA_META] and 25 <= meta[player.ETA_META] <= 30
    assert without.structured_content is not None and with_apps.structured_content is not None
    assert without.structured_content.pop("waited_seconds") < 5 > with_apps.structured_content.pop("waited_seconds")
    assert with_apps.structured_content == without.structured_content
    assert [b.type for b in with_apps.content] == [b.type for b in without.content] == ["text"]


def own_meta(result: Any) -> dict[str, Any]:
    return {k: v for k, v in (result.meta or {}).items() if k != "io.modelcontextprotocol/serverInfo"}


# --- the cache on its own ------------------------------------------------------------------------


async def test_cache_keeps_under_its_cap_dropping_the_least_recently_used(tmp_path: Path) -> None:
    cache = StemCache(root=tmp_path / "cache", max_bytes=2500)
    fetches: list[str] = []

    def writer(name: str, size: int) -> Any:
        async def fetch(sink: Any) -> int:
            fetches.append(name)
            sink.write(name.encode()[:1] * size)
            return size

        return fetch

    a = await cache.get("t", "vocals", "mp3", writer("a", 1000))
    b = await cache.get("t", "drums", "mp3", writer("b", 1000))
    os.utime(a, (1, 1))
    os.utime(b, (2, 2))
    assert await cache.get("t", "vocals", "mp3", writer("never", 1)) == a  # a hit: now the most recent
    c = await cache.get("t", "bass", "mp3", writer("c", 1000))
    assert fetches == ["a", "b", "c"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([a.name, c.name])
    assert a.read_bytes() == b"a" * 1000 and c.read_bytes() == b"c" * 1000
    # A stem bigger than the whole cap is still served (and everything else makes way for it).
    big = await cache.get("t", "piano", "mp3", writer("p", 4000))
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [big.name]


async def test_cache_fetches_a_stem_once_however_many_ask(tmp_path: Path) -> None:
    cache = StemCache(root=tmp_path / "cache")
    calls = 0

    async def slow(sink: Any) -> int:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.2)
        sink.write(b"x" * 10)
        return 10

    paths: list[Path] = []

    async def one() -> None:
        paths.append(await cache.get("t", "vocals", "wav", slow))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert calls == 1 and len(set(paths)) == 1


async def test_cache_eviction_skips_files_that_vanish_while_it_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The player loads every stem at once: while one fetch evicts, another renames its temporary into
    place (or another process evicts). That once failed read_stem_audio with a bare "Error executing
    tool" (test_player.py, about 1 run in 20): the listing named a file that was gone when it was read."""
    cache = StemCache(root=tmp_path / "cache", max_bytes=2500)
    directory = cache.directory()
    other = directory / ".other-fetch.mp3.x.part"
    other.write_bytes(b"half")
    real_scandir = os.scandir

    def racing_scandir(path: Any) -> Any:
        entries = list(real_scandir(path))
        other.unlink()  # the other fetch finishes between the listing and the look at each file
        return iter(entries)

    async def fetch(sink: Any) -> int:
        sink.write(b"v" * 10)
        return 10

    monkeypatch.setattr(os, "scandir", racing_scandir)
    path = await cache.get("t", "vocals", "mp3", fetch)
    monkeypatch.undo()
    assert path.read_bytes() == b"v" * 10
    assert [p.name for p in directory.iterdir()] == [path.name]


async def test_cache_leaves_nothing_when_a_fetch_fails(tmp_path: Path) -> None:
    cache = StemCache(root=tmp_path / "cache")

    async def broken(sink: Any) -> int:
        sink.write(b"half a stem")
        raise OSError("connection lost")

    with pytest.raises(OSError, match="connection lost"):
        await cache.get("t", "vocals", "mp3", broken)
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership and modes")
async def test_cache_will_not_use_a_folder_others_can_enter(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    cache = StemCache(root=shared)
    assert cache.directory() != shared
    mode = cache.directory().stat().st_mode
    assert stat.S_IMODE(mode) == 0o700
    # Nor a link planted where the folder should be.
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    assert StemCache(root=tmp_path / "link").directory() != tmp_path / "link"


async def test_eviction_skips_files_another_process_removes_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is shared by the user's server processes: a temporary another one renames (or a stem it
    evicts) between this one's listing and its look is skipped, not a failed read_stem_audio."""
    cache = StemCache(root=tmp_path / "cache")
    directory = cache.directory()
    (directory / ".abc.mp3.x.part").write_bytes(b"x")
    (directory / "abc.mp3").write_bytes(b"y")
    listing = os.scandir

    def racing(path: Any) -> Any:
        entries = list(listing(path))
        for entry in entries:
            os.unlink(entry.path)
        return iter(entries)

    monkeypatch.setattr(os, "scandir", racing)
    cache.evict(directory / "keep.mp3")
    assert list(directory.iterdir()) == []
