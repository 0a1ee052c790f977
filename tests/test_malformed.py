"""Malformed frames (docs/rules.md, "Errors"): each raises FrameError and leaves the book
bit-for-bit unchanged. For the core, the error also names the pair, the CS and the field when
they are known, and carries ``.pair``, ``.cs`` and ``.offset``.

Every frame below would be applied to the base book (BTCTRY at (0, 8), synced at CS 100) if
it were well formed: a 432 with CS 101, or a 431.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from helpers import BASE_ASKS, BASE_BIDS, f431, f432, state
from obengine import FrameError, Status


VALID = f432(101, [("2150010", "0.7", 0)], [("2149995", "3", 1)])


@pytest.fixture
def book(book: Any) -> Any:
    """conftest's base book, with one anomaly counted, so a reset would show."""
    book.apply(f432(101, [("2150099", None, 3)]))
    book.apply(f431(100, BASE_ASKS, BASE_BIDS))
    assert book.anomalies == 1 and book.seq == 100
    return book


@dataclass(frozen=True)
class Case:
    frame: str | bytes
    field: str | None = None  # what the core's message must name (the pair and CS precede it)
    at: str | None = None  # the offending token or entry: the core's offset must be inside it


def payload(body: str, kind: int = 432) -> str:
    return f"[{kind},{{{body}}}]"


HEAD = '"CS":101,"PS":"BTCTRY",'
SECOND_BID = '{"P":"2149995","A":"3","CP":1}'


def entry(side: str = "AO", kind: int = 432, **fields: str | None) -> Case:
    """A frame whose ``side[1]`` entry has the given fields (JSON text; None leaves it out).

    The error, if any, is at ``{side}[1]`` and comes after CS and PS."""
    values: dict[str, str | None] = {"P": '"2150015"', "A": '"0.7"', "CP": "1"}
    if kind == 431:
        values["CP"] = None
    values.update(fields)
    bad_entry = "{" + ",".join(f'"{k}":{v}' for k, v in values.items() if v is not None) + "}"
    cp = ',"CP":1' if kind == 432 else ""
    good_entry = f'{{"P":"{2150011 if side == "AO" else 2149994}","A":"3"{cp}}}'
    other = "BO" if side == "AO" else "AO"
    frame = payload(f'{HEAD}"{side}":[{good_entry},{bad_entry}],"{other}":[]', kind)
    bad = [k for k in ("P", "A", "CP") if k in fields]
    field = f"{side}[1].{bad[0]}" if bad else f"{side}[1]"
    return Case(frame, field, bad_entry)


