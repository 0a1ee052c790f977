"""Frames are JSON, whatever their formatting (docs/rules.md, "Frames" and "Payload keys"):
whitespace, key order, unknown keys of any value, keys written with escapes, PS and event.

Every test runs against the reference (``[ref]``) and the core (``[core]``).
"""
from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from helpers import BASE_ASKS, BASE_BIDS, f431, levels, raw, state
from obengine import FrameError, Status

# the base book after the canonical change: ask 2150010 @ 0.7, new bid 2149995 @ 3
EXPECTED = (
    [(2150000, 10_000_000), (2149995, 300_000_000), (2149990, 200_000_000)],
    [(2150010, 70_000_000), (2150020, 125_000_000)],
)



def assert_canonical_change_applied(book: Any, frame: Any) -> None:
    assert book.apply(frame) == Status.APPLIED
    assert levels(book) == EXPECTED
    assert (book.seq, book.synced, book.anomalies) == (101, True, 0)
    assert (book.price_scale, book.amount_scale) == (0, 8)
    assert book.wide is False


def assert_applied_or_refused(book: Any, frame: Any, applies: bool) -> None:
    """The canonical change applied, or the frame refused with the book unchanged."""
    if applies:
        assert_canonical_change_applied(book, frame)
    else:
        before = state(book)
        with pytest.raises(ValueError):  # FrameError is a ValueError
            book.apply(frame)
        assert state(book) == before


CANONICAL = (
    '[432,{"CS":101,"PS":"BTCTRY","AO":[{"P":"2150010","A":"0.7","CP":0}],'
    '"BO":[{"P":"2149995","A":"3","CP":1}]}]'
)

