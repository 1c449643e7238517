"""Small but structurally genuine files of each container the upload policy knows, built from the specs.

Each holds just enough for a reader to find its audio (or, for the *_video_only ones, to find that
there is none). Checked once with an independent reader (mutagen, for the formats it reads) when
they were written; the sandbox's own WAV and MP3 generators cover the two stem formats.
"""

from __future__ import annotations

import struct
import uuid

from musicgpt_mcp.sandbox.audio import mp3_silence, wav_tone

MP3_FRAMES = mp3_silence(0.2)  # MPEG-1 Layer III frames, 417 bytes each


def id3(body: bytes = b"", *, size: int | None = None) -> bytes:
    """An ID3v2.4 tag holding `body` (a TIT2 frame when empty), its size syncsafe-encoded."""
    if not body:
        text = b"\x03demo"
        body = b"TIT2" + struct.pack(">I", len(text)) + b"\x00\x00" + text
    n = len(body) if size is None else size
    syncsafe = bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])
    return b"ID3\x04\x00\x00" + syncsafe + body


def adts(frames: int = 3) -> bytes:
    # AAC LC, 44.1 kHz, stereo, 16-byte frames (7-byte header, no CRC).
    length = 16
    header = bytes([0xFF, 0xF1, 0x50, 0x80 | (length >> 11), (length >> 3) & 0xFF, ((length & 7) << 5) | 0x1F, 0xFC])
    return (header + bytes(length - 7)) * frames


def flac() -> bytes:
    # STREAMINFO: block sizes 4096, frame sizes unknown, 44.1 kHz, 2 channels, 16 bits, 0 samples.
    info = struct.pack(">HH", 4096, 4096) + bytes(6)
    info += ((44100 << 44) | ((2 - 1) << 41) | ((16 - 1) << 36)).to_bytes(8, "big")
    info += bytes(16)  # MD5
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def ogg_page(packet: bytes, *, bos: bool, serial: int = 1) -> bytes:
    segments = [255] * (len(packet) // 255) + [len(packet) % 255]
    header = b"OggS\x00" + bytes([0x02 if bos else 0]) + bytes(8) + struct.pack("<III", serial, 0, 0)
    return header + bytes([len(segments)]) + bytes(segments) + packet


VORBIS_IDENT = b"\x01vorbis" + struct.pack("<IBIiiiB", 0, 2, 44100, 0, 128000, 0, 0xB8) + b"\x01"


def ogg_vorbis() -> bytes:
    comments = b"\x03vorbis" + struct.pack("<II", 0, 0) + b"\x01"
    return ogg_page(VORBIS_IDENT, bos=True) + ogg_page(comments, bos=False)


def ogg_opus() -> bytes:
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)
    return ogg_page(head, bos=True) + ogg_page(b"OpusTags" + struct.pack("<II", 0, 0), bos=False)


def ogg_theora_only() -> bytes:
    return ogg_page(b"\x80theora" + bytes(34), bos=True)


def ogg_theora_and_vorbis() -> bytes:
    return ogg_page(b"\x80theora" + bytes(34), bos=True, serial=1) + ogg_page(VORBIS_IDENT, bos=True, serial=2)


def atom(kind: bytes, *children: bytes) -> bytes:
    body = b"".join(children)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _trak(handler: bytes) -> bytes:
    hdlr = atom(b"hdlr", bytes(4) + bytes(4) + handler + bytes(12) + b"\x00")
    mdhd = atom(b"mdhd", bytes(12) + struct.pack(">II", 44100, 0) + bytes(4))
    return atom(b"trak", atom(b"tkhd", bytes(84)), atom(b"mdia", mdhd, hdlr))


def mp4(*handlers: bytes, brand: bytes = b"M4A ", moov_last: bool = False) -> bytes:
    ftyp = atom(b"ftyp", brand + bytes(4) + brand + b"isom")
    mvhd = atom(b"mvhd", bytes(12) + struct.pack(">II", 1000, 0) + bytes(80))  # timescale 1000
    moov = atom(b"moov", mvhd, *(_trak(h) for h in handlers))
    mdat = atom(b"mdat", bytes(64))
    return ftyp + (mdat + moov if moov_last else moov + mdat)


