"""Draw the MCP Bundle's icon (icon.png): four coloured waveforms, a song split into stems.

Standard library only (zlib and struct write the PNG), so anyone can redraw it and see how it was made:

    uv run python scripts/make_icon.py          # writes icon.png at the repository root

tests/test_bundle.py checks that the committed icon.png holds exactly these pixels.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from pathlib import Path

SIZE = 512  # MCPB's validator recommends 512x512 for Claude Desktop.
RADIUS = 112  # Corner radius of the rounded square.
TOP, BOTTOM = (67, 56, 202), (30, 27, 75)  # Background gradient: indigo to deep indigo.
# One lane per stem: vocals, drums, bass, guitar.
LANES = ((244, 114, 182), (251, 191, 36), (34, 211, 238), (163, 230, 53))
LANE_Y = (136, 216, 296, 376)
BAR_WIDTH, BAR_STEP, FIRST_BAR, BARS = 12, 19, 79, 19  # centred: 79 + 18 * 19 + 12 = 512 - 79
MAX_HALF_HEIGHT = 32


def _corner_coverage(x: int, y: int) -> float:
    """How much of pixel (x, y) lies inside the rounded square, for smooth corners."""
    cx = min(max(x + 0.5, RADIUS), SIZE - RADIUS)
    cy = min(max(y + 0.5, RADIUS), SIZE - RADIUS)
    distance = math.hypot(x + 0.5 - cx, y + 0.5 - cy)
    return min(1.0, max(0.0, RADIUS + 0.5 - distance))


def _bar_half_height(lane: int, bar: int) -> int:
    """A waveform-like envelope, different for each lane; deterministic."""
    level = abs(math.sin(bar * 0.55 + lane * 1.3) * math.cos(bar * 0.23 + lane * 0.7))
    return 5 + round(level * (MAX_HALF_HEIGHT - 5))


def pixels() -> bytes:
    """The icon as RGBA rows, top to bottom."""
    bars: dict[tuple[int, int], tuple[int, int, int]] = {}
    for lane, (colour, centre) in enumerate(zip(LANES, LANE_Y, strict=True)):
        for bar in range(BARS):
            half = _bar_half_height(lane, bar)
            left = FIRST_BAR + bar * BAR_STEP
            for y in range(centre - half, centre + half):
                for x in range(left, left + BAR_WIDTH):
                    bars[(x, y)] = colour
    rows = bytearray()
    for y in range(SIZE):
        t = y / (SIZE - 1)
        background = tuple(round(a + (b - a) * t) for a, b in zip(TOP, BOTTOM, strict=True))
        for x in range(SIZE):
            alpha = round(255 * _corner_coverage(x, y))
            r, g, b = bars.get((x, y), background)
            rows += bytes((r, g, b, alpha))
    return bytes(rows)


def png(width: int, height: int, rgba: bytes) -> bytes:
    """An 8-bit RGBA PNG; every row uses filter type 0 (none), so it decodes with zlib alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    stride = width * 4
    raw = b"".join(b"\x00" + rgba[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "icon.png"
    target.write_bytes(png(SIZE, SIZE, pixels()))
    print(f"wrote {target} ({target.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