SPELLINGS = {
    "canonical": CANONICAL,
    "whitespace-everywhere": (
        ' \t\r\n[\r\n\t 432 \t,\n {\n  "CS" :\t101 ,\r\n  "PS"\n:\n"BTCTRY" , "AO" : [ {\t"P" : '
        '"2150010" , "A" : "0.7" , "CP" : 0 } ] ,"BO":[\n{ "P":"2149995","A":"3","CP":1 }\n]\n}\n]'
        " \r\n\t"
    ),
    "keys-reversed": (
        '[432,{"BO":[{"CP":1,"A":"3","P":"2149995"}],"AO":[{"CP":0,"A":"0.7","P":"2150010"}],'
        '"PS":"BTCTRY","CS":101}]'
    ),
    "cs-last-pair-from-event-last": (
        '[432,{"AO":[{"A":"0.7","CP":0,"P":"2150010"}],"BO":[{"P":"2149995","CP":1,"A":"3"}],'
        '"event":"BTCTRY","CS":101}]'
    ),
    "exchange-shape": raw(
        [
            432,
            {
                "CS": 101,
                "PS": "BTCTRY",
                "AO": [{"A": "0.7", "P": "2150010", "CP": 0}],
                "BO": [{"A": "3", "P": "2149995", "CP": 1}],
                "channel": "obdiff",
                "event": "BTCTRY",
                "type": 432,
            },
        ]
    ),
    "unknown-keys-with-nested-values": (
        '[432,{"meta":{"CS":1,"PS":"ETHTRY","AO":[{"P":"-1"}],"deep":[[[{"a":"]}\\"{["}]]]},'
        '"CS":101,"s":"\\"AO\\":[{\\"P\\":\\"-1\\"}],\\\\","n":-1.5e-400,"t":true,"f":false,'
        '"z":null,"e":{},"l":[],"arr":[1,"2",[3,{"4":[5]}],{"CP":9}],'
        '"PS":"BTCTRY","AO":[{"P":"2150010","X":{"CP":9,"P":"x","A":[]},"A":"0.7",'
        '"Y":"\\"}]","CP":0,"Z":[{"P":1}]}],"BO":[{"P":"2149995","A":"3","CP":1,"u":"\\u00e7"}]}]'
    ),
    "unknown-keys-repeated": (
        '[432,{"channel":"a","channel":"b","CS":101,"type":1,"type":2,"PS":"BTCTRY",'
        '"AO":[{"P":"2150010","A":"0.7","CP":0,"q":1,"q":2}],'
        '"BO":[{"P":"2149995","A":"3","CP":1}]}]'
    ),
    "keys-differing-in-case-are-unknown": (
        '[432,{"cs":"x","ps":1,"ao":{},"CS":101,"PS":"BTCTRY","Event":5,"AO":[{"P":"2150010",'
        '"A":"0.7","CP":0,"p":"x","a":-1,"cp":7}],"BO":[{"P":"2149995","A":"3","CP":1}]}]'
    ),
    "known-names-at-other-levels-are-unknown": (
        '[432,{"P":"-1","A":"x","CP":9,"CS":101,"PS":"BTCTRY","AO":[{"P":"2150010","A":"0.7",'
        '"CP":0,"CS":"x","PS":7,"AO":1}],"BO":[{"P":"2149995","A":"3","CP":1}]}]'
    ),
    "keys-written-with-escapes": (
        '[432,{"\\u0043S":101,"\\u0050\\u0053":"BTCTRY","\\u0041O":[{"\\u0050":"2150010",'
        '"\\u0041":"0.7","C\\u0050":0}],"B\\u004f":[{"P":"2149995","A":"3","\\u0043\\u0050":1}]}]'
    ),
    "pair-written-with-escapes": CANONICAL.replace('"BTCTRY"', '"BTC\\u0054R\\u0059"'),
    "escapes-in-unknown-strings": (
        '[432,{"CS":101,"x":"\\/\\\\\\"\\b\\f\\n\\r\\t\\u00e7\\ud83d\\ude00","PS":"BTCTRY",'
        '"AO":[{"P":"2150010","A":"0.7","CP":0}],"BO":[{"P":"2149995","A":"3","CP":1}]}]'
    ),
    "non-ascii-in-unknown-strings": CANONICAL.replace(
        '"CS":101', '"CS":101,"not":"çğış € 😀 \u2028\u2029 \x7f"'
    ),
    "nested-50-deep-in-an-unknown-key": CANONICAL.replace(
        '"CS":101', '"CS":101,"deep":' + "[{\"a\":" * 25 + "1" + "}]" * 25
    ),
    "numbers-as-json-numbers": (
        '[432,{"CS":101,"PS":"BTCTRY","AO":[{"P":2150010,"A":0.7,"CP":0}],'
        '"BO":[{"P":2149995,"A":3,"CP":1}]}]'
    ),
    "numbers-as-strings": (
        '[432,{"CS":"101","PS":"BTCTRY","AO":[{"P":"2150010","A":"0.7","CP":"0"}],'
        '"BO":[{"P":"2149995","A":"3","CP":"1"}]}]'
    ),
    "numbers-with-exponents": (
        '[432,{"CS":1.01E2,"PS":"BTCTRY","AO":[{"P":"2.15001e6","A":"7e-1","CP":0}],'
        '"BO":[{"P":2.149995E+6,"A":"0.3e1","CP":1}]}]'
    ),
}


@pytest.mark.parametrize("name", SPELLINGS)
def test_the_same_change_set_in_any_json_spelling(book: Any, name: str) -> None:
    assert_canonical_change_applied(book, SPELLINGS[name])


@pytest.mark.parametrize("name", SPELLINGS)
def test_the_same_change_set_as_bytes(book: Any, name: str) -> None:
    assert_canonical_change_applied(book, SPELLINGS[name].encode("utf-8"))


@pytest.mark.parametrize(
    ("pair_fields", "applies"),
    [
        ({"PS": "BTCTRY"}, True),
        ({"PS": "BTCTRY", "event": None}, True),
        ({"PS": "BTCTRY", "event": "ETHTRY"}, True),  # PS wins
        ({"event": "BTCTRY"}, True),
        ({"PS": None, "event": "BTCTRY"}, True),
        ({"event": "BTCTRY", "PS": None}, True),
        ({"PS": "ETHTRY", "event": "BTCTRY"}, False),  # PS names another pair
        ({"PS": None, "event": "ETHTRY"}, False),
    ],
)
def test_the_pair_is_ps_when_a_string_else_event(
    book: Any, pair_fields: dict[str, Any], applies: bool
) -> None:
    frame = raw(
        [
            432,
            {
                "CS": 101,
                **pair_fields,
                "AO": [{"P": "2150010", "A": "0.7", "CP": 0}],
                "BO": [{"P": "2149995", "A": "3", "CP": 1}],
            },
        ]
    )
    assert_applied_or_refused(book, frame, applies)


