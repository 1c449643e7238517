"""The sandbox's stem audio: a different tone per stem, in WAV and in MP3 (the browser test decodes the MP3s)."""

from __future__ import annotations

import io
import itertools
import shutil
import subprocess
import wave

from musicgpt_mcp.catalog import STEMS
from musicgpt_mcp.sandbox.audio import (
    CYCLE_FRAMES,
    MP3_FRAME_BYTES,
    MP3_RATE,
    MP3_SAMPLES_PER_FRAME,
    stem_mp3,
    stem_tone,
    stem_wav,
)

from .conftest import PYTHON, REPO, require


def dominant_frequency(wav_bytes: bytes) -> float:
    """Rising zero crossings per second: enough for a pure tone."""
    with wave.open(io.BytesIO(wav_bytes)) as w:
        rate, n = w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    samples = [int.from_bytes(raw[i : i + 2], "little", signed=True) for i in range(0, len(raw), 2)]
    crossings = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    return crossings / (n / rate)


def test_every_stem_has_its_own_wav_tone() -> None:
    found = [dominant_frequency(stem_wav(1.0, i)) for i in range(len(STEMS))]
    for i, hz in enumerate(found):
        assert abs(hz - stem_tone(i).frequency) < 3, (STEMS[i], hz)
    # Neighbouring stems are at least 40 Hz apart.
    assert min(b - a for a, b in itertools.pairwise(found)) > 40


def test_every_stem_has_its_own_mp3_made_of_whole_self_contained_frames() -> None:
    mp3s = [stem_mp3(2.0, i) for i in range(len(STEMS))]
    frames = -(-2 * MP3_RATE // MP3_SAMPLES_PER_FRAME)  # ceil(2 s of 24 ms frames)
    for mp3 in mp3s:
        assert len(mp3) == frames * MP3_FRAME_BYTES
        for at in range(0, len(mp3), MP3_FRAME_BYTES):
            # MPEG-1 Layer III, 32 kbit/s, 48 kHz, mono; main_data_begin 0 (the frame stands alone).
            assert mp3[at : at + 4] == b"\xff\xfb\x14\xc4", mp3[at : at + 4].hex()
            assert mp3[at + 4] == 0 and mp3[at + 5] & 0x80 == 0
        # The cycle repeats: a long file is the short one's frames, looped.
        cycle = CYCLE_FRAMES * MP3_FRAME_BYTES
        assert mp3[cycle : 2 * cycle] == mp3[:cycle]
    assert len(set(mp3s)) == len(STEMS)
    assert stem_mp3(0.01, 0) == mp3s[0][:MP3_FRAME_BYTES]


def test_the_committed_mp3_tones_are_what_the_generator_makes() -> None:
    require(shutil.which("lame") is not None, "LAME (an MP3 encoder)", "apt-get install lame")
    done = subprocess.run(
        [PYTHON, str(REPO / "scripts" / "make_sandbox_tones.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
