"""Writing recordings: :class:`SegmentWriter` (one segment file, block by block) and
:class:`Recording` (the rotating writer a recorder process uses). Format: ``docs/recording.md``.

Plain blocking file I/O (``os.write`` on an ``O_APPEND`` descriptor, ``os.fsync``); no asyncio.
Neither class reads a clock: every time is passed in by the caller (``wall_ns`` from
``time.time_ns()``, ``mono_ns`` from ``time.monotonic_ns()``), so a recorder decides what a record's
time is and a test controls every flush and rotation.

A process writing a recording with a file size limit (``RLIMIT_FSIZE``) must ignore ``SIGXFSZ``
(``signal.signal(signal.SIGXFSZ, signal.SIG_IGN)``): by default that signal kills the process at
the limit, whereas ignored, the write fails with ``EFBIG`` and the writer raises
:class:`~obengine.errors.RecordingError`, leaving only complete blocks in the file.
"""
from __future__ import annotations

import errno as _errno
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import obengine
from obengine.errors import RecordingError
from obengine.record.format import (
    FORMAT_VERSION,
    MAX_BLOCK_DATA,
    RECORD_HEADER_SIZE,
    RESERVED_HEADER_KEYS,
    Kind,
    _compressor,
    _record_header,
    encode_block,
    encode_event,
    segment_name,
)

__all__ = ["MiB", "Recording", "SegmentWriter"]

MiB = 1 << 20

Data = bytes | bytearray | memoryview | str

_HINTS = {
    _errno.EFBIG: "the file size limit was reached (RLIMIT_FSIZE, or the file system's largest file)",
    _errno.ENOSPC: "no space left on the device",
    _errno.EDQUOT: "the disk quota is exhausted",
    _errno.EIO: "an I/O error from the device",
}


def _describe(error: OSError) -> str:
    """``"[Errno 27] File too large (EFBIG: the file size limit ...)"``."""
    code = error.errno
    if code is None:
        return str(error)
    name = _errno.errorcode.get(code, str(code))
    hint = _HINTS.get(code)
    return f"[Errno {code}] {error.strerror} ({name}{': ' + hint if hint else ''})"


def _as_bytes(data: Data) -> bytes:
    if isinstance(data, str):
        return data.encode()  # a text frame's UTF-8: the bytes that were on the wire
    return bytes(data)  # a copy for a bytearray or memoryview: the buffer may be reused


