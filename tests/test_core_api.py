"""The native core's own API: zero-copy numpy views, conveniences, snapshot, constructor checks,
and the typed stubs (``_core.pyi``) checked against the built module by mypy's stubtest."""
from __future__ import annotations

import enum
import inspect
import os
import platform
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

import obengine
from helpers import f431, f432
from obengine import Book, BookSet, FrameError, ObengineError, Status

ASKS = [("100.5", "1.25"), ("100.75", "0.5"), ("101", "3")]
BIDS = [("100.25", "2"), ("100", "0.001"), ("99.5", "7")]


@pytest.fixture
def book() -> Book:
    b = Book("XYZTRY", 2, 3)
    assert b.apply(f431(1, ASKS, BIDS, pair="XYZTRY")) == Status.APPLIED
    return b


# --- views -----------------------------------------------------------------------------------


def test_a_narrow_books_views_are_read_only_int64_k_by_2_arrays_best_first(book: Book) -> None:
    assert book.wide is False
    for view in (book.bids, book.asks):
        assert isinstance(view, np.ndarray)
        assert view.dtype == np.int64 and view.ndim == 2 and view.shape == (3, 2)
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view[0, 0] = 1
    assert book.bids.tolist() == [[10025, 2000], [10000, 1], [9950, 7000]]
    assert book.asks.tolist() == [[10050, 1250], [10075, 500], [10100, 3000]]


def test_a_narrow_books_views_share_its_memory(book: Book) -> None:
    for name in ("bids", "asks"):
        first, second = getattr(book, name), getattr(book, name)
        assert not first.flags.owndata and first.base is not None
        assert np.shares_memory(first, second)
    assert np.shares_memory(book.top(2)[0], book.bids)
    assert np.shares_memory(book.top(2)[1], book.asks)


def test_a_narrow_books_view_shows_the_book_without_copying(book: Book) -> None:
    view = book.asks
    before = view.copy()
    book.apply(f432(2, [("100.5", "9", 0)], pair="XYZTRY"))
    # rules.md: a view is only valid until the next apply; a fresh one shows the new state
    assert book.asks[0].tolist() == [10050, 9000]
    assert before[0].tolist() == [10050, 1250]


def test_an_empty_side_of_a_narrow_book_is_a_0_by_2_int64_view() -> None:
    b = Book("XYZTRY", 0, 0)
    for view in (b.bids, b.asks):
        assert view.shape == (0, 2) and view.dtype == np.int64
    b.apply(f431(1, [("1", "1")], [], pair="XYZTRY"))
    assert b.bids.shape == (0, 2) and b.asks.shape == (1, 2)


def test_an_old_view_stays_safe_to_read_after_the_book_grows_and_dies() -> None:
    b = Book("XYZTRY", 0, 0)
    b.apply(f431(1, [("1000", "1")], [("999", "1")], pair="XYZTRY"))
    old = b.asks
    b.apply(f431(2, [(str(1000 + i), "1") for i in range(1000)], [], pair="XYZTRY"))
    assert b.asks.shape == (1000, 2)
    del b
    assert old.shape == (1, 2)
    int(old.sum())  # contents unspecified, but reading must not crash


# --- conveniences ----------------------------------------------------------------------------


def test_top_n_are_the_best_levels_of_each_side(book: Book) -> None:
    bids, asks = book.top(2)
    assert bids.tolist() == book.bids[:2].tolist() and asks.tolist() == book.asks[:2].tolist()
    bids, asks = book.top()
    assert bids.shape == (3, 2) and asks.shape == (3, 2)  # default 10, fewer levels here
    bids, asks = book.top(0)
    assert bids.shape == (0, 2) and asks.shape == (0, 2)
    for view in book.top(1):
        assert view.dtype == np.int64 and not view.flags.writeable


def test_best_bid_and_best_ask_are_unit_tuples_or_none(book: Book) -> None:
    assert book.best_bid == (10025, 2000) and book.best_ask == (10050, 1250)
    assert all(type(x) is int for x in (*book.best_bid, *book.best_ask))  # type: ignore[misc]
    empty = Book("XYZTRY", 0, 0)
    assert empty.best_bid is None and empty.best_ask is None
    empty.apply(f431(1, [("5", "1")], [], pair="XYZTRY"))
    assert empty.best_bid is None and empty.best_ask == (5, 1)


def test_mid_and_spread_are_exact_decimals(book: Book) -> None:
    assert isinstance(book.spread, Decimal) and isinstance(book.mid, Decimal)
    assert book.spread == Decimal("0.25")
    assert book.mid == Decimal("100.375")


def test_mid_is_exact_at_the_int64_limit() -> None:
    b = Book("XYZTRY", 0, 0)
    b.apply(f431(1, [(str(2**63 - 1), "1")], [(str(2**63 - 2), "1")], pair="XYZTRY"))
    assert b.mid == Decimal(2**63 - 2) + Decimal("0.5")
    assert b.spread == Decimal(1)
    b18 = Book("XYZTRY", 18, 0)
    b18.apply(
        f431(1, [("0.000000000000000003", "1")], [("0.000000000000000002", "1")], pair="XYZTRY")
    )
    assert b18.mid == Decimal("0.0000000000000000025") and b18.spread == Decimal("1e-18")


def test_mid_and_spread_are_none_without_both_sides() -> None:
    b = Book("XYZTRY", 0, 0)
    assert b.mid is None and b.spread is None
    b.apply(f431(1, [("5", "1")], [], pair="XYZTRY"))
    assert b.mid is None and b.spread is None


