"""Rescaling (docs/rules.md, "Rescaling" and "Wide books"): an applied frame with more decimal
places raises the book's scale exactly; a value that would not fit int64 (the frame's own, or a
held one once rescaled) makes the book wide and the frame is applied all the same.

Every test runs against the reference (``[ref]``) and the core (``[core]``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helpers import BASE_ASKS, BASE_BIDS, f431, f432, levels, state
from obengine import FrameError, Status




def test_a_finer_price_raises_price_scale_and_rescales_every_price(book: Any) -> None:
    assert book.apply(f432(101, [("2150015.5", "1", 1)])) == Status.APPLIED
    assert state(book) == (
        [(21500000, 10_000_000), (21499900, 200_000_000)],
        [(21500100, 50_000_000), (21500155, 100_000_000), (21500200, 125_000_000)],
        1,
        8,
        101,
        True,
        0,
        False,
    )


def test_a_finer_amount_raises_amount_scale_and_rescales_every_amount(book: Any) -> None:
    assert book.apply(f432(101, [], [("2149995", "0.123456789", 1)])) == Status.APPLIED
    assert state(book) == (
        [(2150000, 100_000_000), (2149995, 123_456_789), (2149990, 2_000_000_000)],
        [(2150010, 500_000_000), (2150020, 1_250_000_000)],
        0,
        9,
        101,
        True,
        0,
        False,
    )


def test_both_scales_rise_to_the_largest_places_in_the_frame(book: Any) -> None:
    frame = f432(
        101,
        [("2150011.25", "0.5", 1), ("2150012.125", "0.0000000001", 1)],
        [("2149999.5", "1e-12", 1)],
    )
    assert book.apply(frame) == Status.APPLIED
    bids, asks = levels(book)
    assert (book.price_scale, book.amount_scale) == (3, 12)
    assert asks == [
        (2150010000, 500_000_000_000),
        (2150011250, 500_000_000_000),
        (2150012125, 100),
        (2150020000, 1_250_000_000_000),
    ]
    assert bids == [(2150000000, 100_000_000_000), (2149999500, 1), (2149990000, 2_000_000_000_000)]


def test_the_amount_of_a_delete_counts_for_the_rescale(book: Any) -> None:
    assert book.apply(f432(101, [("2150010", "0.0000000001", 3)])) == Status.APPLIED
    assert state(book) == (
        [(2150000, 1_000_000_000), (2149990, 20_000_000_000)],
        [(2150020, 12_500_000_000)],
        0,
        10,
        101,
        True,
        0,
        False,
    )


def test_the_price_of_a_delete_of_a_missing_level_counts_for_the_rescale(book: Any) -> None:
    assert book.apply(f432(101, [("2150015.25", None, 3)])) == Status.APPLIED
    assert levels(book)[1] == [(215001000, 50_000_000), (215002000, 125_000_000)]
    assert book.price_scale == 2 and book.anomalies == 1


def test_zero_amounts_have_no_decimal_places(book: Any) -> None:
    assert book.apply(f432(101, [("2150010", "0.0000000000000", 0)])) == Status.APPLIED
    assert book.amount_scale == 8
    assert levels(book)[1] == [(2150020, 125_000_000)]


def test_trailing_zeros_do_not_rescale(book: Any) -> None:
    assert book.apply(f432(101, [("2150015.000", "1.000000000000", 1)])) == Status.APPLIED
    assert (book.price_scale, book.amount_scale) == (0, 8)


def test_the_scale_is_the_most_real_places_when_the_longest_values_end_in_zeros(
    make_book: Callable[..., Any],
) -> None:
    # written with 3, 2 and 1 places; only "3.1" and "2.25" really have them
    b = make_book(price_scale=0, amount_scale=0)
    frame = f431(1, [("1.500", "0.250"), ("2.10", "1.00"), ("3.1", "2.25")], [("0.90", "7.000")])
    assert b.apply(frame) == Status.APPLIED
    assert state(b) == ([(9, 700)], [(15, 25), (21, 100), (31, 225)], 1, 2, 1, True, 0, False)


def test_a_431_infers_the_scales_of_a_book_created_at_zero(make_book: Callable[..., Any]) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    assert b.apply(f431(1, [("1.25", "10")], [("1.2", "0.001")])) == Status.APPLIED
    assert state(b) == ([(120, 1)], [(125, 10_000)], 2, 3, 1, True, 0, False)


def test_scales_never_go_down(book: Any) -> None:
    book.apply(f432(101, [("2150015.5", "0.000000001", 1)]))
    assert (book.price_scale, book.amount_scale) == (1, 9)
    assert book.apply(f431(200, [("100", "1")], [("90", "2")])) == Status.APPLIED
    assert state(book) == ([(900, 2_000_000_000)], [(1000, 1_000_000_000)], 1, 9, 200, True, 0, False)


@pytest.mark.parametrize(
    ("cs", "status"), [(100, Status.STALE), (50, Status.STALE), (102, Status.GAP)]
)
def test_stale_and_gap_frames_never_rescale(book: Any, cs: int, status: Status) -> None:
    before = state(book)
    assert book.apply(f432(cs, [("2150015.5", "0.000000001", 1)])) == status
    after = state(book)
    assert after[:5] == before[:5] and after[6:] == before[6:]  # only synced may change (a gap)


def test_a_432_on_an_unsynced_book_never_rescales(make_book: Callable[..., Any]) -> None:
    b = make_book()
    assert b.apply(f432(1, [("2150015.5", "0.000000001", 1)])) == Status.GAP
    assert (b.price_scale, b.amount_scale) == (0, 8)


def test_a_crossed_frame_is_applied_and_rescales(book: Any) -> None:
    assert book.apply(f432(101, [], [("2150010.5", "1", 1)])) == Status.CROSSED
    assert book.price_scale == 1
    assert levels(book)[0][0] == (21500105, 100_000_000)


# --- values that do not fit int64: the book becomes wide ----------------------------------------


def assert_rejected_unchanged(book: Any, frame: str) -> None:
    before = state(book)
    with pytest.raises(FrameError):
        book.apply(frame)
    assert state(book) == before


def test_a_price_rescale_that_overflows_int64_makes_the_book_wide(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    b.apply(f431(1, [("1000000000000000", "1")], [("1", "1")]))  # 1e15 at price scale 0
    assert b.apply(f432(2, [], [("2.001", "1", 1)])) == Status.APPLIED  # 1e18 fits
    assert b.price_scale == 3 and levels(b)[1] == [(10**18, 100_000_000)] and not b.wide
    assert b.apply(f432(3, [], [("2.0001", "1", 1)])) == Status.APPLIED  # 1e15 * 10**4 > int64
    assert state(b) == (
        [(20010, 100_000_000), (20001, 100_000_000), (10000, 100_000_000)],
        [(10**19, 100_000_000)],
        4,
        8,
        3,
        True,
        0,
        True,
    )


def test_an_amount_rescale_that_overflows_int64_makes_the_book_wide(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    b.apply(f431(1, [("100", "50000000000")], [("1", "1")]))  # 5e18 units at scale 8
    assert b.apply(f432(2, [], [("2", "0.000000001", 1)])) == Status.APPLIED
    assert state(b) == (
        [(2, 1), (1, 1_000_000_000)],
        [(100, 5 * 10**19)],
        0,
        9,
        2,
        True,
        0,
        True,
    )


def test_a_held_value_that_would_overflow_makes_the_book_wide_even_if_the_frame_deletes_it(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    b.apply(f431(1, [("100", "50000000000")], [("1", "1")]))  # 5e18 units at scale 8
    # the rescale comes first: the deleted level needed 5e19 units on the way
    assert b.apply(f432(2, [("100", "0.000000001", 3)])) == Status.APPLIED
    assert state(b) == ([(1, 1_000_000_000)], [], 0, 9, 2, True, 0, True)


def test_a_frame_value_that_overflows_at_the_new_scale_makes_the_book_wide(
    make_book: Callable[..., Any],
) -> None:
    price_too_big = make_book(price_scale=0, amount_scale=0)
    assert price_too_big.apply(f431(1, [("100000000000000000", "1"), ("0.01", "1")], [])) == Status.APPLIED
    assert state(price_too_big) == ([], [(1, 1), (10**19, 1)], 2, 0, 1, True, 0, True)
    amount_too_big = make_book(price_scale=0, amount_scale=0)
    assert amount_too_big.apply(f431(1, [("1", "100000000000000000")], [("0.5", "0.01")])) == Status.APPLIED
    assert state(amount_too_big) == ([(5, 1)], [(10, 10**19)], 1, 2, 1, True, 0, True)
    fits = make_book(price_scale=0, amount_scale=0)
    assert fits.apply(f431(1, [("10000000000000000", "1"), ("0.01", "1")], [])) == Status.APPLIED
    assert state(fits) == ([], [(1, 1), (10**18, 1)], 2, 0, 1, True, 0, False)


def test_an_overflowing_cp3_amount_makes_the_book_wide(book: Any) -> None:
    # 1e11 at amount scale 8 is 1e19 units: it counts even for a delete, whose amount is ignored
    assert book.apply(f432(101, [("2150010", "100000000000", 3)])) == Status.APPLIED
    assert state(book) == (
        [(2150000, 10_000_000), (2149990, 200_000_000)],
        [(2150020, 125_000_000)],
        0,
        8,
        101,
        True,
        0,
        True,
    )


@pytest.mark.parametrize(
    ("price", "units", "wide"),
    [
        ("92233720368547758.07", 2**63 - 1, False),
        ("92233720368547758.08", 2**63, True),
        ("9223372036854775808", 2**63 * 100, True),
    ],
)
def test_int64_limit_at_the_needed_scale_decides_wide(
    make_book: Callable[..., Any], price: str, units: int, wide: bool
) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    assert b.apply(f431(1, [(price, "1"), ("0.01", "1")], [])) == Status.APPLIED
    assert levels(b)[1] == [(1, 1), (units, 1)]
    assert b.price_scale == 2 and b.wide is wide


def test_a_stale_frame_with_a_value_too_big_for_int64_leaves_the_book_narrow(book: Any) -> None:
    """A stale 432 does not rescale (rules.md: "Stale and gap frames never rescale" and never make
    a book wide), so a value that would not fit int64 at the book's scales changes nothing."""
    before = state(book)
    assert book.apply(f432(99, [("2150010", "100000000000", 0)])) == Status.STALE
    assert state(book) == before


