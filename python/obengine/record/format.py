"""The recording file format, version 1: segment names, blocks, records (``docs/recording.md``).

This module is the format and nothing else: constants, packing and unpacking, no file I/O. The
writer (:mod:`obengine.record.writer`) and the reader (:mod:`obengine.record.reader`) are built
on it, and a test can build any block, valid or damaged, from it.

Layout in one picture (all integers little-endian)::

    segment file  = block*
    block         = block header (52 bytes, a zstd skippable frame) + zstd frame (C bytes)
    zstd frame    = one standard frame, content size and content checksum set,
                    decompressing to D bytes = N records back to back
    record        = u32 length | u8 kind | i64 wall_ns | i64 mono_ns | payload (length bytes)

Times are integers in nanoseconds: ``wall_ns`` from ``time.time_ns()`` (UTC since the epoch),
``mono_ns`` from ``time.monotonic_ns()`` (only differences mean something, within one process).
"""
from __future__ import annotations

import calendar
import enum
import json
import re
import struct
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import zstandard

from obengine._core import record_offsets as _core_record_offsets

__all__ = [
    "BLOCK_HEADER_SIZE",
    "BLOCK_MAGIC",
    "BLOCK_TAG",
    "FORMAT_VERSION",
    "MAX_BLOCK_DATA",
    "RECORD_HEADER_SIZE",
    "RESERVED_HEADER_KEYS",
    "SEGMENT_SUFFIX",
    "SKIPPABLE_MAGIC",
    "BlockHeader",
    "Kind",
    "Record",
    "SegmentName",
    "UnsupportedVersion",
    "decode_records",
    "encode_block",
    "encode_event",
    "encode_record",
    "encode_records",
    "pack_block_header",
    "parse_segment_name",
    "record_offsets",
    "segment_name",
    "unpack_block_header",
]

#: The format version this module writes and reads (in every block header).
FORMAT_VERSION = 1

#: zstd skippable frame magic number 0x184D2A5B (skippable frames are 0x184D2A50..5F).
SKIPPABLE_MAGIC = 0x184D2A5B
#: The magic as it appears in the file (little-endian): what a resynchronising reader looks for.
BLOCK_MAGIC = struct.pack("<I", SKIPPABLE_MAGIC)
#: First 4 bytes of the skippable frame's payload: marks the frame as an obengine block header.
BLOCK_TAG = b"OBRB"
#: File name suffix of a segment.
SEGMENT_SUFFIX = ".obr"

# The block header, version 1. Offsets are from the start of the block:
#   0  u32 magic 0x184D2A5B          4  u32 skippable payload size = 44
#   8  4s  tag "OBRB"               12  u16 format version = 1
#  14  u16 flags = 0                16  u32 compressed size C (the zstd frame that follows)
#  20  u32 decompressed size D      24  u32 record count N
#  28  i64 first record's wall_ns   36  i64 last record's wall_ns
#  44  u32 CRC-32 of the C bytes of the zstd frame
#  48  u32 CRC-32 of bytes 0..47 of this header
_HEADER_BODY = struct.Struct("<I I 4s H H I I I q q I")
_CRC = struct.Struct("<I")
#: Size of a block header in bytes (the zstd frame follows at block offset + 52).
BLOCK_HEADER_SIZE = _HEADER_BODY.size + _CRC.size
_PAYLOAD_SIZE = BLOCK_HEADER_SIZE - 8  # the skippable frame's size field: what follows it
# Any version's header: magic, payload size, tag, version, and a CRC-32 of everything before it
# in its last 4 bytes. A reader checks those for a version it does not know, to tell a newer
# file from a damaged one.
_ANY_HEADER = struct.Struct("<I I 4s H")
_MAX_PAYLOAD_SIZE = 4096

#: ``u32 length | u8 kind | i64 wall_ns | i64 mono_ns`` in front of every record's payload.
_RECORD = struct.Struct("<I B q q")
#: Size of a record's header in bytes (its payload follows).
RECORD_HEADER_SIZE = _RECORD.size
#: Largest decompressed block (D is a u32), so also the largest record payload plus its header.
MAX_BLOCK_DATA = 0xFFFF_FFFF

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class Kind(enum.IntEnum):
    """What a record holds (its ``u8 kind``)."""

    #: JSON object describing the segment; the first record of every segment.
    HEADER = 0
    #: A websocket text frame as received, byte for byte.
    FRAME = 1
    #: A synthetic book frame written at a segment's start (``obengine.record.keyframe``).
    KEYFRAME = 2
    #: JSON object with at least ``"event"``: something the recorder did or saw.
    EVENT = 3


_KINDS = tuple(Kind)


