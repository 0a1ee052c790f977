"""Reading recordings: segment paths, blocks and records, in order, through damage.
Format: ``docs/recording.md``.

Damaged content is never an exception. A block whose header, CRC, zstd frame (its checksum
included), sizes or record framing is wrong is skipped with a logged warning (file, offset,
reason) and counted in :attr:`ReadStats.corrupt_blocks`; the reader then goes on at the next
block: right after the damaged one when its header was intact (its size is then known), else at
the next place where a block header validates and the frame after it matches the header's CRC. A
file that ends inside a block (a process killed
while writing, or a segment still being written) ends quietly, counted in
:attr:`ReadStats.truncated_tail`. :class:`~obengine.errors.RecordingError` is raised only for a
file that cannot be opened, is not a recording at all, or is of another format version.

Files are read with ordinary buffered reads (no ``mmap``, which would turn a file cut short
under the reader into a ``SIGBUS``).
"""
from __future__ import annotations

import errno
import glob
import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

from obengine.errors import RecordingError
from obengine.record.format import (
    BLOCK_HEADER_SIZE,
    BLOCK_MAGIC,
    BLOCK_TAG,
    FORMAT_VERSION,
    SEGMENT_SUFFIX,
    BlockHeader,
    Record,
    UnsupportedVersion,
    _MAX_PAYLOAD_SIZE,
    decode_records,
    parse_segment_name,
    record_offsets,
    unpack_block_header,
)

__all__ = ["Block", "ReadStats", "iter_blocks", "read", "read_segment", "segment_paths"]

log = logging.getLogger("obengine.record")

_SCAN_CHUNK = 1 << 20
# What every version-1 block header starts with (magic, payload size 44, tag, version 1, flags 0):
# a tail shorter than a header that agrees with it is a cut header, anything else is garbage.
_HEADER_START = BLOCK_MAGIC + (BLOCK_HEADER_SIZE - 8).to_bytes(4, "little") + BLOCK_TAG
_HEADER_START += FORMAT_VERSION.to_bytes(2, "little") + b"\0\0"


@dataclass
class ReadStats:
    """What a read went through; pass one in to have it filled (it accumulates over calls).

    Attributes:
        segments: files opened.
        blocks: valid blocks read.
        records: records yielded.
        corrupt_blocks: damaged stretches skipped (a damaged block, or garbage between blocks).
        truncated_tail: files that ended inside a block (counted once per file).
        bytes_read: bytes of the files gone through (valid blocks, damaged stretches, cut
            tails): a file's size once it has been read to its end.
        skipped_bytes: bytes of damaged stretches and cut tails.
    """

    segments: int = 0
    blocks: int = 0
    records: int = 0
    corrupt_blocks: int = 0
    truncated_tail: int = 0
    bytes_read: int = 0
    skipped_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Block:
    """One valid block.

    Attributes:
        offset: the block's byte offset in its file.
        header: its header.
        data: the decompressed records, back to back (``header.decompressed_size`` bytes).
        offsets: where each record starts in ``data`` (checked to tile it exactly); a record's
            payload starts 21 bytes after its offset.
    """

    offset: int
    header: BlockHeader
    data: bytes
    offsets: list[int] = field(repr=False)

    def records(self) -> list[Record]:
        """The block's records, in order."""
        return decode_records(self.data, self.offsets)


# -- paths -------------------------------------------------------------------------------------


