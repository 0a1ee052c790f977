"""Wide books (docs/rules.md, "Units", "Numbers", "Wide books", "Views").

A book starts narrow (int64 units, scales 0..18) and becomes wide (Python int units, scales up to
28) as part of applying a 431, or a 432 with the next CS, when int64 cannot hold what the frame
needs: a scale above 18, a P or A of the frame above int64 in units at the new scales, or (for a
432) a held value whose rescaled units would exceed int64. It stays wide for good. Stale and gap
frames never make a book wide. P and A are .NET decimals (m * 10**-s, m < 2**96, s <= 28):
anything beyond is a FrameError for any frame, applied or not.

The twin tests run against the reference (``[ref]``) and the core (``[core]``); ``state()``
includes ``wide``, so the twins must agree on when the switch happens. The view tests at the end
are core only (the reference has no views).
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import pytest

import obengine
from helpers import BASE_ASKS, BASE_BIDS, f431, f432, levels, state
from obengine import FrameError, Status
from test_malformed import CASES, VALID

INT64_MAX = 2**63 - 1
M_LIMIT = 2**96  # a .NET decimal's m is below this
PEPE = "PEPETRY"  # not in DEFAULT_SCALES: a BookSet infers its scales

# A meme coin's book: prices of 8 places, hundreds of millions of tokens at 12 places.
# 9300000.123456789012 at amount scale 12 is 9300000123456789012 units: more than int64.
MEME_ASKS = [("0.00000123", "9300000.123456789012"), ("0.00000125", "412000000")]
MEME_BIDS = [("0.00000122", "250000000.5"), ("0.0000012", "7")]
MEME_STATE = (
    [(122, 250_000_000_500_000_000_000), (120, 7_000_000_000_000)],
    [(123, 9_300_000_123_456_789_012), (125, 412_000_000_000_000_000_000)],
    8,
    12,
    1,
    True,
    0,
    True,
)


def units(text: str, scale: int) -> int:
    """``text * 10**scale`` as an exact int (the scale must hold every place of text)."""
    with localcontext() as context:
        context.prec = 200
        value = Decimal(text) * 10**scale
    assert value == value.to_integral_value(), (text, scale)
    return int(value)


def amount_change(amount: str, price: str = '"2150010"', cp: str = "0", cs: int = 101) -> str:
    """A 432 for the base book with one ask entry, values spelled exactly as given (JSON text)."""
    return (
        f'[432,{{"CS":{cs},"PS":"BTCTRY","AO":[{{"P":{price},"A":{amount},"CP":{cp}}}],'
        f'"BO":[],"channel":"obdiff","event":"BTCTRY","type":432}}]'
    )


def assert_rejected_unchanged(book: Any, frame: str) -> None:
    before = state(book)
    with pytest.raises(FrameError):
        book.apply(frame)
    assert state(book) == before


@pytest.fixture
def meme(make_book: Callable[..., Any]) -> Any:
    """PEPETRY, made at (0, 0), after the meme coin's 431 (CS 1): wide at (8, 12)."""
    b = make_book(PEPE, 0, 0)
    assert b.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE)) == Status.APPLIED
    return b


@pytest.fixture
def wide_book(make_book: Callable[..., Any]) -> Any:
    """The base book (BTCTRY (0, 8), CS 100) with a third ask of 1e11 BTC: 1e19 units, wide."""
    b = make_book()
    assert b.apply(f431(100, [*BASE_ASKS, ("2150030", "100000000000")], BASE_BIDS)) == Status.APPLIED
    assert b.wide
    return b


# --- a new book --------------------------------------------------------------------------------


