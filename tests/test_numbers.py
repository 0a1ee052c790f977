"""Numbers (docs/rules.md, "Numbers"): JSON numbers or strings holding one, taken exactly.

Every test runs against the reference (``[ref]``) and the core (``[core]``). The base book is
BTCTRY at scales (0, 8), synced at CS 100, best ask 2150010 @ 0.5.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from helpers import f431, levels, state
from obengine import FrameError, Status




def change(price: str = '"2150010"', amount: str = '"0.7"', cp: str = "0", cs: str = "101") -> str:
    """A 432 with one ask entry, every value spelled exactly as given (JSON text)."""
    return (
        f'[432,{{"CS":{cs},"PS":"BTCTRY","AO":[{{"P":{price},"A":{amount},"CP":{cp}}}],'
        f'"BO":[],"channel":"obdiff","event":"BTCTRY","type":432}}]'
    )


@pytest.mark.parametrize(
    ("spelling", "units"),
    [
        ('"0.7"', 70_000_000),
        ("0.7", 70_000_000),
        ('"0.70000000000"', 70_000_000),  # trailing zeros do not count as decimal places
        ('"1e-8"', 1),
        ("1e-8", 1),
        ('"1E-8"', 1),
        ("0.00000001", 1),
        ('"1e0"', 100_000_000),
        ('"1.5E+2"', 15_000_000_000),
        ("1E+2", 10_000_000_000),
        ("1e2", 10_000_000_000),
        ('"12345678e-8"', 12_345_678),
        ('"0.000000010e1"', 10),
        ('"0.0000000001e2"', 1),
        ('"100"', 10_000_000_000),
        ("123", 12_300_000_000),
        ('"92233720368.54775807"', 2**63 - 1),  # int64 max units at scale 8
        ("92233720368.54775807", 2**63 - 1),
    ],
)
def test_amount_spellings_give_exact_units(book: Any, spelling: str, units: int) -> None:
    assert book.apply(change(amount=spelling)) == Status.APPLIED
    assert levels(book)[1][0] == (2150010, units)
    assert book.amount_scale == 8 and book.anomalies == 0 and not book.wide


@pytest.mark.parametrize(
    "spelling",
    [
        '"2150010"',
        "2150010",
        '"2150010.00"',  # 0 decimal places: no rescale
        "2150010.000000000000000000000",
        '"2.15001e6"',
        "2.15001E+6",
        '"215001e1"',
        '"21500100e-1"',
        "21500100E-1",
    ],
)
def test_price_spellings_give_exact_units(book: Any, spelling: str) -> None:
    assert book.apply(change(price=spelling)) == Status.APPLIED
    assert levels(book)[1] == [(2150010, 70_000_000), (2150020, 125_000_000)]
    assert book.price_scale == 0 and book.anomalies == 0 and not book.wide


@pytest.mark.parametrize(
    "spelling", ["101", '"101"', "1.01e2", '"1.01E+2"', '"10100e-2"', "101.0", '"101.000"']
)
def test_cs_is_an_integer_by_value_however_it_is_spelled(book: Any, spelling: str) -> None:
    """rules.md: CS must be an integer, i.e. have 0 decimal places after dropping trailing
    zeros; "1.01e2" is the integer 101."""
    assert book.apply(change(cs=spelling)) == Status.APPLIED
    assert book.seq == 101


@pytest.mark.parametrize(
    ("spelling", "kind"),
    [
        ("0", 0),
        ('"0"', 0),
        ("0.0", 0),
        ('"0e5"', 0),
        ("-0", 0),
        ("1", 1),
        ('"1"', 1),
        ("1.0", 1),
        ('"10e-1"', 1),
        ("1E0", 1),
        ("3", 3),
        ('"3"', 3),
        ('"3.00"', 3),
        ("0.3e1", 3),
    ],
)
def test_cp_is_an_integer_by_value_however_it_is_spelled(
    book: Any, spelling: str, kind: int
) -> None:
    # the price exists: CP 0 replaces, CP 1 replaces with an anomaly, CP 3 deletes
    assert book.apply(change(cp=spelling)) == Status.APPLIED
    asks = levels(book)[1]
    if kind == 3:
        assert asks == [(2150020, 125_000_000)]
    else:
        assert asks[0] == (2150010, 70_000_000)
    assert book.anomalies == (1 if kind == 1 else 0)


@pytest.mark.parametrize("spelling", ["-0", '"-0"', '"-0.0"', "-0.000e5", '"0e-30"', "0E+30"])
def test_negative_zero_and_any_zero_amount_is_zero(book: Any, spelling: str) -> None:
    assert book.apply(change(amount=spelling)) == Status.APPLIED
    assert levels(book)[1] == [(2150020, 125_000_000)]  # amount 0: deleted, with an anomaly
    assert book.anomalies == 1 and book.amount_scale == 8 and not book.wide


def _shapes() -> list[str]:
    """Plain decimals of every shape up to 18 digits: 1..18 integer digits ("0" among them) and
    0..17 fraction digits, no two digits alike next to each other."""
    out = []
    for whole in range(1, 19):
        for frac in range(0, 19 - whole):
            digits = "".join(str((7 * i + 3) % 9 + 1) for i in range(whole + frac))
            out.append(digits[:whole] + ("." + digits[whole:] if frac else ""))
            if whole == 1 and frac:
                out.append("0." + digits[1:])
    return out


def test_every_shape_of_plain_decimal_is_read_exactly(make_book: Callable[..., Any]) -> None:
    """Each shape, as a price and as an amount in the exchange's layout (the core reads the
    usual shapes one way and the longer ones another)."""
    for text in _shapes():
        for level in ((text, "1"), ("1", text)):
            b = make_book(price_scale=0, amount_scale=0)
            assert b.apply(f431(1, [level])) == Status.APPLIED, level
            (price, amount), = levels(b)[1]
            assert (Decimal(price).scaleb(-b.price_scale), Decimal(amount).scaleb(-b.amount_scale)) == (
                Decimal(level[0]), Decimal(level[1])), level


def test_any_byte_after_a_number_s_digits_ends_the_number_or_breaks_it(
    make_book: Callable[..., Any],
) -> None:
    """The core reads a number's bytes eight at a time (portable builds) or sixteen (x86-64, up
    to the closing quote). Every byte value after one to seven digits, in the integer part and in
    the fraction, of a price and of an amount of a 432 in the exchange's layout: only another
    digit leaves a number; anything else is a FrameError and changes nothing. Below 1, seven and
    eight places: the ends of the eight a fraction below 1 is read in. Fourteen and fifteen bytes:
    the last byte the sixteen-byte reader takes, and the first it leaves to the long reader."""
    for digits in ("1", "1234567", "0.5", "0.1234567", "0.12345678", "12.3456789", "1.2345678",
                   "12345678901234", "1234567.123456", "0.123456789012", "123456789012345", "1234567.1234567"):
        for byte in range(256):
            text = (digits.encode() + bytes([byte])).decode("latin-1")
            for price, amount in ((text, "0.7"), ("2150010", text)):
                b = make_book()
                assert b.apply(f431(100, [("2150000", "1")], [])) == Status.APPLIED     # asks only: never crossed
                before = state(b)
                frame = (
                    '[432,{"CS":101,"PS":"BTCTRY","AO":[{"CP":1,"P":"' + price + '","A":"' + amount
                    + '"}],"BO":[],"channel":"obdiff","event":"BTCTRY","type":432}]'
                ).encode("latin-1")
                if 48 <= byte <= 57:
                    assert b.apply(frame) == Status.APPLIED, (price, amount)
                else:
                    with pytest.raises(FrameError):
                        b.apply(frame)
                    assert state(b) == before, (price, amount)


@pytest.mark.parametrize(
    "text",
    ["", ".", "5.", ".5", "1..2", "1.2.3", "05", "00", "00.5", "0.", "0123456789012", "1234567890123.",
     ".12345678901234", "1.2345678901234.", "12345.678.9", "123456.78901234.", "1.23456789012345.6"],
)
def test_a_number_out_of_the_grammar_is_refused_at_any_length(make_book: Callable[..., Any], text: str) -> None:
    """Grammar errors (an empty number, a '.' first, last or twice, a leading zero) at both ends
    of the sixteen bytes the x86-64 reader looks at, as a price and as an amount, in a 432 and a
    431 in the exchange's layout: a FrameError, and the book as it was."""
    b = make_book()
    assert b.apply(f431(100, [("2150000", "1")], [])) == Status.APPLIED
    before = state(b)
    frames = [
        '[432,{"CS":101,"PS":"BTCTRY","AO":[{"CP":1,"P":"' + price + '","A":"' + amount
        + '"}],"BO":[],"channel":"obdiff","event":"BTCTRY","type":432}]'
        for price, amount in ((text, "0.7"), ("2150010", text))
    ] + [f431(102, [(text, "1")], []), f431(102, [("2150010", text)], [])]
    for frame in frames:
        with pytest.raises(FrameError):
            b.apply(frame)
        assert state(b) == before, frame


