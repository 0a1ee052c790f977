"""What each book frame does to a book (docs/rules.md, "What a book frame does" and "Changes").

Every test runs twice: against the reference model (``[ref]``) and the native core (``[core]``).
The base book is BTCTRY at scales (0, 8) after a 431 with CS 100.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from helpers import BASE_ASKS, BASE_BIDS, PAIR, f431, f432, levels, raw, state
from obengine import Status

ASKS_UNITS = [(2150010, 50_000_000), (2150020, 125_000_000)]
BIDS_UNITS = [(2150000, 10_000_000), (2149990, 200_000_000)]



def test_new_book_is_empty_unsynced_with_the_given_scales(make_book: Callable[..., Any]) -> None:
    b = make_book("ETHUSDT", 1, 8)
    assert b.pair == "ETHUSDT"
    assert state(b) == ([], [], 1, 8, None, False, 0, False)


# --- 431 -------------------------------------------------------------------------------------


def test_431_fills_the_book_sets_seq_and_syncs(make_book: Callable[..., Any]) -> None:
    b = make_book()
    status = b.apply(f431(100, BASE_ASKS, BASE_BIDS))
    assert status == Status.APPLIED
    assert isinstance(status, Status)
    assert state(b) == (BIDS_UNITS, ASKS_UNITS, 0, 8, 100, True, 0, False)


def test_431_levels_may_come_in_any_order(make_book: Callable[..., Any]) -> None:
    b = make_book()
    b.apply(f431(7, BASE_ASKS[::-1], BASE_BIDS[::-1]))
    assert levels(b) == (BIDS_UNITS, ASKS_UNITS)


def test_431_replaces_every_previous_level(book: Any) -> None:
    assert book.apply(f431(101, [("3000000", "1")], [])) == Status.APPLIED
    assert state(book) == ([], [(3000000, 100_000_000)], 0, 8, 101, True, 0, False)


def test_431_without_ao_and_bo_empties_the_book(book: Any) -> None:
    assert book.apply(raw([431, {"CS": 5, "PS": PAIR}])) == Status.APPLIED
    assert state(book) == ([], [], 0, 8, 5, True, 0, False)


def test_431_mid_stream_is_the_new_base_even_with_a_lower_cs(book: Any) -> None:
    assert book.apply(f431(50, [("2150030", "1")], [("2150000", "1")])) == Status.APPLIED
    assert book.seq == 50 and book.synced
    assert book.apply(f432(51, [("2150040", "2", 1)])) == Status.APPLIED
    assert book.seq == 51
    assert book.apply(f432(101, [("2150050", "2", 1)])) == Status.GAP
    assert levels(book)[1] == [(2150030, 100_000_000), (2150040, 200_000_000)]


def test_431_duplicate_price_replaces_the_amount_and_counts_an_anomaly(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    b.apply(f431(1, [("100", "1"), ("100", "2")], []))
    assert state(b) == ([], [(100, 200_000_000)], 0, 8, 1, True, 1, False)


def test_431_zero_amount_inserts_nothing_and_counts_an_anomaly(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    b.apply(f431(1, [("100", "0"), ("101", "1")], [("99", "0.00")]))
    assert state(b) == ([], [(101, 100_000_000)], 0, 8, 1, True, 2, False)


def test_431_levels_in_order_then_out_of_it_give_the_book_of_their_changes_in_order(
    make_book: Callable[..., Any],
) -> None:
    # A snapshot's levels that come best first are written in place; from the first that does
    # not (worse than none, a price again, a zero amount) on, each is a change in order.
    b = make_book()
    asks = [("101", "1"), ("102", "1"), ("104", "1"), ("103", "2"), ("102", "3"), ("105", "0"), ("106", "1")]
    bids = [("99", "1"), ("97", "1"), ("98", "1"), ("96", "0"), ("95", "1")]
    assert b.apply(f431(1, asks, bids)) == Status.APPLIED
    one = 100_000_000
    assert state(b) == (
        [(99, one), (98, one), (97, one), (95, one)],
        [(101, one), (102, 3 * one), (103, 2 * one), (104, one), (106, one)],
        0, 8, 1, True, 3, False,
    )


def test_431_level_cp_is_an_unknown_key_and_skipped(make_book: Callable[..., Any]) -> None:
    b = make_book()
    frame = (
        '[431,{"CS":1,"PS":"BTCTRY","AO":[{"P":"100","A":"1","CP":"junk","CP":[1,{}]}],'
        '"BO":[{"CP":7,"P":"90","A":"2"}]}]'
    )
    assert b.apply(frame) == Status.APPLIED
    assert levels(b) == ([(90, 200_000_000)], [(100, 100_000_000)])


def test_anomalies_accumulate_and_survive_a_431(book: Any) -> None:
    book.apply(f432(101, [("2150015", "1", 0)]))  # CP 0 for a missing price
    book.apply(f432(102, [("2150099", None, 3)]))  # CP 3 for a missing price
    assert book.anomalies == 2
    book.apply(f431(200, [("100", "1"), ("100", "1")], []))
    assert book.anomalies == 3


# --- sequence --------------------------------------------------------------------------------


def test_432_before_the_first_431_is_a_gap_and_changes_nothing(
    make_book: Callable[..., Any],
) -> None:
    b = make_book()
    assert b.apply(f432(1, [("100", "1", 1)])) == Status.GAP
    assert state(b) == ([], [], 0, 8, None, False, 0, False)


def test_432_with_the_next_cs_is_applied(book: Any) -> None:
    assert book.apply(f432(101, [("2150010", "0.7", 0)], [("2149995", "3", 1)])) == Status.APPLIED
    assert state(book) == (
        [(2150000, 10_000_000), (2149995, 300_000_000), (2149990, 200_000_000)],
        [(2150010, 70_000_000), (2150020, 125_000_000)],
        0,
        8,
        101,
        True,
        0,
        False,
    )


def test_cs_as_a_string_is_accepted(book: Any) -> None:
    assert book.apply(f432("101", [("2150010", "0.7", 0)])) == Status.APPLIED
    assert book.seq == 101


@pytest.mark.parametrize("cs", [100, 99, 0, -5, 100 - 2**31])
def test_432_with_the_same_or_an_older_cs_is_stale_and_changes_nothing(
    book: Any, cs: int
) -> None:
    before = state(book)
    assert book.apply(f432(cs, [("2150010", "9", 0)])) == Status.STALE
    assert state(book) == before


def test_432_skipping_a_cs_is_a_gap_and_unsyncs_until_the_next_431(book: Any) -> None:
    before = state(book)
    assert book.apply(f432(102, [("2150010", "9", 0)])) == Status.GAP
    assert state(book) == (*before[:5], False, 0, False)
    unsynced = state(book)
    # while unsynced every 432 is a gap, even the one that was missing, and nothing changes
    for cs in (101, 103, 100, 102):
        assert book.apply(f432(cs, [("2150010", "9", 0)])) == Status.GAP
        assert state(book) == unsynced
    assert book.apply(f431(500, BASE_ASKS, BASE_BIDS)) == Status.APPLIED
    assert book.synced and book.seq == 500
    assert book.apply(f432(501, [("2150010", "9", 0)])) == Status.APPLIED


def test_cs_wraps_from_int32_max_to_int32_min(make_book: Callable[..., Any]) -> None:
    b = make_book()
    b.apply(f431(2**31 - 1, BASE_ASKS, BASE_BIDS))
    assert b.apply(f432(-(2**31), [("2150010", "0.7", 0)])) == Status.APPLIED
    assert b.seq == -(2**31)
    assert b.apply(f432(-(2**31) + 1, [("2150010", "0.8", 0)])) == Status.APPLIED
    assert b.apply(f432(2**31 - 1, [("2150010", "0.9", 0)])) == Status.STALE
    assert levels(b)[1][0] == (2150010, 80_000_000)


def test_negative_cs_from_a_null_ps_snapshot(make_book: Callable[..., Any]) -> None:
    """The first 431 reported in broker-api-docs#203: PS null, pair in event, CS negative."""
    b = make_book()
    snapshot = raw(
        [
            431,
            {
                "CS": -1748790363,
                "PS": None,
                "AO": [{"A": "0.5", "P": "2150010"}],
                "BO": [{"A": "0.1", "P": "2150000"}],
                "channel": "obdiff",
                "event": PAIR,
                "type": 431,
            },
        ]
    )
    assert b.apply(snapshot) == Status.APPLIED
    assert b.seq == -1748790363
    assert b.apply(f432(-1748790362, [("2150010", "0.7", 0)])) == Status.APPLIED
    assert b.seq == -1748790362
    assert b.apply(f432(-1748790363, [("2150010", "0.1", 0)])) == Status.STALE
    assert b.apply(f432(-1748790360, [("2150010", "0.1", 0)])) == Status.GAP