# The reader writes each value at the book's scales as it reads it, when it knows the book (its
# own, or the one a BookSet routes the pair to) and the value fits; the first one that does not
# (finer, or too big) leaves the whole frame to the general conversion, which must then take the
# values already written the same way as the rest.
FINER_LAST = f432(
    101,
    [("2150011", "0.5", 1), ("2150012", "0.25", 1)],
    [("2149999", "1", 1), ("2149998.5", "1", 1)],
)
FINER_LAST_STATE = (
    [(21500000, 10_000_000), (21499990, 100_000_000), (21499985, 100_000_000), (21499900, 200_000_000)],
    [(21500100, 50_000_000), (21500110, 50_000_000), (21500120, 25_000_000), (21500200, 125_000_000)],
    1,
    8,
    101,
    True,
    0,
    False,
)
OVERFLOW_LAST = f432(101, [("2150011", "0.5", 1)], [("2149999", "1", 1), ("2149998", "100000000000", 1)])
OVERFLOW_LAST_STATE = (
    [(2150000, 10_000_000), (2149999, 100_000_000), (2149998, 10**19), (2149990, 200_000_000)],
    [(2150010, 50_000_000), (2150011, 50_000_000), (2150020, 125_000_000)],
    0,
    8,
    101,
    True,
    0,
    True,
)


