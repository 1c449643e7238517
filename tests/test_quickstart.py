"""examples/quickstart.py as a newcomer runs it first: offline, maybe with their own song but no key."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import PYTHON, REPO, subprocess_env


def test_the_quickstart_keeps_the_stems_where_it_says_and_explains_what_it_did(tmp_path: Path) -> None:
    song = tmp_path / "my song.mp3"
    song.write_bytes(b"not sent anywhere")
    result = subprocess.run(
        [PYTHON, str(REPO / "examples" / "quickstart.py"), str(song)],
        capture_output=True,
        text=True,
        env=subprocess_env(HOME=str(tmp_path)),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The song given without a key is not silently swapped for the demo tone.
    assert f"Note: {song} is not used. Without MUSICGPT_API_KEY" in result.stderr
    # The stems stay in the folder it names, after it has exited: the server's default, under HOME.
    [line] = [line for line in result.stdout.splitlines() if line.startswith("The stems are in: ")]
    folder = Path(line.removeprefix("The stems are in: "))
    assert folder.parent == tmp_path / "Music" / "MusicGPT"
    assert sorted(p.name for p in folder.iterdir()) == ["bass.mp3", "drums.mp3", "vocals.mp3"]
    assert all(p.stat().st_size > 1000 for p in folder.iterdir())
    # The sandbox's prices are marked as invented, and its jobs finish within the eta they promise.
    assert "estimated cost: 1.5 credits (sandbox: made-up credits, nothing is charged)" in result.stdout
    assert "Expected wait: about 5 s" in result.stdout
    assert "finished" in result.stderr
    assert "estimate has passed" not in result.stderr
