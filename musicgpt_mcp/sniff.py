"""Is this audio? Bounded structural checks of the containers MusicGPT takes, written against their specs.

A magic number is not enough: a text file that starts with "ID3" passed as MP3, and an MP4 holding
only video passed as M4A. So each check walks just enough of the container's structure to see audio:
an MPEG audio frame where the ID3 tag says the audio starts (and the next frame where the first one
says it ends), a WAV/AIFF format chunk, FLAC's STREAMINFO, an Ogg stream whose first packet is an
audio codec's, an MP4 track whose handler is `soun`, a Matroska/WebM track of type audio, an ASF
stream of the audio media type.

Why not mutagen (the well-kept tag library): it is GPL-2.0-or-later, which this MIT package would
then carry as a dependency, and it does not read Matroska/WebM at all; the checks below need only
the container headers. Every check reads through `_Reader`, which stops after MAX_READ bytes and
MAX_READS reads, so a hostile file cannot make the check slow.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Final

# Headers of real files fit well within this (an MP4's moov is walked by seeking, not read).
MAX_READ: Final = 1024 * 1024
MAX_READS: Final = 4096
# Zero padding some encoders leave between an ID3 tag and the first frame.
MAX_ID3_PADDING: Final = 4096


class _Exhausted(Exception):
    pass


class _Reader:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self._read = 0
        self._reads = 0

    def at(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (fewer at the end of the file)."""
        self._reads += 1
        self._read += n
        if self._reads > MAX_READS or self._read > MAX_READ:
            raise _Exhausted
        if offset < 0 or offset >= self.size:
            return b""
        self._f.seek(offset)
        return self._f.read(min(n, self.size - offset))


@dataclass(frozen=True)
class Verdict:
    kind: str | None  # the container, when recognised ("mp3", "wav", ...)
    audio: bool  # it holds audio MusicGPT can take
    detail: str = ""  # why not, for a person


def inspect(f: BinaryIO, size: int) -> Verdict:
    """What `f` (`size` bytes, seekable) holds."""
    reader = _Reader(f, size)
    head = reader.at(0, 64)
    for check in _CHECKS:
        try:
            verdict = check(reader, head)
        except (_Exhausted, struct.error, IndexError, ValueError):
            verdict = Verdict(None, False, "its structure could not be read within the checking budget")
        if verdict is not None:
            return verdict
    return Verdict(None, False)


# --- MPEG audio (MP3) and ADTS (AAC) -----------------------------------------------------------