CASES: dict[str, Case] = {
    # --- not JSON --------------------------------------------------------------------------
    "empty": Case(""),
    "whitespace-only": Case(" \r\n\t"),
    "trailing-comma-in-object": Case(payload(HEAD + '"AO":[],')),
    "trailing-comma-in-array": Case(payload(HEAD + '"AO":[{"P":"1","A":"1","CP":1},]')),
    "single-quotes": Case("[432,{'CS':101,'PS':'BTCTRY'}]"),
    "unquoted-key": Case('[432,{CS:101,"PS":"BTCTRY"}]'),
    "missing-comma": Case('[432 {"CS":101,"PS":"BTCTRY"}]'),
    "missing-colon": Case('[432,{"CS" 101,"PS":"BTCTRY"}]'),
    "comment": Case('[432,{"CS":101,/* x */"PS":"BTCTRY"}]'),
    "python-literal": Case(payload(HEAD + '"x":True')),
    "misspelled-literal": Case(payload(HEAD + '"x":nul')),
    "nan-token": Case(payload(HEAD + '"x":NaN')),
    "infinity-token": Case(payload(HEAD + '"x":Infinity')),
    "minus-infinity-token": Case(payload(HEAD + '"x":-Infinity')),
    "leading-zero": Case(payload(HEAD + '"x":01')),
    "plus-sign": Case(payload(HEAD + '"x":+1')),
    "bare-fraction": Case(payload(HEAD + '"x":.5')),
    "bare-point": Case(payload(HEAD + '"x":1.')),
    "bare-exponent": Case(payload(HEAD + '"x":1e')),
    "bare-minus": Case(payload(HEAD + '"x":-')),
    "hex-number": Case(payload(HEAD + '"x":0x10')),
    "invalid-escape": Case(payload(HEAD + '"x":"\\q"')),
    "short-unicode-escape": Case(payload(HEAD + '"x":"\\u12"')),
    "bad-hex-escape": Case(payload(HEAD + '"x":"\\u12G4"')),
    "unterminated-string": Case('[432,{"CS":101,"PS":"BTCTRY}]'),
    "unbalanced-close": Case(VALID + "]"),
    "trailing-garbage": Case(VALID + "x"),
    "trailing-comma": Case(VALID + ","),
    "second-value": Case(VALID + " [991]"),
    "trailing-nul": Case(VALID + "\x00"),
    "form-feed-is-not-whitespace": Case(VALID + "\f"),
    "nbsp-is-not-whitespace": Case("\xa0" + VALID),
    "vertical-tab-is-not-whitespace": Case(VALID.replace(",", ",\v", 1)),
    "control-char-in-a-string": Case(payload(HEAD + '"x":"a\x01b"')),
    "newline-in-a-string": Case(payload(HEAD + '"x":"a\nb"')),
    "tab-in-a-key": Case(payload(HEAD + '"x\ty":1')),
    "control-char-in-the-pair": Case(payload('"CS":101,"PS":"BTC\x1fTRY"')),
    "deep-nesting-unclosed": Case(payload(HEAD + '"x":' + "[" * 100_000)),
    # rules.md: nesting deeper than 256 arrays/objects is an error (the frame's array is level 1)
    "deep-nesting-257": Case(payload(HEAD + '"x":' + "[" * 255 + "]" * 255)),
    "deep-nesting-100000": Case(payload(HEAD + '"x":' + "[" * 100_000 + "]" * 100_000)),
    "deep-nesting-top-level": Case("[" * 100_000 + "]" * 100_000),
    # malformed JSON is an error whatever the frame's type
    "ignored-type-bad-value": Case('[991,{"a":}]'),
    "ignored-type-unclosed": Case("[991"),
    "ignored-type-trailing-data": Case("[991] x"),
    "ignored-type-control-char": Case('[100,{"message":"a\x01"}]'),
    "ignored-type-invalid-utf8": Case(b'[991,"\xff"]'),
    "ignored-type-bad-number": Case("[421,[01]]"),
    # --- not UTF-8 (bytes) --------------------------------------------------------------------
    "invalid-utf8-in-the-pair": Case(b'[432,{"CS":101,"PS":"BTC\xffTRY","AO":[]}]'),
    "invalid-utf8-in-a-string": Case(payload(HEAD + '"x":"#"').encode().replace(b"#", b"\xc3\x28")),
    "overlong-utf8": Case(payload(HEAD + '"x":"#"').encode().replace(b"#", b"\xc0\xaf")),
    "utf8-surrogate": Case(payload(HEAD + '"x":"#"').encode().replace(b"#", b"\xed\xa0\x80")),
    "utf8-above-10ffff": Case(
        payload(HEAD + '"x":"#"').encode().replace(b"#", b"\xf4\x90\x80\x80")
    ),
    "truncated-utf8-sequence": Case(payload(HEAD + '"x":"#"').encode().replace(b"#", b"\xe2\x82")),
    "lone-continuation-byte": Case(payload(HEAD + '"x":"#"').encode().replace(b"#", b"\x80")),
    "invalid-utf8-in-a-key": Case(payload(HEAD + '"#":1').encode().replace(b"#", b"\xfe")),
    "str-with-a-lone-surrogate": Case(payload(HEAD + '"x":"\ud800"')),
    # --- not a book frame shape ------------------------------------------------------------
    "top-level-object": Case('{"CS":101,"PS":"BTCTRY"}'),
    "top-level-string": Case('"[432]"'),
    "top-level-number": Case("432"),
    "top-level-null": Case("null"),
    "empty-array": Case("[]"),
    "type-as-string": Case('["432",{"CS":101,"PS":"BTCTRY"}]'),
    "type-with-a-fraction": Case('[432.5,{"CS":101,"PS":"BTCTRY"}]'),
    "type-true": Case("[true]"),
    "type-null": Case("[null]"),
    "type-array": Case("[[432]]"),
    "type-object": Case('[{"type":432}]'),
    "431-without-payload": Case("[431]"),
    "432-with-three-elements": Case(VALID[:-1] + ",1]"),
    "431-payload-array": Case("[431,[]]"),
    "432-payload-string": Case('[432,"x"]'),
    "432-payload-null": Case("[432,null]"),
    # --- CS --------------------------------------------------------------------------------
    "cs-missing": Case('[432,{"PS":"BTCTRY","AO":[]}]', "CS"),
    "cs-null": Case('[432,{"PS":"BTCTRY","CS":null}]', "CS", "null"),
    "cs-true": Case('[432,{"PS":"BTCTRY","CS":true}]', "CS", "true"),
    "cs-array": Case('[432,{"PS":"BTCTRY","CS":[101]}]', "CS"),
    "cs-object": Case('[432,{"PS":"BTCTRY","CS":{"v":101}}]', "CS"),
    "cs-fraction": Case('[432,{"PS":"BTCTRY","CS":101.5}]', "CS", "101.5"),
    "cs-fraction-string": Case('[432,{"PS":"BTCTRY","CS":"101.5"}]', "CS", '"101.5"'),
    "cs-small-exponent": Case('[432,{"PS":"BTCTRY","CS":1e-1}]', "CS", "1e-1"),
    "cs-word": Case('[432,{"PS":"BTCTRY","CS":"abc"}]', "CS", '"abc"'),
    "cs-empty-string": Case('[432,{"PS":"BTCTRY","CS":""}]', "CS", '""'),
    "cs-padded-string": Case('[432,{"PS":"BTCTRY","CS":" 101"}]', "CS", '" 101"'),
    "cs-overflow": Case('[432,{"PS":"BTCTRY","CS":9223372036854775808}]', "CS"),
    "cs-overflow-string": Case('[432,{"PS":"BTCTRY","CS":"1e19"}]', "CS", '"1e19"'),
    "cs-negative-overflow": Case('[432,{"PS":"BTCTRY","CS":-9223372036854775809}]', "CS"),
    "cs-fits-a-decimal-not-int64": Case('[432,{"PS":"BTCTRY","CS":"1e28"}]', "CS", '"1e28"'),
    "cs-with-19-places": Case('[432,{"PS":"BTCTRY","CS":101.0000000000000000001}]', "CS"),
    # --- pair ------------------------------------------------------------------------------
    "no-pair": Case('[432,{"CS":101,"AO":[]}]'),
    "ps-and-event-null": Case('[432,{"CS":101,"PS":null,"event":null}]'),
    "ps-null-event-missing": Case('[432,{"CS":101,"PS":null}]'),
    "ps-empty": Case('[432,{"CS":101,"PS":"","event":"BTCTRY"}]'),
    "event-empty": Case('[432,{"CS":101,"PS":null,"event":""}]'),
    "pair-of-65-bytes": Case(payload(f'"CS":101,"PS":"{"A" * 65}"')),
    "pair-of-33-two-byte-chars": Case(payload(f'"CS":101,"PS":"{"ç" * 33}"')),
    "ps-number": Case('[432,{"CS":101,"PS":5}]'),
    "ps-true": Case('[432,{"CS":101,"PS":true,"event":"BTCTRY"}]'),
    "ps-array": Case('[432,{"CS":101,"PS":["BTCTRY"]}]'),
    "ps-object": Case('[432,{"CS":101,"PS":{"v":"BTCTRY"}}]'),
    "event-number": Case('[432,{"CS":101,"event":5}]'),
    "event-wrong-type-beside-ps": Case('[432,{"CS":101,"PS":"BTCTRY","event":[1]}]', "event"),
    "wrong-pair": Case(f432(101, [("2150010", "0.7", 0)], pair="ETHTRY"), "ETHTRY"),
    "wrong-pair-case": Case(f432(101, [("2150010", "0.7", 0)], pair="btctry"), "btctry"),
    "wrong-pair-from-event": Case('[432,{"CS":101,"PS":null,"event":"ETHTRY"}]', "ETHTRY"),
    "wrong-pair-431": Case(f431(101, BASE_ASKS, BASE_BIDS, pair="ETHTRY"), "ETHTRY"),
    # --- AO / BO ---------------------------------------------------------------------------
    "ao-object": Case(payload(HEAD + '"AO":{"P":"1"}'), "AO"),
    "ao-empty-object": Case(payload(HEAD + '"AO":{}'), "AO"),
    "bo-empty-object-431": Case(payload(HEAD + '"BO":{}', 431), "BO"),
    "ao-string": Case(payload(HEAD + '"AO":"[]"'), "AO"),
    "ao-null": Case(payload(HEAD + '"AO":null'), "AO"),
    "ao-number": Case(payload(HEAD + '"AO":0'), "AO"),
    "bo-true": Case(payload(HEAD + '"BO":true'), "BO"),
    "ao-entry-number": Case(payload(HEAD + '"AO":[1]'), "AO[0]"),
    "ao-entry-string": Case(payload(HEAD + '"AO":["x"]'), "AO[0]"),
    "ao-entry-null": Case(payload(HEAD + '"AO":[null]'), "AO[0]"),
    "bo-entry-array": Case(payload(HEAD + f'"BO":[{SECOND_BID},["2149995","3",1]]'), "BO[1]"),
    # --- P ---------------------------------------------------------------------------------
    "price-missing": entry(P=None),
    "price-missing-431": entry(kind=431, P=None),
    "price-null": entry(P="null"),
    "price-true": entry(P="true"),
    "price-array": entry(P='["2150015"]'),
    "price-object": entry(P='{"v":"2150015"}'),
    "price-word": entry(P='"abc"'),
    "price-empty-string": entry(P='""'),
    "price-leading-space": entry(P='" 2150015"'),
    "price-trailing-space": entry(P='"2150015 "'),
    "price-plus": entry(P='"+2150015"'),
    "price-leading-zero": entry(P='"02150015"'),
    "price-bare-fraction": entry(P='".5"'),
    "price-bare-point": entry(P='"2150015."'),
    "price-hex": entry(P='"0x10"'),
    "price-bare-exponent": entry(P='"1e"'),
    "price-exponent-sign-only": entry(P='"1e+"'),
    "price-double-minus": entry(P='"--1"'),
    "price-underscore": entry(P='"2_150_015"'),
    "price-arabic-digits": entry(P='"\u0661\u0662"'),
    "price-nan-string": entry(P='"NaN"'),
    "price-infinity-string": entry(P='"Infinity"'),
    "price-comma-decimal": entry(P='"2150015,5"'),
    "price-two-points": entry(P='"1.5.1"'),
    "price-fractional-exponent": entry(P='"1e1.5"'),
    "price-suffix": entry(P='"2150015a"'),
    "price-zero": entry(P='"0"'),
    "price-zero-number": entry(P="0"),
    "price-zero-fraction": entry(P='"0.000"'),
    "price-minus-zero": entry(P='"-0"'),
    "price-zero-exponent": entry(P="0e10"),
    "price-negative": entry(P='"-1"'),
    "price-negative-number": entry(P="-2150015"),
    "price-negative-tiny": entry(P='"-0.5e-3"'),
    "price-zero-431": entry(kind=431, P='"0"'),
    "price-negative-bid": entry("BO", P='"-2149995"'),
    # P and A must be .NET decimals: m * 10**-s with s <= 28 and m < 2**96 (rules.md, "Numbers");
    # 19..28 places and values beyond int64 are not errors: they make the book wide
    "price-29-decimals": entry(P='"2150015.00000000000000000000000000001"'),
    "price-1e-29": entry(P="1e-29"),
    "price-29-decimals-exponent": entry(P='"2150015000000000000000000000000001e-29"'),
    "price-2**96": entry(P='"79228162514264337593543950336"'),
    "price-2**96-with-places": entry(P='"7.9228162514264337593543950336"'),
    "price-2**96-number": entry(P="79228162514264337593543950336"),
    "price-2**96-exponent": entry(P='"7.9228162514264337593543950336E+28"'),
    "price-8e28": entry(P="8e28"),
    "price-1e29": entry(P="1e29"),
    "price-30-digits-28-places": entry(P='"10.0000000000000000000000000001"'),
    "price-1e400": entry(P="1e400"),
    "price-huge-digits": entry(P='"' + "9" * 5000 + '"'),
    "price-huge-exponent": entry(P='"1e' + "9" * 5000 + '"'),
    "price-tiny-exponent": entry(P='"1e-' + "9" * 5000 + '"'),
    # --- A ---------------------------------------------------------------------------------
    "amount-missing-cp0": entry(A=None, CP="0"),
    "amount-missing-cp1": entry(A=None, CP="1"),
    "amount-missing-431": entry(kind=431, A=None),
    "amount-missing-431-with-cp3": entry(kind=431, A=None, CP="3"),
    "amount-null": entry(A="null"),
    "amount-null-on-delete": entry(A="null", CP="3"),
    "amount-word-on-delete": entry(A='"x"', CP="3"),
    "amount-negative-on-delete": entry(A='"-1"', CP="3"),
    "amount-negative": entry(A='"-1"'),
    "amount-negative-number": entry(A="-0.5"),
    "amount-negative-tiny": entry(A='"-1e-8"'),
    "amount-negative-bid": entry("BO", A='"-3"'),
    "amount-negative-431": entry(kind=431, A='"-0.1"'),
    "amount-word": entry(A='"0.7x"'),
    "amount-bool": entry(A="false"),
    "amount-29-decimals": entry(A='"0.00000000000000000000000000001"'),
    "amount-1e-29": entry(A='"1e-29"'),
    "amount-1E-29-number": entry(A="1E-29"),
    "amount-2**96": entry(A="79228162514264337593543950336"),
    "amount-2**96-string": entry(A='"79228162514264337593543950336"'),
    "amount-2**96-at-2-places": entry(A='"792281625142643375935439503.36"'),
    "amount-2**96-at-28-places": entry(A='"7.9228162514264337593543950336"'),
    "amount-1e30": entry(A='"1e30"'),
    "amount-30-digits": entry(A='"123456789012345678901234567890"'),
    "amount-beyond-a-decimal-on-delete": entry(A='"1e-29"', CP="3"),
    "amount-beyond-a-decimal-431": entry(kind=431, A='"1e29"'),
    # --- CP --------------------------------------------------------------------------------
    "cp-missing": entry(CP=None),
    "cp-2": entry(CP="2"),
    "cp-4": entry(CP="4"),
    "cp-minus-1": entry(CP="-1"),
    "cp-string-2": entry(CP='"2"'),
    "cp-word": entry(CP='"new"'),
    "cp-fraction": entry(CP="1.5"),
    "cp-null": entry(CP="null"),
    "cp-true": entry(CP="true"),
    "cp-array": entry(CP="[1]"),
    "cp-huge": entry(CP="1e30"),
    # CP and CS keep the int64 limits: a value a .NET decimal holds is not enough
    "cp-beyond-int64": entry(CP='"9223372036854775808"'),
    "cp-19-decimals": entry(CP='"1.0000000000000000001"'),
    "cp-on-bids": entry("BO", CP="7"),
    # --- duplicate known keys --------------------------------------------------------------
    "duplicate-cs": Case('[432,{"CS":101,"PS":"BTCTRY","CS":101}]', "CS"),
    "duplicate-ps": Case('[432,{"CS":101,"PS":"BTCTRY","PS":"BTCTRY"}]', "PS"),
    "duplicate-event": Case(
        '[432,{"CS":101,"PS":"BTCTRY","event":"BTCTRY","event":null}]', "event"
    ),
    "duplicate-ao": Case(payload(HEAD + '"AO":[],"AO":[]'), "AO"),
    "duplicate-bo": Case(payload(HEAD + '"BO":[],"BO":[]'), "BO"),
    "duplicate-p": entry(P='"2150015","P":"2150016"'),
    "duplicate-a": entry(A='"0.7","A":"0.7"'),
    "duplicate-cp": entry(CP='1,"CP":1'),
    "duplicate-a-on-delete": entry(A='"0.7","A":"0.7"', CP="3"),
    "duplicate-a-431": entry(kind=431, A='"0.7","A":"0.8"'),
    "duplicate-cs-by-escape": Case('[432,{"CS":101,"PS":"BTCTRY","\\u0043S":101}]', "CS"),
    "duplicate-p-by-escape": entry(P='"2150015","\\u0050":"2150015"'),
}