EXCHANGE_HEAD = (
    '[432,{"CS":101,"PS":"BTCTRY","AO":[{"CP":0,"P":"2150010","A":"0.7"}],'
    '"BO":[{"CP":1,"P":"2149995","A":"3"}]'
)


@pytest.mark.parametrize(
    ("trailer", "applies"),
    [
        (',"channel":"obdiff","event":"BTCTRY","type":432}]', True),   # the exchange's own
        (',"channel":"obdiff","event":"ETHTRY","type":432}]', True),   # PS wins
        (',"channel":"obdiff","event":"BTCTR","type":432}]', True),
        (',"channel":"obdiff","event":"BTCTRYX","type":432}]', True),
        (',"channel":"obdiff","event":null,"type":432}]', True),
        (',"channel":"obdiff","event":"BTCTRY","type":431}]', True),   # type is not read
        (',"channel":"obdiff","event":"BTCTRY","type":4321}]', True),
        (',"channel":"orderbook","event":"BTCTRY","type":432}]', True),
        (',"channel":"obdiff","event":"BTCTRY","type":432} ]', True),
        (',"channel":"obdiff","event":"BTCTRY","type":432}', False),   # cut
        (',"channel":"obdiff","event":"BTCTRY","type":432]]', False),
        (',"channel":"obdiff","event":"BTCTRY","type":432}]]', False),
        (',"channel":"obdiff","event":"BTCTRY,"type":432}]', False),
        (',"channel":"obdiff","event":"BTC\u0054RY","type":432}]', True),
    ],
)
def test_the_trailer_after_bo_in_the_exchange_layout(book: Any, trailer: str, applies: bool) -> None:
    # the core compares the exchange's own trailer whole, and reads any other piece by piece
    frame = EXCHANGE_HEAD + trailer
    assert_applied_or_refused(book, frame, applies)


def test_missing_ao_and_bo_mean_no_levels(book: Any) -> None:
    before = state(book)
    assert book.apply('[432,{"CS":101,"PS":"BTCTRY"}]') == Status.APPLIED
    assert state(book)[:4] == before[:4]
    assert book.seq == 101
    assert book.apply('[432,{"CS":102,"PS":"BTCTRY","AO":[],"BO":[]}]') == Status.APPLIED
    assert state(book)[:4] == before[:4]


def test_nesting_up_to_256_levels_is_accepted_and_257_is_a_frame_error(book: Any) -> None:
    """rules.md: nesting deeper than 256 arrays/objects is an error, counting the frame's own array
    as level 1: its payload is level 2, so an unknown key holding k nested arrays reaches 2 + k."""

    def nested(cs: int, k: int) -> str:
        return f'[432,{{"CS":{cs},"PS":"BTCTRY","x":' + "[" * k + "]" * k + "}]"

    assert book.apply(nested(101, 254)) == Status.APPLIED
    before = state(book)
    with pytest.raises(FrameError):
        book.apply(nested(102, 255))
    assert state(book) == before


