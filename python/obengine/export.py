"""``obengine.export``: a recording's books as data other tools read.

Three ways out, each replaying the recording (``docs/recording.md``) through the engine:

- :func:`to_parquet`: a top-N depth time series per pair, one Parquet file per pair, exact
  decimals (the ``parquet`` extra: pyarrow). Readable by pandas, polars and DuckDB.
- :func:`to_hftbacktest`: the event arrays `hftbacktest <https://github.com/nkaz001/hftbacktest>`_
  loads, one ``.npz`` per pair (numpy only; hftbacktest itself is not needed to write them).
- :func:`plot`: mid, spread and top-N depth over time per pair, as a PNG (the ``plot`` extra:
  matplotlib).

Times are wall-clock receive times, integers in ns since the Unix epoch. Prices and amounts are
exact decimals throughout (a book's int64 or Python-int units with its decimal scales); floats
appear only where the external format demands them (hftbacktest's ``px``/``qty`` are float64)
and in the plot.

Sampling (:func:`to_parquet`, :func:`plot`)
    Samples are taken on an absolute grid: every ``t`` that is a multiple of ``every_ms``
    milliseconds (``t % (every_ms * 10**6) == 0`` in ns since the epoch), from the first FRAME
    record's receive time ``F`` to the last one's ``L``, both included: ``F <= t <= L``. The
    sample at ``t`` is each *synced* book as it was after every frame received at or before
    ``t``: exactly what :func:`obengine.replay.books` gives for ``at_ns=t`` (reading stops at
    the first frame received later than ``t``). A book that is not synced at ``t`` (never
    synced yet, or after a gap or a crossed book, until its next 431) has no row at ``t``.

Per segment, and in parallel
    Every segment is sampled on its own, replayed from its keyframes (``workers=N`` local
    processes or a Dask ``scheduler`` run them at once; with one worker they run one after the
    other in this process: the same code either way, so the files are byte for byte the same
    whatever the parallelism), and the parts are joined in recording order. Which segment
    gives a sample time ``t``: the one holding the first frame received after ``t`` (the
    frame a single pass stops before), for ``t`` at or after that segment's first frame
    ``f_i``. A sample exactly at a segment boundary, ``t == f_{i+1}``, is therefore segment
    ``i+1``'s (its frames received at ``t`` count). The samples after a segment's last record
    and before the next segment's first frame, ``next_i <= t < f_{i+1}``, see no frame arrive:
    they are the segment's books at its end (the next segment's keyframes are those very
    books), which each segment returns as well; the last segment's end holds until ``L``.
    Every sample time is thus taken exactly once.

    Exact (equal to a single pass) as long as receive times do not go back. If the wall clock
    stepped back while recording, each sample time is still taken once and in order, from the
    first segment that reaches it. A segment whose header-and-keyframes block is damaged starts
    without its books (they come back at their next 431), as in any replay starting there.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from obengine._core import Book, BookSet, Status
from obengine.errors import FrameError, MissingExtraError
from obengine.record.format import BLOCK_HEADER_SIZE, RECORD_HEADER_SIZE, Kind
from obengine.record.reader import Block, ReadStats, iter_blocks
from obengine.replay import WARN_LIMIT, Paths, _frame_error, segment_books, segment_files

if TYPE_CHECKING:
    import pyarrow as pa
    from matplotlib.axes import Axes

__all__ = [
    "BUY_EVENT",
    "DEPTH_CLEAR_EVENT",
    "DEPTH_EVENT",
    "DEPTH_SNAPSHOT_EVENT",
    "EVENT_DTYPE",
    "EXCH_EVENT",
    "LOCAL_EVENT",
    "SELL_EVENT",
    "plot",
    "to_hftbacktest",
    "to_parquet",
]

log = logging.getLogger("obengine.export")

#: ``progress(done_bytes, total_bytes)``: bytes of the recording's segment files gone through.
Progress = Callable[[int, int], None]

_NS_PER_MS = 1_000_000
_FRAME = int(Kind.FRAME)
_KEYFRAME = int(Kind.KEYFRAME)
_HEADER = int(Kind.HEADER)
_INT64_MAX = 2**63 - 1

#: Columns of a sample's level matrix ``(4, depth)``.
_BID_PX, _BID_QTY, _ASK_PX, _ASK_QTY = range(4)


# -- common --------------------------------------------------------------------------------------


def _file_name(pair: str, suffix: str) -> str:
    """``<PAIR><suffix>``; a pair that is not a plain file name is percent-encoded."""
    name = quote(pair, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name + suffix


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _wall(data: bytes, offset: int) -> int:
    """The ``wall_ns`` of the record at ``offset`` of a block's data."""
    return int.from_bytes(data[offset + 5 : offset + 13], "little", signed=True)


