"""Differential tests: random streams through the native core and the reference model, compared
after every frame (status or FrameError, levels, scales, seq, synced, anomalies).

A stream comes from a model of the exchange (``Market``: the true book of a pair, changed by
consistent change sets: updates, inserts, deletes, sometimes anomalous or crossing ones,
snapshots, resubscriptions with a new CS) and then goes through a faulty line: frames are
dropped, duplicated, delayed (reordered), corrupted (truncated, bad values, missing or duplicate
keys), interleaved with frames of other types and other pairs, and spelled in every JSON way
(whitespace, key order, numbers as strings or JSON numbers, exponents, trailing zeros, unknown
keys with nested values, escaped keys, str/bytes/bytearray/memoryview). Values sometimes carry
more decimal places than the book (rescales), up to 28 (a wide book) or 29 (an error), and some
magnitudes (meme coins: hundreds of millions of tokens at 12 places, prices beyond int64) are big
enough that a value or a rescale does not fit int64, so that streams cross the switch to a wide
book (docs/rules.md, "Wide books"); ``state()`` includes ``wide``, so the twins must agree on when
it happens.
"""
from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import obengine
from helpers import as_bytes, block_outcome, outcome, record_block, set_state, state
from obengine import Status
from reference import RefBook, RefBookSet, decimal_places