def test_a_finer_value_after_values_that_fit_rescales_them_all(book: Any) -> None:
    assert book.apply(FINER_LAST) == Status.APPLIED
    assert state(book) == FINER_LAST_STATE


def test_a_value_too_big_after_values_that_fit_makes_the_book_wide_with_them_all(book: Any) -> None:
    assert book.apply(OVERFLOW_LAST) == Status.APPLIED
    assert state(book) == OVERFLOW_LAST_STATE


def test_a_value_beyond_a_net_decimal_after_values_that_fit_rejects_the_frame(book: Any) -> None:
    beyond = OVERFLOW_LAST.replace('"100000000000"', '"79228162514264337593543950336"')
    assert beyond != OVERFLOW_LAST
    assert_rejected_unchanged(book, beyond)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [(FINER_LAST, FINER_LAST_STATE), (OVERFLOW_LAST, OVERFLOW_LAST_STATE)],
    ids=["finer-last", "overflow-last"],
)
def test_a_bookset_routes_the_same_way(bookset_class: Any, frame: str, expected: Any) -> None:
    books = bookset_class({"BTCTRY": (0, 8)})
    books.apply(f431(100, BASE_ASKS, BASE_BIDS))
    before = state(books["BTCTRY"])
    beyond = frame.replace('"1"', '"1e-29"')  # the same frame with an amount beyond a decimal
    assert beyond != frame
    with pytest.raises(FrameError):
        books.apply(beyond)
    assert state(books["BTCTRY"]) == before
    assert books.apply(frame) == ("BTCTRY", Status.APPLIED)
    assert state(books["BTCTRY"]) == expected
