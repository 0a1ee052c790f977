"""Exports (``obengine.export``): the Parquet depth time series, hftbacktest's event arrays and
the plot, from real recordings made as a recorder makes them (``Recording`` with keyframes and
rotation, frames added before they are applied to the recorder's books).

The recording (built once for the module): five simulated pairs and a hand-made *wide* pair
(amounts above int64 in units, a price and an amount rescale mid-file, prices written as JSON
numbers), over four or more segments; one pair loses a frame (a gap: unsynced, no rows) and
resyncs by a later 431; a non-book frame, a malformed frame and EVENT records in between;
receive times that repeat, land on the sampling grid, fall between it, and jump by several
sampling periods.

Parquet is checked value by value, as exact decimals, against an independent sequential
sampler written here and against ``obengine.replay.books(paths, at_ns=t)``; it is read back with
pyarrow, polars and DuckDB (each skipped when not installed). The hftbacktest files are replayed
by a minimal depth written here, and, where hftbacktest is installed (it pins numpy < 2.3, so it
lives in its own virtualenv), by hftbacktest's own backtester.
"""
from __future__ import annotations

import os

import json
import logging
import random
import sys
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from obengine import Book, BookSet, FrameError
from obengine.errors import MissingExtraError
from obengine.export import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EVENT_DTYPE,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    plot,
    to_hftbacktest,
    to_parquet,
)
from obengine.record import Kind, Recording, iter_blocks, keyframes, read, read_segment, scales
from obengine.replay import books as replay_books
from obengine.simulator import FeedSimulator

# The exports' point is the formats other libraries read; those libraries' native code (matplotlib's
# C++ aborts under a preloaded ASan) is not what the sanitizer build checks: these run once in CI.
pytestmark = pytest.mark.no_sanitizer

S = 1_000_000_000
MS = 1_000_000
BASE = 1_796_238_900_000_000_000  # 2026-12-02T19:15:00Z, on every sampling grid
EVERY_MS = 5
EVERY = EVERY_MS * MS
DEPTH = 6
WIDE = "WIDE99TRY"
GAPPED = "ETHTRY"


# -- the recording ------------------------------------------------------------------------------