MAX_FRAMES = 24
# OBENGINE_DIFF_EXAMPLES=5000 for a longer hunt; the default keeps the suite well under a minute
SETTINGS = settings(
    max_examples=int(os.environ.get("OBENGINE_DIFF_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Draw = Callable[[st.SearchStrategy[Any]], Any]


class Raw(str):
    """JSON text to put in a frame as is."""


# ---------------------------------------------------------------------------------------------
# The exchange
# ---------------------------------------------------------------------------------------------


def wrap32(cs: int) -> int:
    return (cs + 2**31) % 2**32 - 2**31


@dataclass
class Market:
    """The true book of one pair, as the exchange holds it."""

    pair: str
    cs: int
    tick: Decimal  # price step at the pair's usual scale
    lot: Decimal  # amount step at the pair's usual scale
    mid: Decimal
    meme: bool = False  # sometimes trades huge amounts (beyond int64 in units)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    bids: dict[Decimal, Decimal] = field(default_factory=dict)

    def side(self, name: str) -> dict[Decimal, Decimal]:
        return self.asks if name == "AO" else self.bids

    def apply(self, name: str, price: Decimal, amount: Decimal | None, cp: int) -> None:
        levels = self.side(name)
        if cp == 3 or amount == 0:
            levels.pop(price, None)
        else:
            assert amount is not None
            levels[price] = amount


Pairs = list[tuple[str, Any]]  # a JSON object as ordered (key, value) pairs


@dataclass
class Frame:
    """A book frame before it is spelled: payload and entries as ordered (key, value) pairs,
    so that keys can be left out, repeated or given raw (bad) values."""

    kind: int
    pair: str
    payload: Pairs


def book_frame(kind: int, pair: str, cs: int, asks: list[Pairs], bids: list[Pairs]) -> Frame:
    return Frame(kind, pair, [("CS", cs), ("PS", pair), ("AO", asks), ("BO", bids)])


def finer(draw: Draw, value: Decimal, step: Decimal, fine: bool) -> Decimal:
    """value, or (in a frame allowed finer values, sometimes) value plus a digit at more places:
    a few more than the step's, or 12 to 28 places (wide), capped so that m keeps to 28 digits,
    or rarely 29 places (beyond a .NET decimal: a FrameError for any frame)."""
    if not fine or draw(st.integers(0, 2)):
        return value
    extra = draw(st.sampled_from([1, 2, 3] * 3 + [12, 18, 19, 24, 28, 29]))
    if extra <= 3:
        places = decimal_places(step) + extra
    elif extra == 29:
        places = 29
    else:
        places = max(decimal_places(step) + 1, min(extra, 28 - len(str(int(value)))))
    return value + Decimal(draw(st.integers(1, 9))).scaleb(-places)


def draw_price(draw: Draw, m: Market, side: str, fine: bool = False) -> Decimal:
    """A price on the right side of the mid; in a fine frame, sometimes with more places."""
    k = draw(st.integers(1, 12))
    price = m.mid + k * m.tick if side == "AO" else m.mid - k * m.tick
    return finer(draw, price, m.tick, fine)


#: Lots per amount: mostly ordinary, sometimes near int64 at the market's scale (2**62 lots: a
#: rescale by one more place overflows; 2**62 // 100: by three), and in a meme market sometimes
#: huge: 9.3 million tokens at 12 places is beyond int64 in units; 2**80 lots at any scale.
LOTS = [1, 7, 50, 1234, 10**4] * 3 + [10**10, 2**62, 2**62 // 100]
HUGE_LOTS = [9_300_000 * 10**12, 10**20, 2**80]


def draw_amount(draw: Draw, m: Market, fine: bool = False) -> Decimal:
    huge = m.meme and draw(st.integers(0, 14)) == 0
    amount = m.lot * draw(st.sampled_from(HUGE_LOTS if huge else LOTS))
    return finer(draw, amount, m.lot, fine)


def entry(price: Decimal, amount: Decimal | None, cp: int | None) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [("P", price)]
    if amount is not None:
        pairs.append(("A", amount))
    if cp is not None:
        pairs.append(("CP", cp))
    return pairs


def new_market(draw: Draw, pair: str) -> Market:
    price_places = draw(st.integers(0, 4) | st.sampled_from([8, 12]))  # [8, 12]: meme coins
    amount_places = draw(st.integers(0, 8) | st.just(12))
    tick = Decimal(1).scaleb(-price_places)
    mid_units = draw(
        st.sampled_from([2_150_000, 1000, 37, 10**12, 2_150_000, 10**15] * 2 + [10**20, 4 * 10**18])
    )  # 4 * 10**18 ticks: held prices overflow int64 on the first finer price
    cs = draw(
        st.sampled_from([100, 2**31 - 3, -1748790363, -1, 0]) | st.integers(-(2**31), 2**31 - 1)
    )
    m = Market(pair, cs, tick, Decimal(1).scaleb(-amount_places), mid_units * tick)
    m.meme = draw(st.integers(0, 2)) == 0
    refill(draw, m)
    return m


def refill(draw: Draw, m: Market) -> None:
    m.asks.clear()
    m.bids.clear()
    fine = draw(st.integers(0, 4)) == 0
    for name in ("AO", "BO"):
        for _ in range(draw(st.integers(0, 8))):
            m.side(name)[draw_price(draw, m, name, fine)] = draw_amount(draw, m, fine)


def snapshot(draw: Draw, m: Market) -> Frame:
    if draw(st.integers(0, 5)) == 0:  # resubscribed: a new CS
        m.cs = draw(st.integers(-(2**31), 2**31 - 1))
    else:
        m.cs = wrap32(m.cs + 1)
    if draw(st.integers(0, 3)) == 0:
        refill(draw, m)
    asks = [entry(p, a, None) for p, a in m.asks.items()]
    bids = [entry(p, a, None) for p, a in m.bids.items()]
    if draw(st.integers(0, 9)) == 0:  # an anomalous snapshot: a repeated price or a zero amount
        side = draw(st.sampled_from([asks, bids]))
        side.append(entry(draw_price(draw, m, "AO" if side is asks else "BO"), Decimal(0), None))
        if side[:-1]:
            side.append(list(side[0]))
    return book_frame(431, m.pair, m.cs, asks, bids)


def change_set(draw: Draw, m: Market, crossing: bool = False) -> Frame:
    entries: dict[str, list[Pairs]] = {"AO": [], "BO": []}
    fine = draw(st.integers(0, 5)) == 0
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(["AO", "BO"]))
        levels = m.side(name)
        op = draw(st.sampled_from(["update", "insert", "delete", "update", "anomaly"]))
        if op in ("update", "delete") and not levels:
            op = "insert"
        if op == "update":
            price = draw(st.sampled_from(sorted(levels)))
            amount: Decimal | None = draw_amount(draw, m, fine)
            cp = 0
        elif op == "insert":
            price, amount, cp = draw_price(draw, m, name, fine), draw_amount(draw, m, fine), 1
        elif op == "delete":
            price = draw(st.sampled_from(sorted(levels)))
            amount = draw(st.sampled_from([None, levels[price], Decimal(0)]))
            cp = 3
        else:  # CP 0 for a missing price, CP 1 for an existing one, CP 3 missing, amount 0
            price = draw_price(draw, m, name, fine)
            if levels and draw(st.booleans()):
                price = draw(st.sampled_from(sorted(levels)))
            cp = draw(st.sampled_from([0, 1, 3]))
            amount = draw(st.sampled_from([draw_amount(draw, m, fine), Decimal(0), None]))
            if amount is None and cp != 3:
                amount = Decimal(0)
        m.apply(name, price, amount, cp)
        entries[name].append(entry(price, amount, cp))
    if crossing and m.asks and m.bids:
        # a bid at or above the best ask (or an ask at or below the best bid)
        if draw(st.booleans()):
            price = min(m.asks) + draw(st.sampled_from([0, 1])) * m.tick
            name = "BO"
        else:
            price = max(m.bids) - draw(st.sampled_from([0, 1])) * m.tick
            name = "AO"
        if price > 0:
            amount = draw_amount(draw, m)
            m.apply(name, price, amount, 1)
            entries[name].append(entry(price, amount, 1))
    m.cs = wrap32(m.cs + 1)
    return book_frame(432, m.pair, m.cs, entries["AO"], entries["BO"])


# ---------------------------------------------------------------------------------------------
# The faulty line: corruptions and other frames
# ---------------------------------------------------------------------------------------------

BAD_VALUES = {
    "P": ['"0"', '"-1"', "0", '"abc"', "null", '""', '"1e-29"', '"1e29"', '" 1"', "true", "[1]",
          '"79228162514264337593543950336"', "1.00000000000000000000000000001"],
    "A": ['"-1"', "-0.5", '"x"', "null", '"1e-29"', '"79228162514264337593543950336"', "{}",
          "7.9228162514264337593543950336"],
    "CP": ["2", "4", '"1.5"', "null", '"x"', "-1", "[0]"],
    "CS": ['"x"', "1.5", "null", "true", '"1e19"', "{}"],
    "PS": ["5", "true", "[]", '""', '"' + "X" * 65 + '"'],
    "AO": ["{}", '"x"', "null", "1", "[1]", "[[]]"],
    "BO": ["{}", "null", '["x"]'],
}


def corrupt(draw: Draw, frame: Frame) -> Frame:
    """A malformed copy of a book frame: a bad value, a missing or a repeated known key."""
    payload = [(k, [list(e) for e in v] if k in ("AO", "BO") else v) for k, v in frame.payload]
    sides = [v for k, v in payload if k in ("AO", "BO") and v]
    how = draw(st.sampled_from(["bad", "missing", "duplicate"]))
    if sides and draw(st.booleans()):
        entries = draw(st.sampled_from(sides))
        pairs = entries[draw(st.integers(0, len(entries) - 1))]
        index = draw(st.integers(0, len(pairs) - 1))
        key, value = pairs[index]
        if how == "bad":
            pairs[index] = (key, Raw(draw(st.sampled_from(BAD_VALUES[key]))))
        elif how == "missing":
            del pairs[index]
            if key == "CP" and frame.kind == 431:
                pairs.append(("CP", Raw('"junk"')))  # unknown in a 431: still valid
        else:
            pairs.insert(draw(st.integers(0, len(pairs))), (key, value))
    else:
        index = draw(st.integers(0, len(payload) - 1))
        key, value = payload[index]
        if how == "bad" and key in BAD_VALUES:
            payload[index] = (key, Raw(draw(st.sampled_from(BAD_VALUES[key]))))
        elif how == "missing" or how == "bad":
            del payload[index]
        else:
            payload.insert(draw(st.integers(0, len(payload))), (key, value))
    return Frame(frame.kind, frame.pair, payload)


def with_pair_keys(draw: Draw, frame: Frame) -> Frame:
    """The frame naming its pair in one of the ways the exchange does (PS, PS null + event...)."""
    keys = draw(
        st.sampled_from(
            [
                [("PS", frame.pair)],
                [("PS", frame.pair), ("event", frame.pair)],
                [("PS", None), ("event", frame.pair)],
                [("event", frame.pair)],
                [("event", frame.pair), ("PS", None)],
                [("PS", frame.pair), ("event", None)],
                [("PS", frame.pair), ("event", "OTHERPAIR")],
            ]
        )
    )
    payload: Pairs = []
    for key, value in frame.payload:
        if key == "PS":
            payload += keys
        else:
            payload.append((key, value))
    return Frame(frame.kind, frame.pair, payload)


OTHER_FRAMES = [
    '[991,{"type":991,"current":"5.1.0","min":"2.3.0"}]',
    '[100,{"ok":true,"message":"join|obdiff:BTCTRY"}]',
    '[421,[{"D":"1","I":"100","A":"0.1","P":"2150000","PS":"BTCTRY","S":0}]]',
    '[402,{"PS":"BTCTRY","CS":"x","AO":{}}]',
    '[433,{"CS":1,"PS":"BTCTRY"}]',
    "[0]",
    "[ 151 , { } ]",
]

GARBAGE = [
    "", "[", "]", "{}", "[431]", "[432,{}]", '["431",{}]', '[432,{"CS":1,"PS":"BTCTRY"', "null"
]


# ---------------------------------------------------------------------------------------------
# Spelling a frame
# ---------------------------------------------------------------------------------------------

UNKNOWN_KEYS = ["channel", "type", "x", "meta", "cs", "Ps", "ao", "\\u0078", "p", "a"]
JUNK_SCALARS = [
    "1", "-0", "1e999", "-2.5E-400", "123456789012345678901234567890", '"x"', '"\\"AO\\":[{"',
    '"\\u0043S"', '"çğ😀"', '"\\\\"', '""', "true", "false", "null", '"\\ud83d\\ude00"',
]
KNOWN = {"CS", "PS", "event", "AO", "BO", "P", "A", "CP"}


class Speller:
    """Spells frames as JSON text: canonical (like the exchange) when rng is None, else with
    random whitespace, key order, number spellings, unknown keys and escapes."""

    def __init__(self, rng: random.Random | None) -> None:
        self.rng = rng

    def ws(self) -> str:
        if self.rng is None or self.rng.random() < 0.6:
            return ""
        return "".join(self.rng.choice(" \t\n\r") for _ in range(self.rng.randint(1, 3)))

    def key(self, name: str) -> str:
        if self.rng is not None and self.rng.random() < 0.1:
            i = self.rng.randrange(len(name))
            return '"' + name[:i] + f"\\u{ord(name[i]):04x}" + name[i + 1 :] + '"'
        return json.dumps(name)

    def number(self, value: Decimal | int, quoted: bool) -> str:
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
        rng = self.rng
        if rng is not None:
            quoted = rng.random() < 0.5
            style = rng.randrange(4)
            sign, digits, exponent = Decimal(value).as_tuple()
            assert isinstance(exponent, int)
            coefficient = "".join(map(str, digits)).lstrip("0") or "0"
            if style == 1:  # trailing zeros
                text += ("" if "." in text else ".") + "0" * rng.randint(1, 4)
            elif style == 2 and coefficient != "0":  # integer coefficient and exponent
                e = rng.choice("eE")
                plus = "+" if exponent >= 0 and rng.random() < 0.5 else ""
                text = f"{'-' if sign else ''}{coefficient}{e}{plus}{exponent}"
            elif style == 3 and coefficient != "0":  # scientific: d.ddd
                e = rng.choice("eE")
                point = coefficient
                if len(coefficient) > 1:
                    point = f"{coefficient[0]}.{coefficient[1:]}"
                text = f"{'-' if sign else ''}{point}{e}{exponent + len(coefficient) - 1}"
        return f'"{text}"' if quoted else text

    def value(self, value: Any, quoted: bool = True) -> str:
        if isinstance(value, Raw):
            return str(value)
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (Decimal, int)):
            return self.number(value, quoted)
        if isinstance(value, str):
            return json.dumps(value, ensure_ascii=False)
        if isinstance(value, list):
            return self.array([self.obj(pairs) for pairs in value])
        raise TypeError(value)

    def array(self, items: list[str]) -> str:
        sep = self.ws() + "," + self.ws()
        return "[" + self.ws() + sep.join(items) + self.ws() + "]"

    def obj(self, pairs: Pairs) -> str:
        items = [(k, self.value(v, quoted=k in ("P", "A"))) for k, v in pairs]
        if self.rng is not None:
            for _ in range(self.rng.choice([0, 0, 0, 1, 2])):
                items.append((self.rng.choice(UNKNOWN_KEYS), self.junk(2)))
            self.rng.shuffle(items)
        sep = self.ws() + "," + self.ws()
        body = sep.join(f"{self.key(k)}{self.ws()}:{self.ws()}{v}" for k, v in items)
        return "{" + self.ws() + body + self.ws() + "}"

    def junk(self, depth: int) -> str:
        assert self.rng is not None
        kind = self.rng.randrange(4) if depth else 0
        if kind <= 1:
            return self.rng.choice(JUNK_SCALARS)
        if kind == 2:
            return "[" + ",".join(self.junk(depth - 1) for _ in range(self.rng.randint(0, 3))) + "]"
        names = sorted(KNOWN) + UNKNOWN_KEYS  # known names are unknown inside skipped values
        keys = [self.rng.choice(names) for _ in range(self.rng.randint(0, 3))]
        return "{" + ",".join(f'"{k}":{self.junk(depth - 1)}' for k in keys) + "}"

    def frame(self, frame: Frame) -> str:
        pairs = list(frame.payload)
        if self.rng is None:  # the exchange's own shape
            pairs += [("channel", "obdiff"), ("type", frame.kind)]
            if not any(k == "event" for k, _ in pairs):
                pairs.append(("event", frame.pair))
        ws = self.ws
        return "[" + ws() + str(frame.kind) + ws() + "," + ws() + self.obj(pairs) + ws() + "]"


def encode(text: str, rng: random.Random | None) -> Any:
    if rng is None:
        return text
    kind = rng.randrange(4)
    data = text.encode("utf-8")
    return [text, data, bytearray(data), memoryview(data)][kind]


def spell(draw: Draw, frame: Frame) -> Any:
    """The frame as it arrives: canonical, or spelled at random from a drawn seed."""
    seed = draw(st.none() | st.integers(0, 2**32 - 1))
    rng = None if seed is None else random.Random(seed)
    text = Speller(rng).frame(frame)
    return encode(text, rng)


# ---------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------

ACTIONS = ["diff"] * 12 + ["snapshot"] * 3 + ["cross", "other", "garbage", "foreign", "replay"]
DELIVERY = ["deliver"] * 10 + ["drop", "duplicate", "duplicate", "delay", "corrupt", "truncate"]


@st.composite
def streams(draw: Draw, pairs: tuple[str, ...]) -> tuple[dict[str, Market], list[Any]]:
    """Markets for the pairs and a list of frames as they arrive over a faulty line."""
    with localcontext() as context:
        context.prec = 80  # exact sums of big prices and 29-place fractions
        return _stream(draw, pairs)


def _stream(draw: Draw, pairs: tuple[str, ...]) -> tuple[dict[str, Market], list[Any]]:
    markets = {pair: new_market(draw, pair) for pair in pairs}
    foreign = new_market(draw, "FOREIGNPAIR")
    line: list[Any] = []
    for pair in pairs:  # mostly start with each pair's snapshot
        if draw(st.integers(0, 9)):
            line.append(spell(draw, snapshot(draw, markets[pair])))
    delayed: list[Any] = []
    trouble: set[str] = set()  # pairs whose last frame was lost, mangled or crossed
    for _ in range(draw(st.integers(1, MAX_FRAMES))):
        m = markets[draw(st.sampled_from(pairs))]
        action = draw(st.sampled_from(ACTIONS))
        if m.pair in trouble and action == "diff" and draw(st.booleans()):
            action = "snapshot"  # the client resubscribes after trouble
        trouble.discard(m.pair)
        if action == "other":
            line.append(draw(st.sampled_from(OTHER_FRAMES)))
            continue
        if action == "garbage":
            line.append(draw(st.sampled_from(GARBAGE)))
            continue
        if action == "foreign":
            line.append(spell(draw, change_set(draw, foreign)))
            continue
        if action == "replay":  # an old frame again: stale, if it is a 432
            if line:
                line.append(draw(st.sampled_from(line)))
            continue
        if action == "snapshot":
            frame = snapshot(draw, m)
        else:
            frame = change_set(draw, m, crossing=action == "cross")
        if draw(st.integers(0, 3)) == 0:
            frame = with_pair_keys(draw, frame)
        delivery = draw(st.sampled_from(DELIVERY))
        if delivery in ("drop", "corrupt", "truncate", "delay") or action == "cross":
            trouble.add(m.pair)
        if delivery == "drop":
            continue
        if delivery == "corrupt":
            line.append(spell(draw, corrupt(draw, frame)))
            if draw(st.booleans()):
                line.append(spell(draw, frame))
            continue
        text = spell(draw, frame)
        if delivery == "truncate":
            data = bytes(text) if not isinstance(text, str) else text.encode()
            line.append(data[: draw(st.integers(0, len(data) - 1))])
            continue
        if delivery == "delay":
            delayed.append(text)
            continue
        line.append(text)
        if delivery == "duplicate":
            line.append(spell(draw, frame))
        line.extend(delayed)
        delayed.clear()
    line.extend(delayed)
    return markets, line


def describe(frame: Any) -> str:
    return repr(bytes(frame) if isinstance(frame, (bytearray, memoryview)) else frame)


@SETTINGS
@given(st.data())
def test_native_book_matches_the_model_after_every_frame(data: st.DataObject) -> None:
    markets, line = data.draw(streams(("BTCTRY",)), label="stream")
    market = markets["BTCTRY"]
    # the book's scales: at most a little more than the market's (then no rescale is needed)
    price_scale = data.draw(st.integers(0, decimal_places(market.tick) + 2), label="price_scale")
    amount_scale = data.draw(st.integers(0, decimal_places(market.lot) + 2), label="amount_scale")
    assert max(price_scale, amount_scale) <= 18  # what a book can be made with
    ref = RefBook("BTCTRY", price_scale, amount_scale)
    core = obengine.Book("BTCTRY", price_scale, amount_scale)
    for i, frame in enumerate(line):
        expected = outcome(ref, frame)
        got = outcome(core, frame)
        assert got == expected, f"frame {i}: {describe(frame)}: core {got!r}, ref {expected!r}"
        assert isinstance(got, Status) or got == "FrameError"
        assert state(core) == state(ref), f"after frame {i}: {describe(frame)}"


def test_the_streams_cross_the_switch_to_a_wide_book_mid_stream() -> None:
    """The strategies above reach the switch of "Wide books" from a synced narrow book (not only
    from a first snapshot), so the differential tests compare the twins across it."""

    def crosses(stream: tuple[dict[str, Market], list[Any]]) -> bool:
        book = RefBook("BTCTRY", 0, 0)
        for frame in stream[1]:
            narrow_and_synced = book.synced and not book.wide
            outcome(book, frame)
            if narrow_and_synced and book.wide:
                return True
        return False

    _markets, line = find(
        streams(("BTCTRY",)),
        crosses,
        settings=settings(max_examples=5000, database=None, deadline=None, phases=[Phase.generate]),
    )
    assert crosses((_markets, line))


@SETTINGS
@given(st.data())
def test_native_bookset_matches_the_model_after_every_frame(data: st.DataObject) -> None:
    names = ["BTCTRY", "ETHTRY", "XRPTRY", "SHIBTRY"]  # SHIBTRY: not in DEFAULT_SCALES
    pairs = data.draw(st.lists(st.sampled_from(names), min_size=2, unique=True), label="pairs")
    scales = data.draw(
        st.none()
        | st.dictionaries(st.sampled_from(pairs), st.tuples(st.integers(0, 4), st.integers(0, 8))),
        label="scales",
    )
    markets, line = data.draw(streams(tuple(pairs)), label="stream")
    ref = RefBookSet(scales)
    core = obengine.BookSet(scales)
    for i, frame in enumerate(line):
        expected = outcome(ref, frame)
        got = outcome(core, frame)
        assert got == expected, f"frame {i}: {describe(frame)}: core {got!r}, ref {expected!r}"
        assert set_state(core) == set_state(ref), f"after frame {i}: {describe(frame)}"


@pytest.mark.parametrize("profile", ["typical", "hard"])
@pytest.mark.parametrize("seed", [0, 1])
def test_native_bookset_matches_the_model_on_simulated_100_level_streams(profile: str, seed: int) -> None:
    """Realistic streams (100-level windows, big frames, moving prices, CS wrapping) from the
    package's simulator: same statuses, same books, and both equal to the simulator's truth."""
    from obengine.simulator import FeedSimulator

    sim = FeedSimulator(
        ["BTCTRY", "XRPTRY", "SHIBTRY"], seed=seed, profile=profile  # type: ignore[arg-type]
    )
    ref, core = RefBookSet(sim.scales), obengine.BookSet(sim.scales)
    frames = sim.frames(150 if profile == "typical" else 80)
    for i, frame in enumerate(frames):
        expected = outcome(ref, frame)
        assert outcome(core, frame) == expected, f"frame {i}: {frame!r}"
        assert expected[1] == Status.APPLIED
        if i % 10 == 0:
            assert set_state(core) == set_state(ref), f"after frame {i}"
    assert set_state(core) == set_state(ref)
    for pair in ref:
        book = ref[pair]
        bids, asks = sim.levels(pair)
        scale = Decimal(10) ** book.price_scale, Decimal(10) ** book.amount_scale
        as_units = [
            [(int(p * scale[0]), int(a * scale[1])) for p, a in side] for side in (bids, asks)
        ]
        assert list(book.levels()) == as_units
        assert book.anomalies == sim.anomalies(pair) and book.synced


@SETTINGS
@given(st.data())
def test_apply_block_matches_the_model_record_by_record_and_as_one_block(data: st.DataObject) -> None:
    """``BookSet.apply_block`` (the path that applies frames without the GIL, and hands new
    pairs, growth, wide values and errors to Python) against the model on the same faulty
    streams: fed one record at a time, the same outcome and books after every frame; fed the
    whole stream as one block, the same books, errors, ignored frames and tallies at the end."""
    pairs = data.draw(st.lists(st.sampled_from(["BTCTRY", "ETHTRY", "XRPTRY", "SHIBTRY"]),
                               min_size=2, unique=True), label="pairs")
    _markets, line = data.draw(streams(tuple(pairs)), label="stream")
    frames = [as_bytes(f) for f in line]
    ref, one, whole = RefBookSet(), obengine.BookSet(), obengine.BookSet()
    expected_errors, expected_ignored = 0, 0
    counts: dict[str, list[int]] = {}
    for i, frame in enumerate(frames):
        expected = outcome(ref, frame)
        got = block_outcome(one, frame)
        if isinstance(got, obengine.FrameError):
            got = "FrameError"
        assert got == expected, f"frame {i}: {describe(frame)}: apply_block {got!r}, ref {expected!r}"
        assert set_state(one) == set_state(ref), f"after frame {i}: {describe(frame)}"
        if expected == "FrameError":
            expected_errors += 1
        elif expected[0] is None:
            expected_ignored += 1
        else:
            k = (Status.APPLIED, Status.STALE, Status.GAP, Status.CROSSED).index(expected[1])
            counts.setdefault(expected[0], [0] * 4)[k] += 1
    block = record_block(frames)
    end, ignored, errors = whole.apply_block(block)
    assert end == len(block) and ignored == expected_ignored and len(errors) == expected_errors
    assert set_state(whole) == set_state(ref)
    assert {p: list(t[:4]) for p, t in whole.tallies().items()} == {p: counts.get(p, [0] * 4) for p in ref}