def raw_bytes(frame: str | bytes) -> bytes:
    return frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("name", CASES)
def test_malformed_frame_raises_and_leaves_the_book_unchanged(book: Any, name: str) -> None:
    frame = CASES[name].frame
    before = state(book)
    with pytest.raises(FrameError):
        book.apply(frame)
    assert state(book) == before
    # the book still works
    assert book.apply(VALID) == Status.APPLIED


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if isinstance(c.frame, str)])
def test_malformed_frame_as_bytes_also_raises(book: Any, name: str) -> None:
    frame = CASES[name].frame
    assert isinstance(frame, str)
    before = state(book)
    with pytest.raises(FrameError):
        book.apply(raw_bytes(frame))
    assert state(book) == before


def test_every_truncation_of_a_frame_raises_and_changes_nothing(book: Any) -> None:
    frame = f432(101, [("2150010", "0.7", 0), ("2150015", None, 3)], [("2149995", "3", 1)])
    before = state(book)
    for end in range(len(frame)):
        with pytest.raises(FrameError):
            book.apply(frame[:end])
        assert state(book) == before, frame[:end]


def test_a_frame_error_is_a_value_error_with_pair_cs_and_offset(book: Any) -> None:
    with pytest.raises(ValueError) as info:
        book.apply(entry(P='"0"').frame)
    assert isinstance(info.value, FrameError)
    assert hasattr(info.value, "pair") and hasattr(info.value, "cs")
    assert hasattr(info.value, "offset")