def _dec(units: int, scale: int) -> str:
    """Canonical decimal text of ``units * 10**-scale``."""
    text = str(units).rjust(scale + 1, "0")
    if scale == 0:
        return text
    whole, frac = text[:-scale], text[-scale:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


class WidePair:
    """A hand-made pair whose amounts exceed int64 in units (a wide book), with a price that
    raises the price scale (2 -> 3) and an amount that raises the amount scale (2 -> 12) after
    a while; some prices are written as JSON numbers, not strings."""

    HUGE = ["12345678901234567890.5", "98765432109876543210.25", "1", "0.5", "250.12"]

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cs = 5000
        self.asks = {1010: "12345678901234567890.5", 1012: "3", 1015: "0.25"}  # price units at 2 places
        self.bids = {1000: "7", 998: "98765432109876543210.25", 990: "1.5"}
        self.diffs = 0

    def _level(self, p: int, a: str, cp: int | None, number: bool) -> str:
        price = _dec(p, 3) if p % 10 else _dec(p // 10, 2)
        ptext = price if number else json.dumps(price)
        body = f'"P":{ptext},"A":{json.dumps(a)}'
        return f'{{"CP":{cp},{body}}}' if cp is not None else f"{{{body}}}"

    def _frame(self, kind: int, asks: list[str], bids: list[str]) -> bytes:
        return (
            f'[{kind},{{"CS":{self.cs},"PS":"{WIDE}","AO":[{",".join(asks)}],"BO":[{",".join(bids)}],'
            f'"channel":"obdiff","event":"{WIDE}","type":{kind}}}]'
        ).encode()

    def snapshot(self) -> bytes:
        return self._frame(
            431,
            [self._level(p * 10, a, None, False) for p, a in sorted(self.asks.items())],
            [self._level(p * 10, a, None, False) for p, a in sorted(self.bids.items(), reverse=True)],
        )

    def diff(self) -> bytes:
        """One change on each side (insert, update or delete), sometimes two on one price."""
        self.cs += 1
        self.diffs += 1
        rng = self.rng
        out: list[list[str]] = [[], []]
        for i, (side, lo, hi) in enumerate(((self.asks, 1002, 1030), (self.bids, 970, 999))):
            if self.diffs > 25 and i == 0 and 10255 // 10 not in side and self.diffs % 7 == 0:
                # a price with 3 places (10.255): the book's price scale goes to 3
                out[0].append(self._level(10255, rng.choice(self.HUGE), 1, True))
                continue
            if len(side) > 2 and rng.random() < 0.3:
                p = rng.choice(sorted(side))
                del side[p]
                out[i].append(self._level(p * 10, "0", 3, rng.random() < 0.5))
            elif rng.random() < 0.5 and side:
                p = rng.choice(sorted(side))
                side[p] = "0.000000000001" if self.diffs > 40 and rng.random() < 0.2 else rng.choice(self.HUGE)
                out[i].append(self._level(p * 10, side[p], 0, rng.random() < 0.5))
            else:
                p = rng.randrange(lo, hi)
                if p in side:
                    continue
                side[p] = rng.choice(self.HUGE)
                out[i].append(self._level(p * 10, side[p], 1, rng.random() < 0.5))
                if rng.random() < 0.2:  # announced, then deleted in the same frame
                    del side[p]
                    out[i].append(self._level(p * 10, "1", 3, False))
        return self._frame(432, out[0], out[1])


@dataclass
class Rec:
    directory: Path
    paths: list[Path]
    live: BookSet  # the recorder's books at the end
    first_frame_ns: list[int]  # per segment, receive time of its first FRAME


def make_recording(directory: Path, *, frames: int = 3000, seed: int = 11, rotate_bytes: int = 70_000,
                   back_at: int | None = None) -> Rec:
    rng = random.Random(seed)
    sim = FeedSimulator.many(5, seed=seed)
    wide = WidePair(rng)
    live = BookSet()
    wall = BASE + 250_000
    mono = 5 * S
    dropped = False
    with Recording(directory, prefix="exp", header=lambda: {"scales": scales(live)},
                   keyframes=lambda: keyframes(live), rotate_bytes=rotate_bytes, fsync=False) as rec:

        def add(frame: bytes) -> None:
            rec.add(Kind.FRAME, wall, mono, frame)
            try:
                live.apply(frame)
            except FrameError:
                pass

        for i in range(frames):
            frame = sim.frames(1)[0]  # made now: a later snapshot is the book at its time
            r = rng.random()
            step = 0 if r < 0.25 else MS if r < 0.7 else rng.randrange(1, MS) if r < 0.9 else rng.randrange(5, 40) * MS
            wall += step if i != back_at else -30 * MS  # the wall clock stepping back
            mono += step
            if i == 30:
                add(wide.snapshot())
            elif i > 30 and i % 5 == 0:
                add(wide.diff())
            if i == 700:
                add(b'[423,{"PS":"BTCTRY","type":423}]')  # not a book frame
                rec.event("note", wall, mono, {"i": i})
            if i == 900:
                add(b'[432,{"CS":1,"PS":"BTCTRY","AO":[{"CP":0,"P":"x"}]')  # malformed
            if 1000 <= i and not dropped and f'"PS":"{GAPPED}"'.encode() in frame:
                dropped = True  # lost on the way: the next one makes a gap
                continue
            if i == 2100:
                add(sim.snapshot(GAPPED))  # a resync
                rec.event("resync", wall, mono, {"pair": GAPPED})
            add(frame)
        wall = -(-wall // EVERY) * EVERY + EVERY  # the last frame on the sampling grid
        mono += EVERY
        add(sim.frames(1)[0])
        paths = list(rec.paths)
    assert len(paths) >= 4
    first = []
    for path in paths:
        first.append(next(r.wall_ns for r in read_segment(path) if r.kind == Kind.FRAME))
    return Rec(directory, paths, live, first)


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Rec:
    return make_recording(tmp_path_factory.mktemp("rec"))


@pytest.fixture(scope="module")
def parquet_files(rec: Rec, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    pytest.importorskip("pyarrow")
    return to_parquet(rec.paths, tmp_path_factory.mktemp("pq"), depth=DEPTH, every_ms=EVERY_MS)


# -- an independent sequential sampler ----------------------------------------------------------


def exact(units: int, scale: int) -> Decimal:
    return Decimal((1 if units < 0 else 0, tuple(int(c) for c in str(abs(units))), -scale))


def book_row(book: Book, depth: int) -> dict[str, Any]:
    """A book's Parquet row (without ts_ns), as exact decimals."""
    row: dict[str, Any] = {"seq": book.seq}
    bids, asks = book.top(depth)
    for i in range(depth):
        for name, side in (("bid", bids), ("ask", asks)):
            if i < len(side):
                row[f"{name}_px_{i}"] = exact(int(side[i][0]), book.price_scale)
                row[f"{name}_qty_{i}"] = exact(int(side[i][1]), book.amount_scale)
            else:
                row[f"{name}_px_{i}"] = row[f"{name}_qty_{i}"] = None
    return row


def reference(paths: list[Path], every_ns: int, depth: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, tuple[int, int]]]:
    """Rows per pair, sampled in one pass: at every multiple ``t`` of ``every_ns`` from the first
    to the last FRAME, every synced book after the records up to the first book record received
    after ``t``. Also the largest scales each pair's sampled books had."""
    records = [r for _, r in read(paths)]
    header = records[0].json()
    books = BookSet({p: (s[0], s[1]) for p, s in header.get("scales", {}).items()})
    times = [r.wall_ns for r in records if r.kind == Kind.FRAME]
    t = -(-times[0] // every_ns) * every_ns
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    biggest: dict[str, tuple[int, int]] = {}
    i = 0
    while t <= times[-1]:
        while i < len(records):
            r = records[i]
            if r.kind in (Kind.FRAME, Kind.KEYFRAME):
                if r.wall_ns > t:
                    break
                try:
                    books.apply(r.data)
                except FrameError:
                    pass
            i += 1
        for pair, book in books.items():
            if book.synced:
                rows[pair].append({"ts_ns": t, **book_row(book, depth)})
                old = biggest.get(pair, (0, 0))
                biggest[pair] = (max(old[0], book.price_scale), max(old[1], book.amount_scale))
        t += every_ns
    return dict(rows), biggest


def read_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


# -- Parquet -----------------------------------------------------------------------------------------


def test_parquet_rows_equal_a_sequential_sampling_exactly(rec: Rec, parquet_files: list[Path]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    expected, biggest = reference(rec.paths, EVERY, DEPTH)
    assert [p.name for p in parquet_files] == [f"{pair}.parquet" for pair in sorted(expected)]
    assert WIDE in expected and GAPPED in expected
    for path in parquet_files:
        pair = path.stem
        table = pq.read_table(path)
        price_scale, amount_scale = biggest[pair]
        assert table.column_names == ["ts_ns", "seq"] + [
            f"{side}_{what}_{i}" for i in range(DEPTH) for side, what in
            (("bid", "px"), ("bid", "qty"), ("ask", "px"), ("ask", "qty"))
        ]
        assert table.schema.field("ts_ns").type == pa.int64()
        assert table.schema.field("seq").type == pa.int64()
        for i in range(DEPTH):
            assert table.schema.field(f"bid_px_{i}").type == pa.decimal128(38, price_scale)
            assert table.schema.field(f"ask_qty_{i}").type == pa.decimal128(38, amount_scale)
        meta = json.loads(table.schema.metadata[b"obengine"])
        assert meta == {"pair": pair, "price_scale": price_scale, "amount_scale": amount_scale,
                        "depth": DEPTH, "every_ms": EVERY_MS}
        got = table.to_pylist()
        assert len(got) == len(expected[pair])
        assert got == expected[pair], pair  # Decimal equality: the same numbers
        for row in got:  # and written at the file's scales
            for key, value in row.items():
                if value is not None and "_px_" in key:
                    assert value.as_tuple().exponent == -price_scale
    # what the recording exercised
    assert pq.read_table(parquet_files[0].with_name(f"{WIDE}.parquet")).schema.field("bid_px_0").type.scale == 3
    assert biggest[WIDE][1] == 12
    assert any(r.get("ask_px_5") is None for r in expected[WIDE])  # fewer levels than DEPTH: nulls
    ts = [r["ts_ns"] for r in expected[GAPPED]]
    assert any(b - a > EVERY for a, b in zip(ts, ts[1:]))  # no rows while unsynced


def test_parquet_rows_equal_replay_books_at_segment_boundaries_and_at_the_end(rec: Rec, parquet_files: list[Path]) -> None:
    tables = {p.stem: {r["ts_ns"]: r for r in read_rows(p)} for p in parquet_files}
    last = max(t for rows in tables.values() for t in rows)
    frames = [r.wall_ns for _, r in read(rec.paths) if r.kind == Kind.FRAME]
    assert last == frames[-1] and last % EVERY == 0
    assert min(t for rows in tables.values() for t in rows) == -(-frames[0] // EVERY) * EVERY
    times = {last}
    for f in rec.first_frame_ns[1:]:
        g = -(-f // EVERY) * EVERY
        times |= {g - EVERY, g, g + EVERY}
    for t in sorted(times):
        books = replay_books(rec.paths, at_ns=t)
        synced = {pair for pair, book in books.items() if book.synced}
        assert synced == {pair for pair, rows in tables.items() if t in rows}, t
        for pair in synced:
            row = dict(tables[pair][t])
            assert row.pop("ts_ns") == t
            assert row == book_row(books[pair], DEPTH), (pair, t)
    # at the very end (the last frame is on the grid): the recorder's own books
    for pair, rows in tables.items():
        if rec.live[pair].synced:
            row = dict(rows[last])
            row.pop("ts_ns")
            assert row == book_row(rec.live[pair], DEPTH)


def test_parquet_is_the_same_whatever_the_number_of_workers(rec: Rec, parquet_files: list[Path], tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    files = to_parquet(rec.paths, tmp_path, depth=DEPTH, every_ms=EVERY_MS, workers=2,
                       progress=lambda done, total: calls.append((done, total)))
    assert [f.name for f in files] == [f.name for f in parquet_files]
    for a, b in zip(files, parquet_files):
        assert a.read_bytes() == b.read_bytes(), a.name
    total = sum(p.stat().st_size for p in rec.paths)
    assert len(calls) == len(rec.paths) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


@pytest.mark.heavy
def test_parquet_on_a_dask_cluster_is_the_same(rec: Rec, parquet_files: list[Path], tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        files = to_parquet(rec.paths, tmp_path, depth=DEPTH, every_ms=EVERY_MS, scheduler=client)
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in parquet_files]


def test_parquet_of_later_segments_alone_is_the_full_export_from_their_first_frame(rec: Rec, parquet_files: list[Path], tmp_path: Path) -> None:
    """Each segment is replayed from its keyframes: an export of segments k.. has exactly the
    rows the whole recording's export has from segment k's first frame on."""
    k = 2
    start = rec.first_frame_ns[k]
    files = to_parquet(rec.paths[k:], tmp_path, depth=DEPTH, every_ms=EVERY_MS)
    full = {p.stem: [r for r in read_rows(p) if r["ts_ns"] >= start] for p in parquet_files}
    assert {p.stem: read_rows(p) for p in files} == {pair: rows for pair, rows in full.items() if rows}


def test_parquet_progress_sequential_and_sampling_arguments(rec: Rec, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    calls: list[tuple[int, int]] = []
    to_parquet(rec.paths[:2], tmp_path, depth=1, every_ms=1000, progress=lambda d, t: calls.append((d, t)))
    total = sum(p.stat().st_size for p in rec.paths[:2])
    assert calls[-1] == (total, total) and len(calls) > 2
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    for bad in ({"depth": 0}, {"every_ms": 0}):
        with pytest.raises(ValueError):
            to_parquet(rec.paths, tmp_path, **bad)  # type: ignore[arg-type]


def test_parquet_reads_in_polars(parquet_files: list[Path]) -> None:
    pl = pytest.importorskip("polars")
    path = next(p for p in parquet_files if p.stem == "BTCTRY")
    df = pl.read_parquet(path)
    expected = read_rows(path)
    assert df.height == len(expected)
    assert df.schema["bid_px_0"] == pl.Decimal(38, 0)
    assert df["ts_ns"].to_list() == [r["ts_ns"] for r in expected]
    assert df["ask_qty_3"].to_list() == [r["ask_qty_3"] for r in expected]
    wide = pl.read_parquet(path.with_name(f"{WIDE}.parquet"))
    assert wide["bid_qty_1"].to_list() == [r["bid_qty_1"] for r in read_rows(path.with_name(f"{WIDE}.parquet"))]


def test_parquet_reads_in_duckdb(parquet_files: list[Path]) -> None:
    duckdb = pytest.importorskip("duckdb")
    path = next(p for p in parquet_files if p.stem == "LTCTRY")
    expected = read_rows(path)
    con = duckdb.connect()
    got = con.execute(
        f"SELECT ts_ns, seq, bid_px_0, ask_qty_2, typeof(bid_px_0) FROM read_parquet('{path}') ORDER BY ts_ns"
    ).fetchall()
    assert [(t, s, b, a) for t, s, b, a, _ in got] == [
        (r["ts_ns"], r["seq"], r["bid_px_0"], r["ask_qty_2"]) for r in expected
    ]
    assert got[0][4] == "DECIMAL(38,2)"
    wide = path.with_name(f"{WIDE}.parquet")
    total = con.execute(f"SELECT sum(bid_qty_0) FROM read_parquet('{wide}')").fetchone()
    with localcontext(prec=100):  # Python's 28 digits would round the sum
        expected_total = sum(r["bid_qty_0"] for r in read_rows(wide) if r["bid_qty_0"] is not None)
    assert total is not None and total[0] == expected_total


def test_parquet_reads_in_pandas(parquet_files: list[Path]) -> None:
    pd = pytest.importorskip("pandas")
    path = next(p for p in parquet_files if p.stem == WIDE)
    df = pd.read_parquet(path)
    assert list(df["bid_qty_0"]) == [r["bid_qty_0"] for r in read_rows(path)]
    assert isinstance(df["bid_qty_0"].iloc[0], Decimal)


def test_parquet_holds_values_beyond_38_digits_as_decimal256(tmp_path: Path) -> None:
    """A wide book can reach 57 digits (a 29-digit amount at 28 places): decimal256."""
    pa = pytest.importorskip("pyarrow")
    live = BookSet()
    big = "79228162514264337593543950335"  # 2**96 - 1: the largest a .NET decimal holds
    frames = [
        f'[431,{{"CS":7,"PS":"BIGTRY","AO":[{{"A":"{big}","P":"2"}}],"BO":[{{"A":"1","P":"1"}}],"type":431}}]',
        '[432,{"CS":8,"PS":"BIGTRY","AO":[],"BO":[{"CP":1,"A":"0.0000000000000000000000000001","P":"0.5"}],"type":432}]',
    ]
    with Recording(tmp_path / "rec", header=lambda: {"scales": scales(live)},
                   keyframes=lambda: keyframes(live), fsync=False) as recording:
        for i, frame in enumerate(frames):
            recording.add(Kind.FRAME, BASE + i * 10 * MS, i, frame.encode())
            live.apply(frame)
    (path,) = to_parquet([tmp_path / "rec"], tmp_path / "out", depth=2, every_ms=10)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.schema.field("ask_qty_0").type == pa.decimal256(76, 28)
    assert table.schema.field("ask_px_0").type == pa.decimal128(38, 1)  # 0.5: one place
    rows = table.to_pylist()
    assert [r["ts_ns"] for r in rows] == [BASE, BASE + 10 * MS]
    assert rows[1]["ask_qty_0"] == Decimal(big) and rows[1]["bid_qty_1"] == Decimal("1e-28")
    assert rows[0]["bid_px_1"] is None and rows[1]["bid_px_1"] == Decimal("0.5")


def test_parquet_with_a_wall_clock_stepping_back_takes_each_sample_time_once(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    rec = make_recording(tmp_path / "rec", frames=1500, seed=3, rotate_bytes=30_000, back_at=700)
    one = to_parquet(rec.paths, tmp_path / "one", depth=3, every_ms=EVERY_MS)
    two = to_parquet(rec.paths, tmp_path / "two", depth=3, every_ms=EVERY_MS, workers=2)
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    for path in one:
        ts = [r["ts_ns"] for r in read_rows(path)]
        assert all(b > a and (b - a) % EVERY == 0 for a, b in zip(ts, ts[1:]))


def test_rescaling_to_the_files_scale_is_exact_past_int64() -> None:
    """Rows of a book at a smaller scale are brought to the file's scale exactly, in Python
    ints where int64 would overflow."""
    from obengine.export import _rescaled

    levels = np.zeros((3, 4, 1), np.int64)
    levels[:, 0, 0] = [2**62, 5, 7]  # bid prices
    levels[:, 1, 0] = [1, 2, 3]  # bid amounts
    out = _rescaled(levels, (0, 2), np.array([0, 2, 3]), 3)
    assert out.dtype == object and out[:, 0, 0].tolist() == [2**62 * 1000, 50, 7]
    assert out[:, 1, 0].tolist() == [1, 2, 3]  # other columns as they were
    small = _rescaled(levels[1:], (0, 2), np.array([2, 3]), 3)
    assert small.dtype == np.int64 and small[:, 0, 0].tolist() == [50, 7]
    assert levels[1, 0, 0] == 5  # not changed in place


# -- hftbacktest ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hbt_files(rec: Rec, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return to_hftbacktest(rec.paths, tmp_path_factory.mktemp("hbt"))


def mirror(data: np.ndarray) -> tuple[dict[float, float], dict[float, float]]:
    """The depth an L2 consumer of the events holds at the end: ``(bids, asks)`` price -> qty."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for ev, px, qty in zip(data["ev"].tolist(), data["px"].tolist(), data["qty"].tolist()):
        kind = ev & 0xFF
        if kind == DEPTH_CLEAR_EVENT:
            assert not ev & (BUY_EVENT | SELL_EVENT)
            bids.clear()
            asks.clear()
            continue
        assert kind in (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT)
        side = bids if ev & BUY_EVENT else asks
        if qty:
            side[px] = qty
        else:
            side.pop(px, None)
    return bids, asks


def floats(book: Book) -> tuple[dict[float, float], dict[float, float]]:
    out = []
    for side in (book.bids, book.asks):
        out.append({int(p) / 10**book.price_scale: int(a) / 10**book.amount_scale for p, a in side.tolist()})
    return out[0], out[1]


def test_hftbacktest_files_rebuild_every_book_and_are_in_order(rec: Rec, hbt_files: list[Path]) -> None:
    assert [p.name for p in hbt_files] == sorted(f"{pair}.npz" for pair in rec.live)
    for path in hbt_files:
        pair = path.stem
        with np.load(path) as npz:
            data = npz["data"]
            book = rec.live[pair]
            assert float(npz["tick_size"]) == 10.0**-book.price_scale
            assert float(npz["lot_size"]) == 10.0**-book.amount_scale
        assert data.dtype == EVENT_DTYPE and data.dtype.itemsize == 64
        assert np.all(data["ev"] & (EXCH_EVENT | LOCAL_EVENT) == EXCH_EVENT | LOCAL_EVENT)
        assert np.array_equal(data["exch_ts"], data["local_ts"])
        assert np.all(np.diff(data["exch_ts"]) >= 0)
        assert mirror(data) == floats(book), pair
    # the first 431; the gap cleared the depth; nothing while unsynced; the resync's 431
    with np.load(hbt_files[0].with_name(f"{GAPPED}.npz")) as npz:
        data = npz["data"]
    kinds = data["ev"] & 0xFF
    first, gap, resync = np.nonzero(kinds == DEPTH_CLEAR_EVENT)[0]
    assert first == 0 and kinds[1] == DEPTH_SNAPSHOT_EVENT
    assert resync == gap + 1 and kinds[resync + 1] == DEPTH_SNAPSHOT_EVENT
    assert data["exch_ts"][gap] < data["exch_ts"][resync]


def test_hftbacktest_from_a_later_segment_starts_with_its_keyframes(rec: Rec, hbt_files: list[Path], tmp_path: Path) -> None:
    files = to_hftbacktest(rec.paths[2:], tmp_path)
    first_block = next(iter_blocks(rec.paths[2])).records()
    started = first_block[0].wall_ns  # its HEADER and keyframes
    keyed = {json.loads(r.data)[1]["PS"] for r in first_block if r.kind == Kind.KEYFRAME}
    assert GAPPED not in keyed and len(keyed) == len(rec.live) - 1  # unsynced then: no keyframe
    assert [p.name for p in files] == [p.name for p in hbt_files]
    for path in files:
        with np.load(path) as npz:
            data = npz["data"]
        assert data["ev"][0] & 0xFF == DEPTH_CLEAR_EVENT
        assert (data["exch_ts"][0] == started) == (path.stem in keyed)
        assert mirror(data) == floats(rec.live[path.stem])


def test_hftbacktest_replays_the_files_to_the_recorders_books(rec: Rec, hbt_files: list[Path]) -> None:
    """hftbacktest's own backtester, fed each file, ends with the recorder's best bid and ask
    and the same amount at each of the top levels."""
    if os.environ.get("OBENGINE_REQUIRE_HFTBACKTEST"):     # CI's own step: a skip would pass silently
        import hftbacktest as hbt_module
    else:
        hbt_module = pytest.importorskip("hftbacktest", reason="hftbacktest is not installed (it pins numpy<2.3: "
                                         "run this file in a separate virtualenv with hftbacktest)")
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
    from hftbacktest.data import validate_event_order
    from hftbacktest.types import event_dtype

    assert event_dtype == EVENT_DTYPE
    for name in ("DEPTH_EVENT", "DEPTH_CLEAR_EVENT", "DEPTH_SNAPSHOT_EVENT", "EXCH_EVENT", "LOCAL_EVENT",
                 "BUY_EVENT", "SELL_EVENT"):
        assert getattr(hbt_module, name) == globals()[name], name
    for path in hbt_files:
        book = rec.live[path.stem]
        with np.load(path) as npz:
            validate_event_order(npz["data"])
            tick, lot = float(npz["tick_size"]), float(npz["lot_size"])
        asset = (
            BacktestAsset()
            .data([str(path)])
            .linear_asset(1.0)
            .constant_order_latency(0, 0)
            .risk_adverse_queue_model()
            .no_partial_fill_exchange()
            .trading_value_fee_model(0.0, 0.0)
            .tick_size(tick)
            .lot_size(lot)
        )
        hbt = HashMapMarketDepthBacktest([asset])
        while hbt.elapse(60 * S) == 0:
            pass
        depth = hbt.depth(0)
        (bid_px, bid_qty), (ask_px, ask_qty) = book.best_bid, book.best_ask
        assert depth.best_bid_tick == bid_px and depth.best_ask_tick == ask_px
        assert depth.best_bid == bid_px * tick and depth.best_ask == ask_px * tick  # its formula
        assert depth.best_bid_qty == bid_qty / 10**book.amount_scale
        assert depth.best_ask_qty == ask_qty / 10**book.amount_scale
        bids, asks = book.top(DEPTH)
        for p, a in bids.tolist():
            assert depth.bid_qty_at_tick(p) == a / 10**book.amount_scale
        for p, a in asks.tolist():
            assert depth.ask_qty_at_tick(p) == a / 10**book.amount_scale
        # and its whole depth is the book: no level left over from before a clear
        levels = depth.snapshot()
        try:
            held = {(bool(ev & BUY_EVENT), round(px / tick), qty)
                    for ev, px, qty in zip(levels["ev"].tolist(), levels["px"].tolist(), levels["qty"].tolist())}
        finally:
            depth.snapshot_free(levels)
        assert held == {(True, p, a / 10**book.amount_scale) for p, a in book.bids.tolist()} | {
            (False, p, a / 10**book.amount_scale) for p, a in book.asks.tolist()
        }, path.stem
        hbt.close()


# -- plot ---------------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_writes_a_png_per_pair_rows(rec: Rec, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = plot(rec.paths, tmp_path / "books.png", depth=DEPTH, every_ms=EVERY_MS)
    assert out == tmp_path / "books.png"
    data = out.read_bytes()
    width, height = png_size(data)
    assert width == 1600 and height == 6 * 280
    assert len(data) > 50_000
    assert [p.name for p in tmp_path.iterdir()] == ["books.png"]


def test_plot_chosen_pairs_and_a_pair_without_samples(rec: Rec, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("matplotlib")
    out = plot(rec.paths, tmp_path / "two.png", pairs=[WIDE, "NOPE"], every_ms=50)
    assert png_size(out.read_bytes()) == (1600, 2 * 280)
    out = plot(rec.paths, tmp_path / "most.png", max_pairs=2, every_ms=50)
    assert png_size(out.read_bytes()) == (1600, 2 * 280)
    assert "plotting 2 of 6 pairs" in caplog.text


# -- optional dependencies -----------------------------------------------------------------------------


def test_missing_optional_dependencies_name_their_extra(rec: Rec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pyarrow", None)
        with pytest.raises(MissingExtraError) as e:
            to_parquet(rec.paths, tmp_path)
        assert str(e.value) == "Parquet export needs pyarrow: pip install 'obengine[parquet]'"
        assert e.value.extra == "parquet" and e.value.name == "pyarrow"
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(MissingExtraError) as e:
            plot(rec.paths, tmp_path / "x.png")
        assert str(e.value) == "plotting needs matplotlib: pip install 'obengine[plot]'"
    pytest.importorskip("pyarrow")
    pytest.importorskip("matplotlib")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "distributed", None)
        with pytest.raises(MissingExtraError) as e:
            to_parquet(rec.paths, tmp_path, scheduler="tcp://127.0.0.1:9")
        assert str(e.value) == "Parquet export on a Dask cluster needs distributed: pip install 'obengine[dask]'"
        with pytest.raises(MissingExtraError, match=r"obengine\[dask\]"):
            plot(rec.paths, tmp_path / "x.png", scheduler="tcp://127.0.0.1:9")
    assert not list(tmp_path.iterdir())


def test_importing_the_export_module_imports_no_optional_or_network_library() -> None:
    from helpers import modules_imported_by

    assert modules_imported_by("obengine.export", [
        "pyarrow", "matplotlib", "distributed", "dask", "hftbacktest", "asyncio", "socket", "httpx", "websockets",
    ]) == []


def test_malformed_frames_are_logged_up_to_the_limit_then_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A recording of a misbehaving feed may hold a great many malformed frames: each export
    logs the first WARN_LIMIT of a segment one by one, then only their count, and goes on."""
    from obengine.replay import WARN_LIMIT

    bad = WARN_LIMIT + 15
    sim = FeedSimulator.many(2, seed=5)
    live = BookSet()
    with Recording(tmp_path / "rec", prefix="bad", header=lambda: {"scales": scales(live)},
                   keyframes=lambda: keyframes(live), fsync=False) as recording:
        for i, frame in enumerate(sim.frames(200)):
            recording.add(Kind.FRAME, BASE + i * MS, i * MS, frame)
            live.apply(frame)
            if 50 <= i < 50 + bad:
                recording.add(Kind.FRAME, BASE + i * MS, i * MS, b'[432,{"CS":1,"PS":"BTCTRY","AO":[{"CP":0,"P":"x"}]')
        paths = list(recording.paths)
    for export in (lambda: to_parquet(paths, tmp_path / "pq", depth=DEPTH, every_ms=EVERY_MS),
                   lambda: to_hftbacktest(paths, tmp_path / "hbt")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="obengine"):
            written = export()
        one_by_one = [r for r in caplog.records if "record at byte" in r.getMessage()]
        assert len(one_by_one) == WARN_LIMIT and "counted, not logged" in one_by_one[-1].getMessage()
        assert f"{bad} malformed frames skipped in all" in caplog.text
        assert len(written) == 2
