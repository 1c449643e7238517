"""Real, playable audio for the sandbox's stems, made with the standard library only."""

from __future__ import annotations

import io
import math
import struct
import wave
from functools import lru_cache

RATE = 22050

# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono, no CRC. With all-zero side information a frame
# decodes to silence, so a run of them is a valid MP3 that any player accepts.
_MP3_HEADER = bytes([0xFF, 0xFB, 0x90, 0xC0])
_MP3_FRAME_BYTES = 144 * 128_000 // 44_100  # 417
_MP3_SAMPLES_PER_FRAME = 1152


@lru_cache(maxsize=64)
def wav_tone(seconds: float, frequency: float) -> bytes:
    """A mono 16-bit WAV of a sine tone that fades in and out."""
    frames = max(1, int(seconds * RATE))
    fade = max(1, min(frames // 10, RATE // 20))
    samples = bytearray()
    for i in range(frames):
        envelope = min(1.0, i / fade, (frames - 1 - i) / fade)
        samples += struct.pack("<h", int(12000 * envelope * math.sin(2 * math.pi * frequency * i / RATE)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(samples))
    return buf.getvalue()


@lru_cache(maxsize=16)
def mp3_silence(seconds: float) -> bytes:
    frames = max(1, math.ceil(seconds * 44_100 / _MP3_SAMPLES_PER_FRAME))
    frame = _MP3_HEADER + bytes(_MP3_FRAME_BYTES - len(_MP3_HEADER))
    return frame * frames


def stem_frequency(index: int) -> float:
    """A distinct pitch per stem, so the files are told apart by ear."""
    return 220.0 * 2 ** (index / 12)