class _FrameErrors:
    """A segment's malformed frames, as replay reports them: the first ``WARN_LIMIT`` logged
    one by one, the rest counted, and the count logged by :meth:`done`. A recording of a
    misbehaving feed can hold millions; each is skipped, none stops the export."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0

    def __call__(self, block: Block, offset: int, error: FrameError) -> None:
        self.count += 1
        _frame_error(self.path, block, offset, error, self.count)

    def done(self) -> None:
        if self.count > WARN_LIMIT:
            log.warning("%s: %d malformed frames skipped in all", self.path, self.count)


def _block_bytes(block: Block) -> int:
    return BLOCK_HEADER_SIZE + block.header.compressed_size


def _ceil_to(ns: int, every_ns: int) -> int:
    """The first multiple of ``every_ns`` at or after ``ns``."""
    return -(-ns // every_ns) * every_ns


def _count(start: int, stop: int, every_ns: int) -> int:
    """How many of ``start, start + every_ns, ...`` are below ``stop``."""
    return max(0, -(-(stop - start) // every_ns))


def _check_sampling(depth: int, every_ms: int) -> int:
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, not {depth!r}")
    if not isinstance(every_ms, int) or every_ms < 1:
        raise ValueError(f"every_ms must be an int >= 1, not {every_ms!r}")
    return every_ms * _NS_PER_MS


def _check_dask(feature: str, scheduler: Any) -> None:
    if scheduler is None:
        return
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(feature, "dask", "distributed") from e


# -- sampling one segment ------------------------------------------------------------------------


@dataclass
class _States:
    """One pair's sampled book states. State ``k`` is the book at the ``n[k]`` sample times
    ``t0[k], t0[k] + every_ns, ...``; its levels ``levels[k]`` are a ``(4, depth)`` matrix of
    units (bid prices, bid amounts, ask prices, ask amounts; best first; 0 past ``n_bids[k]``
    or ``n_asks[k]`` levels) at the scales ``price_scale[k]``, ``amount_scale[k]``; int64, or
    Python ints (dtype object) when a wide book was sampled."""

    t0: npt.NDArray[np.int64]
    n: npt.NDArray[np.int64]
    seq: npt.NDArray[np.int64]
    price_scale: npt.NDArray[np.int64]
    amount_scale: npt.NDArray[np.int64]
    n_bids: npt.NDArray[np.int64]
    n_asks: npt.NDArray[np.int64]
    levels: npt.NDArray[Any]

    @staticmethod
    def concat(parts: Sequence[_States]) -> _States:
        wide = any(p.levels.dtype == object for p in parts)
        return _States(
            np.concatenate([p.t0 for p in parts]),
            np.concatenate([p.n for p in parts]),
            np.concatenate([p.seq for p in parts]),
            np.concatenate([p.price_scale for p in parts]),
            np.concatenate([p.amount_scale for p in parts]),
            np.concatenate([p.n_bids for p in parts]),
            np.concatenate([p.n_asks for p in parts]),
            np.concatenate([p.levels.astype(object) if wide else p.levels for p in parts]),
        )

    def trimmed(self, covered: int, every_ns: int) -> _States:
        """Without the sample times before ``covered`` (a multiple of ``every_ns``)."""
        skip = np.maximum(0, -((self.t0 - covered) // every_ns))  # ceil((covered - t0) / every)
        n = self.n - skip
        keep = n > 0
        return _States(
            (self.t0 + skip * every_ns)[keep],
            n[keep],
            self.seq[keep],
            self.price_scale[keep],
            self.amount_scale[keep],
            self.n_bids[keep],
            self.n_asks[keep],
            self.levels[keep],
        )

    def held(self, t0: int, n: int) -> _States:
        """These states (a segment's books at its end) held for ``n`` sample times from ``t0``."""
        k = len(self.t0)
        return _States(np.full(k, t0, np.int64), np.full(k, n, np.int64), self.seq,
                       self.price_scale, self.amount_scale, self.n_bids, self.n_asks, self.levels)


class _Collector:
    """Book states of one pair as they are sampled, into a growing int64 buffer (wide books'
    rows aside, in Python ints). A book that no frame has reached since it was last sampled
    (its ``BookSet.tallies()`` entry is unchanged) is the same state held longer."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.meta: list[tuple[int, int, int, int, int, int]] = []  # t0, seq, scales, level counts
        self.n: list[int] = []
        self.buf: npt.NDArray[np.int64] = np.zeros((16, 4, depth), np.int64)
        self.wide: dict[int, npt.NDArray[np.object_]] = {}
        self.tally: tuple[int, ...] | None = None  # the book's tallies when last sampled
        self.next_ns: int | None = None  # the sample time after the last one taken

    def add(self, book: Book, t0: int, n: int, tally: tuple[int, ...] | None) -> None:
        if tally is not None and tally == self.tally and t0 == self.next_ns:
            self.n[-1] += n  # nothing applied to the book since: the same state
        else:
            self._new(book, t0, n)
            self.tally = tally

    def _new(self, book: Book, t0: int, n: int) -> None:
        i = len(self.meta)
        if i == len(self.buf):
            grown = np.zeros((2 * i, 4, self.depth), np.int64)
            grown[:i] = self.buf
            self.buf = grown
        bids, asks = book.top(self.depth)
        nb, na = len(bids), len(asks)
        if book.wide:
            row = np.zeros((4, self.depth), dtype=object)
            self.wide[i] = row
        else:
            row = self.buf[i]
        row[_BID_PX, :nb] = bids[:, 0]
        row[_BID_QTY, :nb] = bids[:, 1]
        row[_ASK_PX, :na] = asks[:, 0]
        row[_ASK_QTY, :na] = asks[:, 1]
        seq = book.seq
        assert seq is not None  # a synced book has one
        self.meta.append((t0, seq, book.price_scale, book.amount_scale, nb, na))
        self.n.append(n)

    def states(self) -> _States:
        k = len(self.meta)
        meta = np.array(self.meta, dtype=np.int64).reshape(k, 6)
        levels: npt.NDArray[Any] = self.buf[:k].copy()
        if self.wide:
            levels = levels.astype(object)
            for i, row in self.wide.items():
                levels[i] = row
        t0, seq, price_scale, amount_scale, n_bids, n_asks = (
            np.ascontiguousarray(meta[:, j]) for j in range(6)
        )
        n = np.array(self.n, dtype=np.int64)
        return _States(t0, n, seq, price_scale, amount_scale, n_bids, n_asks, levels)


def _capture(books: BookSet, into: dict[str, _Collector], depth: int, every_ns: int, t0: int,
             n: int) -> None:
    """Every synced book, held for ``n`` sample times from ``t0``."""
    tallies = books.tallies()
    for pair, book in books.items():
        if book.synced:
            collector = into.get(pair)
            if collector is None:
                collector = into[pair] = _Collector(depth)
            collector.add(book, t0, n, tallies.get(pair))
            collector.next_ns = t0 + n * every_ns


@dataclass
class _Segment:
    """What sampling one segment on its own gives (picklable: a worker's result).

    ``first_ns``/``last_ns``: receive times of its first and last FRAME records (``None``: it
    has none). ``next_ns``: its first sample time not given (all its records are at or before
    it). ``states``: its samples, per pair. ``end``: its synced books at its end, per pair (one
    state each, ``n`` 0), which hold from ``next_ns`` until the next segment's first frame."""

    path: str
    first_ns: int | None = None
    last_ns: int | None = None
    next_ns: int | None = None
    states: dict[str, _States] = field(default_factory=dict)
    end: dict[str, _States] = field(default_factory=dict)


def _sample_segment(
    path: str, *, depth: int, every_ns: int, on_block: Callable[[int], None] | None = None
) -> _Segment:
    """Sample one segment on its own, replayed from its keyframes (see the module docstring).
    Module level and picklable with ``functools.partial``: what a worker runs."""
    result = _Segment(os.fspath(path))
    errors = _FrameErrors(result.path)
    books: BookSet | None = None
    collectors: dict[str, _Collector] = {}
    t: int | None = None
    stats = ReadStats()
    for block in iter_blocks(path, stats=stats):
        if books is None:
            books = segment_books(block)
        data = block.data
        offsets = block.offsets
        if t is None:
            first = next((off for off in offsets if data[off + 4] == _FRAME), None)
            if first is None:  # the header and keyframes, events: applied whole
                _apply(books, errors, block, 0, None)
                if on_block is not None:
                    on_block(_block_bytes(block))
                continue
            result.first_ns = _wall(data, first)
            t = _ceil_to(result.first_ns, every_ns)
        last = next((off for off in reversed(offsets) if data[off + 4] == _FRAME), None)
        if last is not None:
            result.last_ns = _wall(data, last)
        pos, size = 0, len(data)
        while True:
            pos = _apply(books, errors, block, pos, t)
            if pos >= size:
                break
            # stopped before a frame received after t: the books are as they are at every
            # sample time until that frame's
            n = _count(t, _wall(data, pos), every_ns)
            _capture(books, collectors, depth, every_ns, t, n)
            t += n * every_ns
        if on_block is not None:
            on_block(_block_bytes(block))
    errors.done()
    result.next_ns = t
    result.states = {pair: c.states() for pair, c in collectors.items()}
    if books is not None and t is not None:
        end: dict[str, _Collector] = {}
        _capture(books, end, depth, every_ns, t, 0)
        result.end = {pair: c.states() for pair, c in end.items()}
    return result


def _apply(books: BookSet, errors: _FrameErrors, block: Block, start: int, until_ns: int | None) -> int:
    end, _ignored, failed = books.apply_block(block.data, start, until_ns)
    for offset, error in failed:
        errors(block, offset, error)
    return end


def _join(segments: Sequence[_Segment], every_ns: int) -> dict[str, _States]:
    """The segments' samples joined in recording order, each sample time once, with the
    samples between a segment's end and the next one's first frame filled with its books at
    its end. Pairs in name order."""
    parts: dict[str, list[_States]] = {}
    covered: int | None = None  # every sample time before it is taken
    end: dict[str, _States] = {}
    last_ns: int | None = None

    def hold(stop: int) -> None:
        nonlocal covered
        assert covered is not None
        n = _count(covered, stop, every_ns)
        if n:
            for pair, state in end.items():
                parts.setdefault(pair, []).append(state.held(covered, n))
            covered += n * every_ns

    for seg in segments:
        if seg.first_ns is None or seg.next_ns is None:
            continue  # no frame: its books are those the previous segment ended with
        if covered is not None:
            hold(seg.first_ns)
        for pair, states in seg.states.items():
            part = states if covered is None else states.trimmed(covered, every_ns)
            parts.setdefault(pair, []).append(part)
        covered = seg.next_ns if covered is None else max(covered, seg.next_ns)
        end = seg.end
        last_ns = seg.last_ns
    if covered is not None and last_ns is not None:
        hold(last_ns + 1)  # the last frame's time is included
    joined = {pair: _States.concat(parts[pair]) for pair in sorted(parts)}
    return {pair: s for pair, s in joined.items() if len(s.t0)}


def _sample(
    paths: Paths,
    *,
    depth: int,
    every_ns: int,
    workers: int,
    scheduler: Any,
    progress: Progress | None,
) -> dict[str, _States]:
    files = segment_files(paths)
    task = functools.partial(_sample_segment, depth=depth, every_ns=every_ns)
    if workers > 1 or scheduler is not None:
        from obengine._parallel import run_segments

        segments = run_segments(task, files, workers=workers, scheduler=scheduler, progress=progress)
    else:
        segments = list(_each_segment(files, depth, every_ns, progress))
    return _join(segments, every_ns)


def _each_segment(
    files: list[Path], depth: int, every_ns: int, progress: Progress | None
) -> Iterator[_Segment]:
    """The segments sampled one after the other in this process."""
    sizes = [p.stat().st_size for p in files]
    total = sum(sizes)
    done = 0

    def on_block(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for path, size in zip(files, sizes):
        before = done
        yield _sample_segment(os.fspath(path), depth=depth, every_ns=every_ns,
                              on_block=on_block if progress is not None else None)
        done = before + size  # damaged stretches and cut tails count too
        if progress is not None:
            progress(done, total)


# -- rows: the states at one scale per pair, one row per sample time ------------------------------


@dataclass
class _Rows:
    """One pair's samples, one row per sample time: ``levels`` ``(rows, 4, depth)`` in units of
    ``10**-price_scale`` (prices) and ``10**-amount_scale`` (amounts), the largest scales the
    pair had in the file (int64, or Python ints where int64 cannot hold them)."""

    ts: npt.NDArray[np.int64]
    seq: npt.NDArray[np.int64]
    n_bids: npt.NDArray[np.int64]
    n_asks: npt.NDArray[np.int64]
    levels: npt.NDArray[Any]
    price_scale: int
    amount_scale: int

    def valid(self, side: int, level: int) -> npt.NDArray[np.bool_]:
        """Where the side (``_BID_PX``...) has a level ``level`` (0 is the best)."""
        counts = self.n_bids if side in (_BID_PX, _BID_QTY) else self.n_asks
        return counts > level

    def floats(self, side: int) -> npt.NDArray[np.float64]:
        """``levels[:, side, :]`` as float64 (for drawing), nan where there is no level."""
        scale = self.price_scale if side in (_BID_PX, _ASK_PX) else self.amount_scale
        units = self.levels[:, side, :]
        if units.dtype == object:
            out = np.array([int(u) / 10**scale for u in units.ravel()], dtype=np.float64)
            out = out.reshape(units.shape)
        else:
            out = units.astype(np.float64) / float(10**scale)
        counts = self.n_bids if side in (_BID_PX, _BID_QTY) else self.n_asks
        out[np.arange(units.shape[1])[None, :] >= counts[:, None]] = np.nan
        return out


def _rescaled(levels: npt.NDArray[Any], cols: tuple[int, int], scales: npt.NDArray[np.int64],
              target: int) -> npt.NDArray[Any]:
    """``levels`` with the columns ``cols`` brought from each state's scale to ``target``
    (exactly: int64 if every value fits, else Python ints)."""
    shift = target - scales
    if not shift.any():
        return levels
    moved = np.nonzero(shift)[0]
    factors = [10 ** int(d) for d in shift[moved]]
    if levels.dtype != object:
        biggest = np.abs(levels[moved][:, list(cols), :]).reshape(len(moved), -1).max(axis=1)
        if any(int(b) * f > _INT64_MAX for b, f in zip(biggest, factors)):
            levels = levels.astype(object)
    levels = levels.copy()
    factor = np.array(factors, dtype=object if levels.dtype == object else np.int64)
    for c in cols:
        levels[moved, c, :] = levels[moved, c, :] * factor[:, None]
    return levels


def _rows(states: _States, every_ns: int) -> _Rows:
    price_scale = int(states.price_scale.max())
    amount_scale = int(states.amount_scale.max())
    levels = _rescaled(states.levels, (_BID_PX, _ASK_PX), states.price_scale, price_scale)
    levels = _rescaled(levels, (_BID_QTY, _ASK_QTY), states.amount_scale, amount_scale)
    n = states.n
    total = int(n.sum())
    starts = np.repeat(np.cumsum(n) - n, n)
    ts = np.repeat(states.t0, n) + every_ns * (np.arange(total, dtype=np.int64) - starts)
    return _Rows(
        ts.astype(np.int64),
        np.repeat(states.seq, n),
        np.repeat(states.n_bids, n),
        np.repeat(states.n_asks, n),
        np.repeat(levels, n, axis=0),
        price_scale,
        amount_scale,
    )


# -- Parquet --------------------------------------------------------------------------------------


def _check_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("Parquet export", "parquet", "pyarrow") from e


_DECIMAL128_DIGITS = 38
_DECIMAL128_LIMIT: int = 10**_DECIMAL128_DIGITS


def _decimal_column(units: npt.NDArray[Any], valid: npt.NDArray[np.bool_], scale: int,
                    wide: bool) -> pa.Array[Any]:
    """Exact decimals ``units * 10**-scale``, null where not ``valid``: decimal128(38, scale),
    or decimal256(76, scale) when ``wide`` (a value with more than 38 digits)."""
    import pyarrow as pa

    rows = len(units)
    if units.dtype != object and not wide and sys.byteorder == "little":
        # int64 units, sign-extended to 128-bit two's complement: Arrow's decimal128 layout
        data = np.empty((rows, 2), np.int64)
        data[:, 0] = units
        data[:, 1] = units >> 63
        nulls = rows - int(np.count_nonzero(valid))
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").data) if nulls else None
        return pa.Array.from_buffers(pa.decimal128(_DECIMAL128_DIGITS, scale), rows,
                                     [bitmap, pa.py_buffer(data.data)], null_count=nulls)
    kind = pa.decimal256(76, scale) if wide else pa.decimal128(_DECIMAL128_DIGITS, scale)
    values = [_decimal(int(u), scale) if ok else None for u, ok in zip(units, valid)]
    return pa.array(values, type=kind)


def _decimal(units: int, scale: int) -> Decimal:
    """``units * 10**-scale`` exactly (``Decimal.scaleb`` would round to the context's 28
    digits)."""
    digits = tuple(int(c) for c in str(abs(units)))
    return Decimal((1 if units < 0 else 0, digits, -scale))


def _needs_decimal256(levels: npt.NDArray[Any], cols: tuple[int, int]) -> bool:
    if levels.dtype != object or not len(levels):
        return False
    biggest = max(abs(int(v)) for v in levels[:, list(cols), :].ravel())
    return biggest >= _DECIMAL128_LIMIT


def _table(pair: str, rows: _Rows, depth: int, every_ms: int) -> pa.Table:
    import pyarrow as pa

    wide_px = _needs_decimal256(rows.levels, (_BID_PX, _ASK_PX))
    wide_qty = _needs_decimal256(rows.levels, (_BID_QTY, _ASK_QTY))
    columns: dict[str, pa.Array[Any]] = {
        "ts_ns": pa.array(rows.ts, type=pa.int64()),
        "seq": pa.array(rows.seq, type=pa.int64()),
    }
    for i in range(depth):
        for name, side, scale, wide in (
            ("bid_px", _BID_PX, rows.price_scale, wide_px),
            ("bid_qty", _BID_QTY, rows.amount_scale, wide_qty),
            ("ask_px", _ASK_PX, rows.price_scale, wide_px),
            ("ask_qty", _ASK_QTY, rows.amount_scale, wide_qty),
        ):
            units = np.ascontiguousarray(rows.levels[:, side, i])
            columns[f"{name}_{i}"] = _decimal_column(units, rows.valid(side, i), scale, wide)
    meta = {
        "pair": pair,
        "price_scale": rows.price_scale,
        "amount_scale": rows.amount_scale,
        "depth": depth,
        "every_ms": every_ms,
    }
    return pa.table(columns, metadata={"obengine": json.dumps(meta, sort_keys=True)})


def to_parquet(
    paths: Paths,
    out_dir: str | os.PathLike[str],
    *,
    depth: int = 10,
    every_ms: int = 1000,
    workers: int = 1,
    scheduler: Any = None,
    progress: Progress | None = None,
) -> list[Path]:
    """A top-``depth`` depth time series per pair: ``out_dir/<PAIR>.parquet``, one row per
    sample time at which the pair's book was synced (sampling: see the module docstring; every
    ``every_ms`` milliseconds on the absolute grid, from the first to the last frame's receive
    time). Returns the files written, by pair name. Needs the ``parquet`` extra (pyarrow).

    Columns:

    - ``ts_ns`` (int64): the sample time, ns since the Unix epoch (a multiple of
      ``every_ms * 10**6``);
    - ``seq`` (int64): the book's CS (its last applied frame's);
    - for each level ``i`` in ``0..depth-1`` (0 the best): ``bid_px_i``, ``bid_qty_i``,
      ``ask_px_i``, ``ask_qty_i``, exact decimals: ``decimal128(38, s)`` with ``s`` the largest
      price (amount) scale the pair's book had in the file, so every value is held exactly
      (values of a book at a smaller scale are converted exactly); null where that side has
      fewer than ``i + 1`` levels. (``decimal256(76, s)`` for a pair one of whose values has
      more than 38 digits, which only a wide book can reach; DuckDB reads no decimal256.)

    The schema metadata ``obengine`` holds JSON: ``pair``, ``price_scale``, ``amount_scale``,
    ``depth``, ``every_ms``. Existing files of the same names are replaced (each is written
    whole, then renamed into place); other files in ``out_dir`` are left alone.

    ``workers``/``scheduler``: sample the segments on that many local processes, or on a Dask
    cluster (a scheduler address or a ``distributed.Client``; the ``dask`` extra), as
    :func:`obengine.replay.replay` does; the files are the same whatever the parallelism.
    ``progress(done_bytes, total_bytes)``: the segment files' bytes gone through.

    Raises:
        MissingExtraError: pyarrow (or, with ``scheduler``, distributed) is not installed.
        RecordingError: a path matches no file, or a file is not a recording.
        ValueError: ``depth`` or ``every_ms`` below 1.
    """
    _check_pyarrow()
    import pyarrow.parquet as pq

    _check_dask("Parquet export on a Dask cluster", scheduler)
    every_ns = _check_sampling(depth, every_ms)
    samples = _sample(paths, depth=depth, every_ns=every_ns, workers=workers,
                      scheduler=scheduler, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for pair, states in samples.items():
        table = _table(pair, _rows(states, every_ns), depth, every_ms)
        path = out / _file_name(pair, ".parquet")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            pq.write_table(table, tmp, compression="zstd")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _replace(tmp, path)
        written.append(path)
    return written


# -- hftbacktest ----------------------------------------------------------------------------------

# hftbacktest's event layout and flags, as hftbacktest 2.x defines them in hftbacktest/types.py
# (``event_dtype``, ``DEPTH_EVENT``, ``EXCH_EVENT``, ...) and documents in "Data"
# (https://hftbacktest.readthedocs.io/en/latest/data.html) and its API reference's constants.
# Copied here so that writing the files does not need hftbacktest (it pins numpy < 2.3).

#: hftbacktest's ``event_dtype``: one 64-byte event. ``px`` and ``qty`` are float64 because
#: hftbacktest's format says so: the nearest double to the exact decimal.
EVENT_DTYPE = np.dtype(
    [
        ("ev", "<u8"),
        ("exch_ts", "<i8"),
        ("local_ts", "<i8"),
        ("px", "<f8"),
        ("qty", "<f8"),
        ("order_id", "<u8"),
        ("ival", "<i8"),
        ("fval", "<f8"),
    ],
    align=True,
)
#: A change of the depth at one price (``qty`` the new amount, 0 deletes the level).
DEPTH_EVENT = 1
#: The depth is cleared: of one side with BUY_EVENT/SELL_EVENT (up to ``px``), of both without.
DEPTH_CLEAR_EVENT = 3
#: One level of a snapshot (after a clear).
DEPTH_SNAPSHOT_EVENT = 4
#: Processed by the exchange model at ``exch_ts``.
EXCH_EVENT = 1 << 31
#: Processed by the local model at ``local_ts``.
LOCAL_EVENT = 1 << 30
#: Bid side.
BUY_EVENT = 1 << 29
#: Ask side.
SELL_EVENT = 1 << 28

_SEEN = EXCH_EVENT | LOCAL_EVENT
_CLEAR = _SEEN | DEPTH_CLEAR_EVENT
_BID_SNAPSHOT = _SEEN | DEPTH_SNAPSHOT_EVENT | BUY_EVENT
_ASK_SNAPSHOT = _SEEN | DEPTH_SNAPSHOT_EVENT | SELL_EVENT
_BID_DEPTH = _SEEN | DEPTH_EVENT | BUY_EVENT
_ASK_DEPTH = _SEEN | DEPTH_EVENT | SELL_EVENT

_TYPE = re.compile(rb"\s*\[\s*([-+0-9.eE]+)\s*,")
_EXACT_FLOAT_UNITS = 2**53


def _floats(units: npt.NDArray[Any], scale: int) -> list[float]:
    """``units * 10**-scale``, each the nearest double."""
    if (units.dtype != object and scale <= 22 and len(units)
            and int(np.abs(units).max()) <= _EXACT_FLOAT_UNITS):
        # both operands exact doubles: IEEE division rounds the quotient correctly
        out: list[float] = (units.astype(np.float64) / float(10**scale)).tolist()
        return out
    return [int(u) / 10**scale for u in units]   # Python rounds int / int correctly


def _units(value: Any, scale: int) -> int:
    """A JSON number (int, Decimal) or a string holding one, in units of ``10**-scale``."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    m = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    shift = exponent + scale
    power: int = 10 ** abs(shift)
    if shift >= 0:
        return m * power
    q, r = divmod(m, power)
    if r:
        raise ValueError(f"{value!r} has more than {scale} decimal places")
    return q


def _frame_type(payload: memoryview) -> int | None:
    head = bytes(payload[:48])
    if head.startswith(b"[432,"):
        return 432
    if head.startswith(b"[431,"):
        return 431
    match = _TYPE.match(head)
    if match is None:
        return None
    try:
        value = Decimal(match.group(1).decode())
    except ArithmeticError:
        return None
    return int(value) if value == value.to_integral_value() else None


def _loads() -> Callable[[bytes], Any]:
    """A JSON parser for frames: orjson where installed (fast; its floats are checked for, see
    :func:`_changed`), else json's, exact."""
    try:
        import orjson
    except ImportError:
        return _exact_loads
    return orjson.loads


def _exact_loads(data: bytes) -> Any:
    return json.loads(data, parse_float=Decimal)


_POW10: list[int] = [10**i for i in range(80)]


def _price_units(value: Any, scale: int) -> int:
    """A price as the frame writes it (a string holding a JSON number, or a number: int or
    Decimal) in units of ``10**-scale`` (the book's price scale, which holds it)."""
    if type(value) is str:
        whole, dot, frac = value.partition(".")
        if (whole.isascii() and whole.isdigit() and len(frac) <= scale
                and (not dot or (frac.isascii() and frac.isdigit()))):
            return int(whole + frac) * _POW10[scale - len(frac)]
    return _units(value, scale)


def _changed(payload: memoryview, scale: int, loads: Callable[[bytes], Any],
             cache: dict[str, int]) -> tuple[list[int], list[int]]:
    """The prices an applied 432 changes, in units of ``10**-scale``: ``(asks, bids)``, each
    price once, in the frame's order. ``cache``: price text to units at this scale."""
    body = loads(bytes(payload))[1]
    out: tuple[list[int], list[int]] = ([], [])
    for key, prices in (("AO", out[0]), ("BO", out[1])):
        entries = body.get(key)
        if not entries:
            continue
        seen: set[int] = set()
        for entry in entries:
            price = entry["P"]
            units = cache.get(price) if type(price) is str else None
            if units is None:
                if type(price) is float:  # a JSON number parsed inexactly: parse it all exactly
                    return _changed(payload, scale, _exact_loads, cache)
                units = _price_units(price, scale)
                if type(price) is str:
                    cache[price] = units
            if units not in seen:
                seen.add(units)
                prices.append(units)
    return out


def _amounts(side: npt.NDArray[Any], prices: list[int], descending: bool) -> list[int]:
    """The amount units at each of ``prices`` (units) on a side (``[[price, amount], ...]``
    best first: asks ascending, bids descending), 0 where the side has no level."""
    n = len(side)
    if not prices or not n:
        return [0] * len(prices)
    column: list[int] = side[:, 0].tolist()
    amounts: list[int] = side[:, 1].tolist()
    if descending:  # ascending for bisect
        column.reverse()
        amounts.reverse()
    out = []
    for price in prices:
        i = bisect_left(column, price)
        out.append(amounts[i] if i < n and column[i] == price else 0)
    return out


class _Events:
    """One pair's hftbacktest events, in order; times never go back (a receive time earlier
    than the previous event's is raised to it, so the file passes hftbacktest's
    ``validate_event_order``)."""

    def __init__(self, loads: Callable[[bytes], Any]) -> None:
        self.ev: list[int] = []
        self.px: list[float] = []
        self.qty: list[float] = []
        self.times: list[int] = []  # the events' times, run-length encoded:
        self.counts: list[int] = []  # ``counts[i]`` events at ``times[i]``
        self.live = False  # the events so far rebuild the book (it is synced)
        self.loads = loads
        self.prices: dict[str, int] = {}  # price text to units at prices_scale
        self.prices_scale = -1

    def _stamp(self, ts: int, count: int) -> None:
        if self.times and ts <= self.times[-1]:
            self.counts[-1] += count
        else:
            self.times.append(ts)
            self.counts.append(count)

    def clear(self, ts: int) -> None:
        """Both sides cleared (DEPTH_CLEAR_EVENT without a side)."""
        self.ev.append(_CLEAR)
        self.px.append(0.0)
        self.qty.append(0.0)
        self._stamp(ts, 1)
        self.live = False

    def snapshot(self, book: Book, ts: int) -> None:
        """A clear, then every level of the book: bids best first, then asks best first."""
        self.clear(ts)
        for flag, side in ((_BID_SNAPSHOT, book.bids), (_ASK_SNAPSHOT, book.asks)):
            self.ev += [flag] * len(side)
            self.px += _floats(side[:, 0], book.price_scale)
            self.qty += _floats(side[:, 1], book.amount_scale)
            self._stamp(ts, len(side))
        self.live = True

    def changes(self, book: Book, payload: memoryview, ts: int) -> None:
        """An applied 432: one depth event per price it changed, with the level's amount in
        the book after it (0: deleted). Deletions first, so that hftbacktest never sees a
        book crossed between two events of one frame."""
        if self.prices_scale != book.price_scale or len(self.prices) > 100_000:
            self.prices = {}
            self.prices_scale = book.price_scale
        asks, bids = _changed(payload, book.price_scale, self.loads, self.prices)
        price_unit = _POW10[book.price_scale]
        amount_unit = _POW10[book.amount_scale]
        deleted_ev: list[int] = []
        deleted_px: list[float] = []
        ev: list[int] = []
        px: list[float] = []
        qty: list[float] = []
        for flag, prices, side, descending in ((_ASK_DEPTH, asks, book.asks, False),
                                               (_BID_DEPTH, bids, book.bids, True)):
            for price, amount in zip(prices, _amounts(side, prices, descending)):
                # int / int: Python rounds the quotient correctly, to the nearest double
                if amount:
                    ev.append(flag)
                    px.append(price / price_unit)
                    qty.append(amount / amount_unit)
                else:
                    deleted_ev.append(flag)
                    deleted_px.append(price / price_unit)
        self.ev += deleted_ev
        self.ev += ev
        self.px += deleted_px
        self.px += px
        self.qty += [0.0] * len(deleted_ev)
        self.qty += qty
        self._stamp(ts, len(deleted_ev) + len(ev))

    def array(self) -> npt.NDArray[np.void]:
        data = np.zeros(len(self.ev), dtype=EVENT_DTYPE)
        data["ev"] = np.array(self.ev, dtype=np.uint64)
        times = np.repeat(np.array(self.times, dtype=np.int64), self.counts)
        data["exch_ts"] = times
        data["local_ts"] = times
        data["px"] = np.array(self.px, dtype=np.float64)
        data["qty"] = np.array(self.qty, dtype=np.float64)
        return data


def _signature(book: Book) -> tuple[Any, ...]:
    snap = book.snapshot()
    return (snap["synced"], snap["bids"], snap["asks"])


def to_hftbacktest(
    paths: Paths,
    out_path: str | os.PathLike[str],
    *,
    compress: bool = True,
    progress: Progress | None = None,
) -> list[Path]:
    """The recording as hftbacktest's feed data: ``out_path/<PAIR>.npz``, one per pair (an
    asset of hftbacktest's), each with one array ``data`` of :data:`EVENT_DTYPE` events (the
    layout ``hftbacktest.types.event_dtype``), compressed (``numpy.savez_compressed``, as
    hftbacktest's own converters write; ``compress=False``: ``numpy.savez``, larger and much
    faster to write). Returns the files written, by pair name. Needs numpy only.

    One sequential replay, every frame in order:

    - an applied 431 (and a segment's keyframes, where they change a book: the first segment
      replayed, or after a missing segment): a DEPTH_CLEAR_EVENT of both sides, then a
      DEPTH_SNAPSHOT_EVENT per level (bids, then asks);
    - an applied 432: a DEPTH_EVENT per price it names (each once), with the level's amount in
      the book after the frame (``qty`` 0: the level is gone), on its side (BUY_EVENT for BO,
      SELL_EVENT for AO);
    - a book that stops being synced (a gap, a crossed book): a DEPTH_CLEAR_EVENT, so the
      depth is empty until the book's next 431 (hftbacktest has no notion of a book known to
      be wrong);
    - stale and non-book frames: nothing.

    Every event is ``EXCH_EVENT | LOCAL_EVENT``. ``exch_ts`` and ``local_ts`` are both the
    frame's receive time, ns since the Unix epoch: BtcTurk's obdiff frames carry no exchange
    time, so the feed latency is 0 (give hftbacktest a latency model, or shift ``exch_ts``,
    for anything else). A receive time earlier than the previous event's (the wall clock
    stepping back) is raised to it, so the events are in order for both timestamps.

    ``px`` and ``qty`` are float64, as hftbacktest's format demands: the nearest double to the
    exact decimal. hftbacktest rounds ``px / tick_size`` and ``qty / lot_size``: use a tick size
    of ``10**-price_scale`` and a lot size of ``10**-amount_scale`` at the largest scales the
    book reaches (``Book.price_scale``, ``Book.amount_scale`` after a replay). Each file also
    holds them, as 0-d arrays ``tick_size`` and ``lot_size`` (hftbacktest ignores them).

    ``progress(done_bytes, total_bytes)``: the segment files' bytes gone through.

    Raises:
        RecordingError: a path matches no file, or a file is not a recording.
    """
    files = segment_files(paths)
    total = sum(p.stat().st_size for p in files)
    done = 0
    stats = ReadStats()
    books: BookSet | None = None
    events: dict[str, _Events] = {}
    scales: dict[str, tuple[int, int]] = {}
    loads = _loads()

    def of(pair: str) -> _Events:
        e = events.get(pair)
        if e is None:
            e = events[pair] = _Events(loads)
        return e

    for path in files:
        errors = _FrameErrors(os.fspath(path))
        for block in iter_blocks(path, stats=stats):
            if books is None:
                books = segment_books(block)
            data = block.data
            if block.offsets and data[4] == _HEADER:
                # a segment's header and keyframes: they change nothing in books already
                # replayed; a book they do change (or make) is given as a snapshot
                before = {pair: _signature(book) for pair, book in books.items()}
                _apply(books, errors, block, 0, None)
                ts = _wall(data, 0)
                for pair, book in books.items():
                    if book.synced and before.get(pair) != _signature(book):
                        of(pair).snapshot(book, ts)
            else:
                _hbt_frames(books, errors, block, of)
            for pair, book in books.items():
                old = scales.get(pair, (0, 0))
                scales[pair] = (max(old[0], book.price_scale), max(old[1], book.amount_scale))
            done += _block_bytes(block)
            if progress is not None:
                progress(done, total)
        errors.done()
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for pair in sorted(events):
        e = events[pair]
        if not e.ev:
            continue
        path = out / _file_name(pair, ".npz")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        price_scale, amount_scale = scales[pair]
        try:
            save = np.savez_compressed if compress else np.savez
            with open(tmp, "wb") as f:
                save(f, data=e.array(), tick_size=np.float64(10.0**-price_scale),
                     lot_size=np.float64(10.0**-amount_scale))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _replace(tmp, path)
        written.append(path)
    if progress is not None:
        progress(total, total)
    return written


def _hbt_frames(books: BookSet, errors: _FrameErrors, block: Block, of: Callable[[str], _Events]) -> None:
    """The events of a block's book frames, applied one by one."""
    data = block.data
    view = memoryview(data)
    apply = books.apply
    for offset in block.offsets:
        kind = data[offset + 4]
        if kind != _FRAME and kind != _KEYFRAME:
            continue
        size = int.from_bytes(data[offset : offset + 4], "little")
        start = offset + RECORD_HEADER_SIZE
        payload = view[start : start + size]
        try:
            pair, status = apply(payload)
        except FrameError as e:
            errors(block, offset, e)
            continue
        if pair is None or status is Status.STALE or status is Status.IGNORED:
            continue
        events = of(pair)
        ts = _wall(data, offset)
        if status is Status.APPLIED:
            book = books[pair]
            if _frame_type(payload) == 432 and events.live:
                events.changes(book, payload, ts)
            else:  # a 431 (a keyframe out of place too): the whole book
                events.snapshot(book, ts)
        elif events.live:  # GAP or CROSSED: the book is no longer known
            events.clear(ts)


# -- plot -----------------------------------------------------------------------------------------


def plot(
    paths: Paths,
    out_png: str | os.PathLike[str],
    *,
    depth: int = 10,
    every_ms: int = 1000,
    pairs: Sequence[str] | None = None,
    max_pairs: int = 24,
    workers: int = 1,
    scheduler: Any = None,
    progress: Progress | None = None,
) -> Path:
    """Draw each pair's book over time into a PNG: per pair (a row of the figure), the mid
    price with the best bid and ask, the spread, and the summed amount of the top ``depth``
    levels of each side; sampled as :func:`to_parquet` samples (every ``every_ms``
    milliseconds, synced books only; the time axis is UTC). Needs the ``plot`` extra
    (matplotlib; drawn with its Agg backend, no display needed). Floats are used for drawing
    only.

    ``pairs``: the pairs to draw, in that order (a pair with no synced sample is drawn
    empty, with a note); default all, in name order, but at most ``max_pairs`` (the most
    active, by distinct book states sampled; a warning names how many were left out).
    ``workers``/``scheduler``/``progress``: as for :func:`to_parquet`. Returns ``out_png``.

    Raises:
        MissingExtraError: matplotlib (or, with ``scheduler``, distributed) is not installed.
        RecordingError: a path matches no file, or a file is not a recording.
        ValueError: ``depth``, ``every_ms`` or ``max_pairs`` below 1.
    """
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtraError("plotting", "plot", "matplotlib") from e
    _check_dask("plotting on a Dask cluster", scheduler)
    every_ns = _check_sampling(depth, every_ms)
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, not {max_pairs!r}")
    samples = _sample(paths, depth=depth, every_ns=every_ns, workers=workers,
                      scheduler=scheduler, progress=progress)
    if pairs is not None:
        chosen = list(pairs)
    else:
        chosen = sorted(samples)
        if len(chosen) > max_pairs:
            active = sorted(chosen, key=lambda p: -len(np.unique(samples[p].seq)))[:max_pairs]
            log.warning("plotting %d of %d pairs (the most active); pass pairs=[...] to choose",
                        max_pairs, len(chosen))
            chosen = sorted(active)
    rows = max(1, len(chosen))
    fig = Figure(figsize=(16, 2.8 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 3, squeeze=False)
    if not chosen:
        axes[0][0].text(0.5, 0.5, "no synced book in the recording", ha="center", va="center")
    for row, pair in enumerate(chosen):
        states = samples.get(pair)
        if states is None:
            for ax in axes[row]:
                ax.text(0.5, 0.5, f"{pair}: no synced book", ha="center", va="center")
            continue
        _draw(axes[row], pair, _rows(states, every_ns), depth, every_ns)
    out = Path(out_png)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, out)
    return out


def _draw(axes: Sequence[Axes], pair: str, rows: _Rows, depth: int, every_ns: int) -> None:
    bid = rows.floats(_BID_PX)[:, 0]
    ask = rows.floats(_ASK_PX)[:, 0]
    # a break in the lines where the book was not synced (no sample for a while)
    gaps = np.nonzero(np.diff(rows.ts) > every_ns)[0] + 1
    when = np.insert(rows.ts, gaps, rows.ts[gaps - 1] + every_ns).astype("datetime64[ns]")

    def broken(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.insert(values, gaps, np.nan)

    bid_depth = broken(np.nansum(rows.floats(_BID_QTY), axis=1))
    ask_depth = broken(np.nansum(rows.floats(_ASK_QTY), axis=1))
    bid, ask = broken(bid), broken(ask)
    ax_mid, ax_spread, ax_depth = axes
    ax_mid.plot(when, bid, color="tab:green", linewidth=0.6, label="best bid")
    ax_mid.plot(when, ask, color="tab:red", linewidth=0.6, label="best ask")
    ax_mid.plot(when, (bid + ask) / 2, color="black", linewidth=0.9, label="mid")
    ax_mid.set_title(f"{pair}: mid, best bid and ask")
    ax_mid.legend(loc="upper left", fontsize="small")
    ax_spread.plot(when, ask - bid, color="tab:blue", linewidth=0.8)
    ax_spread.set_title(f"{pair}: spread")
    ax_depth.plot(when, bid_depth, color="tab:green", linewidth=0.8, label=f"bids, top {depth}")
    ax_depth.plot(when, ask_depth, color="tab:red", linewidth=0.8, label=f"asks, top {depth}")
    ax_depth.set_title(f"{pair}: amount in the top {depth} levels")
    ax_depth.legend(loc="upper left", fontsize="small")
    for ax in axes:
        ax.tick_params(axis="x", labelsize="small", labelrotation=20)
        ax.grid(True, linewidth=0.3)