def test_cs_minus_one_is_followed_by_zero(make_book: Callable[..., Any]) -> None:
    b = make_book()
    b.apply(f431(-1, BASE_ASKS, BASE_BIDS))
    assert b.apply(f432(0, [("2150010", "0.7", 0)])) == Status.APPLIED
    assert b.seq == 0


@pytest.mark.parametrize(
    ("cs", "expected"),
    [
        (2**31, Status.STALE),  # (CS - seq) mod 2**32 = 2**31 reads as -2**31
        (2**31 - 1, Status.GAP),
        (-1, Status.STALE),
        (2**32 - 1, Status.STALE),  # same as -1 modulo 2**32
        (2**32 + 1, Status.APPLIED),  # same as +1 modulo 2**32
        (-(2**32) + 1, Status.APPLIED),
    ],
)
def test_cs_is_compared_as_a_32_bit_serial_number(
    make_book: Callable[..., Any], cs: int, expected: Status
) -> None:
    b = make_book()
    b.apply(f431(0, BASE_ASKS, BASE_BIDS))
    assert b.apply(f432(cs, [("2150010", "0.7", 0)])) == expected
    assert b.seq == (cs if expected == Status.APPLIED else 0)


def test_cs_may_be_any_int64(make_book: Callable[..., Any]) -> None:
    b = make_book()
    b.apply(f431(2**62, BASE_ASKS, BASE_BIDS))
    assert b.apply(f432(2**62 + 1, [("2150010", "0.7", 0)])) == Status.APPLIED
    assert b.seq == 2**62 + 1
    assert b.apply(f431(2**63 - 1, BASE_ASKS, BASE_BIDS)) == Status.APPLIED
    assert b.seq == 2**63 - 1
    assert b.apply(f432(2**63 - 1, [("2150010", "0.7", 0)])) == Status.STALE