# The exchange's layout is read by templates: the whole frame straight through, and each level
# with unchecked loads over the frame's bytes or, within 128 bytes of its end, over a zero-padded
# copy of its tail. Whatever they accept must come out exactly as from the general reading, which
# takes the same frame once "{ " breaks the layout. Varying the length of "channel" (after the
# levels) puts the last levels at every distance from the end of the frame. The levels come in
# the exchange's order (CP, P, A, canonical numbers) and in the order the simulator used to write
# (CP, A, P, fixed width), with a few others mixed in.
REAL_TAIL_ASKS = (
    '{"CP":0,"P":"2150010","A":"0.00012486"},{"CP":1,"A":"12.5","P":"2150030"},'
    '{"CP":3,"P":"2150020","A":"1.25"},{"P":"2150040","CP":1,"A":"1234567.12345678"}'
)
REAL_TAIL_BIDS = (
    '{"CP":1,"P":"2149980","A":"999999.99999999"},{"CP":0,"P":"2150000","A":"0.1"},'
    '{"CP":3,"P":"2149990","A":"0.000249498098"}'
)
TAIL_ASKS = (
    '{"CP":0,"A":"0.00012486","P":"2150010"},{"CP":1,"P":"2150030","A":"12.5"},'
    '{"CP":3,"A":"1.25","P":"2150020"},{"A":"1234567890.12345678","CP":1,"P":"2150040"}'
)
TAIL_BIDS = (
    '{"CP":1,"A":"99999999.99999999","P":"2149980"},{"CP":0,"A":"0.1","P":"2150000"},'
    '{"CP":3,"A":"0","P":"2149990"}'
)
# Values only a wide book holds (beyond int64 in units, more than 18 places), in the exchange's
# order: the templates must hand them over and the frame must make the book wide either way.
WIDE_TAIL_ASKS = (
    '{"CP":0,"P":"2150010","A":"9300000.123456789012"},{"CP":1,"P":"2150030","A":"12.5"},'
    '{"CP":3,"P":"2150020","A":"1.25"},{"CP":1,"P":"2150040","A":"100000000000"}'
)
WIDE_TAIL_BIDS = (
    '{"CP":1,"P":"2149980.0000000000000000000001","A":"1"},{"CP":0,"P":"2150000","A":"0.1"},'
    '{"CP":3,"P":"2149990","A":"79228162514264337593543950335"}'
)


def _result(book: Any, frame: str) -> tuple[Any, Any]:
    """What applying frame returns (or its error's reason), and the book's state after. The
    reason's quoted text and the JSON error's line/column move with added spaces: left out."""
    try:
        return book.apply(frame), state(book)
    except FrameError as e:
        reason = e.reason.split(", near")[0]
        return re.sub(r"line \d+ column \d+ \(char \d+\)", "line # column # (char #)", reason), state(book)


def _result_on_base_book(make_book: Any, frame: str) -> tuple[Any, Any]:
    """_result on a fresh base book (CS 100)."""
    b = make_book()
    b.apply(f431(100, BASE_ASKS, BASE_BIDS))
    return _result(b, frame)


def exchange_frame(asks: str, bids: str, channel: str) -> str:
    return (
        f'[432,{{"CS":101,"PS":"BTCTRY","AO":[{asks}],"BO":[{bids}],'
        f'"channel":"{channel}","event":"BTCTRY","type":432}}]'
    )


@pytest.mark.parametrize(
    ("asks", "bids"),
    [(REAL_TAIL_ASKS, REAL_TAIL_BIDS), (REAL_TAIL_ASKS, ""), ("", REAL_TAIL_BIDS),
     (TAIL_ASKS, TAIL_BIDS), (TAIL_ASKS, ""), ("", TAIL_BIDS),
     (WIDE_TAIL_ASKS, WIDE_TAIL_BIDS), (WIDE_TAIL_ASKS, ""), ("", WIDE_TAIL_BIDS)],
    ids=["both-sides", "asks-last", "bids-only", "old-both-sides", "old-asks-last", "old-bids-only",
         "wide-both-sides", "wide-asks-last", "wide-bids-only"],
)
def test_the_exchange_layout_reads_as_the_general_reading_at_every_distance_from_the_end(
    make_book: Any, asks: str, bids: str
) -> None:
    def result(frame: str) -> tuple[Any, Any]:
        return _result_on_base_book(make_book, frame)

    base = result('[432,{"CS":100,"PS":"BTCTRY"}]')[1]     # stale: the base book, unchanged
    for n in range(0, 300):
        frame = exchange_frame(asks, bids, "c" * n)
        applied = result(frame)
        assert applied[0] == Status.APPLIED and applied[1] != base
        assert applied[1][-1] is (asks is WIDE_TAIL_ASKS or bids is WIDE_TAIL_BIDS)  # wide
        assert applied == result(frame.replace('{"', '{ "')), n
        # the last level of each side broken: the same error, and no change
        broken = frame.replace('"P":"2150040"', '"P":"2150040x"').replace('"P":"2149990"', '"P":"2149990x"')
        refused = result(broken)
        assert refused[1] == base and isinstance(refused[0], str)
        assert refused == result(broken.replace('{"', '{ "')), n


