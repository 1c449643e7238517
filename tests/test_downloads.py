"""download_stems: files on disk, safely, whatever the storage server does."""

from __future__ import annotations

import os
import wave
from pathlib import Path
from typing import Any

import anyio
import pytest

from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import SECRET_KEY, connect, make_settings
from .test_status import submit, text_of

pytestmark = pytest.mark.anyio


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]


async def test_download_mp3_and_wav(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals", "drums", "bass"])
        mp3 = await client.call_tool("download_stems", {"task_id": task_id})
        wav = await client.call_tool("download_stems", {"task_id": task_id, "format": "wav", "stems": ["drums"]})
    assert not mp3.is_error, mp3.content
    assert not wav.is_error, wav.content
    s = mp3.structured_content
    assert s is not None
    directory = out / f"My Song (demo) - {task_id[:8]}"
    assert s["directory"] == str(directory)
    assert [f["stem"] for f in s["files"]] == ["vocals", "drums", "bass"]
    for f in s["files"]:
        path = Path(f["path"])
        assert path.parent == directory
        assert path.name == f"{f['stem']}.mp3"
        assert path.stat().st_size == f["bytes"]
        assert path.read_bytes()[:2] == b"\xff\xfb"  # an MPEG audio frame
        assert f["already_present"] is False
    links = [b for b in mp3.content if b.type == "resource_link"]
    assert [(link.name, link.mime_type) for link in links] == [
        ("vocals.mp3", "audio/mpeg"),
        ("drums.mp3", "audio/mpeg"),
        ("bass.mp3", "audio/mpeg"),
    ]
    assert str(links[0].uri) == (directory / "vocals.mp3").as_uri()
    assert links[0].size == s["files"][0]["bytes"]

    w = wav.structured_content
    assert w is not None
    [drums] = w["files"]
    with wave.open(drums["path"]) as audio:  # playable
        assert audio.getnframes() > 0
        assert audio.getnchannels() == 1
    # Storage URLs never get the key.
    assert sandbox.state.downloads
    assert all(d.authorization is None for d in sandbox.state.downloads)
    assert SECRET_KEY not in text_of(mp3) + text_of(wav)
    assert leftovers(out) == []


async def test_not_finished_suggests_waiting(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    sandbox.state.eta = 60
    async with connect(make_settings(sandbox, output_dir=tmp_path)) as client:
        task_id = await submit(client, song)
        result = await client.call_tool("download_stems", {"task_id": task_id})
    assert result.is_error
    assert text_of(result).endswith(
        f"Extraction {task_id} is not finished yet (status IN_QUEUE). Call get_extraction with "
        f"task_id='{task_id}' and wait_seconds=50 to wait for it, then download_stems again."
    )
    assert sandbox.state.downloads == []


async def test_existing_files_are_not_clobbered(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals"])
        directory = out / f"My Song (demo) - {task_id[:8]}"
        directory.mkdir(parents=True)
        mine = directory / "vocals.mp3"
        mine.write_bytes(b"my own recording")
        first = await client.call_tool("download_stems", {"task_id": task_id})
        second = await client.call_tool("download_stems", {"task_id": task_id})
    assert mine.read_bytes() == b"my own recording"
    f1 = first.structured_content["files"][0]  # type: ignore[index]
    f2 = second.structured_content["files"][0]  # type: ignore[index]
    assert f1["path"] == str(directory / "vocals (2).mp3")
    assert f1["already_present"] is False
    # Downloading again finds the identical file and keeps it: idempotent, no pile of copies.
    assert f2["path"] == f1["path"]
    assert f2["already_present"] is True
    assert sorted(p.name for p in directory.iterdir()) == ["vocals (2).mp3", "vocals.mp3"]


def files_of(result: Any) -> dict[str, dict[str, Any]]:
    assert not result.is_error, text_of(result)
    return {f["stem"]: f for f in result.structured_content["files"]}


async def test_a_repeated_download_fetches_nothing_that_is_still_as_saved(
    sandbox: Sandbox, song: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals", "drums", "bass"])
        first = files_of(await client.call_tool("download_stems", {"task_id": task_id}))
        fetched = len(sandbox.state.downloads)
        again = await client.call_tool("download_stems", {"task_id": task_id})
        assert len(sandbox.state.downloads) == fetched  # not one stem fetched
        second = files_of(again)
        assert list(second) == ["vocals", "drums", "bass"]
        for stem, f in second.items():
            assert (f["path"], f["bytes"], f["already_present"]) == (first[stem]["path"], first[stem]["bytes"], True)
        assert "(already there, identical)" in text_of(again)

        # Changed (same size: only the recorded hash tells), deleted, and one left alone.
        vocals, drums = Path(first["vocals"]["path"]), Path(first["drums"]["path"])
        changed = bytearray(vocals.read_bytes())
        changed[-1] ^= 0xFF
        vocals.write_bytes(bytes(changed))
        drums.unlink()
        third = files_of(await client.call_tool("download_stems", {"task_id": task_id}))
        refetched = sorted(d.path.rsplit("/", 1)[-1] for d in sandbox.state.downloads[fetched:])
        assert refetched == ["drums.mp3", "vocals.mp3"]
        # The changed file is the user's now: kept, and the stem saved beside it.
        assert vocals.read_bytes() == bytes(changed)
        assert (third["vocals"]["path"], third["vocals"]["already_present"]) == (
            str(vocals.with_name("vocals (2).mp3")),
            False,
        )
        assert (third["drums"]["path"], third["drums"]["already_present"]) == (str(drums), False)
        assert third["bass"]["already_present"] is True

        # What was fetched again is recorded too: a fourth call fetches nothing.
        fetched = len(sandbox.state.downloads)
        fourth = files_of(await client.call_tool("download_stems", {"task_id": task_id}))
    assert len(sandbox.state.downloads) == fetched
    assert {stem: f["path"] for stem, f in fourth.items()} == {stem: f["path"] for stem, f in third.items()}
    assert all(f["already_present"] for f in fourth.values())


async def test_a_repeated_download_elsewhere_or_in_another_format_fetches_again(
    sandbox: Sandbox, song: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals"])
        files_of(await client.call_tool("download_stems", {"task_id": task_id}))
        elsewhere = files_of(await client.call_tool("download_stems", {"task_id": task_id, "output_dir": "mine"}))
        wav = files_of(await client.call_tool("download_stems", {"task_id": task_id, "format": "wav"}))
    assert len(sandbox.state.downloads) == 3
    assert elsewhere["vocals"]["path"] == str(out.resolve() / "mine" / "vocals.mp3")
    assert wav["vocals"]["path"].endswith("vocals.wav")


async def test_output_dir_outside_root_is_refused(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    music = tmp_path / "music"
    music.mkdir()
    song = song.rename(music / song.name)
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=root, allowed_dirs=(music,))) as client:
        task_id = await submit(client, song, ["vocals"])
        outside = await client.call_tool("download_stems", {"task_id": task_id, "output_dir": str(tmp_path / "else")})
        escape = await client.call_tool("download_stems", {"task_id": task_id, "output_dir": str(root / ".." / "x")})
        inside = await client.call_tool("download_stems", {"task_id": task_id, "output_dir": str(root / "mine")})
    for result in (outside, escape):
        assert result.is_error
        assert f"is outside the allowed output folder {root.resolve()} (or inside {music})." in text_of(result)
        assert "MUSICGPT_MCP_OUTPUT_DIR" in text_of(result)
    assert not inside.is_error, inside.content
    assert (root / "mine" / "vocals.mp3").is_file()
    assert not (tmp_path / "else").exists()
    assert not (tmp_path / "x").exists()


async def test_output_dir_may_be_an_allowed_folder_but_not_through_a_link(
    sandbox: Sandbox, song: Path, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    music.mkdir()
    song = song.rename(music / song.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (music / "link").symlink_to(elsewhere)
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "root", allowed_dirs=(music,))) as client:
        task_id = await submit(client, song, ["vocals"])
        beside = await client.call_tool("download_stems", {"task_id": task_id, "output_dir": str(music / "stems")})
        via_link = await client.call_tool("download_stems", {"task_id": task_id, "output_dir": str(music / "link")})
    assert not beside.is_error, beside.content
    assert (music / "stems" / "vocals.mp3").is_file()
    assert via_link.is_error
    assert "is outside the allowed output folder" in text_of(via_link)
    assert list(elsewhere.iterdir()) == []


async def test_hostile_stem_map(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals", "drums"])
        good = f"{sandbox.origin}/files/{task_id}/drums.mp3"
        sandbox.state.jobs[task_id].mp3_override = {
            "../../x": good,
            "drums": good,
            "vocals": "file:///etc/passwd",
            "bass": "ftp://example.com/bass.mp3",
        }
        status = await client.call_tool("get_extraction", {"task_id": task_id})
        result = await client.call_tool("download_stems", {"task_id": task_id})
    s = status.structured_content
    assert s is not None
    assert set(s["stems"]) == {"drums", "vocals"}  # vocals keeps its (good) wav URL only
    assert s["stems"]["vocals"]["mp3_url"] is None
    assert len(s["ignored"]) == 3
    d = result.structured_content
    assert d is not None
    assert [f["stem"] for f in d["files"]] == ["drums"]
    reasons = {k["stem"]: k["reason"] for k in d["skipped"]}
    assert reasons["../../x"] == "not a stem MusicGPT documents; ignored"
    assert reasons["vocals"] == "its URL is not http(s) (file); not fetched"
    assert reasons["bass"] == "its URL is not http(s) (ftp); not fetched"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "My Song (demo).wav",
        f"out/My Song (demo) - {task_id[:8]}/drums.mp3",
    ]


async def test_huge_file_is_stopped_and_discarded(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out, max_download_bytes=1_000_000)) as client:
        task_id = await submit(client, song, ["vocals"])
        sandbox.state.queue_fault("download", Fault(action="stream", size=50_000_000))
        declared = await client.call_tool("download_stems", {"task_id": task_id})
        sandbox.state.queue_fault("download", Fault(action="stream", size=50_000_000, declare_length=False))
        undeclared = await client.call_tool("download_stems", {"task_id": task_id})
    assert declared.is_error
    assert "the file is 50000000 bytes, over the 1000000-byte limit (MUSICGPT_MCP_MAX_DOWNLOAD_MB)" in text_of(declared)
    assert undeclared.is_error
    assert "the file grew past the 1000000-byte limit" in text_of(undeclared)
    assert [p for p in out.rglob("*") if p.is_file()] == []


async def test_truncated_download_is_retried(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals"])
        sandbox.state.queue_fault("download", Fault(action="truncate", size=1000))
        result = await client.call_tool("download_stems", {"task_id": task_id})
    assert not result.is_error, result.content
    [f] = result.structured_content["files"]  # type: ignore[index]
    assert f["bytes"] == Path(f["path"]).stat().st_size > 1000
    assert len(sandbox.state.downloads) == 2
    assert leftovers(out) == []


async def test_a_download_retried_after_writing_records_the_hash_of_the_file_saved(
    sandbox: Sandbox, song: Path, tmp_path: Path
) -> None:
    """The first try writes more than a batch (1 MiB) before the connection drops; the retry starts the file,
    and its hash, again. Were the first try's bytes hashed too, the repeat would not recognise the file."""
    out = tmp_path / "out"
    sandbox.state.eta = 0
    sandbox.state.stem_seconds = 40.0  # a WAV stem of about 1.8 MB
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals"])
        sandbox.state.queue_fault("download", Fault(action="truncate", size=1536 * 1024))
        first = files_of(await client.call_tool("download_stems", {"task_id": task_id, "format": "wav"}))
        again = files_of(await client.call_tool("download_stems", {"task_id": task_id, "format": "wav"}))
    assert first["vocals"]["bytes"] > 1536 * 1024
    assert len(sandbox.state.downloads) == 2  # the truncated try and the retry; none for the repeat
    assert again["vocals"]["already_present"] is True


async def test_always_truncated_download_leaves_nothing(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals"])
        sandbox.state.queue_fault("download", Fault(action="truncate", size=1000), times=10)
        result = await client.call_tool("download_stems", {"task_id": task_id})
    assert result.is_error
    assert "Downloading the stem failed after retries" in text_of(result)
    assert [p for p in out.rglob("*") if p.is_file()] == []


async def test_interrupted_download_leaves_nothing(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals", "drums"])
        sandbox.state.queue_fault("download", Fault(status=200, action="hang", delay=30), times=2)
        with anyio.move_on_after(1.0):
            await client.call_tool("download_stems", {"task_id": task_id})
        await anyio.sleep(0.3)
        directory = out / f"My Song (demo) - {task_id[:8]}"
        assert directory.is_dir()  # the download had started
        assert list(directory.iterdir()) == []


async def test_missing_stem_is_named(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task_id = await submit(client, song, ["vocals"])
        result = await client.call_tool("download_stems", {"task_id": task_id, "stems": ["piano"]})
    assert result.is_error
    assert text_of(result).endswith(
        f"Extraction {task_id} has no mp3 file for piano. Stems available as mp3: vocals. Nothing was downloaded."
    )


async def test_output_dir_that_is_a_file(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "taken").write_bytes(b"a file, not a folder")
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals"])
        result = await client.call_tool("download_stems", {"task_id": task_id, "output_dir": str(out / "taken")})
    assert result.is_error
    assert text_of(result).endswith(
        f"Could not write to {out / 'taken'}: File exists. Check that the folder is writable and the disk has "
        "space, or set MUSICGPT_MCP_OUTPUT_DIR to another folder."
    )


async def test_terminated_server_leaves_no_partial_file(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    """A host stopping the server (SIGTERM) mid-download: the temporary file goes too."""
    import contextlib
    import signal

    from mcp import Client
    from mcp.shared.exceptions import MCPError

    from .test_stdio import server_params

    out = tmp_path / "out"
    sandbox.state.eta = 0
    params = server_params(
        MUSICGPT_API_KEY=SECRET_KEY,
        MUSICGPT_BASE_URL=sandbox.base_url,
        MUSICGPT_MCP_OUTPUT_DIR=str(out),
        MUSICGPT_MCP_STORAGE_HOSTS=sandbox.netloc,
    )
    exited = False
    async with Client(params) as client:
        task_id = await submit(client, song, ["vocals"])
        directory = out / f"My Song (demo) - {task_id[:8]}"
        # The storage server answers with headers, then stalls: the temporary file exists meanwhile.
        sandbox.state.queue_fault("download", Fault(status=200, action="hang", delay=60), times=4)

        async def download() -> None:
            with contextlib.suppress(MCPError):  # the server goes away mid-call, as intended
                await client.call_tool("download_stems", {"task_id": task_id})

        async with anyio.create_task_group() as tg:
            tg.start_soon(download)
            with anyio.fail_after(10):
                while not (directory.is_dir() and any(directory.iterdir())):
                    await anyio.sleep(0.05)
            pid = _server_pid()
            os.kill(pid, signal.SIGTERM)
            with anyio.fail_after(10):
                while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
                    await anyio.sleep(0.05)
            exited = True
            tg.cancel_scope.cancel()
    assert exited
    assert list(directory.iterdir()) == []


def _server_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"musicgpt_mcp" in cmdline:
                return int(entry.name)
    raise AssertionError("server process not found")