_BITRATES = {  # kbit/s by (MPEG-1?, layer)
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mpeg_frame_length(header: bytes) -> int | None:
    """The length of the MPEG audio frame `header` starts, or None when it is not a valid header."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = 4 - ((header[1] >> 1) & 3)  # bits 0 are reserved (and mean ADTS)
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    rate = _RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    if layer == 3 and not mpeg1:
        return 72 * bitrate // rate + padding
    return 144 * bitrate // rate + padding


def adts_frame_length(header: bytes) -> int | None:
    if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0 or (header[2] >> 2) & 0xF > 12:
        return None
    length = ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5)
    return length if length >= 7 else None


def _frames_at(reader: _Reader, offset: int, frame_length: Callable[[bytes], int | None]) -> bool:
    """Two consecutive frames at `offset` (or one that ends the file)."""
    first = frame_length(reader.at(offset, 8))
    if first is None:
        return False
    following = offset + first
    return following >= reader.size or frame_length(reader.at(following, 8)) is not None


def _id3_end(head: bytes) -> int | None:
    """Where the audio starts after an ID3v2 tag, or None when `head` is no valid ID3v2 header."""
    if head[:3] != b"ID3" or len(head) < 10 or head[3] not in (2, 3, 4) or head[4] == 0xFF:
        return None
    size_bytes = head[6:10]
    if any(b & 0x80 for b in size_bytes):
        return None
    size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _mpeg(reader: _Reader, head: bytes) -> Verdict | None:
    start = 0
    tagged = head[:3] == b"ID3"
    if tagged:
        end = _id3_end(head)
        if end is None:
            return Verdict("mp3", False, "it starts with “ID3” but not with a valid ID3 tag")
        if end >= reader.size:
            return Verdict("mp3", False, "it is an ID3 tag with no audio after it")
        after = reader.at(end, MAX_ID3_PADDING)
        start = end + len(after) - len(after.lstrip(b"\0"))
        if reader.at(start, 4)[:4] == b"fLaC":
            return _flac(reader, head, start)
    if _frames_at(reader, start, mpeg_frame_length):
        return Verdict("mp3", True)
    if _frames_at(reader, start, adts_frame_length):
        return Verdict("aac", True)
    if tagged:
        return Verdict("mp3", False, "it has an ID3 tag, but no MPEG audio frame follows it")
    return None


# --- RIFF/WAVE, AIFF, FLAC --------------------------------------------------------------------


def _wav(reader: _Reader, head: bytes) -> Verdict | None:
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= reader.size:
        chunk = reader.at(offset, 24)
        name, length = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
        if name == b"fmt ":
            if length < 16 or len(chunk) < 24:
                break
            audio_format, channels, rate = struct.unpack("<HHI", chunk[8:16])
            if audio_format and channels and rate:
                return Verdict("wav", True)
            break
        offset += 8 + length + (length & 1)
    return Verdict("wav", False, "it is a WAV file without a valid format chunk")


def _aiff(reader: _Reader, head: bytes) -> Verdict | None:
    if head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    offset = 12
    while offset + 8 <= reader.size:
        chunk = reader.at(offset, 16)
        name, length = chunk[:4], struct.unpack(">I", chunk[4:8])[0]
        if name == b"COMM":
            channels = struct.unpack(">H", chunk[8:10])[0] if len(chunk) >= 10 else 0
            if length >= 18 and channels:
                return Verdict("aiff", True)
            break
        offset += 8 + length + (length & 1)
    return Verdict("aiff", False, "it is an AIFF file without a valid COMM chunk")


def _flac(reader: _Reader, head: bytes, start: int = 0) -> Verdict | None:
    if reader.at(start, 4) != b"fLaC":
        return None
    block = reader.at(start + 4, 4 + 34)
    if len(block) == 38 and block[0] & 0x7F == 0 and int.from_bytes(block[1:4], "big") == 34:
        rate = int.from_bytes(block[14:17], "big") >> 4
        if rate:
            return Verdict("flac", True)
    return Verdict("flac", False, "it starts like FLAC but has no valid STREAMINFO block")


# --- Ogg ---------------------------------------------------------------------------------------

_OGG_AUDIO: Final = (b"\x01vorbis", b"OpusHead", b"\x7fFLAC", b"Speex   ")


def _ogg(reader: _Reader, head: bytes) -> Verdict | None:
    if head[:4] != b"OggS":
        return None
    offset = 0
    # Every logical stream opens with a page flagged "beginning of stream", before any other page.
    while True:
        page = reader.at(offset, 27 + 255)
        if page[:4] != b"OggS" or len(page) < 27 or not page[5] & 0x02:
            break
        segments = page[26]
        table = page[27 : 27 + segments]
        body_start = offset + 27 + segments
        first_packet = reader.at(body_start, 8)
        if any(first_packet.startswith(magic) for magic in _OGG_AUDIO):
            return Verdict("ogg", True)
        offset = body_start + sum(table)
    return Verdict("ogg", False, "it is an Ogg file with no Vorbis, Opus, FLAC or Speex audio stream")


# --- MP4 / M4A / MOV ---------------------------------------------------------------------------

_MP4_FIRST: Final = frozenset({b"ftyp", b"moov", b"free", b"skip", b"wide", b"mdat", b"pnot"})


def _atoms(reader: _Reader, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, content start, content end) of the atoms in [start, end)."""
    found = []
    offset = start
    while offset + 8 <= end:
        header = reader.at(offset, 16)
        size, kind = struct.unpack(">I4s", header[:8])
        content = offset + 8
        if size == 1:
            size = struct.unpack(">Q", header[8:16])[0]
            content += 8
        elif size == 0:
            size = end - offset
        if size < content - offset:
            break
        found.append((kind, content, min(offset + size, end)))
        offset += size
    return found


def _mp4(reader: _Reader, head: bytes) -> Verdict | None:
    if head[4:8] not in _MP4_FIRST:
        return None
    for kind, start, end in _atoms(reader, 0, reader.size):
        if kind != b"moov":
            continue
        for trak_kind, trak_start, trak_end in _atoms(reader, start, end):
            if trak_kind != b"trak":
                continue
            for mdia_kind, mdia_start, mdia_end in _atoms(reader, trak_start, trak_end):
                if mdia_kind != b"mdia":
                    continue
                for hdlr_kind, hdlr_start, _ in _atoms(reader, mdia_start, mdia_end):
                    if hdlr_kind == b"hdlr" and reader.at(hdlr_start + 8, 4) == b"soun":
                        return Verdict("mp4", True)
        return Verdict("mp4", False, "it is an MP4 container with no audio track")
    return Verdict("mp4", False, "it is an MP4 container without a movie header (moov)")


# --- Matroska / WebM ---------------------------------------------------------------------------

_EBML, _SEGMENT, _TRACKS, _TRACK_ENTRY, _TRACK_TYPE, _CLUSTER = (
    0x1A45DFA3,
    0x18538067,
    0x1654AE6B,
    0xAE,
    0x83,
    0x1F43B675,
)
_UNKNOWN_SIZE = -1


def _vint(reader: _Reader, offset: int, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `offset`: (value, length in bytes)."""
    first = reader.at(offset, 1)[0]
    length = next(n for n in range(1, 9) if first & (0x80 >> (n - 1)))
    raw = reader.at(offset, length)
    value = int.from_bytes(raw, "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (_UNKNOWN_SIZE if value == (1 << (7 * length)) - 1 else value), length


def _ebml_children(reader: _Reader, start: int, end: int) -> list[tuple[int, int, int]]:
    """(id, content start, content end) of the elements in [start, end); stops at a cluster."""
    found = []
    offset = start
    while offset < end:
        element, id_length = _vint(reader, offset, keep_marker=True)
        size, size_length = _vint(reader, offset + id_length, keep_marker=False)
        content = offset + id_length + size_length
        if element == _CLUSTER:
            break  # media data: track descriptions come before it
        stop = end if size == _UNKNOWN_SIZE else min(content + size, end)
        found.append((element, content, stop))
        if size == _UNKNOWN_SIZE:
            break
        offset = stop
    return found


def _matroska(reader: _Reader, head: bytes) -> Verdict | None:
    if head[:4] != b"\x1a\x45\xdf\xa3":
        return None
    for element, start, end in _ebml_children(reader, 0, reader.size):
        if element == _EBML:
            continue
        if element != _SEGMENT:
            break
        for child, child_start, child_end in _ebml_children(reader, start, end):
            if child != _TRACKS:
                continue
            for entry, entry_start, entry_end in _ebml_children(reader, child_start, child_end):
                if entry != _TRACK_ENTRY:
                    continue
                for field, field_start, field_end in _ebml_children(reader, entry_start, entry_end):
                    if field == _TRACK_TYPE and int.from_bytes(reader.at(field_start, field_end - field_start)) == 2:
                        return Verdict("matroska", True)
            return Verdict("matroska", False, "it is a Matroska/WebM file with no audio track")
    return Verdict("matroska", False, "it is a Matroska/WebM file whose track list could not be found")


# --- ASF (WMA) ---------------------------------------------------------------------------------

_ASF_HEADER: Final = uuid.UUID("75B22630-668E-11CF-A6D9-00AA0062CE6C").bytes_le
_ASF_STREAM_PROPERTIES: Final = uuid.UUID("B7DC0791-A9B7-11CF-8EE6-00C00C205365").bytes_le
_ASF_AUDIO_MEDIA: Final = uuid.UUID("F8699E40-5B4D-11CF-A8FD-00805F5C442B").bytes_le


def _asf(reader: _Reader, head: bytes) -> Verdict | None:
    if head[:16] != _ASF_HEADER:
        return None
    header_size, count = struct.unpack("<QI", reader.at(16, 12))
    offset, end = 30, min(header_size, reader.size)
    for _ in range(min(count, 256)):
        if offset + 24 > end:
            break
        guid, size = struct.unpack("<16sQ", reader.at(offset, 24))
        if guid == _ASF_STREAM_PROPERTIES and reader.at(offset + 24, 16) == _ASF_AUDIO_MEDIA:
            return Verdict("asf", True)
        if size < 24:
            break
        offset += size
    return Verdict("asf", False, "it is an ASF (WMA/WMV) file with no audio stream")


_CHECKS: Final[tuple[Callable[[_Reader, bytes], Verdict | None], ...]] = (
    _wav,
    _aiff,
    _flac,
    _ogg,
    _matroska,
    _asf,
    _mp4,
    _mpeg,  # last: its frame-sync test is the loosest magic number
)


# --- downloads ---------------------------------------------------------------------------------

STEM_HEAD_BYTES: Final = 12


def stem_head_matches(fmt: str, head: bytes) -> bool:
    """Whether the first STEM_HEAD_BYTES of a downloaded stem start a file of format `fmt`: an ID3
    tag or an MPEG audio frame for mp3, RIFF....WAVE for wav."""
    if fmt == "mp3":
        return head[:3] == b"ID3" or mpeg_frame_length(head[:4]) is not None
    if fmt == "wav":
        return head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE"
    return False