def _ebml_size(n: int) -> bytes:
    return (0x10000000 | n).to_bytes(4, "big")  # a 4-byte size


def ebml(element: int, *children: bytes) -> bytes:
    body = b"".join(children)
    return element.to_bytes((element.bit_length() + 7) // 8, "big") + _ebml_size(len(body)) + body


def matroska(*track_types: int, doc_type: bytes = b"webm") -> bytes:
    header = ebml(0x1A45DFA3, ebml(0x4282, doc_type), ebml(0x4287, b"\x04"), ebml(0x4285, b"\x02"))
    tracks = ebml(
        0x1654AE6B,
        *(ebml(0xAE, ebml(0xD7, bytes([n + 1])), ebml(0x83, bytes([t]))) for n, t in enumerate(track_types)),
    )
    info = ebml(0x1549A966, ebml(0x2AD7B1, b"\x0f\x42\x40"))
    cluster = ebml(0x1F43B675, ebml(0xE7, b"\x00"))
    return header + ebml(0x18538067, info, tracks, cluster)


_ASF_HEADER = uuid.UUID("75B22630-668E-11CF-A6D9-00AA0062CE6C").bytes_le
_ASF_FILE_PROPERTIES = uuid.UUID("8CABDCA1-A947-11CF-8EE4-00C00C205365").bytes_le
_ASF_STREAM_PROPERTIES = uuid.UUID("B7DC0791-A9B7-11CF-8EE6-00C00C205365").bytes_le
_ASF_AUDIO = uuid.UUID("F8699E40-5B4D-11CF-A8FD-00805F5C442B").bytes_le
_ASF_VIDEO = uuid.UUID("BC19EFC0-5B4D-11CF-A8FD-00805F5C442B").bytes_le
_ASF_NO_CORRECTION = uuid.UUID("20FB5700-5B55-11CF-A8FD-00805F5C442B").bytes_le


def _asf_object(guid: bytes, body: bytes) -> bytes:
    return guid + struct.pack("<Q", 24 + len(body)) + body


def asf(media: bytes) -> bytes:
    # WAVEFORMATEX for WMA v2, 44.1 kHz stereo, as the type-specific data of the stream.
    wave = struct.pack("<HHIIHHH", 0x161, 2, 44100, 16000, 2973, 16, 0)
    stream = media + _ASF_NO_CORRECTION + struct.pack("<QIIH4x", 0, len(wave), 0, 1) + wave
    file_props = bytes(16) + struct.pack("<QQQQQQIIII", 0, 0, 0, 0, 0, 0, 2, 3200, 3200, 128000)
    objects = _asf_object(_ASF_FILE_PROPERTIES, file_props) + _asf_object(_ASF_STREAM_PROPERTIES, stream)
    header = _ASF_HEADER + struct.pack("<QIBB", 30 + len(objects), 2, 1, 2) + objects
    return header + bytes(64)


def asf_audio() -> bytes:
    return asf(_ASF_AUDIO)


def asf_video_only() -> bytes:
    return asf(_ASF_VIDEO)


def aiff() -> bytes:
    # COMM: 1 channel, 0 frames, 16 bits, 44.1 kHz as an 80-bit extended float.
    comm = struct.pack(">hIh", 1, 0, 16) + bytes.fromhex("400EAC44000000000000")
    ssnd = struct.pack(">II", 0, 0)
    body = b"AIFF" + atom_be(b"COMM", comm) + atom_be(b"SSND", ssnd)
    return b"FORM" + struct.pack(">I", len(body)) + body


def atom_be(name: bytes, body: bytes) -> bytes:
    return name + struct.pack(">I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def wav() -> bytes:
    return wav_tone(0.01, 440.0)