def test_a_new_book_is_narrow_and_stays_narrow_while_int64_holds_its_values(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    assert b.wide is False
    assert b.apply(f431(100, BASE_ASKS, BASE_BIDS)) == Status.APPLIED
    assert b.apply(f432(101, [("2150010", "92233720368.54775807", 0)])) == Status.APPLIED
    assert b.wide is False and levels(b)[1][0] == (2150010, INT64_MAX)


# --- the switch --------------------------------------------------------------------------------


def test_a_431_with_9_3_million_tokens_at_12_places_makes_the_book_wide_and_holds_them_exactly(
    meme: Any,
) -> None:
    assert state(meme) == MEME_STATE
    assert meme.wide is True


def test_a_wide_meme_coin_book_keeps_applying_its_432s(meme: Any) -> None:
    assert meme.apply(
        f432(2, [("0.00000123", "9300001.5", 0)], [("0.00000121", "1000000000.000000000001", 1)], pair=PEPE)
    ) == Status.APPLIED
    assert meme.apply(f432(3, [("0.00000125", None, 3)], [("0.0000012", "0", 0)], pair=PEPE)) == Status.APPLIED
    assert state(meme) == (
        [(122, 250_000_000_500_000_000_000), (121, 1_000_000_000_000_000_000_001)],
        [(123, 9_300_001_500_000_000_000)],
        8,
        12,
        3,
        True,
        1,  # the zero amount
        True,
    )
    assert meme.apply(f432(3, [("0.00000124", "1", 1)], pair=PEPE)) == Status.STALE
    assert meme.apply(f432(5, [("0.00000124", "1", 1)], pair=PEPE)) == Status.GAP
    assert not meme.synced and meme.wide


def test_a_432_bringing_a_value_too_big_for_int64_makes_the_book_wide(book: Any) -> None:
    # 100000000000.5 BTC at amount scale 8: 10000000000050000000 units
    assert book.apply(f432(101, [("2150030", "100000000000.5", 1)], [("2150000", "0.2", 0)])) == Status.APPLIED
    assert state(book) == (
        [(2150000, 20_000_000), (2149990, 200_000_000)],
        [(2150010, 50_000_000), (2150020, 125_000_000), (2150030, 10_000_000_000_050_000_000)],
        0,
        8,
        101,
        True,
        0,
        True,
    )


def test_a_finer_432_whose_rescale_would_overflow_a_held_amount_makes_the_book_wide(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    assert b.apply(f431(1, [("100", "90000000000")], [("99", "1")])) == Status.APPLIED  # 9e18 units
    assert not b.wide
    assert b.apply(f432(2, [], [("98", "0.000000001", 1)])) == Status.APPLIED
    assert state(b) == ([(99, 1_000_000_000), (98, 1)], [(100, 9 * 10**19)], 0, 9, 2, True, 0, True)


def test_a_finer_432_whose_rescale_would_overflow_a_held_price_makes_the_book_wide(
    make_book: Callable[..., Any],
) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    assert b.apply(f431(1, [("1000000000000000000", "1")], [("1", "1")])) == Status.APPLIED  # 1e18
    assert not b.wide
    assert b.apply(f432(2, [], [("1.5", "1", 1)])) == Status.APPLIED  # the ask becomes 1e19 units
    assert state(b) == ([(15, 1), (10, 1)], [(10**19, 1)], 1, 0, 2, True, 0, True)


def test_a_held_value_that_would_overflow_makes_the_book_wide_even_if_the_frame_deletes_it(
    make_book: Callable[..., Any],
) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    b.apply(f431(1, [("1000000000000000000", "1")], [("1", "1")]))
    assert b.apply(f432(2, [("1000000000000000000", None, 3)], [("1.5", "1", 1)])) == Status.APPLIED
    assert state(b) == ([(15, 1), (10, 1)], [], 1, 0, 2, True, 0, True)


def test_a_held_value_rescaled_to_just_int64_stays_narrow_and_one_place_more_goes_wide(
    make_book: Callable[..., Any],
) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    b.apply(f431(1, [("100", "922337203685477580")], []))
    assert b.apply(f432(2, [("101", "0.1", 1)])) == Status.APPLIED
    assert state(b) == ([], [(100, 9_223_372_036_854_775_800), (101, 1)], 0, 1, 2, True, 0, False)
    assert b.apply(f432(3, [("102", "0.01", 1)])) == Status.APPLIED
    assert state(b) == (
        [],
        [(100, 92_233_720_368_547_758_000), (101, 10), (102, 1)],
        0,
        2,
        3,
        True,
        0,
        True,
    )


def test_a_431_needs_only_its_own_values_to_fit_not_the_levels_it_replaces(
    make_book: Callable[..., Any],
) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    b.apply(f431(1, [("100", "922337203685477580")], []))
    assert b.apply(f431(2, [("100", "0.01")], [])) == Status.APPLIED  # the old level is gone
    assert state(b) == ([], [(100, 1)], 0, 2, 2, True, 0, False)


@pytest.mark.parametrize(
    ("entry", "expected_scales", "anomalies"),
    [
        (("2150010", "100000000000", 3), (0, 8), 0),  # 1e19 units, for a delete
        (("2150010", "0.0000000000000000001", 3), (0, 19), 0),  # 19 places, for a delete
        (("2150010.00000000000000000001", None, 3), (20, 8), 1),  # a missing level: nothing to delete
    ],
    ids=["cp3-amount-1e19-units", "cp3-amount-19-places", "cp3-price-20-places"],
)
def test_every_p_and_a_of_a_delete_counts_for_the_switch(
    book: Any, entry: tuple[str, str | None, int], expected_scales: tuple[int, int], anomalies: int
) -> None:
    assert book.apply(f432(101, [entry])) == Status.APPLIED
    price_scale, amount_scale = expected_scales
    bids = [(units(p, price_scale), units(a, amount_scale)) for p, a in BASE_BIDS]
    asks = [(units(p, price_scale), units(a, amount_scale)) for p, a in BASE_ASKS]
    if anomalies == 0:
        asks = asks[1:]  # 2150010 deleted
    assert state(book) == (bids, asks, price_scale, amount_scale, 101, True, anomalies, True)


@pytest.mark.parametrize("cp", ["0", "1", "3"])
@pytest.mark.parametrize("zero", ['"0"', "0e-40", '"0.0000000000000000000000000000000000000000"', "-0.0e+99"])
def test_a_zero_amount_has_no_places_and_zero_units_so_it_never_makes_a_book_wide(
    book: Any, cp: str, zero: str
) -> None:
    before = state(book)
    assert book.apply(amount_change(zero, cp=cp)) == Status.APPLIED
    assert levels(book)[1] == [(2150020, 125_000_000)]  # deleted
    assert book.anomalies == (0 if cp == "3" else 1)
    assert state(book)[2:4] == before[2:4] and book.wide is False


def test_the_price_of_a_zero_amount_entry_counts_for_the_switch(book: Any) -> None:
    assert book.apply(amount_change('"0"', price='"2150015.0000000000000000001"', cp="0")) == Status.APPLIED
    assert book.anomalies == 1 and book.wide  # amount 0 for a missing price: nothing, an anomaly
    assert (book.price_scale, book.amount_scale) == (19, 8)
    assert levels(book)[1] == [(2150010 * 10**19, 50_000_000), (2150020 * 10**19, 125_000_000)]


def test_a_scale_above_18_alone_makes_the_book_wide_even_with_tiny_units(
    make_book: Callable[..., Any],
) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    assert b.apply(f431(1, [("1", "0.0000000000000000001")], [])) == Status.APPLIED  # 1 unit
    assert state(b) == ([], [(1, 1)], 0, 19, 1, True, 0, True)
    c = make_book(price_scale=0, amount_scale=18)
    c.apply(f431(1, [("1", "1")], []))
    assert c.apply(f432(2, [], [("0.0000000000000000000000000001", "0", 0)])) == Status.APPLIED
    assert state(c) == ([], [(10**28, 10**18)], 28, 18, 2, True, 1, True)


@pytest.mark.parametrize("places", range(19, 29))
def test_a_431_with_19_to_28_places_makes_the_book_wide_at_that_scale(
    make_book: Callable[..., Any], places: int
) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    tiny = "0." + "0" * (places - 1) + "1"
    assert b.apply(f431(1, [("1" + tiny[1:], tiny)], [("1", "3")])) == Status.APPLIED
    assert state(b) == (
        [(10**places, 3 * 10**places)],
        [(10**places + 1, 1)],
        places,
        places,
        1,
        True,
        0,
        True,
    )


@pytest.mark.parametrize("places", range(19, 29))
def test_a_432_with_19_to_28_places_rescales_every_held_value_into_a_wide_book(
    book: Any, places: int
) -> None:
    tiny = "0." + "0" * (places - 1) + "1"
    price = "2149995" + tiny[1:] if places <= 22 else "2" + tiny[1:]  # m < 2**96: 29 digits at most
    assert book.apply(f432(101, [], [(price, tiny, 1)])) == Status.APPLIED
    assert (book.price_scale, book.amount_scale, book.wide) == (places, places, True)
    bids, asks = levels(book)
    expected_bids = [(units(p, places), units(a, places)) for p, a in [*BASE_BIDS, (price, tiny)]]
    assert bids == sorted(expected_bids, reverse=True)
    assert asks == [(units(p, places), units(a, places)) for p, a in BASE_ASKS]
    assert (book.seq, book.synced, book.anomalies) == (101, True, 0)


# --- the limits of a .NET decimal --------------------------------------------------------------

BEYOND_A_DECIMAL = [
    '"1e-29"',
    "1e-29",
    '"0.00000000000000000000000000001"',  # 29 places
    '"1.0000000000000000000000000001e-1"',  # 29 places
    '"79228162514264337593543950336"',  # m = 2**96
    "79228162514264337593543950336",
    '"7.9228162514264337593543950336"',  # m = 2**96, 28 places
    '"7.9228162514264337593543950336E+28"',
    '"792281625142643375935439503360"',
    "8e28",
    '"1e29"',
    '"2150010.00000000000000000000001"',  # 23 places on 7 integer digits: 30 digits of m
    '"10.0000000000000000000000000001"',  # 28 places, 30 digits of m
]


@pytest.mark.parametrize("field", ["P", "A"])
@pytest.mark.parametrize("spelling", BEYOND_A_DECIMAL)
def test_29_places_or_m_of_2_96_is_a_frame_error_that_leaves_a_narrow_book_unchanged(
    book: Any, field: str, spelling: str
) -> None:
    frame = amount_change(spelling) if field == "A" else amount_change('"1"', price=spelling)
    assert_rejected_unchanged(book, frame)
    assert book.apply(amount_change('"0.7"')) == Status.APPLIED  # the book still works


@pytest.mark.parametrize("field", ["P", "A"])
@pytest.mark.parametrize("spelling", BEYOND_A_DECIMAL)
def test_29_places_or_m_of_2_96_is_a_frame_error_that_leaves_a_wide_book_unchanged(
    wide_book: Any, field: str, spelling: str
) -> None:
    frame = amount_change(spelling) if field == "A" else amount_change('"1"', price=spelling)
    assert_rejected_unchanged(wide_book, frame)
    assert wide_book.apply(amount_change('"0.7"')) == Status.APPLIED


@pytest.mark.parametrize(
    ("spelling", "amount_scale", "amount_units"),
    [
        ('"79228162514264337593543950335"', 8, (M_LIMIT - 1) * 10**8),  # m = 2**96 - 1
        ("79228162514264337593543950335", 8, (M_LIMIT - 1) * 10**8),
        ('"7.9228162514264337593543950335E+28"', 8, (M_LIMIT - 1) * 10**8),
        ("7.9228162514264337593543950335e28", 8, (M_LIMIT - 1) * 10**8),
        ('"792281625142643375935439503350e-1"', 8, (M_LIMIT - 1) * 10**8),  # 30 digits written
        ('"79228162514264337593543950335.000000"', 8, (M_LIMIT - 1) * 10**8),
        ('"7.9228162514264337593543950335"', 28, M_LIMIT - 1),  # m = 2**96 - 1 at 28 places
        ('"1e-28"', 28, 1),
        ("1e-28", 28, 1),
        ("1E-28", 28, 1),
        ('"0.0000000000000000000000000001"', 28, 1),
        ('"0.1e-27"', 28, 1),
        ('"10000000000000000000000000000e-56"', 28, 1),
        ('"7.9e28"', 8, 79 * 10**27 * 10**8),
        ('"1e28"', 8, 10**36),
        ("1e11", 8, 10**19),
        ('"100000000000.5"', 8, 10_000_000_000_050_000_000),
        ('"92233720368.54775808"', 8, INT64_MAX + 1),
        ('"0.0000000000000000001"', 19, 1),
    ],
)
def test_the_largest_and_finest_decimal_values_are_held_exactly_in_any_spelling(
    book: Any, spelling: str, amount_scale: int, amount_units: int
) -> None:
    assert book.apply(amount_change(spelling)) == Status.APPLIED
    assert (book.price_scale, book.amount_scale, book.wide) == (0, amount_scale, True)
    assert levels(book)[1] == [
        (2150010, amount_units),
        (2150020, units("1.25", amount_scale)),
    ]
    assert levels(book)[0] == [(units(p, 0), units(a, amount_scale)) for p, a in BASE_BIDS]


@pytest.mark.parametrize(
    ("spelling", "amount_units"),
    [
        ('"1.00000000000000000000000000000"', 100_000_000),
        ("1.0000000000000000000000000000000000e0", 100_000_000),
        ('"0.7000000000000000000000000000000000"', 70_000_000),
        ('"70000000000000000000000000000000000e-35"', 70_000_000),
    ],
)
def test_trailing_zeros_beyond_28_places_are_not_places(
    book: Any, spelling: str, amount_units: int
) -> None:
    assert book.apply(amount_change(spelling)) == Status.APPLIED
    assert book.amount_scale == 8 and book.wide is False
    assert levels(book)[1][0] == (2150010, amount_units)


def _shapes() -> list[str]:
    """Plain decimals of every shape up to 29 digits (m < 2**96 for all of them: they start with
    4): 1..29 integer digits ("0" among them) and 0..28 fraction digits."""
    out = []
    for whole in range(1, 30):
        for frac in range(0, 30 - whole):
            if frac > 28:
                continue
            digits = "".join(str((7 * i + 3) % 9 + 1) for i in range(whole + frac))
            out.append(digits[:whole] + ("." + digits[whole:] if frac else ""))
            if whole == 1 and frac:
                out.append("0." + digits[1:])
    return out


def test_every_shape_of_decimal_is_held_exactly_and_wide_exactly_when_int64_cannot_hold_it(
    make_book: Callable[..., Any],
) -> None:
    for text in _shapes():
        digits = text.replace(".", "").lstrip("0")
        places = len(text.split(".")[1]) if "." in text else 0
        needs_wide = places > 18 or int(digits) > INT64_MAX
        for level in ((text, "1"), ("1", text)):
            b = make_book(price_scale=0, amount_scale=0)
            assert b.apply(f431(1, [level])) == Status.APPLIED, level
            assert b.wide is needs_wide, level
            (price, amount), = levels(b)[1]
            assert (price, amount) == (units(level[0], b.price_scale), units(level[1], b.amount_scale)), level


# --- frames that are not applied ---------------------------------------------------------------

# 22 places (29 digits of m: the most a price of 7 integer digits can have), and 1e19 units
HUGE_432 = [("2150015.0000000000000000000001", "1", 1), ("2150010", "100000000000", 0)]


@pytest.mark.parametrize(("cs", "status"), [(100, Status.STALE), (99, Status.STALE), (102, Status.GAP)])
def test_stale_and_gap_frames_with_huge_values_never_make_a_book_wide(
    book: Any, cs: int, status: Status
) -> None:
    before = state(book)
    assert book.apply(f432(cs, HUGE_432)) == status
    after = state(book)
    assert after[:5] == before[:5] and after[6:] == before[6:] and after[7] is False
    if status == Status.GAP:
        assert book.apply(f432(101, HUGE_432)) == Status.GAP  # unsynced: every 432 is a gap
        assert state(book) == after


def test_a_432_before_the_first_431_with_huge_values_leaves_a_new_book_narrow(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    assert b.apply(f432(1, HUGE_432)) == Status.GAP
    assert state(b) == ([], [], 0, 8, None, False, 0, False)


@pytest.mark.parametrize("cs", [100, 99, 102])
@pytest.mark.parametrize("spelling", ['"1e-29"', '"79228162514264337593543950336"'])
def test_values_beyond_a_decimal_in_stale_and_gap_frames_are_still_frame_errors(
    book: Any, cs: int, spelling: str
) -> None:
    assert_rejected_unchanged(book, amount_change(spelling, cs=cs))
    assert_rejected_unchanged(book, amount_change('"1"', price=spelling, cs=cs))


# --- a wide book -------------------------------------------------------------------------------


def test_a_431_after_the_switch_keeps_the_book_wide_and_replaces_its_levels(wide_book: Any) -> None:
    assert wide_book.apply(f431(200, [("2150100", "0.5")], [("2150000", "1")])) == Status.APPLIED
    assert state(wide_book) == ([(2150000, 100_000_000)], [(2150100, 50_000_000)], 0, 8, 200, True, 0, True)
    assert wide_book.apply(f431(201, [], [])) == Status.APPLIED
    assert state(wide_book) == ([], [], 0, 8, 201, True, 0, True)


def test_scales_of_a_wide_book_never_go_down(meme: Any) -> None:
    assert meme.apply(f431(2, [("1", "1")], [("0.5", "2")], pair=PEPE)) == Status.APPLIED
    assert state(meme) == ([(50_000_000, 2 * 10**12)], [(100_000_000, 10**12)], 8, 12, 2, True, 0, True)


def test_rescales_while_wide_are_exact(wide_book: Any) -> None:
    price = "2149995.0000000000000000001"  # 19 places
    assert wide_book.apply(f432(101, [], [(price, "2", 1)])) == Status.APPLIED
    assert (wide_book.price_scale, wide_book.amount_scale) == (19, 8)
    assert wide_book.apply(f432(102, [("2150030", "0.0000000000000000000000000001", 0)])) == Status.APPLIED
    assert (wide_book.price_scale, wide_book.amount_scale) == (19, 28)
    p, a = 10**19, 10**28
    assert state(wide_book) == (
        [(2150000 * p, a // 10), (2149995 * p + 1, 2 * a), (2149990 * p, 2 * a)],
        [(2150010 * p, a // 2), (2150020 * p, a * 5 // 4), (2150030 * p, 1)],
        19,
        28,
        102,
        True,
        0,
        True,
    )


def test_a_wide_book_takes_values_that_fit_int64_like_any_other(wide_book: Any) -> None:
    assert wide_book.apply(f432(101, [("2150030", None, 3)], [("2150000", "0.3", 0), ("2149980", "4", 1)])) == Status.APPLIED
    assert state(wide_book) == (
        [(2150000, 30_000_000), (2149990, 200_000_000), (2149980, 400_000_000)],
        [(2150010, 50_000_000), (2150020, 125_000_000)],
        0,
        8,
        101,
        True,
        0,
        True,  # no level needs it any more: a book stays wide
    )


def test_the_crossed_check_compares_wide_prices_exactly(make_book: Callable[..., Any]) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    ask, bid = "1.0000000000000000000000000002", "1.0000000000000000000000000001"
    assert b.apply(f431(1, [(ask, "1")], [(bid, "1")])) == Status.APPLIED
    assert b.wide and b.price_scale == 28
    # one unit at the 28th place below the best ask is not crossed; the best ask itself is
    assert b.apply(f432(2, [], [(bid, "2", 0)])) == Status.APPLIED
    assert b.apply(f432(3, [], [(ask, "1", 1)])) == Status.CROSSED
    assert state(b) == (
        [(10**28 + 2, 1), (10**28 + 1, 2)],
        [(10**28 + 2, 1)],
        28,
        0,
        3,
        False,
        0,
        True,
    )
    assert b.apply(f432(4, [(ask, None, 3)])) == Status.GAP
    assert b.apply(f431(10, [(ask, "1")], [(bid, "1")])) == Status.APPLIED
    assert b.synced and b.wide


def test_the_crossed_check_compares_the_largest_prices_exactly(make_book: Callable[..., Any]) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    top, below = str(M_LIMIT - 1), str(M_LIMIT - 2)
    assert b.apply(f431(1, [(top, "1")], [(below, "1")])) == Status.APPLIED
    assert b.apply(f432(2, [], [(top, "1", 1)])) == Status.CROSSED
    assert state(b) == ([(M_LIMIT - 1, 1), (M_LIMIT - 2, 1)], [(M_LIMIT - 1, 1)], 0, 0, 2, False, 0, True)


def test_a_crossed_431_can_make_a_book_wide(make_book: Callable[..., Any]) -> None:
    b = make_book()
    assert b.apply(f431(9, [("100", "1e12")], [("100", "1")])) == Status.CROSSED
    assert state(b) == ([(100, 100_000_000)], [(100, 10**20)], 0, 8, 9, False, 0, True)


def test_anomalies_are_counted_in_a_wide_book(wide_book: Any) -> None:
    frame = f432(
        101,
        [
            ("2150015", "1", 0),  # CP 0 for a missing price: inserted, anomaly
            ("2150020", "2", 1),  # CP 1 for a present price: replaced, anomaly
            ("2150030", "0", 0),  # amount 0 for a present price: deleted, anomaly
            ("2150099", None, 3),  # CP 3 for a missing price: anomaly
        ],
        [("2149999", "0", 1), ("2150000", "200000000000", 0)],  # amount 0, missing: anomaly; a replace
    )
    assert wide_book.apply(frame) == Status.APPLIED
    assert state(wide_book) == (
        [(2150000, 2 * 10**19), (2149990, 200_000_000)],
        [(2150010, 50_000_000), (2150015, 100_000_000), (2150020, 200_000_000)],
        0,
        8,
        101,
        True,
        5,
        True,
    )


@pytest.mark.parametrize("name", CASES)
def test_every_malformed_frame_leaves_a_wide_book_unchanged(wide_book: Any, name: str) -> None:
    before = state(wide_book)
    with pytest.raises(FrameError):
        wide_book.apply(CASES[name].frame)
    assert state(wide_book) == before
    assert wide_book.apply(VALID) == Status.APPLIED


def test_cs_and_cp_keep_their_int64_limits_in_a_wide_book(wide_book: Any) -> None:
    assert_rejected_unchanged(wide_book, amount_change('"1"', cs=2**63))
    assert_rejected_unchanged(wide_book, amount_change('"1"', cp='"1e20"'))
    assert_rejected_unchanged(wide_book, amount_change('"1"', cp='"1.0000000000000000001"'))
    assert wide_book.apply(amount_change('"1"', cs=101)) == Status.APPLIED


# --- BookSet -----------------------------------------------------------------------------------


def test_in_a_bookset_one_pair_goes_wide_and_the_others_stay_narrow(bookset_class: Any) -> None:
    books = bookset_class()
    books.apply(f431(100, BASE_ASKS, BASE_BIDS))
    books.apply(f431(7, [("90010", "2")], [("90000", "3")], pair="ETHTRY"))
    assert books.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE)) == (PEPE, Status.APPLIED)
    assert books.apply(f432(101, [("2150010", "0.7", 0)])) == ("BTCTRY", Status.APPLIED)
    assert books.apply(f432(2, [("0.00000124", "123456789.000000000001", 1)], pair=PEPE)) == (PEPE, Status.APPLIED)
    assert books.apply(f432(8, [], [("90000", "1", 0)], pair="ETHTRY")) == ("ETHTRY", Status.APPLIED)
    assert {pair: books[pair].wide for pair in books} == {"BTCTRY": False, "ETHTRY": False, PEPE: True}
    assert state(books["ETHTRY"]) == ([(90000, 100_000_000)], [(90010, 200_000_000)], 0, 8, 8, True, 0, False)
    assert levels(books[PEPE])[1] == [
        (123, 9_300_000_123_456_789_012),
        (124, 123_456_789_000_000_000_001),
        (125, 412_000_000_000_000_000_000),
    ]


def test_a_bookset_makes_a_wide_book_for_a_new_pair_whose_first_snapshot_needs_it(
    bookset_class: Any,
) -> None:
    books = bookset_class()
    assert books.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE)) == (PEPE, Status.APPLIED)
    assert state(books[PEPE]) == MEME_STATE  # scales inferred from (0, 0): (8, 12)


def test_a_bookset_makes_a_wide_book_with_scales_above_18_from_a_user_mapping_of_18(
    bookset_class: Any,
) -> None:
    books = bookset_class({PEPE: (18, 18)})
    assert books.apply(f431(1, [("0.0000000000000000000001", "1")], [], pair=PEPE)) == (PEPE, Status.APPLIED)
    assert state(books[PEPE]) == ([], [(1, 10**18)], 22, 18, 1, True, 0, True)


def test_a_bookset_makes_a_narrow_unsynced_book_for_a_first_432_with_huge_values(
    bookset_class: Any,
) -> None:
    books = bookset_class()
    assert books.apply(f432(5, HUGE_432)) == ("BTCTRY", Status.GAP)
    assert state(books["BTCTRY"]) == ([], [], 0, 8, None, False, 0, False)


def test_a_frame_beyond_a_decimal_creates_no_book_in_a_bookset(bookset_class: Any) -> None:
    books = bookset_class()
    with pytest.raises(FrameError):
        books.apply(f431(1, [*MEME_ASKS, ("0.00000126", "1e-29")], MEME_BIDS, pair=PEPE))
    assert PEPE not in books and len(books) == 0


# --- views (core only: the reference has no views) ---------------------------------------------


def core_meme() -> obengine.Book:
    b = obengine.Book(PEPE, 8, 8)
    assert b.apply(f431(1, [("0.00000123", "1000")], [("0.00000122", "2000")], pair=PEPE)) == Status.APPLIED
    assert b.wide is False
    return b


def assert_wide_view(view: Any, expected: list[tuple[int, int]]) -> None:
    assert isinstance(view, np.ndarray)
    assert view.dtype == np.dtype(object) and view.shape == (len(expected), 2)
    assert not view.flags.writeable
    assert all(type(x) is int for x in view.ravel().tolist())
    assert [tuple(row) for row in view.tolist()] == expected


def test_wide_is_a_read_only_bool_of_the_core_book() -> None:
    b = core_meme()
    assert type(b.wide) is bool
    with pytest.raises(AttributeError):
        b.wide = True  # type: ignore[misc]
    assert b.wide is False


def test_an_int64_view_taken_before_the_switch_stays_readable_and_unchanged() -> None:
    b = core_meme()
    asks, bids = b.asks, b.bids
    assert asks.dtype == np.int64 and bids.dtype == np.int64
    assert b.apply(f432(2, [("0.00000124", "9300000.123456789012", 1)], pair=PEPE)) == Status.APPLIED
    assert b.wide
    assert asks.dtype == np.int64 and asks.tolist() == [[123, 100_000_000_000]]
    assert bids.tolist() == [[122, 200_000_000_000]]
    assert_wide_view(b.asks, [(123, 1000 * 10**12), (124, 9_300_000_123_456_789_012)])


def test_views_of_a_wide_book_are_read_only_object_arrays_of_python_ints_best_first() -> None:
    b = obengine.Book(PEPE, 0, 0)
    b.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE))
    assert_wide_view(b.bids, MEME_STATE[0])
    assert_wide_view(b.asks, MEME_STATE[1])
    with pytest.raises(ValueError):
        b.asks[0, 0] = 1
    with pytest.raises(ValueError):
        b.bids[0, 1] = 1


def test_each_read_of_a_wide_view_is_a_fresh_copy_that_stays_as_it_was_read() -> None:
    b = obengine.Book(PEPE, 0, 0)
    b.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE))
    first, second = b.asks, b.asks
    assert first is not second and not np.shares_memory(first, second)
    assert b.apply(f432(2, [("0.00000123", None, 3)], [("0.00000121", "5", 1)], pair=PEPE)) == Status.APPLIED
    assert_wide_view(first, MEME_STATE[1])
    assert_wide_view(b.asks, [(125, 412_000_000_000_000_000_000)])
    assert_wide_view(b.bids, [*MEME_STATE[0][:1], (121, 5 * 10**12), *MEME_STATE[0][1:]])