@dataclass(frozen=True, slots=True)
class Record:
    """One record.

    Attributes:
        kind: what ``data`` is.
        wall_ns: wall-clock receive (or write) time, ns since the Unix epoch (UTC).
        mono_ns: monotonic clock at the same moment, ns (comparable within one recorder run).
        data: the payload, byte for byte.
    """

    kind: Kind
    wall_ns: int
    mono_ns: int
    data: bytes

    def json(self) -> Any:
        """The payload parsed as JSON (for HEADER and EVENT records)."""
        return json.loads(self.data)


class UnsupportedVersion(ValueError):
    """A block header that is intact but of a format version this module does not read."""

    def __init__(self, version: int) -> None:
        self.version = version
        super().__init__(
            f"format version {version}; this obengine reads version {FORMAT_VERSION}"
        )


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """A block header's fields (see the module's layout).

    Attributes:
        compressed_size: bytes of the zstd frame following the header (C).
        decompressed_size: bytes of the records it decompresses to (D).
        record_count: records in the block (N).
        first_wall_ns: the first record's ``wall_ns``.
        last_wall_ns: the last record's ``wall_ns`` (the wall clock may step back, so this
            is not necessarily the largest).
        data_crc32: CRC-32 (zlib's) of the compressed frame's bytes.
        version: the format version.
        flags: reserved, 0.
    """

    compressed_size: int
    decompressed_size: int
    record_count: int
    first_wall_ns: int
    last_wall_ns: int
    data_crc32: int
    version: int = FORMAT_VERSION
    flags: int = 0


def pack_block_header(header: BlockHeader) -> bytes:
    """The 52 bytes of ``header``, its own CRC included."""
    body = _HEADER_BODY.pack(
        SKIPPABLE_MAGIC,
        _PAYLOAD_SIZE,
        BLOCK_TAG,
        header.version,
        header.flags,
        header.compressed_size,
        header.decompressed_size,
        header.record_count,
        header.first_wall_ns,
        header.last_wall_ns,
        header.data_crc32,
    )
    return body + _CRC.pack(zlib.crc32(body))


def unpack_block_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> BlockHeader:
    """The block header at ``buf[offset:]``, checked: magic, size, tag, its CRC, version, flags
    and the sizes' consistency.

    Raises:
        UnsupportedVersion: an intact header of another format version (its CRC is good).
        ValueError: anything else wrong; the message says what (no location: the caller knows).
    """
    if len(buf) - offset < _ANY_HEADER.size:
        raise ValueError("fewer bytes than a block header")
    magic, size, tag, version = _ANY_HEADER.unpack_from(buf, offset)
    if magic != SKIPPABLE_MAGIC:
        raise ValueError("no block magic")
    if tag != BLOCK_TAG:
        raise ValueError("a skippable frame that is not an obengine block header")
    if size != _PAYLOAD_SIZE:
        end = offset + 8 + size
        if (
            version != FORMAT_VERSION
            and 12 <= size <= _MAX_PAYLOAD_SIZE
            and end <= len(buf)
            and _CRC.unpack_from(buf, end - 4)[0] == zlib.crc32(buf[offset : end - 4])
        ):
            raise UnsupportedVersion(version)
        raise ValueError(f"block header size {size}, expected {_PAYLOAD_SIZE}")
    if len(buf) - offset < BLOCK_HEADER_SIZE:
        raise ValueError("fewer bytes than a block header")
    (crc,) = _CRC.unpack_from(buf, offset + _HEADER_BODY.size)
    if crc != zlib.crc32(buf[offset : offset + _HEADER_BODY.size]):
        raise ValueError("block header CRC mismatch")
    (_, _, _, version, flags, csize, dsize, count, first, last, data_crc) = (
        _HEADER_BODY.unpack_from(buf, offset)
    )
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(version)
    if flags != 0:
        raise ValueError(f"unknown block flags {flags:#x}")
    if count == 0 or dsize < count * RECORD_HEADER_SIZE:
        raise ValueError(f"{count} records cannot take {dsize} decompressed bytes")
    if csize == 0:
        raise ValueError("empty compressed frame")
    return BlockHeader(csize, dsize, count, first, last, data_crc, version, flags)


def encode_record(kind: int, wall_ns: int, mono_ns: int, data: bytes) -> bytes:
    """One record's bytes: its 21-byte header, then ``data``.

    Raises:
        ValueError: an unknown kind, a time outside int64, a payload longer than a block holds.
    """
    return _record_header(kind, wall_ns, mono_ns, len(data)) + data


def _record_header(kind: int, wall_ns: int, mono_ns: int, size: int) -> bytes:
    if not 0 <= kind < len(_KINDS) or isinstance(kind, bool):
        raise ValueError(f"unknown record kind {kind!r}")
    if not (_I64_MIN <= wall_ns <= _I64_MAX and _I64_MIN <= mono_ns <= _I64_MAX):
        raise ValueError(f"times must fit int64 ns, got wall_ns={wall_ns}, mono_ns={mono_ns}")
    if size > MAX_BLOCK_DATA - RECORD_HEADER_SIZE:
        raise ValueError(f"a {size}-byte payload is larger than a block can hold")
    return _RECORD.pack(size, kind, wall_ns, mono_ns)


