"""``obengine.replay``: recordings back into books, exactly as the recorder's client held them.

A recording (``docs/recording.md``) is replayed through the engine as it is: every FRAME and
KEYFRAME record is applied to a :class:`~obengine.BookSet`, in order. Three ways in:

- :func:`updates` yields ``(recv_ns, pair, book, status)`` after each applied book frame, the
  loop quant code writes against the live feed;
- :func:`books` returns the books at the end of a recording, or as they were at a receive time;
- :func:`replay` does the same as :func:`books` at full speed (whole blocks per call into the
  core, decompression on a second thread) and sums up what happened per pair; with
  ``workers=N`` or a Dask ``scheduler`` it replays segments in parallel, with the same result.

Which book a frame lands in
    One :class:`~obengine.BookSet` for the whole replay, made with the scales of the first
    segment's HEADER (the scales the recorder's books started with), so each book goes through
    the same rescales as the recorder's did. A segment's KEYFRAMEs are applied too: to a replay
    that started earlier they change nothing (they are the books it holds), and they let a
    replay start at any segment.

View lifetimes
    The ``book`` of an update is the live :class:`~obengine.Book`: its numpy views (``bids``,
    ``asks``, ``top``) show the book as of that update and are valid until the next update of
    the same pair (the next frame may move or resize the rows they view). Copy what you keep
    (``book.top(10)[0].copy()``). The books :func:`books` and :func:`replay` return are no
    longer fed: their views stay valid.

Damage
    A corrupt block is skipped with a warning and counted (``ReadStats.corrupt_blocks``), a cut
    tail ends its segment quietly; a malformed frame is logged, counted (``errors``) and changes
    no book. None of them ends the replay.

Plain blocking code: files and threads, no asyncio and no sockets.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

from obengine._core import MAX_SCALE, Book, BookSet, Status
from obengine.errors import FrameError
from obengine.record.format import BLOCK_HEADER_SIZE, RECORD_HEADER_SIZE, Kind
from obengine.record.keyframe import gap_frame, snapshot_frame, snapshot_frames
from obengine.record.reader import Block, ReadStats, iter_blocks, segment_paths

__all__ = [
    "PairSummary",
    "Paths",
    "Replay",
    "Update",
    "books",
    "replay",
    "segment_books",
    "segment_files",
    "updates",
]

log = logging.getLogger("obengine.replay")

#: One path or many: segment files, directories, glob patterns.
Paths = Union[str, "os.PathLike[str]", Iterable[Union[str, "os.PathLike[str]"]]]


class Update(NamedTuple):
    """One applied book frame of a replay.

    Attributes:
        recv_ns: when the frame was received, wall clock, ns since the Unix epoch (for a
            keyframe: when its segment started).
        pair: the pair, e.g. ``"BTCTRY"``.
        book: the pair's live :class:`~obengine.Book` (views valid until the pair's next update).
        status: what the frame did (never ``IGNORED``: those frames are not yielded).
    """

    recv_ns: int
    pair: str
    book: Book
    status: Status


@dataclass
class PairSummary:
    """What a replay did to one pair's book.

    Attributes:
        frames: FRAME records applied (``APPLIED``).
        stale: frames whose CS was not newer than the book's.
        gaps: frames that found a CS missing, or came while the book was not synced.
        crossed: frames that left the book crossed.
        syncs: 431 frames that brought an unsynced book (never synced, or after a gap) in sync:
            the first sync of a pair and every resync.
        keyframes: KEYFRAME records applied.
        errors: malformed frames naming this pair (skipped).
        anomalies: level anomalies the engine counted (``docs/rules.md``).
    """

    frames: int = 0
    stale: int = 0
    gaps: int = 0
    crossed: int = 0
    syncs: int = 0
    keyframes: int = 0
    errors: int = 0
    anomalies: int = 0

    def add(self, other: PairSummary) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Replay:
    """The result of :func:`replay`.

    Attributes:
        books: pair to :class:`~obengine.Book`, as the recording left them (or at ``at_ns``).
        pairs: pair to its :class:`PairSummary`.
        stats: what the reader went through (segments, blocks, damage).
        ignored: frames that were not book frames (trades, tickers, results, ...).
        errors: malformed frames, all pairs (and those whose pair could not be read).
        seconds: wall time the replay took.
    """

    books: Mapping[str, Book]
    pairs: dict[str, PairSummary] = field(default_factory=dict)
    stats: ReadStats = field(default_factory=ReadStats)
    ignored: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        """Book frames applied (FRAME records, every status but IGNORED; keyframes not counted)."""
        return sum(s.frames + s.stale + s.gaps + s.crossed for s in self.pairs.values())


# -- the header, the books -----------------------------------------------------------------------


def segment_files(paths: Paths) -> list[Path]:
    """The segment files ``paths`` names (one path or many: files, directories, glob patterns),
    in recording order (:func:`obengine.record.segment_paths`)."""
    return segment_paths([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))


def _header_scales(block: Block) -> dict[str, tuple[int, int]]:
    """The ``scales`` of a segment's HEADER (its first record), where it has them."""
    records = block.records()
    if not records or records[0].kind is not Kind.HEADER:
        return {}
    try:
        scales = records[0].json().get("scales") or {}
        return {str(p): (int(s[0]), int(s[1])) for p, s in scales.items()}
    except (ValueError, TypeError, AttributeError, IndexError) as e:
        log.warning("a segment's HEADER has unusable scales (%s): using the bundled table", e)
        return {}


