"""Which local files may leave the machine. None of the refusals may produce a request."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mcp.types import ListRootsResult, Root

from musicgpt_mcp.sandbox import Sandbox

from . import audio_samples
from .conftest import connect, make_settings, wav_bytes
from .test_status import text_of

pytestmark = pytest.mark.anyio

PEM = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    music = tmp_path / "music"
    other = tmp_path / "other"
    music.mkdir()
    other.mkdir()
    (music / "song.wav").write_bytes(wav_bytes())
    (other / "secret.wav").write_bytes(wav_bytes())
    return {"music": music, "other": other}


async def refused(sandbox: Sandbox, path: str, client_options: dict[str, Any] | None = None, **settings: Any) -> str:
    async with connect(make_settings(sandbox, **settings), **(client_options or {})) as client:
        result = await client.call_tool("extract_stems", {"audio_file": path})
    assert result.is_error, result.structured_content
    assert sandbox.state.submits() == []
    text = text_of(result)
    assert text.endswith("Nothing was submitted.")
    return text


async def accepted(sandbox: Sandbox, path: str, client_options: dict[str, Any] | None = None, **settings: Any) -> None:
    async with connect(make_settings(sandbox, **settings), **(client_options or {})) as client:
        result = await client.call_tool("extract_stems", {"audio_file": path})
    assert not result.is_error, text_of(result)
    assert len(sandbox.state.submits()) == 1


async def test_outside_allowed_dirs(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    text = await refused(sandbox, str(layout["other"] / "secret.wav"), allowed_dirs=(layout["music"],))
    assert text.endswith(
        f"{(layout['other'] / 'secret.wav').resolve()} is outside the folders files may be read from "
        f"(MUSICGPT_MCP_ALLOWED_DIRS: {layout['music'].resolve()}). To send it, add its folder to "
        "MUSICGPT_MCP_ALLOWED_DIRS (separated by ':' or ';' on Windows) in the server's environment and restart "
        "the server. Nothing was submitted."
    )


async def test_inside_allowed_dirs(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    await accepted(sandbox, str(layout["music"] / "song.wav"), allowed_dirs=(layout["music"],))


async def test_symlink_escape(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    link = layout["music"] / "innocent.wav"
    link.symlink_to(layout["other"] / "secret.wav")
    text = await refused(sandbox, str(link), allowed_dirs=(layout["music"],))
    assert f"{link} is a link to {(layout['other'] / 'secret.wav').resolve()}, which is outside" in text


async def test_symlinked_folder_escape(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    (layout["music"] / "more").symlink_to(layout["other"])
    text = await refused(sandbox, str(layout["music"] / "more" / "secret.wav"), allowed_dirs=(layout["music"],))
    assert "is a link to" in text


async def test_dot_dot(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    text = await refused(sandbox, str(layout["music"] / ".." / "other" / "secret.wav"), allowed_dirs=(layout["music"],))
    assert "is outside the folders files may be read from" in text


async def test_dev_zero(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    assert "is outside the folders" in await refused(sandbox, "/dev/zero", allowed_dirs=(layout["music"],))
    # Even where /dev is allowed, a device is not a file.
    text = await refused(sandbox, "/dev/zero", allowed_dirs=(Path("/dev"),))
    assert text.endswith(
        "/dev/zero is not a regular file (it is a device, pipe or socket); give an audio file. Nothing was submitted."
    )


async def test_fifo(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    os.mkfifo(layout["music"] / "pipe.wav")
    text = await refused(sandbox, str(layout["music"] / "pipe.wav"), allowed_dirs=(layout["music"],))
    assert "is not a regular file" in text


async def test_directory(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    text = await refused(sandbox, str(layout["music"]), allowed_dirs=(layout["music"],))
    assert "is a directory" in text


async def test_empty(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    (layout["music"] / "empty.mp3").touch()
    text = await refused(sandbox, str(layout["music"] / "empty.mp3"), allowed_dirs=(layout["music"],))
    assert "is empty (0 bytes)" in text


async def test_oversize(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    big = layout["music"] / "big.wav"
    big.write_bytes(b"RIFF\x00\x00\x30\x00WAVEfmt " + bytes(3 * 1024 * 1024))
    text = await refused(sandbox, str(big), allowed_dirs=(layout["music"],), max_upload_bytes=2 * 1024 * 1024)
    assert text.endswith(
        f"{big} is 3.0 MB, over the 2 MB upload limit. Use a shorter or compressed file (e.g. mp3), or raise "
        "MUSICGPT_MCP_MAX_UPLOAD_MB in the server's environment. Nothing was submitted."
    )


async def test_private_key_renamed_to_mp3(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    fake = layout["music"] / "song.mp3"
    fake.write_bytes(PEM)
    text = await refused(sandbox, str(fake), allowed_dirs=(layout["music"],))
    assert text.startswith(
        f"Error executing tool extract_stems: {fake} does not look like an audio file (its first bytes match no audio format)"
    )


async def test_zip_renamed_to_wav(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    fake = layout["music"] / "song.wav"
    fake.write_bytes(b"PK\x03\x04" + bytes(100))
    text = await refused(sandbox, str(fake), allowed_dirs=(layout["music"],))
    assert "does not look like an audio file (its content looks like zip)" in text


def roots_callback(*roots: Path) -> Any:
    async def callback(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=root.as_uri(), name=root.name) for root in roots])  # type: ignore[arg-type]

    return callback


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_roots_offered_by_the_client(sandbox: Sandbox, layout: dict[str, Path], mode: str) -> None:
    options = {"list_roots_callback": roots_callback(layout["music"]), "mode": mode}
    text = await refused(sandbox, str(layout["other"] / "secret.wav"), options, allowed_dirs=None)
    assert f"(the MCP client's roots: {layout['music'].resolve()})" in text
    assert "open its folder as a workspace root in your MCP client" in text
    await accepted(sandbox, str(layout["music"] / "song.wav"), options, allowed_dirs=None)


async def test_configured_dirs_win_over_client_roots(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    options = {"list_roots_callback": roots_callback(layout["other"])}
    text = await refused(sandbox, str(layout["other"] / "secret.wav"), options, allowed_dirs=(layout["music"],))
    assert "(MUSICGPT_MCP_ALLOWED_DIRS:" in text


async def test_home_is_the_fallback(sandbox: Sandbox, layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(layout["music"]))
    text = await refused(sandbox, str(layout["other"] / "secret.wav"), allowed_dirs=None)
    assert f"(your home folder: {layout['music'].resolve()})" in text
    await accepted(sandbox, "~/song.wav", allowed_dirs=None)


# Small but structurally genuine files of each audio container the policy accepts.
CONTAINERS = {
    "id3.mp3": audio_samples.id3() + audio_samples.MP3_FRAMES,
    "padded-id3.mp3": audio_samples.id3() + bytes(300) + audio_samples.MP3_FRAMES,
    "frames.mp3": audio_samples.MP3_FRAMES,
    "riff.wav": wav_bytes(0.01),
    "x.flac": audio_samples.flac(),
    "id3.flac": audio_samples.id3() + audio_samples.flac(),
    "x.ogg": audio_samples.ogg_vorbis(),
    "x.opus": audio_samples.ogg_opus(),
    "video-and-audio.ogg": audio_samples.ogg_theora_and_vorbis(),
    "x.m4a": audio_samples.mp4(b"soun"),
    "moov-last.m4a": audio_samples.mp4(b"soun", moov_last=True),
    "x.mp4": audio_samples.mp4(b"vide", b"soun", brand=b"isom"),
    "x.aac": audio_samples.adts(),
    "id3.aac": audio_samples.id3() + audio_samples.adts(),
    "x.aiff": audio_samples.aiff(),
    "x.webm": audio_samples.matroska(2),
    "x.mka": audio_samples.matroska(1, 2, doc_type=b"matroska"),
    "x.wma": audio_samples.asf_audio(),
}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
async def test_each_audio_container_is_accepted(sandbox: Sandbox, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(CONTAINERS[name])
    await accepted(sandbox, str(path), allowed_dirs=(tmp_path,))


NOT_AUDIO = {
    "text-after-id3.mp3": (
        b"ID3 is how this text starts, and nothing in it is audio.\n" * 20,
        "it starts with “ID3” but not with a valid ID3 tag",
    ),
    "garbage-after-tag.mp3": (
        audio_samples.id3() + b"<html>not audio</html>" * 50,
        "it has an ID3 tag, but no MPEG audio frame follows it",
    ),
    "tag-only.mp3": (audio_samples.id3(), "it is an ID3 tag with no audio after it"),
    "one-sync-word.mp3": (b"\xff\xfb\x90\xc0" + b"plain text " * 100, "its first bytes match no audio format"),
    "video.mp4": (audio_samples.mp4(b"vide", brand=b"isom"), "it is an MP4 container with no audio track"),
    "video.m4a": (
        audio_samples.mp4(b"vide", b"hint", moov_last=True),
        "it is an MP4 container with no audio track",
    ),
    "header-only.m4a": (
        b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(64),
        "it is an MP4 container without a movie header (moov)",
    ),
    "video.webm": (audio_samples.matroska(1), "it is a Matroska/WebM file with no audio track"),
    "theora.ogg": (
        audio_samples.ogg_theora_only(),
        "it is an Ogg file with no Vorbis, Opus, FLAC or Speex audio stream",
    ),
    "zeros.ogg": (b"OggS\x00\x02" + bytes(64), "it is an Ogg file with no Vorbis, Opus, FLAC or Speex audio stream"),
    "video.wmv": (audio_samples.asf_video_only(), "it is an ASF (WMA/WMV) file with no audio stream"),
    "bare.wav": (b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00", "it is a WAV file without a valid format chunk"),
}


@pytest.mark.parametrize("name", sorted(NOT_AUDIO))
async def test_audio_look_alikes_are_refused(sandbox: Sandbox, tmp_path: Path, name: str) -> None:
    content, why = NOT_AUDIO[name]
    path = tmp_path / name
    path.write_bytes(content)
    text = await refused(sandbox, str(path), allowed_dirs=(tmp_path,))
    assert text == (
        f"Error executing tool extract_stems: {path} does not look like an audio file ({why}), so it was not sent. "
        "Give an audio file (MP3, WAV, FLAC, OGG/Opus, M4A/AAC, AIFF, WebM/Matroska or WMA); if this is audio in "
        "another format, convert it to one of those first. Nothing was submitted."
    )


async def test_the_check_reads_a_bounded_amount(sandbox: Sandbox, tmp_path: Path) -> None:
    """An MP4 of a hundred thousand empty atoms before its movie header: refused within the read budget,
    not walked to the end."""
    path = tmp_path / "atoms.m4a"
    path.write_bytes(audio_samples.atom(b"ftyp", b"M4A ") + audio_samples.atom(b"free") * 100_000)
    text = await refused(sandbox, str(path), allowed_dirs=(tmp_path,))
    assert "its structure could not be read within the checking budget" in text


async def test_roots_are_asked_for_only_when_a_path_is_checked(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    asked: list[int] = []
    inner = roots_callback(layout["music"])

    async def counting(context: Any) -> ListRootsResult:
        asked.append(1)
        return await inner(context)  # type: ignore[no-any-return]

    async with connect(make_settings(sandbox, allowed_dirs=None), list_roots_callback=counting) as client:
        by_url = await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"})
        assert not by_url.is_error
        assert asked == []
        by_file = await client.call_tool("extract_stems", {"audio_file": str(layout["music"] / "song.wav")})
        assert not by_file.is_error
        assert asked


def raw_roots(*uris: str) -> Any:
    async def callback(context: Any) -> ListRootsResult:
        return ListRootsResult.model_validate({"roots": [{"uri": uri} for uri in uris]})

    return callback


async def test_unusable_roots_do_not_widen_to_home(
    sandbox: Sandbox, layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that offers only roots the server cannot use: no local file, not the whole home folder."""
    monkeypatch.setenv("HOME", str(layout["music"]))
    options = {"list_roots_callback": raw_roots("file://nas/share", "file://server/music/")}
    text = await refused(sandbox, "~/song.wav", options, allowed_dirs=None)
    assert text == (
        f"Error executing tool extract_stems: {layout['music'] / 'song.wav'} was not read: the MCP client offered "
        "roots, but none is a local folder this server can use: 'file://nas/share' (a network location, not a "
        "folder on this machine), 'file://server/music/' (a network location, not a folder on this machine). So no local file may be "
        "uploaded. To send it, open a local folder as a workspace root in your MCP client, or set "
        "MUSICGPT_MCP_ALLOWED_DIRS in the server's environment to the folders that may be read, and restart the "
        "server. Nothing was submitted."
    )


async def test_an_empty_roots_list_keeps_the_home_fallback(
    sandbox: Sandbox, layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(layout["music"]))
    await accepted(sandbox, "~/song.wav", {"list_roots_callback": raw_roots()}, allowed_dirs=None)


async def test_root_with_a_nul_character_is_explained(sandbox: Sandbox, layout: dict[str, Path]) -> None:
    text = await refused(
        sandbox,
        str(layout["music"] / "song.wav"),
        {"list_roots_callback": raw_roots("file:///srv/a%00b")},
        allowed_dirs=None,
    )
    assert "'file:///srv/a%00b' (its path contains a NUL character)" in text
    # Beside a usable root, the unusable one is simply not used.
    options = {"list_roots_callback": raw_roots("file:///srv/a%00b", layout["music"].as_uri())}
    await accepted(sandbox, str(layout["music"] / "song.wav"), options, allowed_dirs=None)