def encode_records(records: Iterable[Record]) -> bytes:
    """The records back to back: what a block's zstd frame decompresses to."""
    return b"".join(encode_record(r.kind, r.wall_ns, r.mono_ns, r.data) for r in records)


def record_offsets(data: bytes | bytearray | memoryview, count: int) -> list[int]:
    """Where each of the ``count`` records of a block's decompressed ``data`` starts, in one
    pass over the length prefixes; record ``i`` is ``data[offsets[i] : next record]`` and its
    payload starts 21 bytes in. (The pass runs in the native core: no Python per record.)

    Raises:
        ValueError: the records do not tile ``data`` exactly (a length running past the end,
            bytes left over, another count) or a kind is unknown.
    """
    return _core_record_offsets(data, count)


def decode_records(data: bytes, offsets: Iterable[int]) -> list[Record]:
    """The records of a block's decompressed ``data`` at ``offsets`` (from
    :func:`record_offsets`, which has checked them)."""
    out: list[Record] = []
    unpack = _RECORD.unpack_from
    kinds = _KINDS
    for pos in offsets:
        size, kind, wall_ns, mono_ns = unpack(data, pos)
        start = pos + RECORD_HEADER_SIZE
        out.append(Record(kinds[kind], wall_ns, mono_ns, data[start : start + size]))
    return out


def encode_block(
    data: bytes,
    record_count: int,
    first_wall_ns: int,
    last_wall_ns: int,
    *,
    level: int = 3,
    compressor: zstandard.ZstdCompressor | None = None,
) -> bytes:
    """One whole block (header + zstd frame) holding the encoded records ``data``.

    Each call makes an independent zstd frame (no dictionary, no history from an earlier
    block), with its content size and content checksum. ``compressor``, if given, must have
    been made with ``write_content_size=True, write_checksum=True`` (it is reused only to save
    its allocation; zstd starts every frame afresh).
    """
    if not 0 < record_count <= 0xFFFF_FFFF or len(data) > MAX_BLOCK_DATA:
        raise ValueError(f"a block holds 1 to 2**32-1 records and 4 GiB, got {record_count}")
    if compressor is None:
        compressor = _compressor(level)
    frame = compressor.compress(data)
    header = BlockHeader(
        len(frame), len(data), record_count, first_wall_ns, last_wall_ns, zlib.crc32(frame)
    )
    return pack_block_header(header) + frame


def _compressor(level: int) -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True)


def encode_event(event: str, fields: Mapping[str, Any] | None = None) -> bytes:
    """An EVENT record's payload: compact UTF-8 JSON ``{"event": event, **fields}``."""
    body: dict[str, Any] = {"event": event}
    if fields:
        if "event" in fields:
            raise ValueError("'event' is the event's name; not a field")
        body.update(fields)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


#: HEADER keys the writer sets itself (a caller's header must not use them).
RESERVED_HEADER_KEYS = frozenset(
    {"format", "obengine", "created_ns", "segment", "prefix", "run", "previous"}
)


# -- segment names -----------------------------------------------------------------------------

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_NAME = re.compile(
    r"(?P<prefix>[A-Za-z0-9][A-Za-z0-9._-]*)-(?P<stamp>[0-9]{8}T[0-9]{6})\.(?P<us>[0-9]{6})Z"
    r"-(?P<counter>[0-9]{4,})\.obr\Z"
)


class SegmentName(NamedTuple):
    """A segment file name's parts: ``<prefix>-<YYYYMMDDTHHMMSS.ffffff>Z-<counter>.obr``."""

    prefix: str
    start_ns: int  # UTC start, ns since the epoch, to the microsecond (the name's precision)
    counter: int


def segment_name(prefix: str, start_ns: int, counter: int) -> str:
    """The file name of a segment started at ``start_ns`` (UTC, ns since the epoch; written to
    the microsecond, truncated), number ``counter`` (>= 1, at least 4 digits)."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"prefix must be letters, digits, '.', '_', '-', got {prefix!r}")
    if counter < 1:
        raise ValueError(f"counter must be >= 1, got {counter}")
    if not 0 <= start_ns < 253402300800 * 10**9:  # up to 9999-12-31
        raise ValueError(f"start_ns out of range: {start_ns}")
    seconds, ns = divmod(start_ns, 10**9)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds))
    return f"{prefix}-{stamp}.{ns // 1000:06d}Z-{counter:04d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> SegmentName | None:
    """The parts of a segment file name (a base name, no directory), ``None`` when ``name`` is
    not one."""
    m = _NAME.match(name)
    if m is None:
        return None
    try:
        parts = time.strptime(m["stamp"], "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    seconds = calendar.timegm(parts)
    return SegmentName(m["prefix"], seconds * 10**9 + int(m["us"]) * 1000, int(m["counter"]))