def test_a_pair_name_of_64_bytes_is_accepted(make_book: Callable[..., Any]) -> None:
    pair = "Ç" * 32  # 64 bytes of UTF-8
    b = make_book(pair)
    assert b.apply(f431(1, BASE_ASKS, BASE_BIDS, pair=pair)) == Status.APPLIED
    assert b.apply(raw([432, {"CS": 2, "PS": None, "event": pair}])) == Status.APPLIED


# --- crossed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bid", ["2150010", "2150011"])
def test_432_crossing_the_book_stays_applied_but_unsyncs(book: Any, bid: str) -> None:
    assert book.apply(f432(101, [], [(bid, "1", 1)])) == Status.CROSSED
    bids, asks = levels(book)
    assert bids[0] == (int(bid), 100_000_000)
    assert asks == ASKS_UNITS
    assert book.seq == 101 and not book.synced
    assert book.apply(f432(102, [("2150010", None, 3)])) == Status.GAP
    assert book.apply(f431(300, BASE_ASKS, BASE_BIDS)) == Status.APPLIED
    assert book.synced


def test_crossed_431_is_applied_with_its_seq_but_unsynced(make_book: Callable[..., Any]) -> None:
    b = make_book()
    assert b.apply(f431(9, [("100", "1")], [("100", "1")])) == Status.CROSSED
    assert state(b) == ([(100, 100_000_000)], [(100, 100_000_000)], 0, 8, 9, False, 0, False)
    assert b.apply(f432(10, [("101", "1", 1)])) == Status.GAP


def test_crossing_is_judged_after_the_whole_frame(book: Any) -> None:
    # the bid at 2150015 crosses the ask at 2150010, which the AO entries delete first
    frame = f432(101, [("2150010", None, 3)], [("2150015", "1", 1)])
    assert book.apply(frame) == Status.APPLIED
    assert book.synced


def test_a_book_is_crossed_only_with_both_sides_non_empty(make_book: Callable[..., Any]) -> None:
    b = make_book()
    assert b.apply(f431(1, [("100", "1")], [])) == Status.APPLIED
    assert b.apply(f431(2, [], [("500", "1")])) == Status.APPLIED
    assert b.synced
    assert b.apply(f432(3, [("400", "1", 1)], [])) == Status.CROSSED
    assert not b.synced