class SegmentWriter:
    """One segment file, written block by block.

    The file is created new (``O_EXCL``: never overwritten or appended to) and written through
    an ``O_APPEND`` descriptor with one ``os.write`` per block (a short write is continued), so a
    process killed at any moment leaves complete blocks and at most one cut block at the end.
    A failed write raises :class:`RecordingError` after cutting the file back to its last
    complete block (``ftruncate``, best effort), and the writer then refuses every write.

    Args:
        path: the file to create.
        level: zstd compression level (3, zstd's default: about 4x on the simulator's frames,
            at about 90 MB/s of frames on one core; 9: about 4.8x at a third of the speed).
        fsync: ``os.fsync`` the file after every block (and the directory once, after creating
            the file). Not needed to survive a killed process, since a written block is in the
            OS's page cache at once; needed to survive a power loss or a kernel crash, at the
            cost of a disk flush per block (a fraction of a millisecond on an SSD, up to tens
            on a spinning disk; with ``Recording``'s one block a second, nothing to speak of).

    Counters: ``blocks`` written, ``records`` appended (written or buffered),
    :attr:`records_written` (in blocks written), ``raw_bytes`` (payload bytes appended),
    ``disk_bytes`` (bytes written: the file's size), ``buffered_records`` and ``buffered_bytes``
    (encoded bytes, 21 a record plus its payload, waiting for the next block).
    """

    def __init__(self, path: str | os.PathLike[str], *, level: int = 3, fsync: bool = True) -> None:
        self.path = Path(path)
        self.level = level
        self.fsync = fsync
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise RecordingError(
                f"{self.path}: cannot create the segment: {_describe(e)}",
                path=str(self.path),
                errno=e.errno,
            ) from e
        self._closed = False
        self._failed: RecordingError | None = None
        self._compressor = _compressor(level)
        self._parts: list[bytes] = []
        self._first_wall_ns = 0
        self._last_wall_ns = 0
        self.blocks = 0
        self.records = 0
        self.raw_bytes = 0
        self.disk_bytes = 0
        self.buffered_records = 0
        self.buffered_bytes = 0
        self._written_records = 0
        if fsync:
            try:
                _fsync_directory(self.path.parent)
            except OSError as e:
                self._closed = True
                os.close(self._fd)
                raise RecordingError(
                    f"{self.path}: cannot fsync its directory: {_describe(e)}",
                    path=str(self.path),
                    errno=e.errno,
                ) from e

    # -- writing ---------------------------------------------------------------------------------

    def append(self, kind: int, wall_ns: int, mono_ns: int, data: Data) -> None:
        """Buffer one record (written by the next :meth:`flush_block`). ``data`` is copied;
        ``str`` is encoded to UTF-8. Flushes first if the record would not fit the block's 4 GiB.

        Raises:
            ValueError: an unknown kind, a time outside int64, a payload over 4 GiB; or the
                writer is closed.
            RecordingError: the writer failed earlier (or failed now, flushing).
        """
        self._check()
        payload = _as_bytes(data)
        head = _record_header(kind, wall_ns, mono_ns, len(payload))
        size = RECORD_HEADER_SIZE + len(payload)
        if self.buffered_bytes + size > MAX_BLOCK_DATA:
            self.flush_block()
        if not self._parts:
            self._first_wall_ns = wall_ns
        self._last_wall_ns = wall_ns
        self._parts.append(head)
        self._parts.append(payload)
        self.records += 1
        self.raw_bytes += len(payload)
        self.buffered_records += 1
        self.buffered_bytes += size

    def flush_block(self) -> int:
        """Compress the buffered records into one block and write it (then ``fsync`` if asked).
        Returns the bytes written; 0 when nothing was buffered.

        Raises:
            RecordingError: the write (or fsync) failed; the file holds only complete blocks
                (unless cutting it back failed too, which the message says) and the writer
                refuses further writes.
        """
        self._check()
        if not self._parts:
            return 0
        data = b"".join(self._parts)
        block = encode_block(
            data,
            self.buffered_records,
            self._first_wall_ns,
            self._last_wall_ns,
            compressor=self._compressor,
        )
        self._write(block)
        self._parts.clear()
        self.blocks += 1
        self._written_records += self.buffered_records
        self.buffered_records = 0
        self.buffered_bytes = 0
        return len(block)

    def _write(self, block: bytes) -> None:
        start = self.disk_bytes
        view = memoryview(block)
        done = 0
        try:
            while done < len(block):
                # One write normally; a short one (the size limit, a full disk) is continued,
                # and its continuation reports the error.
                done += os.write(self._fd, view[done:])
        except OSError as e:
            self._fail(
                f"writing a {len(block)}-byte block at offset {start} failed: {_describe(e)}",
                start,
                e,
                cut=True,
            )
        self.disk_bytes = start + len(block)
        if self.fsync:
            try:
                os.fsync(self._fd)
            except OSError as e:
                # The block is in the file as the OS sees it, but may not be on the disk; after
                # a failed fsync the page cache cannot be trusted to retry, so stop here.
                self._fail(f"fsync of the block at offset {start} failed: {_describe(e)}", start, e)

    def _fail(self, what: str, offset: int, error: OSError, *, cut: bool = False) -> None:
        note = ""
        if cut:
            try:
                os.ftruncate(self._fd, offset)
                note = f"; the file was cut back to its last complete block ({offset} bytes)"
            except OSError as e:
                note = f"; cutting it back to {offset} bytes failed too: {_describe(e)}"
        self._failed = RecordingError(
            f"{self.path}: {what}{note}",
            path=str(self.path),
            offset=offset,
            errno=error.errno,
        )
        raise self._failed from error

    def _check(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the segment writer is closed")
        if self._failed is not None:
            raise RecordingError(
                f"{self.path}: the writer failed earlier and refuses writes ({self._failed})",
                path=str(self.path),
                offset=self._failed.offset,
                errno=self._failed.errno,
            )

    # -- closing ---------------------------------------------------------------------------------

    @property
    def records_written(self) -> int:
        """Records in the blocks written (complete in the file)."""
        return self._written_records

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failed(self) -> RecordingError | None:
        """The error that stopped the writer, if one did."""
        return self._failed

    def close(self) -> None:
        """Flush the buffered records as a last block and close the file. Idempotent. After a
        write error, closes the file without writing (the buffered records are lost)."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self.flush_block()
        finally:
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SegmentWriter {str(self.path)!r} blocks={self.blocks} records={self.records}>"


def _fsync_directory(directory: Path) -> None:
    """Make a new directory entry durable (a no-op where directories cannot be opened or
    synced: some file systems answer EINVAL)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except (PermissionError, IsADirectoryError):
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (_errno.EINVAL, _errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


HeaderSource = Mapping[str, Any] | Callable[[], Mapping[str, Any]]


class Recording:
    """A rotating recording: a directory of segments, each starting with a HEADER record and
    the books' KEYFRAME records, then the records the caller adds, in blocks.

    The caller passes every record's times. A block is written when ``block_bytes`` of records
    are buffered, or when ``block_s`` has passed since the block's first record: checked by
    :meth:`add`, and by :meth:`poll`, which the recorder calls on a timer (:attr:`deadline_ns`
    says when) so that a quiet feed is still written within ``block_s``. A new segment is started,
    before the record that finds it due, when the current one is ``rotate_s`` old (monotonic
    time) or ``rotate_bytes`` large (so a segment ends at most one block past it); also by
    :meth:`rotate` at any time.

    Args:
        directory: where the segments go; created if missing.
        prefix: segment names' prefix (letters, digits, ``._-``).
        header: the caller's HEADER fields (source url, pairs, channels, scales, ...), or a
            function returning them, called at each segment's start (so ``scales`` can be the
            books' current ones). JSON-serialisable. Must not use the keys the writer sets
            (``format``, ``obengine``, ``created_ns``, ``segment``, ``prefix``, ``run``,
            ``previous``), and **must never hold a credential**: recordings are meant to be
            shared.
        keyframes: function returning the KEYFRAME payloads at a segment's start, in order
            (``lambda: obengine.record.keyframe.keyframes(books)``); called once per segment,
            when the segment starts, before the record that started it is added.
        rotate_s, rotate_bytes: segment age (seconds) and size (bytes) that start a new one.
        block_s, block_bytes: block age (seconds since its first record) and buffered size
            (encoded record bytes) that write the block.
        level, fsync: as for :class:`SegmentWriter`.

    Counters (for a health line): ``segments``, ``blocks``, ``records`` and ``frames`` (FRAME
    records) added, ``records_written`` (in blocks on disk), ``raw_bytes`` (payload bytes added),
    ``disk_bytes`` (bytes written), ``buffered_records``, ``buffered_bytes``, :attr:`ratio`.

    After a write error (:class:`RecordingError`) every further call raises it again; the
    segments hold every block written before it.

    Not thread-safe: call it from one thread. Its writes (and fsyncs) block; a recorder whose
    event loop must never wait on the disk can run it in a worker thread.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        prefix: str = "obengine",
        header: HeaderSource | None = None,
        keyframes: Callable[[], Iterable[bytes]] | None = None,
        rotate_s: float = 3600.0,
        rotate_bytes: int = 256 * MiB,
        block_s: float = 1.0,
        block_bytes: int = MiB,
        level: int = 3,
        fsync: bool = True,
    ) -> None:
        if rotate_s <= 0 or block_s <= 0 or rotate_bytes <= 0 or block_bytes <= 0:
            raise ValueError("rotate_s, rotate_bytes, block_s and block_bytes must be > 0")
        segment_name(prefix, 0, 1)  # validates the prefix
        if isinstance(header, Mapping):
            _check_header(header)
        self.directory = Path(directory)
        self.prefix = prefix
        self._header = header
        self._keyframes = keyframes
        self.rotate_ns = round(rotate_s * 1e9)
        self.rotate_bytes = rotate_bytes
        self.block_ns = round(block_s * 1e9)
        self.block_bytes = block_bytes
        self.level = level
        self.fsync = fsync
        #: Identifies this run (one Recording object) in every segment's HEADER.
        self.run_id = uuid.uuid4().hex
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RecordingError(
                f"{self.directory}: cannot create the recording directory: {_describe(e)}",
                path=str(self.directory),
                errno=e.errno,
            ) from e
        self._segment: SegmentWriter | None = None
        self._segment_mono_ns = 0
        self._block_mono_ns = 0
        self._counter = 0
        self._last_start_ns: int | None = None
        self._closed = False
        self._failed: RecordingError | None = None
        #: Paths of the segments started, in order.
        self.paths: list[Path] = []
        self.segments = 0
        self.frames = 0
        self._done_blocks = 0
        self._done_records = 0
        self._done_written = 0
        self._done_raw = 0
        self._done_disk = 0

    # -- adding ----------------------------------------------------------------------------------

    def add(self, kind: int, wall_ns: int, mono_ns: int, data: Data) -> None:
        """Add one record received (or made) at ``wall_ns`` / ``mono_ns``. Starts the first
        segment, or a new one when the current one is due, before adding it; writes the block
        when it is due by age (before) or by size (after).

        Add a received frame *before* applying it to the books that ``keyframes`` reads, so a
        new segment's keyframes are the books just before its first frame.

        Raises:
            RecordingError: a write failed (now or earlier).
            ValueError: a bad record (unknown kind, time outside int64), or closed.
        """
        self._check()
        try:
            seg = self._segment
            if seg is None:
                seg = self._start(wall_ns, mono_ns)
            else:
                seg = self._due(seg, wall_ns, mono_ns)
            if not seg.buffered_records:
                self._block_mono_ns = mono_ns
            seg.append(kind, wall_ns, mono_ns, data)
            if kind == Kind.FRAME:
                self.frames += 1
            if seg.buffered_bytes >= self.block_bytes:
                seg.flush_block()
        except RecordingError as e:
            self._failed = e
            raise

    def event(
        self, event: str, wall_ns: int, mono_ns: int, fields: Mapping[str, Any] | None = None
    ) -> None:
        """Add an EVENT record ``{"event": event, **fields}`` (connect, subscribe result, gap,
        resync, reconnect, error, ...)."""
        self.add(Kind.EVENT, wall_ns, mono_ns, encode_event(event, fields))

    def poll(self, wall_ns: int, mono_ns: int) -> None:
        """Do what is due at this time: start a new segment if the current one is ``rotate_s``
        old, else write the block if its first record is ``block_s`` old. Call it on a timer
        (see :attr:`deadline_ns`). ``wall_ns`` names and stamps a segment started here."""
        self._check()
        seg = self._segment
        if seg is None:
            return
        try:
            self._due(seg, wall_ns, mono_ns)
        except RecordingError as e:
            self._failed = e
            raise

    @property
    def deadline_ns(self) -> int | None:
        """The monotonic time (ns) at which :meth:`poll` next has something to do: the block's
        age limit if records are buffered, else the segment's; ``None`` before the first
        segment. (A size limit is acted on by :meth:`add` itself.)"""
        seg = self._segment
        if seg is None:
            return None
        due = self._segment_mono_ns + self.rotate_ns
        if seg.buffered_records:
            due = min(due, self._block_mono_ns + self.block_ns)
        return due

    def rotate(self, wall_ns: int, mono_ns: int) -> Path:
        """Close the current segment (writing its buffered records) and start a new one now,
        with its HEADER and keyframes. Returns the new segment's path."""
        self._check()
        try:
            return self._rotate(wall_ns, mono_ns).path
        except RecordingError as e:
            self._failed = e
            raise

    def flush(self) -> None:
        """Write the buffered records as a block now."""
        self._check()
        if self._segment is not None:
            try:
                self._segment.flush_block()
            except RecordingError as e:
                self._failed = e
                raise

    def close(self) -> None:
        """Write the buffered records and close the segment. Idempotent; after a write error it
        only closes the file."""
        if self._closed:
            return
        self._closed = True
        if self._segment is not None:
            seg, self._segment = self._segment, None
            try:
                self._retire(seg)
            except RecordingError as e:
                self._failed = e
                raise

    def __enter__(self) -> Recording:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- counters --------------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The segment being written, ``None`` before the first one or after :meth:`close`."""
        return self._segment.path if self._segment is not None else None

    @property
    def failed(self) -> RecordingError | None:
        """The write error that stopped the recording, if one did."""
        return self._failed

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def blocks(self) -> int:
        return self._done_blocks + (self._segment.blocks if self._segment else 0)

    @property
    def records(self) -> int:
        return self._done_records + (self._segment.records if self._segment else 0)

    @property
    def buffered_records(self) -> int:
        return self._segment.buffered_records if self._segment else 0

    @property
    def buffered_bytes(self) -> int:
        return self._segment.buffered_bytes if self._segment else 0

    @property
    def records_written(self) -> int:
        return self._done_written + (self._segment.records_written if self._segment else 0)

    @property
    def raw_bytes(self) -> int:
        return self._done_raw + (self._segment.raw_bytes if self._segment else 0)

    @property
    def disk_bytes(self) -> int:
        return self._done_disk + (self._segment.disk_bytes if self._segment else 0)

    @property
    def ratio(self) -> float:
        """Compression ratio: payload bytes written over bytes on disk (0.0 before any)."""
        disk = self.disk_bytes
        if not disk:
            return 0.0
        return (self.raw_bytes - self._buffered_raw()) / disk

    def _buffered_raw(self) -> int:
        seg = self._segment
        if seg is None:
            return 0
        return seg.buffered_bytes - seg.buffered_records * RECORD_HEADER_SIZE

    def __repr__(self) -> str:
        return (
            f"<Recording {str(self.directory)!r} segments={self.segments} blocks={self.blocks} "
            f"records={self.records}>"
        )

    # -- inside ----------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise ValueError(f"{self.directory}: the recording is closed")
        if self._failed is not None:
            raise RecordingError(
                f"the recording failed earlier and refuses writes ({self._failed})",
                path=self._failed.path,
                offset=self._failed.offset,
                errno=self._failed.errno,
            )

    def _due(self, seg: SegmentWriter, wall_ns: int, mono_ns: int) -> SegmentWriter:
        """Write the block if it is old, then start a new segment if this one is old or large
        (in that order: a block written by age may be what makes the segment large, and the
        segment must end with it). Returns the segment to add to."""
        if seg.buffered_records and mono_ns - self._block_mono_ns >= self.block_ns:
            seg.flush_block()
        if (
            mono_ns - self._segment_mono_ns >= self.rotate_ns
            or seg.disk_bytes >= self.rotate_bytes
        ):
            return self._rotate(wall_ns, mono_ns)
        return seg

    def _rotate(self, wall_ns: int, mono_ns: int) -> SegmentWriter:
        if self._segment is not None:
            seg, self._segment = self._segment, None
            self._retire(seg)
        return self._start(wall_ns, mono_ns)

    def _retire(self, seg: SegmentWriter) -> None:
        try:
            seg.close()
        finally:
            self._done_blocks += seg.blocks
            self._done_records += seg.records
            self._done_written += seg.records_written
            self._done_raw += seg.raw_bytes
            self._done_disk += seg.disk_bytes

    def _start(self, wall_ns: int, mono_ns: int) -> SegmentWriter:
        # What the segment starts with is asked for first: a header or keyframe callback that
        # fails leaves no file behind (the next record tries again).
        caller = self._header() if callable(self._header) else (self._header or {})
        _check_header(caller)
        frames = list(self._keyframes()) if self._keyframes is not None else []
        # A segment's name never starts before the previous one's, even if the wall clock
        # stepped back: names sort in the order the segments were written.
        start_ns = wall_ns
        if self._last_start_ns is not None:
            start_ns = max(start_ns, self._last_start_ns + 1000)
        previous = self.paths[-1].name if self.paths else None
        seg: SegmentWriter | None = None
        for _ in range(10_000):
            self._counter += 1
            path = self.directory / segment_name(self.prefix, max(start_ns, 0), self._counter)
            try:
                seg = SegmentWriter(path, level=self.level, fsync=self.fsync)
                break
            except RecordingError as e:
                if e.errno != _errno.EEXIST:
                    raise
        if seg is None:
            raise RecordingError(
                f"{self.directory}: no free segment name", path=str(self.directory)
            )
        self._last_start_ns = start_ns
        self._segment = seg
        self._segment_mono_ns = mono_ns
        self.segments += 1
        self.paths.append(seg.path)
        header: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "obengine": obengine.__version__,
            "created_ns": wall_ns,
            "segment": self._counter,
            "prefix": self.prefix,
            "run": self.run_id,
            "previous": previous,
        }
        header.update(caller)
        seg.append(
            Kind.HEADER,
            wall_ns,
            mono_ns,
            json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode(),
        )
        for frame in frames:
            seg.append(Kind.KEYFRAME, wall_ns, mono_ns, frame)
        # The header and keyframes make the segment's first block at once: a segment file is
        # self-describing as soon as it exists (and its keyframes are on disk).
        seg.flush_block()
        return seg


def _check_header(fields: Mapping[str, Any]) -> None:
    clash = RESERVED_HEADER_KEYS.intersection(fields)
    if clash:
        raise ValueError(f"header keys {sorted(clash)} are set by the writer")