def test_an_empty_side_of_a_wide_book_is_a_0_by_2_object_array() -> None:
    b = obengine.Book(PEPE, 0, 0)
    b.apply(f431(1, [("1", "1e20")], [], pair=PEPE))
    assert b.wide
    assert_wide_view(b.bids, [])
    assert b.best_bid is None and b.mid is None and b.spread is None
    bids, asks = b.top(5)
    assert_wide_view(bids, [])
    assert_wide_view(asks, [(1, 10**20)])


def test_top_n_of_a_wide_book_are_its_best_levels_as_object_arrays() -> None:
    b = obengine.Book(PEPE, 0, 0)
    b.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE))
    bids, asks = b.top(1)
    assert_wide_view(bids, MEME_STATE[0][:1])
    assert_wide_view(asks, MEME_STATE[1][:1])
    bids, asks = b.top()
    assert_wide_view(bids, MEME_STATE[0])
    assert_wide_view(asks, MEME_STATE[1])
    for view in b.top(0):
        assert_wide_view(view, [])


def test_best_bid_and_best_ask_of_a_wide_book_are_int_tuples() -> None:
    b = obengine.Book(PEPE, 0, 0)
    b.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE))
    assert b.best_bid == MEME_STATE[0][0] and b.best_ask == MEME_STATE[1][0]
    assert isinstance(b.best_bid, tuple) and isinstance(b.best_ask, tuple)
    assert all(type(x) is int for x in (*b.best_bid, *b.best_ask))
    b.apply(f431(2, [("1", "1")], [], pair=PEPE))
    assert b.best_bid is None and b.best_ask == (10**8, 10**12)