# --- changes ---------------------------------------------------------------------------------

# existing and missing prices per side of the base book
SIDES = {
    "asks": {"existing": ("2150010", 50_000_000), "missing": "2150015"},
    "bids": {"existing": ("2150000", 10_000_000), "missing": "2149995"},
}


@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize(
    ("target", "amount", "cp", "effect", "anomaly"),
    [
        ("existing", "0.7", 0, "replaced", 0),
        ("missing", "0.7", 0, "inserted", 1),
        ("missing", "0.7", 1, "inserted", 0),
        ("existing", "0.7", 1, "replaced", 1),
        ("existing", "0", 0, "deleted", 1),
        ("missing", "0", 0, "nothing", 1),
        ("existing", "0", 1, "deleted", 1),
        ("missing", "0", 1, "nothing", 1),
        ("existing", "0.00000000", 1, "deleted", 1),
        ("existing", None, 3, "deleted", 0),
        ("existing", "0.5", 3, "deleted", 0),
        ("existing", "123", 3, "deleted", 0),
        ("existing", "0", 3, "deleted", 0),
        ("missing", None, 3, "nothing", 1),
        ("missing", "0.7", 3, "nothing", 1),
    ],
)
def test_each_change_kind_does_what_the_table_says(
    book: Any,
    side: str,
    target: str,
    amount: str | None,
    cp: int,
    effect: str,
    anomaly: int,
) -> None:
    existing_price, existing_units = SIDES[side]["existing"]
    price = existing_price if target == "existing" else SIDES[side]["missing"]
    entry = [(price, amount, cp)]
    frame = f432(101, entry, []) if side == "asks" else f432(101, [], entry)
    assert book.apply(frame) == Status.APPLIED

    expected = {p: a for p, a in (ASKS_UNITS if side == "asks" else BIDS_UNITS)}
    if effect in ("replaced", "inserted"):
        assert amount is not None
        expected[int(price)] = int(Decimal(amount) * 10**8)
    elif effect == "deleted":
        del expected[int(price)]
    expected_levels = sorted(expected.items(), reverse=(side == "bids"))
    bids, asks = levels(book)
    assert (asks if side == "asks" else bids) == expected_levels
    assert (bids if side == "asks" else asks) == (BIDS_UNITS if side == "asks" else ASKS_UNITS)
    assert book.anomalies == anomaly
    assert book.seq == 101 and book.synced


def test_entries_apply_in_array_order(book: Any) -> None:
    assert book.apply(f432(101, [("2150015", "1", 1), ("2150015", None, 3)])) == Status.APPLIED
    assert levels(book)[1] == ASKS_UNITS and book.anomalies == 0
    assert book.apply(f432(102, [("2150015", None, 3), ("2150015", "1", 1)])) == Status.APPLIED
    assert levels(book)[1] == [ASKS_UNITS[0], (2150015, 100_000_000), ASKS_UNITS[1]]
    assert book.anomalies == 1


def test_rapid_insert_delete_churn_at_one_price(book: Any) -> None:
    """broker-api-docs#510: CP 1 / CP 3 churn at the same price and amount."""
    churn = [("2150015", "0.5", 1), ("2150015", "0.5", 3)] * 5 + [("2150015", "0.5", 1)]
    assert book.apply(f432(101, churn)) == Status.APPLIED
    assert levels(book)[1] == [ASKS_UNITS[0], (2150015, 50_000_000), ASKS_UNITS[1]]
    assert book.anomalies == 0


def test_a_side_grows_past_the_100_level_window(make_book: Callable[..., Any]) -> None:
    b = make_book()
    asks = [(str(1000 + i), "1") for i in range(150)]
    bids = [(str(999 - i), "2") for i in range(150)]
    assert b.apply(f431(1, asks, bids)) == Status.APPLIED
    assert b.apply(f432(2, [("5000", "1", 1)], [("1", "1", 1)])) == Status.APPLIED
    bids_units, asks_units = levels(b)
    assert len(asks_units) == 151 and len(bids_units) == 151
    assert asks_units[0] == (1000, 100_000_000) and asks_units[-1] == (5000, 100_000_000)
    assert bids_units[0] == (999, 200_000_000) and bids_units[-1] == (1, 100_000_000)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 16, 17, 18, 40])