def segment_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The segment files named by ``paths``: files as given, directories' ``*.obr`` files, and
    glob patterns (``*``, ``?``, ``[``) expanded; without duplicates, sorted by the start time
    and counter in their names (names that are not segment names last, by name).

    Raises:
        RecordingError: a path (or pattern) that matches no file (``errno`` ENOENT); a
            directory with no segment counts as matching nothing.
    """
    found: dict[Path, None] = {}
    for given in paths:
        text = os.fspath(given)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.glob(f"*{SEGMENT_SUFFIX}") if p.is_file())
        elif path.exists():
            matches = [path]
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        else:
            matches = []
        if not matches:
            if path.is_dir():
                what = f"a directory with no *{SEGMENT_SUFFIX} segment"
            elif glob.has_magic(text):
                what = "no file matches this pattern"
            else:
                what = "no such file or directory"
            raise RecordingError(f"{text}: {what}", path=text, errno=errno.ENOENT)
        for match in matches:
            found.setdefault(match, None)
    return sorted(found, key=_order)


def _order(path: Path) -> tuple[int, int, int, str]:
    name = parse_segment_name(path.name)
    if name is None:
        return (1, 0, 0, str(path))
    return (0, name.start_ns, name.counter, str(path))


# -- blocks ------------------------------------------------------------------------------------


def iter_blocks(path: str | os.PathLike[str], *, stats: ReadStats | None = None) -> Iterator[Block]:
    """The valid blocks of one segment file, in file order, each decompressed and its record
    framing checked (see the module docstring for what happens to damage).

    Raises:
        RecordingError: the file cannot be opened or read, is not a recording (no valid block
            header at offset 0 and no block magic anywhere), or is of a newer format version.
    """
    stats = stats if stats is not None else ReadStats()
    name = os.fspath(path)
    try:
        f = open(name, "rb")  # closed in the finally below (a generator: no with block)
    except OSError as e:
        raise RecordingError(f"{name}: cannot open: {e.strerror}", path=name, errno=e.errno) from e
    try:
        size = os.fstat(f.fileno()).st_size
        stats.segments += 1
        decompressor = zstandard.ZstdDecompressor()
        window = _Window(f, name)
        pos = 0
        while pos < size:
            head = _read_header(window, pos)
            if len(head) < BLOCK_HEADER_SIZE and _HEADER_START.startswith(head[: len(_HEADER_START)]):
                _truncated(stats, name, pos, size, "a block header cut short")
                return
            try:
                header = unpack_block_header(head)
            except UnsupportedVersion as e:
                raise RecordingError(f"{name}: block at offset {pos}: {e}", path=name, offset=pos) from e
            except ValueError as e:
                nxt, saw_magic = _scan(f, name, pos + 1, size)
                if pos == 0 and nxt == size and not saw_magic and not head.startswith(BLOCK_MAGIC):
                    raise RecordingError(
                        f"{name}: not an obengine recording (no block header at offset 0 "
                        f"and no block magic anywhere)",
                        path=name,
                        offset=0,
                    ) from e
                _corrupt(stats, name, pos, nxt - pos, str(e))
                pos = nxt
                continue
            end = pos + BLOCK_HEADER_SIZE + header.compressed_size
            if end > size:
                _truncated(stats, name, pos, size, "a block's zstd frame cut short")
                return
            frame = window.read(pos + BLOCK_HEADER_SIZE, header.compressed_size)
            try:
                data, offsets = _decode(decompressor, header, frame)
            except ValueError as e:
                _corrupt(stats, name, pos, end - pos, str(e))
                pos = end
                continue
            stats.blocks += 1
            stats.bytes_read += end - pos
            yield Block(pos, header, data, offsets)
            pos = end
    finally:
        f.close()


def _decode(
    decompressor: zstandard.ZstdDecompressor, header: BlockHeader, frame: bytes | memoryview
) -> tuple[bytes, list[int]]:
    """The frame's records and where each starts. zstd checks the frame as it decodes it (its
    structure, and its content checksum, which every block has), so an intact block costs no
    second pass over its bytes; the block's own CRC-32 of the frame is checked when zstd
    refuses it, to say whether the frame's bytes were damaged, and by ``_scan``, which must
    tell a real block from bytes that look like one before decoding anything."""
    try:
        data = decompressor.decompress(frame, max_output_size=header.decompressed_size)
    except zstandard.ZstdError as e:
        raise ValueError(_frame_damage(header, frame, f"zstd: {e}")) from e
    if len(data) != header.decompressed_size:
        raise ValueError(_frame_damage(
            header, frame,
            f"decompressed to {len(data)} bytes, the header says {header.decompressed_size}"))
    return data, record_offsets(data, header.record_count)


def _frame_damage(header: BlockHeader, frame: bytes | memoryview, reason: str) -> str:
    if zlib.crc32(frame) != header.data_crc32:
        return f"CRC-32 mismatch in the compressed data ({reason})"
    return reason


_WINDOW = 8 << 20


class _Window:
    """Reads of one file served from a window read ``_WINDOW`` bytes at a time (or a block's
    size, if larger): one read call per window, not two per block (each read also releases the
    GIL, which a replay's reading thread must then win back from the thread applying blocks)."""

    def __init__(self, f: BinaryIO, name: str) -> None:
        self.f = f
        self.name = name
        self.start = 0
        self.data = memoryview(b"")

    def read(self, offset: int, n: int) -> memoryview:
        """``n`` bytes at ``offset`` (fewer at the end of the file), without copying."""
        if offset < self.start or offset + n > self.start + len(self.data):
            self.data = memoryview(_pread(self.f, self.name, offset, max(n, _WINDOW)))
            self.start = offset
        i = offset - self.start
        return self.data[i : i + n]


def _pread(f: BinaryIO, name: str, offset: int, n: int) -> bytes:
    try:
        f.seek(offset)
        return f.read(n)
    except OSError as e:
        raise RecordingError(
            f"{name}: cannot read at offset {offset}: {e.strerror}",
            path=name,
            offset=offset,
            errno=e.errno,
        ) from e


def _read_header(window: _Window, pos: int) -> bytes:
    """The block header at ``pos``: 52 bytes, or as many as its size field says when that is
    another size (a header of another version, which must be read whole to check its CRC)."""
    head = bytes(window.read(pos, BLOCK_HEADER_SIZE))
    if len(head) >= 8 and head.startswith(BLOCK_MAGIC):
        payload = int.from_bytes(head[4:8], "little")
        if payload != BLOCK_HEADER_SIZE - 8 and 12 <= payload <= _MAX_PAYLOAD_SIZE:
            head = bytes(window.read(pos, 8 + payload))
    return head


def _scan(f: BinaryIO, name: str, start: int, size: int) -> tuple[int, bool]:
    """Where reading resumes after damage at ``start - 1``: the next block magic at or after
    ``start`` followed by a header that validates *and* a zstd frame whose CRC-32 matches the
    header's (so that bytes inside a damaged block that merely look like a header, even one with
    a good CRC of its own, are not taken for one), or a header of another version (the caller
    reports it). If there is none, a candidate that could be the file's cut last block (a
    header cut short, or a valid header whose frame runs past the end); else ``size``. Also
    returns whether any block magic was seen."""
    saw = False
    tail: int | None = None
    window = _Window(f, name)           # the candidates' headers and frames
    pos = start
    while pos < size:
        chunk = _pread(f, name, pos, _SCAN_CHUNK + len(BLOCK_MAGIC) - 1)
        i = chunk.find(BLOCK_MAGIC)
        while i >= 0:
            saw = True
            at = pos + i
            i = chunk.find(BLOCK_MAGIC, i + 1)
            head = _read_header(window, at)
            if len(head) < BLOCK_HEADER_SIZE:
                if tail is None and _HEADER_START.startswith(head[: len(_HEADER_START)]):
                    tail = at
                continue
            try:
                header = unpack_block_header(head)
            except UnsupportedVersion:
                return at, saw
            except ValueError:
                continue
            end = at + BLOCK_HEADER_SIZE + header.compressed_size
            if end > size:
                if tail is None:
                    tail = at
                continue
            frame = window.read(at + BLOCK_HEADER_SIZE, header.compressed_size)
            if zlib.crc32(frame) == header.data_crc32:
                return at, saw
        pos += _SCAN_CHUNK
    return (tail if tail is not None else size), saw


def _corrupt(stats: ReadStats, name: str, offset: int, length: int, reason: str) -> None:
    stats.corrupt_blocks += 1
    stats.skipped_bytes += length
    stats.bytes_read += length
    log.warning("%s: offset %d: skipped %d damaged bytes: %s", name, offset, length, reason)


def _truncated(stats: ReadStats, name: str, offset: int, size: int, reason: str) -> None:
    stats.truncated_tail += 1
    stats.skipped_bytes += size - offset
    stats.bytes_read += size - offset
    log.info("%s: offset %d: the file ends inside a block (%s)", name, offset, reason)


# -- records -----------------------------------------------------------------------------------


def read_segment(path: str | os.PathLike[str], *, stats: ReadStats | None = None) -> Iterator[Record]:
    """The records of one segment file, in order (see :func:`iter_blocks` for damage and
    errors)."""
    stats = stats if stats is not None else ReadStats()
    for block in iter_blocks(path, stats=stats):
        for record in block.records():
            stats.records += 1
            yield record


def read(
    paths: Iterable[str | os.PathLike[str]], *, stats: ReadStats | None = None
) -> Iterator[tuple[Path, Record]]:
    """``(segment path, record)`` for every record of the segments ``paths`` name (expanded
    and ordered by :func:`segment_paths`), in order."""
    stats = stats if stats is not None else ReadStats()
    for path in segment_paths(paths):
        for record in read_segment(path, stats=stats):
            yield path, record