def test_to_float_is_a_float64_copy_of_the_top_levels_in_real_units(book: Book) -> None:
    bids, asks = book.to_float(2)
    assert bids.dtype == np.float64 and asks.dtype == np.float64
    assert bids.shape == (2, 2) and asks.shape == (2, 2)
    assert bids.ravel().tolist() == pytest.approx([100.25, 2.0, 100.0, 0.001], rel=1e-15)
    assert asks.ravel().tolist() == pytest.approx([100.5, 1.25, 100.75, 0.5], rel=1e-15)
    assert not np.shares_memory(bids, book.bids)
    bids, asks = book.to_float()
    assert bids.shape == (3, 2) and asks.shape == (3, 2)


def test_snapshot_holds_exact_decimal_strings(book: Book) -> None:
    book.apply(
        f432(2, [("100.5", None, 3)], [("99.123", "0.000000000000000001", 1)], pair="XYZTRY")
    )
    snap = book.snapshot()
    assert set(snap) == {"pair", "seq", "synced", "price_scale", "amount_scale", "bids", "asks"}
    assert (snap["pair"], snap["seq"], snap["synced"]) == ("XYZTRY", 2, True)
    assert (snap["price_scale"], snap["amount_scale"]) == (3, 18)
    for side, expected in (
        ("bids", [("100.25", "2"), ("100", "0.001"), ("99.5", "7"), ("99.123", "1e-18")]),
        ("asks", [("100.75", "0.5"), ("101", "3")]),
    ):
        got = snap[side]  # type: ignore[literal-required]
        assert all(isinstance(p, str) and isinstance(a, str) for p, a in got)
        assert [(Decimal(p), Decimal(a)) for p, a in got] == [
            (Decimal(p), Decimal(a)) for p, a in expected
        ]


def test_snapshot_of_extreme_values_is_exact() -> None:
    b = Book("XYZTRY", 0, 18)
    b.apply(f431(1, [(str(2**63 - 1), "9.223372036854775807")], [], pair="XYZTRY"))
    (price, amount), = b.snapshot()["asks"]
    assert Decimal(price) == 2**63 - 1
    assert Decimal(amount) == Decimal("9.223372036854775807")
    assert b.snapshot()["seq"] == 1
    assert Book("XYZTRY", 0, 0).snapshot()["seq"] is None


# --- constructor, constants, types -----------------------------------------------------------


@pytest.mark.parametrize("scales", [(-1, 0), (19, 0), (0, -1), (0, 19), (100, 100)])
def test_constructor_scales_outside_0_to_18_raise_value_error(scales: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        Book("BTCTRY", *scales)


@pytest.mark.parametrize("scales", [(0, 0), (18, 18), (0, 18)])
def test_constructor_scales_0_to_18_are_accepted(scales: tuple[int, int]) -> None:
    b = Book("BTCTRY", *scales)
    assert (b.price_scale, b.amount_scale) == scales


def test_status_is_an_int_enum_with_the_documented_values() -> None:
    assert issubclass(Status, enum.IntEnum)
    assert {s.name: s.value for s in Status} == {
        "APPLIED": 0,
        "IGNORED": 1,
        "STALE": 2,
        "GAP": 3,
        "CROSSED": 4,
    }


def test_frame_error_is_a_value_error_and_an_obengine_error() -> None:
    assert issubclass(FrameError, ValueError) and issubclass(FrameError, ObengineError)
    assert obengine._core.MAX_SCALE == 18


def test_bookset_books_are_books() -> None:
    books = BookSet()
    books.apply(f431(1, [], []))
    assert type(books["BTCTRY"]) is Book


def test_a_book_is_initialized_once() -> None:
    """A BookSet's index points into its books, so a book cannot be made over into another."""
    bs = BookSet()
    assert bs.apply(f431(1, ASKS, BIDS, pair="XYZTRY")) == ("XYZTRY", Status.APPLIED)
    with pytest.raises(TypeError, match="initialized once"):
        bs["XYZTRY"].__init__("ABCTRY", 0, 0)
    assert bs["XYZTRY"].pair == "XYZTRY"
    assert bs.apply(f432(2, [("100.5", "2", 0)], [], pair="XYZTRY")) == ("XYZTRY", Status.APPLIED)
    assert bs["XYZTRY"].best_ask == (10050, 2000)


def test_apply_is_introspectable_as_taking_one_frame() -> None:
    """apply is a plain method (no bound-method layer on each call); its signature stays readable."""
    for apply in (Book("XYZTRY", 0, 0).apply, BookSet().apply):
        assert list(inspect.signature(apply).parameters) == ["frame"]
        assert apply.__doc__ and apply.__doc__.startswith("Apply one websocket frame")


@pytest.mark.no_sanitizer  # the stubs against the module's signatures: nothing for ASan to check
def test_the_stubs_match_the_built_module() -> None:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "obengine._core"],
        capture_output=True,
        text=True,
        cwd=root,
    )
    print(result.stdout)
    print(result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_has_the_number_reader_its_cpu_gets() -> None:
    """x86-64 builds read numbers with SSE4.1 unless built with OBENGINE_PORTABLE=1 (setup.py);
    other CPUs always have the eight-byte reader. The tests of numbers check whichever it is: CI
    runs them on both (set OBENGINE_PORTABLE=1 when testing a portable build, so this agrees)."""
    from obengine import _core

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    portable = os.environ.get("OBENGINE_PORTABLE") == "1"
    assert _core._NUMBER_READER == ("sse4.1" if x86 and not portable else "swar")
