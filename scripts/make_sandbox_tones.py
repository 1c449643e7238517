"""Make musicgpt_mcp/sandbox/stem_tones.mp3: one loopable cycle of MP3 frames per stem, in catalog order.

The sandbox serves each stem's MP3 by repeating its cycle (musicgpt_mcp/sandbox/audio.py says why
that is seamless). Encoding needs LAME, a tool for developers only (`apt-get install lame`); the
server never runs it. Run after changing the catalog or the tones:

    uv run python scripts/make_sandbox_tones.py           # rewrite the file
    uv run python scripts/make_sandbox_tones.py --check   # exit 1 if the file differs from a fresh encoding
"""

from __future__ import annotations

import argparse
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from musicgpt_mcp.catalog import STEMS
from musicgpt_mcp.sandbox import audio

OUT = Path(audio.__file__).with_name(audio.TONES_FILE)
# Cycles encoded per stem: the encoder's state settles within the first few; one from the middle is kept
# after checking that the next cycle came out byte for byte the same.
CYCLES = 8
KEEP = 4
HEADER = bytes.fromhex("fffb")  # MPEG-1 Layer III without CRC
LAME = [
    "lame", "--quiet", "-r", "-s", "48", "--bitwidth", "16", "--signed", "--little-endian",
    "-m", "m", "-b", "32", "--cbr", "--resample", "48", "--nores", "--noreplaygain", "-t", "-", "-",
]  # fmt: skip


def pcm(index: int) -> bytes:
    tone = audio.stem_tone(index)
    n = CYCLES * audio.CYCLE_FRAMES * audio.MP3_SAMPLES_PER_FRAME
    return b"".join(
        struct.pack(
            "<h",
            round(
                audio.AMPLITUDE
                * tone.level(i / audio.MP3_RATE)
                * math.sin(2 * math.pi * tone.frequency * i / audio.MP3_RATE)
            ),
        )
        for i in range(n)
    )


def frames(mp3: bytes) -> list[bytes]:
    size = audio.MP3_FRAME_BYTES
    if len(mp3) % size:
        raise SystemExit(f"LAME wrote {len(mp3)} bytes, not whole {size}-byte frames: check its options")
    out = [mp3[i : i + size] for i in range(0, len(mp3), size)]
    for frame in out:
        # The 9 bits after the 4-byte header are main_data_begin: 0 means the frame needs no earlier one.
        if frame[:2] != HEADER or frame[4] != 0 or frame[5] & 0x80:
            raise SystemExit(f"unexpected frame {frame[:6].hex()}: not a self-contained MPEG-1 Layer III frame")
    return out


def cycle(index: int) -> bytes:
    mp3 = subprocess.run(LAME, input=pcm(index), capture_output=True, check=True).stdout  # noqa: S603 - fixed argv
    got = frames(mp3)
    n = audio.CYCLE_FRAMES
    kept, following = got[KEEP * n : (KEEP + 1) * n], got[(KEEP + 1) * n : (KEEP + 2) * n]
    if kept != following:
        raise SystemExit(f"stem {STEMS[index]}: the encoder did not settle into a repeating cycle")
    return b"".join(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args()
    if shutil.which("lame") is None:
        print("LAME is not installed: apt-get install lame", file=sys.stderr)
        return 2
    data = b"".join(cycle(i) for i in range(len(STEMS)))
    if args.check:
        same = OUT.read_bytes() == data
        print(f"{OUT.name}: {'up to date' if same else 'differs from a fresh encoding'}", file=sys.stderr)
        return 0 if same else 1
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes, {len(STEMS)} stems)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