@pytest.mark.parametrize(
    ("ask", "bid", "mid", "spread"),
    [
        ("0.00000123", "0.00000122", "0.000001225", "0.00000001"),
        ("1.0000000000000000000000000003", "1", "1.00000000000000000000000000015", "3e-28"),
        (str(M_LIMIT - 1), str(M_LIMIT - 2), str(M_LIMIT - 2) + ".5", "1"),
    ],
)
def test_mid_and_spread_of_a_wide_book_are_exact_decimals(ask: str, bid: str, mid: str, spread: str) -> None:
    b = obengine.Book(PEPE, 0, 0)
    b.apply(f431(1, [(ask, "1e20")], [(bid, "1")], pair=PEPE))
    assert b.wide
    assert isinstance(b.mid, Decimal) and isinstance(b.spread, Decimal)
    assert b.mid == Decimal(mid) and b.spread == Decimal(spread)


def test_snapshot_of_a_wide_book_holds_exact_decimal_strings() -> None:
    b = obengine.Book(PEPE, 0, 0)
    finest = "0.0000000000000000000000000001"
    b.apply(f431(1, [*MEME_ASKS, (str(M_LIMIT - 1), finest)], MEME_BIDS, pair=PEPE))
    snap = b.snapshot()
    assert (snap["pair"], snap["seq"], snap["synced"]) == (PEPE, 1, True)
    assert (snap["price_scale"], snap["amount_scale"]) == (8, 28)
    for side, expected in (("bids", MEME_BIDS), ("asks", [*MEME_ASKS, (str(M_LIMIT - 1), finest)])):
        got = snap[side]  # type: ignore[literal-required]
        assert all(isinstance(p, str) and isinstance(a, str) for p, a in got)
        assert [(Decimal(p), Decimal(a)) for p, a in got] == [(Decimal(p), Decimal(a)) for p, a in expected]


