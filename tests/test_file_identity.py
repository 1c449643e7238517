"""What is uploaded is what was checked (issue 24, finding 7), through the protocol against the sandbox.

A file deleted and re-created at the checked path gets the old inode back on ext4, so a (device, inode)
check passed the replacement, whose bytes were never sniffed. Each test below swaps the file at one
moment: after the checks (before the hash), after the hash (before the upload; also while the user is
asked to consent) and during the upload, and looks at what MusicGPT received and what the model read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import ElicitRequestParams, ElicitResult

from musicgpt_mcp import files, fingerprint
from musicgpt_mcp.musicgpt import multipart
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.sandbox.audio import mp3_silence

from . import audio_samples
from .conftest import connect, make_settings, wav_bytes
from .test_ledger import posts
from .test_status import text_of

pytestmark = pytest.mark.anyio

# What the SDK puts before a tool error's text.
ERROR = "Error executing tool extract_stems: "
CHANGED_BEFORE_HASH = (
    "changed (it was replaced, or is being written) right after it was checked, so it was not sent. Wait until the "
    "file is complete, then try again. Nothing was submitted."
)
CHANGED_BEFORE_UPLOAD = (
    "The audio file changed after it was checked (it was replaced, or written to), so it was not uploaded. Nothing "
    "was sent, so nothing was charged. Wait until the file is no longer being written, then call extract_stems again."
)
CHANGED_DURING_UPLOAD = (
    "The audio file changed (it was written to, moved, replaced or cut short) while it was being uploaded, so the "
    "upload was stopped before it was complete. MusicGPT may or may not have created a job from the partial request."
)


def secret_like(size: int) -> bytes:
    """What must never leave unchecked: not audio, padded to the checked file's size."""
    pem = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n"
    return (pem * (size // len(pem) + 1))[:size]


def replace_keeping_identity(path: Path, data: bytes) -> None:
    """Put `data` at `path` with the checked file's device, inode, size and mtime: all that the (device,
    inode) check and the old fingerprint key compared. Written into the file's own inode (and the mtime
    set back), so the identity holds with certainty; a file deleted and created again gets it only when
    ext4 hands it the freed inode, which depends on what else the machine creates meanwhile (that case has
    a test of its own below)."""
    before = path.stat()
    assert len(data) == before.st_size
    with path.open("r+b") as f:
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_dev,
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


def _file_system(path: Path) -> str:
    """The type of the file system `path` is on, from /proc/mounts ("" when unknown)."""
    found, kind = "", ""
    mounts = Path("/proc/mounts")
    for line in mounts.read_text().splitlines() if mounts.exists() else []:
        _, point, fstype, *_ = line.split()
        if (path == Path(point) or Path(point) in path.parents) and len(point) >= len(found):
            found, kind = point, fstype
    return kind


def received_hashes(sandbox: Sandbox) -> list[str]:
    return [f.sha256 for s in sandbox.state.submits() for f in s.files]


@pytest.fixture
def long_song(tmp_path: Path) -> Path:
    """MPEG frames enough for three upload chunks, so a change can land between two of them."""
    path = tmp_path / "long.mp3"
    path.write_bytes(audio_samples.id3() + mp3_silence(200.0 * multipart.CHUNK_SIZE / 1024 / 1024))
    assert path.stat().st_size > 2 * multipart.CHUNK_SIZE
    return path


async def test_a_replacement_between_the_checks_and_the_hash_is_refused(
    sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examine = files.examine

    def examine_then_replace(resolved: Path, info: os.stat_result) -> Any:
        found = examine(resolved, info)  # the last of the checks
        replace_keeping_identity(resolved, secret_like(info.st_size))
        return found

    monkeypatch.setattr(files, "examine", examine_then_replace)
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(song)})
    assert result.is_error
    assert text_of(result) == f"{ERROR}{song} {CHANGED_BEFORE_HASH}"
    assert sandbox.state.submits() == []  # not even a partial POST


async def test_a_replacement_after_a_remembered_hash_is_refused_before_the_upload(
    sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second call finds the hash remembered for the checked file and reads nothing: the upload's own
    check is what stops the replacement."""
    original = hashlib.sha256(song.read_bytes()).hexdigest()
    async with connect(make_settings(sandbox, reuse_hours=0)) as client:
        assert not (await client.call_tool("extract_stems", {"audio_file": str(song)})).is_error
        examine = files.examine

        def examine_then_replace(resolved: Path, info: os.stat_result) -> Any:
            found = examine(resolved, info)
            replace_keeping_identity(resolved, secret_like(info.st_size))
            return found

        monkeypatch.setattr(files, "examine", examine_then_replace)
        hashed: list[Path] = []
        monkeypatch.setattr(fingerprint, "hash_file", lambda part: hashed.append(part.path) or "sha256:never")
        result = await client.call_tool("extract_stems", {"audio_file": str(song)})
    assert hashed == []  # the remembered hash was used
    assert result.is_error
    assert text_of(result) == ERROR + CHANGED_BEFORE_UPLOAD
    assert received_hashes(sandbox) == [original]  # the first call's upload, and nothing since


async def test_a_replacement_between_the_hash_and_the_upload_is_refused(
    sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hash_file = fingerprint.hash_file

    def hash_then_replace(part: multipart.FilePart) -> str:
        digest = hash_file(part)
        replace_keeping_identity(part.path, secret_like(part.size))
        return digest

    monkeypatch.setattr(fingerprint, "hash_file", hash_then_replace)
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(song)})
        # Nothing was sent, so nothing is pending: the same file, put back, goes through at once.
        monkeypatch.undo()
        song.write_bytes(audio_samples.id3() + mp3_silence(0.5))
        again = await client.call_tool("extract_stems", {"audio_file": str(song)})
    assert result.is_error
    assert text_of(result) == ERROR + CHANGED_BEFORE_UPLOAD
    assert not again.is_error, text_of(again)
    assert posts(sandbox) == 1 and len(sandbox.state.submits()) == 1


async def test_a_file_deleted_and_created_again_with_its_old_inode_is_not_uploaded(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's case as it happened: deleted, and at once created again, on ext4, which gave the new
    file the old inode number. ext4 hands out the lowest free inode of the folder's group, so a file freed
    elsewhere in between (another process's) can take the place: each attempt uses a new song, and the
    test asserts on the attempts where the inode did come back (nearly all; at least one is required)."""
    if _file_system(tmp_path) not in ("ext2", "ext3", "ext4"):
        pytest.skip(f"{tmp_path} is not on ext2/3/4, which hand a freed inode to the next file created")
    hash_file = fingerprint.hash_file
    reused: list[bool] = []

    def hash_then_recreate(part: multipart.FilePart) -> str:
        digest = hash_file(part)
        part.path.unlink()
        part.path.write_bytes(secret_like(part.size))
        os.utime(part.path, ns=(part.identity.mtime_ns, part.identity.mtime_ns))
        now = part.path.stat()
        reused.append((now.st_dev, now.st_ino, now.st_size) == (part.identity.dev, part.identity.ino, part.size))
        return digest

    monkeypatch.setattr(fingerprint, "hash_file", hash_then_recreate)
    async with connect(make_settings(sandbox)) as client:
        for attempt in range(10):
            song = tmp_path / f"take {attempt}.wav"
            song.write_bytes(wav_bytes(0.25 + attempt / 100))
            result = await client.call_tool("extract_stems", {"audio_file": str(song)})
            if reused[-1]:
                break
    assert reused[-1], f"the inode was never reused in {len(reused)} attempts"
    assert result.is_error
    assert text_of(result) == ERROR + CHANGED_BEFORE_UPLOAD
    assert sandbox.state.submits() == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_replacement_while_the_user_is_asked_is_never_uploaded(sandbox: Sandbox, song: Path, mode: str) -> None:
    """The consent question sits between the hash and the upload, for as long as the user takes. A 2025
    client answers within the call, so the body uploads what the plan checked, and must find it gone; a
    2026-07-28 client retries the call with the answer, so everything is checked again, and the
    replacement fails the checks themselves."""

    async def replace_then_accept(context: Any, params: ElicitRequestParams) -> ElicitResult:
        replace_keeping_identity(song, secret_like(song.stat().st_size))
        return ElicitResult(action="accept", content={"submit": True})

    async with connect(make_settings(sandbox), elicitation_callback=replace_then_accept, mode=mode) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(song)})
    assert result.is_error
    if mode == "legacy":
        assert text_of(result) == ERROR + CHANGED_BEFORE_UPLOAD
    else:
        assert text_of(result).startswith(f"{ERROR}{song} does not look like an audio file")
    assert sandbox.state.submits() == []