def segment_books(block: Block) -> BookSet:
    """A book set for a replay that starts at this block (a segment's first): with the scales
    of the segment's HEADER, so each book goes through the same rescales as the recorder's."""
    try:
        return BookSet(_header_scales(block))
    except ValueError as e:            # a scale a BookSet cannot be given (above 18): inferred
        log.warning("a segment's HEADER scales cannot be used (%s): using the bundled table", e)
        return BookSet()


#: Malformed frames logged one by one per replay; the rest are counted (``Replay.errors``).
WARN_LIMIT = 20


def _frame_error(path: str | Path, block: Block, offset: int, error: FrameError, seen: int) -> None:
    """Log the ``seen``-th malformed frame of a replay (or an export's segment), if it is among
    the first WARN_LIMIT."""
    if seen <= WARN_LIMIT:
        more = " (further malformed frames are counted, not logged)" if seen == WARN_LIMIT else ""
        log.warning("%s: block at byte %d, record at byte %d: %s%s", path, block.offset, offset, error, more)


def _count_error(result: Replay, error: FrameError) -> None:
    result.errors += 1
    if error.pair is not None:
        result.pairs.setdefault(error.pair, PairSummary()).errors += 1


# -- updates: one frame at a time ----------------------------------------------------------------


def updates(paths: Paths, *, stats: ReadStats | None = None) -> Iterator[Update]:
    """Every applied book frame of the recording, in order, as an :class:`Update`
    ``(recv_ns, pair, book, status)``; also unpacks as a 4-tuple.

    ``paths``: segment files, directories and glob patterns (ordered by
    :func:`obengine.record.segment_paths`). Frames that are not book frames are not yielded; a
    malformed frame is logged and skipped. Pass ``stats`` to have it filled.

    Raises:
        RecordingError: a path matches no file, or a file is not a recording.
    """
    stats = stats if stats is not None else ReadStats()
    bookset: BookSet | None = None
    unpack = _record_head
    malformed = 0
    for path in segment_files(paths):
        for block in iter_blocks(path, stats=stats):
            if bookset is None:
                bookset = segment_books(block)
            apply = bookset.apply
            data = block.data
            view = memoryview(data)
            for offset in block.offsets:
                size, kind, wall_ns = unpack(data, offset)
                stats.records += 1
                if kind != Kind.FRAME and kind != Kind.KEYFRAME:
                    continue
                start = offset + RECORD_HEADER_SIZE
                try:
                    pair, status = apply(view[start : start + size])
                except FrameError as e:
                    malformed += 1
                    _frame_error(path, block, offset, e, malformed)
                    continue
                if pair is not None:
                    yield Update(wall_ns, pair, bookset[pair], status)


def _record_head(data: bytes, offset: int) -> tuple[int, int, int]:
    return (
        int.from_bytes(data[offset : offset + 4], "little"),
        data[offset + 4],
        int.from_bytes(data[offset + 5 : offset + 13], "little", signed=True),
    )