def test_to_float_of_a_wide_book_approximates_the_real_values() -> None:
    b = obengine.Book(PEPE, 0, 0)
    b.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE))
    bids, asks = b.to_float(1)
    assert bids.dtype == np.float64 and asks.dtype == np.float64
    assert bids.shape == (1, 2) and asks.shape == (1, 2)
    assert asks.ravel().tolist() == pytest.approx([1.23e-6, 9300000.123456789012], rel=1e-12)
    bids, asks = b.to_float()
    assert bids.ravel().tolist() == pytest.approx([1.22e-6, 250000000.5, 1.2e-6, 7.0], rel=1e-12)
    assert asks.ravel().tolist() == pytest.approx([1.23e-6, 9300000.123456789012, 1.25e-6, 412e6], rel=1e-12)


def test_in_a_core_bookset_the_narrow_books_keep_zero_copy_int64_views_beside_a_wide_one() -> None:
    books = obengine.BookSet()
    books.apply(f431(100, BASE_ASKS, BASE_BIDS))
    assert books.apply(f431(1, MEME_ASKS, MEME_BIDS, pair=PEPE)) == (PEPE, Status.APPLIED)
    btc, pepe = books["BTCTRY"], books[PEPE]
    assert not btc.wide and pepe.wide
    assert btc.asks.dtype == np.int64 and np.shares_memory(btc.asks, btc.asks)
    assert btc.asks.tolist() == [[2150010, 50_000_000], [2150020, 125_000_000]]
    assert_wide_view(pepe.asks, MEME_STATE[1])