def change_after_first_chunk(monkeypatch: pytest.MonkeyPatch, change: Any) -> list[int]:
    """Run `change(path)` once the first chunk of the upload has been read and verified, before the second
    is read. Returns the sizes of the chunks verified (or found changed)."""
    verified = multipart.verified
    sizes: list[int] = []

    def verified_then_change(fd: int, part: multipart.FilePart, chunk: bytes) -> bytes:
        sizes.append(len(chunk))
        checked = verified(fd, part, chunk)
        if len(sizes) == 1:
            change(part.path)
        return checked

    monkeypatch.setattr(multipart, "verified", verified_then_change)
    return sizes


def write_in_place(path: Path) -> None:
    before = path.stat()
    with path.open("r+b") as f:
        f.seek(multipart.CHUNK_SIZE + 4096)
        f.write(secret_like(4096))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old identity, all but the ctime
    assert path.stat().st_size == before.st_size


def cut_short(path: Path) -> None:
    os.truncate(path, multipart.CHUNK_SIZE + 10)


def replaced(path: Path) -> None:
    """A new file at the path (an editor's save): the upload's descriptor still reads the old one, but the
    old one's ctime moved when it lost its name, and a ctime cannot tell that from a write."""
    size = path.stat().st_size
    path.unlink()
    path.write_bytes(secret_like(size))


@pytest.mark.parametrize("change", [write_in_place, cut_short, replaced], ids=["written", "cut short", "replaced"])
async def test_a_change_during_the_upload_stops_it(
    sandbox: Sandbox, long_song: Path, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    sizes = change_after_first_chunk(monkeypatch, change)
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(long_song)})
        listed = await client.call_tool("list_extractions", {})
    assert len(sizes) == 2  # the second chunk found the change; nothing more was read
    assert result.is_error
    assert text_of(result).startswith(ERROR + CHANGED_DURING_UPLOAD)
    with anyio.fail_after(5):  # the sandbox, in its own thread, sees the connection close a moment later
        while not sandbox.state.submits():
            await anyio.sleep(0.01)
    [aborted] = sandbox.state.submits()  # the POST began, and never ended
    assert not aborted.complete and sandbox.state.jobs == {}
    # An aborted upload's outcome is unknown: the ledger holds an identical call back until the user checks.
    assert [e["status"] for e in (listed.structured_content or {})["extractions"]] == ["OUTCOME_UNKNOWN"]