@pytest.mark.parametrize(
    ("asks", "bids"),
    [(REAL_TAIL_ASKS, REAL_TAIL_BIDS), (TAIL_ASKS, TAIL_BIDS), (WIDE_TAIL_ASKS, WIDE_TAIL_BIDS)],
    ids=["both-sides", "old-both-sides", "wide-both-sides"],
)
def test_the_exchange_layout_on_a_wide_book_reads_as_the_general_reading(
    make_book: Any, asks: str, bids: str
) -> None:
    """As above, on a book already wide (its third ask is 1e19 units): the reader may not write
    the values into int64 units, whatever they are."""

    def result(frame: str) -> tuple[Any, Any]:
        b = make_book()
        b.apply(f431(100, [*BASE_ASKS, ("2150050", "100000000000")], BASE_BIDS))
        assert b.wide
        return _result(b, frame)

    base = result('[432,{"CS":100,"PS":"BTCTRY"}]')[1]
    for n in range(0, 300, 3):
        frame = exchange_frame(asks, bids, "c" * n)
        applied = result(frame)
        assert applied[0] == Status.APPLIED and applied[1] != base and applied[1][-1] is True
        assert applied == result(frame.replace('{"', '{ "')), n
        broken = frame.replace('"P":"2150040"', '"P":"2150040x"')
        refused = result(broken)
        assert refused[1] == base and isinstance(refused[0], str)
        assert refused == result(broken.replace('{"', '{ "')), n


@pytest.mark.parametrize(
    "cs",
    ["0", "-0", "7", "-7", "-2147483648", "1234567890123456", "-1234567890123456",
     "12345678901234567", "9223372036854775807", "01", "-01", "-", "--1", "1.5", "1e3", "+1", '"1"'],
)
def test_the_layout_reads_cs_as_the_general_reading(make_book: Any, cs: str) -> None:
    """CS, the one signed integer of the exchange's layout, read by the frame template (up to 16
    digits) or, past that and for anything else, by the general reader: the same result."""
    frame = (
        f'[431,{{"CS":{cs},"PS":"BTCTRY","AO":[{{"A":"0.5","P":"2150010"}}],"BO":[{{"A":"1","P":"2150000"}}],'
        '"channel":"obdiff","event":"BTCTRY","type":431}]'
    )
    assert _result(make_book(), frame) == _result(make_book(), frame.replace('{"', '{ "'))