# --- the core's messages -------------------------------------------------------------------


@pytest.fixture
def core_book() -> Any:
    import obengine

    b = obengine.Book("BTCTRY", 0, 8)
    b.apply(f431(100, BASE_ASKS, BASE_BIDS))
    return b


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.field is not None])
def test_core_error_names_pair_cs_field_and_offset(core_book: Any, name: str) -> None:
    case = CASES[name]
    assert case.field is not None
    data = raw_bytes(case.frame)
    with pytest.raises(FrameError) as info:
        core_book.apply(case.frame)
    error = info.value
    message = str(error)
    assert case.field in message, message
    assert error.reason and error.reason in message
    assert isinstance(error.offset, int) and 0 <= error.offset <= len(data), error.offset
    if case.field == "CS" and data.startswith(b'[432,{"PS":"BTCTRY"'):
        assert error.pair == "BTCTRY" and "BTCTRY" in message, message
    if case.field.startswith(("AO", "BO")):
        # CS and PS come first in these frames: both are known at the error
        assert error.pair == "BTCTRY" and "BTCTRY" in message, message
        assert error.cs == 101 and "101" in message, message
    if case.at is not None:
        start = data.index(case.at.encode())
        assert start <= error.offset <= start + len(case.at.encode()), (error.offset, start)


@pytest.mark.parametrize("pair", ["ETHTRY", "btctry"])
def test_core_error_for_another_pair_names_both_pairs(core_book: Any, pair: str) -> None:
    with pytest.raises(FrameError) as info:
        core_book.apply(f432(101, [("2150010", "0.7", 0)], pair=pair))
    message = str(info.value)
    assert pair in message and "BTCTRY" in message, message
    assert info.value.cs == 101


@pytest.mark.parametrize("name", ["trailing-garbage", "second-value", "unbalanced-close"])
def test_core_offset_of_trailing_data_is_where_it_starts(core_book: Any, name: str) -> None:
    with pytest.raises(FrameError) as info:
        core_book.apply(CASES[name].frame)
    assert info.value.offset is not None
    assert len(VALID) <= info.value.offset <= len(VALID) + 1