def test_int64_max_price_fits_a_narrow_book_at_scale_0(make_book: Callable[..., Any]) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    assert b.apply(f431(1, [("9223372036854775807", "1")], [("1", "1")])) == Status.APPLIED
    assert levels(b) == ([(1, 1)], [(2**63 - 1, 1)])
    assert not b.wide


def test_18_decimal_places_are_accepted_by_a_narrow_book(make_book: Callable[..., Any]) -> None:
    b = make_book(price_scale=0, amount_scale=0)
    frame = f431(1, [("1.000000000000000001", "0.000000000000000001")], [("1", "9")])
    assert b.apply(frame) == Status.APPLIED
    assert state(b) == (
        [(10**18, 9 * 10**18)],
        [(10**18 + 1, 1)],
        18,
        18,
        1,
        True,
        0,
        False,
    )


def test_numbers_of_unknown_keys_are_never_checked(book: Any) -> None:
    frame = (
        '[432,{"CS":101,"PS":"BTCTRY","x":1e999999,"y":-0.00000000000000000000000001,'
        '"z":"abc","AO":[{"P":"2150010","A":"0.7","CP":0,"t":123456789012345678901234567890}]}]'
    )
    assert book.apply(frame) == Status.APPLIED
    assert levels(book)[1][0] == (2150010, 70_000_000)


@pytest.mark.parametrize(
    "spelling",
    [
        '"\\u0031"',  # the string's value is "1", but what is inside the quotes is not a number
        '"0.\\u0037"',
        '"0.7\\u0020"',
    ],
)
def test_a_number_string_must_hold_the_number_grammar_as_written(
    book: Any, spelling: str
) -> None:
    """rules.md: strings holding a JSON number, same grammar, "nothing else inside the quotes".
    Read literally, an escape sequence inside the quotes is something else."""
    before = state(book)
    with pytest.raises(FrameError):
        book.apply(change(amount=spelling))
    assert state(book) == before