def test_a_change_lands_in_its_place_wherever_that_is_in_the_side(make_book: Callable[..., Any], n: int) -> None:
    """An update, an insert and a delete at every place a price can take in a side of n levels:
    at each level, in each gap, before the best and past the worst. (The core finds a price by
    counting among the first 8 levels and the last 8 and bisecting between them.)"""
    ask_prices = [10_000 + 10 * i for i in range(n)]  # best first
    bid_prices = [9_990 - 10 * i for i in range(n)]
    snapshot = f431(1, [(str(p), "1") for p in ask_prices], [(str(p), "1") for p in bid_prices])
    for side, prices, step in (("asks", ask_prices, 10), ("bids", bid_prices, -10)):
        places = prices + [p + step // 2 for p in prices] + [prices[0] - step // 2]
        for price in places:
            for cp, amount in ((0, "0.3"), (1, "0.3"), (3, None)):
                b = make_book()
                assert b.apply(snapshot) == Status.APPLIED
                entry = [(str(price), amount, cp)]
                frame = f432(2, entry, []) if side == "asks" else f432(2, [], entry)
                assert b.apply(frame) == Status.APPLIED
                expected = dict.fromkeys(prices, 100_000_000)
                if cp == 3:
                    expected.pop(price, None)
                else:
                    expected[price] = 30_000_000
                bids, asks = levels(b)
                assert (asks if side == "asks" else bids) == sorted(expected.items(), reverse=side == "bids"), (
                    side, price, cp)


# --- frames that are not book frames ---------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        '[991,{"type":991,"current":"5.1.0","min":"2.3.0"}]',
        '[100,{"ok":true,"message":"join|obdiff:BTCTRY"}]',
        '[421,[{"D":"1","I":"x","A":"0.1","P":"2150000","PS":"BTCTRY","S":0}]]',
        '[402,{"PS":"ETHTRY","CS":"not a number","AO":{}}]',
        '[151,{"type":151,"channel":"obdiff","event":"BTCTRY","join":true}]',
        '[433,{"CS":1,"PS":"BTCTRY","AO":[{"P":"-1"}]}]',
        "[430]",
        "[991]",
        "[0]",
        '[-1,"x",null,true,false,[],{}]',
        ' \n[ 201 , { } ] \t',
    ],
)
@pytest.mark.parametrize("synced", [False, True], ids=["fresh", "synced"])
def test_other_frame_types_are_ignored(
    make_book: Callable[..., Any], frame: str, synced: bool
) -> None:
    b = make_book()
    if synced:
        b.apply(f431(100, BASE_ASKS, BASE_BIDS))
    before = state(b)
    status = b.apply(frame)
    assert status == Status.IGNORED and isinstance(status, Status)
    assert state(b) == before


# --- inputs ----------------------------------------------------------------------------------

INPUTS: dict[str, Callable[[str], Any]] = {
    "str": lambda s: s,
    "bytes": lambda s: s.encode(),
    "bytearray": lambda s: bytearray(s.encode()),
    "memoryview": lambda s: memoryview(s.encode()),
    # a view into a bigger buffer whose neighbouring bytes would change the JSON if read
    "memoryview-slice": lambda s: memoryview(b"[1," + s.encode() + b",1]")[3:-3],
    "memoryview-bytearray": lambda s: memoryview(bytearray(s.encode())),
}


@pytest.mark.parametrize("kind", INPUTS)
def test_frames_may_be_str_bytes_bytearray_or_memoryview(
    make_book: Callable[..., Any], kind: str
) -> None:
    convert = INPUTS[kind]
    b = make_book()
    snapshot = f431(100, BASE_ASKS, BASE_BIDS).replace('"type"', '"note":"çğış €😀","type"')
    assert b.apply(convert(snapshot)) == Status.APPLIED
    assert b.apply(convert(f432(101, [("2150010", "0.7", 0)]))) == Status.APPLIED
    assert b.apply(convert("[991]")) == Status.IGNORED
    assert b.apply(convert(f432(101, [("2150010", "0.9", 0)]))) == Status.STALE
    assert state(b) == (BIDS_UNITS, [(2150010, 70_000_000), ASKS_UNITS[1]], 0, 8, 101, True, 0, False)
