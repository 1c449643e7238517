"""Real, playable audio for the sandbox's stems, with the standard library only.

Every stem gets its own tone, the same in both formats: a sine at its own pitch with its own tremolo,
so stems are told apart by ear, by a program, and at a glance in a waveform. WAV is synthesised here.
MP3 cannot be encoded with the standard library, so each stem's tone is one loopable cycle of MP3
frames, encoded once by `scripts/make_sandbox_tones.py` (with LAME, a tool for developers only) into
the package file `stem_tones.mp3`, and repeated here to any length.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

RATE = 22050
AMPLITUDE = 12000

# The MP3 frames: MPEG-1 Layer III, 48 kHz, mono, 32 kbit/s, no CRC, encoded without the bit
# reservoir. At 48 kHz a frame is exactly 144 * 32000 / 48000 = 96 bytes (never padded), and
# without the reservoir a frame's audio data lies in the frame itself, so frames can be cut and
# repeated. A tone with a whole number of periods per frame (multiples of 48000 / 1152 Hz), under a
# tremolo one cycle of CYCLE_FRAMES frames long, makes the encoder settle into a cycle of exactly
# repeating frames: that cycle, looped, is a seamless MP3 of any length.
MP3_RATE = 48_000
MP3_SAMPLES_PER_FRAME = 1152
MP3_FRAME_BYTES = 96
CYCLE_FRAMES = 16
CYCLE_SECONDS = CYCLE_FRAMES * MP3_SAMPLES_PER_FRAME / MP3_RATE  # 0.384 s
FRAME_HZ = MP3_RATE / MP3_SAMPLES_PER_FRAME  # 41.67 Hz
TONES_FILE = "stem_tones.mp3"


@dataclass(frozen=True)
class Tone:
    """A stem's sound: a sine at `frequency` whose level dips `pulses` times per cycle, by `depth`."""

    frequency: float
    pulses: int
    depth: float

    def level(self, seconds: float) -> float:
        """The tremolo at `seconds` from the start, between 1 - depth and 1."""
        phase = (seconds / CYCLE_SECONDS) % 1.0
        return 1.0 - self.depth * math.sin(math.pi * phase * self.pulses) ** 2


def stem_tone(index: int) -> Tone:
    """The tone of the stem at `index` in the catalog: pitches 208 Hz, 250 Hz, ... (5th, 6th, ...
    harmonics of 41.67 Hz, so any mix of stems is consonant), with one of twelve tremolo shapes."""
    return Tone(frequency=FRAME_HZ * (5 + index), pulses=(1, 2, 4)[index % 3], depth=(0.5, 0.9, 0.7, 0.8)[index % 4])


def stem_frequency(index: int) -> float:
    return stem_tone(index).frequency


@lru_cache(maxsize=64)
def wav_tone(seconds: float, frequency: float, tone: Tone | None = None) -> bytes:
    """A mono 16-bit WAV of a sine that fades in and out (with the stem's tremolo, when given)."""
    frames = max(1, int(seconds * RATE))
    fade = max(1, min(frames // 10, RATE // 20))
    samples = bytearray()
    for i in range(frames):
        envelope = min(1.0, i / fade, (frames - 1 - i) / fade)
        if tone is not None:
            envelope *= tone.level(i / RATE)
        samples += struct.pack("<h", int(AMPLITUDE * envelope * math.sin(2 * math.pi * frequency * i / RATE)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(samples))
    return buf.getvalue()


def stem_wav(seconds: float, index: int) -> bytes:
    tone = stem_tone(index)
    return wav_tone(seconds, tone.frequency, tone)


@cache
def _mp3_cycles() -> bytes:
    data = resources.files(__package__).joinpath(TONES_FILE).read_bytes()
    cycle = CYCLE_FRAMES * MP3_FRAME_BYTES
    if not data or len(data) % cycle:
        raise RuntimeError(f"{TONES_FILE} is damaged; run scripts/make_sandbox_tones.py to remake it")
    return data


@lru_cache(maxsize=64)
def stem_mp3(seconds: float, index: int) -> bytes:
    """An MP3 of the stem's tone, at least `seconds` long (whole frames of 24 ms)."""
    data = _mp3_cycles()
    size = CYCLE_FRAMES * MP3_FRAME_BYTES
    if not 0 <= index < len(data) // size:
        raise ValueError(f"no MP3 tone for stem index {index}; remake {TONES_FILE} for the current catalog")
    cycle = data[index * size : (index + 1) * size]
    frames = max(1, math.ceil(seconds * MP3_RATE / MP3_SAMPLES_PER_FRAME))
    return (cycle * math.ceil(frames / CYCLE_FRAMES))[: frames * MP3_FRAME_BYTES]


# Silent MP3 for tests that need valid MPEG frames of a known shape: MPEG-1 Layer III, 128 kbit/s,
# 44.1 kHz, mono, no CRC. With all-zero side information a frame decodes to silence.
_SILENT_HEADER = bytes([0xFF, 0xFB, 0x90, 0xC0])
_SILENT_FRAME_BYTES = 144 * 128_000 // 44_100  # 417


@lru_cache(maxsize=16)
def mp3_silence(seconds: float) -> bytes:
    frames = max(1, math.ceil(seconds * 44_100 / MP3_SAMPLES_PER_FRAME))
    return (_SILENT_HEADER + bytes(_SILENT_FRAME_BYTES - len(_SILENT_HEADER))) * frames