# A level in the exchange's own order is read as a fixed sequence of pieces; any other order, and
# anything that breaks the sequence part way, is handed on (to the any-order template, then to the
# general reader). Each must come out as the general reading does.
LEVELS_432 = [
    *("{" + ",".join(m) + "}" for m in itertools.permutations(('"CP":1', '"A":"0.7"', '"P":"2150005"'))),
    '{"CP":0,"A":"0.7","P":"2150010"}',
    '{"CP":0,"P":"2150010","A":"0.7"}',
    '{"CP":3,"P":"2150010"}',
    '{"CP":1,"P":"2150005"}',
    '{"CP":3,"P":"2150010","A":"0.7"}',
    '{"CP":1,"P":"2150005","A":"0.7","A":"0.8"}',
    '{"CP":1,"P":"2150005","P":"2150006","A":"0.7"}',
    '{"CP":1,"P":"2150005","A":"0.7","CP":0}',
    '{"CP":1,"P":"2150005","A":"0.7","X":1}',
    '{"CP":1,"P":"2150005","X":1,"A":"0.7"}',
    '{"CP":1,"P":"0","A":"0.7"}',
    '{"CP":1,"P":"2150005","A":"-0.7"}',
    '{"CP":1,"P":2150005,"A":"0.7"}',
    '{"CP":1,"P":"2150005","A":0.7}',
    '{"CP":1,"P":"2150005.5","A":"0.7"}',
    '{"CP":1,"P":"2150005","A":"0.7"]',
    '{"CP":1,"P":"2150005","a":"0.7"}',
    '{"CP":1,"P":"2150005" ,"A":"0.7"}',
    '{"CP":1,"P":"2150005","A":"07"}',
    '{"CP":1,"P":"2150005","A":"0.7" }',
    '{"CP":1,"P":"2150005","A":"2"}',
    '{"CP":1,"P":"2150005","A":"0.000249498098"}',
    '{"CP":1,"P":"2150005","A":"0.70"}',
    '{"CP":1,"P":"2150005.","A":"0.7"}',
    '{"CP":3,"A":"0.7","P":"2150010"}',
    '{"CP":2,"A":"0.7","P":"2150005"}',
    '{"CP":4,"A":"0.7","P":"2150005"}',
    '{"CP":1,"A":"0.7"}',
    '{"CP":1,"A":"0.7","A":"0.8","P":"2150005"}',
    '{"CP":1,"A":"0.7","P":"2150005","P":"2150006"}',
    '{"CP":1,"A":"0.7","P":"2150005","CP":0}',
    '{"CP":1,"A":"0.7","P":"2150005","X":1}',
    '{"CP":1,"A":"0.7","X":1,"P":"2150005"}',
    '{"CP":1,"A":"0.7","P":"0"}',
    '{"CP":1,"A":"0.7","P":"-2150005"}',
    '{"CP":1,"A":"-0.7","P":"2150005"}',
    '{"CP":1,"A":"0.7","P":2150005}',
    '{"CP":1,"A":0.7,"P":"2150005"}',
    '{"CP":1,"A":"0.7","P":"2150005.5"}',
    '{"CP":1,"A":"0.7","P":"2150005"]',
    '{"CP":1,"A":"0.7","p":"2150005"}',
    '{"CP":1,"A":"0.7" ,"P":"2150005"}',
    '{"CP":1,"A":"0.7",\n"P":"2150005"}',
    '{"CP":1,"A":"07","P":"2150005"}',
    '{"CP":1,"A":"0.7","P":"2150005" }',
    # values only a wide book holds, and values beyond a .NET decimal
    '{"CP":1,"P":"2150005","A":"100000000000"}',
    '{"CP":1,"P":"2150005","A":"9300000.123456789012"}',
    '{"CP":1,"P":"2150005","A":"0.0000000000000000000000000001"}',
    '{"CP":1,"P":"2150005.0000000000000000000001","A":"0.7"}',
    '{"CP":1,"P":"79228162514264337593543950335","A":"0.7"}',
    '{"CP":3,"P":"2150010","A":"79228162514264337593543950335"}',
    '{"CP":1,"P":"2150005","A":"0.00000000000000000000000000001"}',
    '{"CP":1,"P":"79228162514264337593543950336","A":"0.7"}',
    '{"CP":1,"A":"100000000000","P":"2150005"}',
    '{"CP":1,"A":"1e-28","P":"2150005"}',
    '{"CP":1,"A":"1e-29","P":"2150005"}',
]
LEVELS_431 = [
    '{"A":"0.7","P":"2150005"}',
    '{"P":"2150005","A":"0.7"}',
    '{"A":"0.7","P":"2150005","CP":1}',
    '{"CP":1,"A":"0.7","P":"2150005"}',
    '{"A":"0.7","P":"0"}',
    '{"A":"0.7"}',
    '{"A":"0.7","A":"0.7","P":"2150005"}',
    '{"A":"9300000.123456789012","P":"2150005"}',
    '{"P":"2150005.0000000000000000000001","A":"0.7"}',
    '{"A":"79228162514264337593543950336","P":"2150005"}',
]


@pytest.mark.parametrize(("kind", "level"), [(432, lv) for lv in LEVELS_432] + [(431, lv) for lv in LEVELS_431])
def test_a_level_in_any_order_or_broken_part_way_reads_as_the_general_reading(
    make_book: Any, kind: int, level: str
) -> None:
    frame = (
        f'[{kind},{{"CS":101,"PS":"BTCTRY","AO":[{level},{level}],"BO":[{{"A":"1","P":"2149995"}}],'
        f'"channel":"obdiff","event":"BTCTRY","type":{kind}}}]'
    )
    assert _result_on_base_book(make_book, frame) == _result_on_base_book(make_book, frame.replace('{"', '{ "'))