# -- whole blocks: books and replay ---------------------------------------------------------------


_DONE = object()


def _prefetch(paths: list[Path], stats: ReadStats, depth: int = 8) -> Iterator[tuple[Path, Block]]:
    """``iter_blocks`` over every path, read and decompressed on a second thread ``depth``
    blocks ahead of the caller. Reads and decompression release the GIL, and so does
    ``BookSet.apply_block`` while it applies a block, so the two threads run on two cores.
    Errors are raised in the caller."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for path in paths:
                for block in iter_blocks(path, stats=stats):
                    if stop.is_set():
                        return
                    q.put((path, block))
        except BaseException as e:  # handed to the caller, raised there
            q.put(e)
        finally:
            q.put(_DONE)

    thread = threading.Thread(target=read, name="obengine-replay-read", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():          # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def _replay_blocks(
    paths: list[Path],
    result: Replay,
    *,
    at_ns: int | None,
    progress: Callable[[int], None] | None,
    prefetch: bool = True,
) -> BookSet:
    stats = result.stats
    bookset: BookSet | None = None
    blocks = _prefetch(paths, stats) if prefetch else ((p, b) for p in paths for b in iter_blocks(p, stats=stats))
    done = 0
    for path, block in blocks:
        if bookset is None:
            bookset = segment_books(block)
        end, ignored, errors = bookset.apply_block(block.data, 0, at_ns)
        result.ignored += ignored
        for offset, error in errors:
            _count_error(result, error)
            _frame_error(path, block, offset, error, result.errors)
        if progress is not None:
            done += BLOCK_HEADER_SIZE + block.header.compressed_size
            progress(done)
        if end < len(block.data):        # reached at_ns
            break
    # stats.records stays as it is: this path does not walk records one by one
    return bookset if bookset is not None else BookSet()



def _summarise(bookset: BookSet, result: Replay) -> None:
    for pair, (applied, stale, gaps, crossed, keyframes, syncs) in bookset.tallies().items():
        s = result.pairs.setdefault(pair, PairSummary())
        s.frames += applied
        s.stale += stale
        s.gaps += gaps
        s.crossed += crossed
        s.keyframes += keyframes
        s.syncs += syncs
        s.anomalies += bookset[pair].anomalies


def books(paths: Paths, at_ns: int | None = None, *, stats: ReadStats | None = None) -> BookSet:
    """The books of a recording: as it left them, or, with ``at_ns`` (wall clock, ns since the
    epoch), as they were after the last frame received at or before ``at_ns`` (reading stops at
    the first frame received later). A mapping from pair to :class:`~obengine.Book`.

    Raises:
        RecordingError: a path matches no file, or a file is not a recording.
    """
    result = replay(paths, at_ns=at_ns)
    if stats is not None:
        for name in stats.__dataclass_fields__:
            setattr(stats, name, getattr(stats, name) + getattr(result.stats, name))
    assert isinstance(result.books, BookSet)
    return result.books


def replay(
    paths: Paths,
    *,
    at_ns: int | None = None,
    workers: int = 1,
    scheduler: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> Replay:
    """Replay a recording at full speed and sum up what happened per pair.

    Sequentially (the default) the books are a :class:`~obengine.BookSet`. With ``workers > 1``
    (local processes, started by a fork server: in a script, call it under
    ``if __name__ == "__main__":``) or ``scheduler`` (the address of a Dask distributed
    scheduler, or a ``distributed.Client``; the ``dask`` extra) each segment is replayed on its own from its keyframes and the results are merged:
    the books and counts equal those of one sequential pass (see ``docs/recording.md``,
    "Parallel replay"); the books are then a ``dict`` of :class:`~obengine.Book`. ``at_ns`` is
    for the sequential path only.

    ``progress(done_bytes, total_bytes)`` is called as the segments' bytes are gone through.

    Raises:
        RecordingError: a path matches no file, or a file is not a recording.
        ValueError: ``at_ns`` together with parallel replay.
    """
    files = segment_files(paths)
    total = sum(p.stat().st_size for p in files)
    began = time.perf_counter()
    if workers > 1 or scheduler is not None:
        if at_ns is not None:
            raise ValueError("at_ns is for a sequential replay (workers=1, no scheduler)")
        from obengine._parallel import run_segments

        result = merge(run_segments(replay_segment, files, workers=workers, scheduler=scheduler, progress=progress))
    else:
        result = Replay(books={})
        report = (lambda done: progress(done, total)) if progress is not None else None
        bookset = _replay_blocks(files, result, at_ns=at_ns, progress=report)
        _summarise(bookset, result)
        result.books = bookset
    result.seconds = time.perf_counter() - began
    return result


# -- parallel replay: one segment per task, merged -------------------------------------------------


@dataclass
class Segment:
    """One segment replayed on its own from its keyframes (what a worker of a parallel replay
    returns): its counts, and each book that was synced at some point, as the frames that
    rebuild it (:func:`book_frames`)."""

    path: str
    replay: Replay
    books: dict[str, tuple[list[bytes], int, int]]   # pair -> (frames, price_scale, amount_scale)


def replay_segment(path: str | os.PathLike[str]) -> Segment:
    """Replay one segment on its own, from its keyframes. Picklable in and out: what a worker
    process or a Dask task runs."""
    result = Replay(books={})
    bookset = _replay_blocks([Path(path)], result, at_ns=None, progress=None, prefetch=False)
    _summarise(bookset, result)
    kept = {}
    for pair, book in bookset.items():
        if book.seq is None:
            continue
        kept[pair] = (book_frames(book), book.price_scale, book.amount_scale)
        if book.wide and not book.synced:       # the one state book_frames may not carry
            again = rebuild(pair, *kept[pair])
            if again.snapshot() != book.snapshot():
                log.warning("%s: %s: a wide, crossed, unsynced book is not carried exactly to the merge", path, pair)
    return Segment(os.fspath(path), result, kept)


def book_frames(book: Book) -> list[bytes]:
    """Frames that make a fresh ``Book(book.pair, book.price_scale, book.amount_scale)`` equal
    to ``book``: the same levels, ``seq``, scales and width, and the same sync state. Empty for
    a book that never synced.

    A synced book gives its keyframes. An unsynced one gives the 431 of its levels (the fresh
    book has its scales already), then an empty 432 two past its ``seq``: a gap, which leaves
    levels and ``seq`` as they are and the book unsynced (a book left crossed is unsynced by
    the 431 itself). A wide unsynced book needs the keyframes' helper level to turn wide; if
    it is also crossed, the 432 that removes that level finds it unsynced, and the rebuilt
    book keeps the helper level: the one state this does not carry (``merge`` warns).
    """
    if book.synced:
        return snapshot_frames(book)
    if book.seq is None:
        return []
    frames = snapshot_frames(book, require_synced=False) if book.wide else []
    if not frames:
        frame = snapshot_frame(book, require_synced=False)
        frames = [frame] if frame is not None else []
    frames.append(gap_frame(book.pair, book.seq))
    return frames


def rebuild(pair: str, frames: list[bytes], price_scale: int, amount_scale: int) -> Book:
    """The book :func:`book_frames` describes."""
    book = Book(pair, min(price_scale, MAX_SCALE), min(amount_scale, MAX_SCALE))
    for frame in frames:
        book.apply(frame)
    return book


def merge(segments: Iterable[Segment], stats: ReadStats | None = None) -> Replay:
    """The result of one sequential pass, from the segments replayed on their own, in
    recording order. A pair's book is the one of the last segment in which the pair was synced
    at some point (after that, its frames found it unsynced and changed nothing, in a sequential
    pass too); counts are summed (a keyframe counts no anomaly and no frame)."""
    result = Replay(books={})
    last: dict[str, tuple[list[bytes], int, int]] = {}
    for seg in segments:
        for name in ReadStats.__dataclass_fields__:
            setattr(result.stats, name, getattr(result.stats, name) + getattr(seg.replay.stats, name))
        result.ignored += seg.replay.ignored
        result.errors += seg.replay.errors
        for pair, summary in seg.replay.pairs.items():
            result.pairs.setdefault(pair, PairSummary()).add(summary)
        last.update(seg.books)
    books: dict[str, Book] = {}
    for pair in sorted(last):
        books[pair] = rebuild(pair, *last[pair])
    result.books = books
    return result
