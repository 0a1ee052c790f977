"""The simulator (``obengine.simulator.FeedSimulator``): deterministic frames written as the
exchange writes them (key order, canonical numbers, net change sets, fine amounts, legitimate
anomalies), a stream consistent by construction, and the engine agreeing with its truth exactly."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

import obengine
from obengine import Book, BookSet, Status
from helpers import levels
from obengine.simulator import FeedSimulator, Spelling
from reference import RefBookSet

PAYLOAD_KEYS = ["CS", "PS", "AO", "BO", "channel", "event", "type"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
CANONICAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?\Z")
INT64_MAX = 2**63 - 1

Side = list[tuple[Decimal, Decimal]]
Truth = tuple[Side, Side]


# -- helpers -------------------------------------------------------------------------------


def no_floats(text: str) -> Any:
    raise AssertionError(f"a float in a frame: {text}")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict in document order, refusing a key given twice."""
    keys = [key for key, _ in pairs]
    assert len(set(keys)) == len(keys), keys
    return dict(pairs)


def parse(frame: bytes) -> tuple[int, dict[str, Any]]:
    """The frame's ``(type, payload)``, checking the outer shape, that no float appears and that
    no object repeats a key. Dicts keep the frame's key order."""
    value = json.loads(frame, parse_float=no_floats, object_pairs_hook=unique_keys)
    assert isinstance(value, list) and len(value) == 2
    kind, payload = value
    assert isinstance(kind, int) and isinstance(payload, dict)
    return kind, payload


def places(text: str) -> int:
    """Fraction digits written in a decimal string."""
    return len(text.split(".")[1]) if "." in text else 0


def fixed_pattern(scale: int) -> re.Pattern[str]:
    """A positive decimal with exactly ``scale`` fraction digits, no sign, no exponent."""
    return re.compile(r"(0|[1-9][0-9]*)" + (rf"\.[0-9]{{{scale}}}" if scale else "") + r"\Z")


def canonical(text: str) -> str:
    """A fixed-width decimal string in canonical form (trailing zeros and a bare point gone)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def book_levels(book: Any) -> Truth:
    """A book's levels as exact decimals, whatever its scales."""
    ps, amount_scale = book.price_scale, book.amount_scale

    def side(view: Any) -> Side:
        return [
            (Decimal(int(p)).scaleb(-ps), Decimal(int(a)).scaleb(-amount_scale)) for p, a in view
        ]

    return side(book.bids), side(book.asks)


def assert_book_is_truth(book: Any, sim: FeedSimulator, pair: str) -> None:
    assert book_levels(book) == sim.levels(pair), pair
    assert book.anomalies == sim.anomalies(pair), pair
    assert book.synced, pair
    assert book.seq == sim.seq(pair), pair


def apply_all(books: Any, frames: Iterable[bytes]) -> Counter[Status]:
    statuses: Counter[Status] = Counter()
    for frame in frames:
        _, status = books.apply(frame)
        statuses[status] += 1
    return statuses


def most_amount_places(frames: Iterable[bytes]) -> dict[str, int]:
    """The most fraction digits any amount of each pair carries in ``frames``."""
    most: dict[str, int] = {}
    for frame in frames:
        _, payload = parse(frame)
        pair = payload["PS"]
        for entry in payload["AO"] + payload["BO"]:
            most[pair] = max(most.get(pair, 0), places(entry["A"]))
    return most


@dataclass
class ReplayBook:
    AO: dict[Decimal, Decimal] = field(default_factory=dict)
    BO: dict[Decimal, Decimal] = field(default_factory=dict)
    seq: int = 0
    absent_deletes: list[tuple[int, str, Decimal]] = field(default_factory=list)
    reannounces: list[tuple[int, str, Decimal, Decimal]] = field(default_factory=list)

    @property
    def anomalies(self) -> int:
        return len(self.absent_deletes) + len(self.reannounces)


def replay_truth(frames: Sequence[bytes]) -> dict[str, ReplayBook]:
    """An independent model: replay frames into dicts of Decimal by the rules of docs/rules.md,
    asserting on the way what the exchange's stream guarantees: CS follows on; per side, one
    entry per price, sorted best first; a 432 is a net change (CP 1 for an absent price, CP 0
    for a present price with another amount, CP 3 for a present price carrying the amount the
    book has; amounts positive); the book is never crossed. The only changes allowed outside
    that are the legitimate anomalies, recorded per book with their frame index: a CP 3 for an
    absent price within the side's range, and a CP 1 for a present price with its same amount,
    which the pair's next frame must delete with a CP 3 of that price and amount."""
    books: dict[str, ReplayBook] = {}
    pending: dict[str, tuple[str, Decimal, Decimal]] = {}
    for index, frame in enumerate(frames):
        kind, payload = parse(frame)
        pair, cs = payload["PS"], payload["CS"]
        for key in ("AO", "BO"):
            prices = [Decimal(entry["P"]) for entry in payload[key]]
            assert len(set(prices)) == len(prices), (index, key, "a price twice")
            assert prices == sorted(prices, reverse=key == "BO"), (index, key, "not sorted")
        if kind == 431:
            book = books.setdefault(pair, ReplayBook())
            book.AO, book.BO, book.seq = {}, {}, cs
            for key in ("AO", "BO"):
                for entry in payload[key]:
                    amount = Decimal(entry["A"])
                    assert amount > 0
                    getattr(book, key)[Decimal(entry["P"])] = amount
        else:
            assert kind == 432
            book = books[pair]
            assert (cs - book.seq) % 2**32 == 1
            book.seq = cs
            expected = pending.pop(pair, None)
            for key in ("AO", "BO"):
                side: dict[Decimal, Decimal] = getattr(book, key)
                absent: list[Decimal] = []
                for entry in payload[key]:
                    price, amount, cp = Decimal(entry["P"]), Decimal(entry["A"]), entry["CP"]
                    assert price > 0 and amount > 0, (index, entry)
                    if cp == 3 and (key, price, amount) == expected:
                        expected = None  # the re-announced level, deleted
                    if cp == 0:
                        assert side.get(price) not in (None, amount), (index, entry)
                        side[price] = amount
                    elif cp == 1 and price in side:
                        assert side[price] == amount, (index, entry)
                        book.reannounces.append((index, key, price, amount))
                        pending[pair] = (key, price, amount)
                    elif cp == 1:
                        side[price] = amount
                    elif price in side:
                        assert cp == 3 and side.pop(price) == amount, (index, entry)
                    else:
                        assert cp == 3, (index, entry)
                        absent.append(price)
                for price in absent:
                    assert min(side) < price < max(side), (index, key, price, "out of range")
                    book.absent_deletes.append((index, key, price))
            assert expected is None, (index, "a re-announced level not deleted next", expected)
        if book.AO and book.BO:
            assert max(book.BO) < min(book.AO), pair
    return books


def truth_of(book: ReplayBook) -> Truth:
    return sorted(book.BO.items(), reverse=True), sorted(book.AO.items())


# -- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["typical", "hard"])
@pytest.mark.parametrize("spelling", ["exchange", "fixed"])
def test_same_seed_gives_byte_identical_frames(profile: Any, spelling: Spelling) -> None:
    a = FeedSimulator.many(5, seed=42, profile=profile, spelling=spelling)
    b = FeedSimulator.many(5, seed=42, profile=profile, spelling=spelling)
    assert a.pairs == b.pairs and a.scales == b.scales
    assert a.fine_amount_pairs == b.fine_amount_pairs
    assert a.frames(300) == b.frames(300)
    assert a.frames(50) == b.frames(50)
    for pair in a.pairs:
        assert a.snapshot(pair) == b.snapshot(pair)
        assert a.levels(pair) == b.levels(pair)
        assert a.anomalies(pair) == b.anomalies(pair)


def test_different_seeds_give_different_streams() -> None:
    assert FeedSimulator(seed=1).frames(20) != FeedSimulator(seed=2).frames(20)
    assert FeedSimulator.many(30, seed=1).pairs != FeedSimulator.many(30, seed=2).pairs


@pytest.mark.parametrize("spelling", ["exchange", "fixed"])
def test_stream_does_not_depend_on_how_it_is_chunked(spelling: Spelling) -> None:
    whole = FeedSimulator.many(4, seed=9, spelling=spelling).frames(2000)
    sim = FeedSimulator.many(4, seed=9, spelling=spelling)
    chunked = sim.frames(1) + sim.frames(0) + sim.frames(199) + sim.frames(1800)
    assert chunked == whole


def test_snapshot_and_levels_do_not_change_the_stream() -> None:
    plain = FeedSimulator.many(3, seed=5)
    probed = FeedSimulator.many(3, seed=5)
    expected = plain.frames(400)
    got = probed.frames(150)
    for pair in probed.pairs:
        probed.snapshot(pair)
        probed.levels(pair)
        probed.seq(pair)
        probed.anomalies(pair)
    got += probed.frames(250)
    assert got == expected


# -- the exchange's layout -----------------------------------------------------------------


@pytest.mark.parametrize("profile", ["typical", "hard"])
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_frames_have_the_exchange_layout(profile: Any, seed: int) -> None:
    sim = FeedSimulator.many(30, seed=seed, profile=profile)
    started: set[str] = set()
    empty_sides = 0
    for frame in sim.frames(600 if profile == "typical" else 200):
        assert isinstance(frame, bytes)
        kind, payload = parse(frame)
        # compact JSON, keys in the exchange's order: AO and BO always there, even empty
        assert frame == json.dumps([kind, payload], separators=(",", ":")).encode()
        assert list(payload) == PAYLOAD_KEYS
        pair = payload["PS"]
        assert payload["event"] == pair and payload["channel"] == "obdiff"
        assert payload["type"] == kind
        assert isinstance(payload["CS"], int) and INT32_MIN <= payload["CS"] <= INT32_MAX
        assert isinstance(payload["AO"], list) and isinstance(payload["BO"], list)
        # a pair's first frame is its 431, then only 432s
        assert kind == (432 if pair in started else 431)
        started.add(pair)
        for key in ("AO", "BO"):
            for entry in payload[key]:
                if kind == 431:
                    assert list(entry) == ["A", "P"]
                else:
                    assert list(entry) == ["CP", "P", "A"]
                    assert type(entry["CP"]) is int and entry["CP"] in (0, 1, 3)
        if kind == 432:
            assert payload["AO"] or payload["BO"]  # nothing is sent for an unchanged book
            empty_sides += (b'"AO":[]' in frame) + (b'"BO":[]' in frame)
    if profile == "typical":
        assert empty_sides > 50  # a side with no change is written, empty
    # the same key orders, read off the raw bytes
    raw = b"".join(sim.frames(100))
    assert re.search(rb'\{"CP":[013],"P":"[0-9.]+","A":"[0-9.]+"\}', raw)
    assert not re.search(rb'\{"CP":[013],"A":', raw)


@pytest.mark.parametrize("profile", ["typical", "hard"])
@pytest.mark.parametrize("seed", [3, 8])
def test_prices_and_amounts_are_canonical_decimal_strings(profile: Any, seed: int) -> None:
    sim = FeedSimulator.many(40, seed=seed, profile=profile)
    frames = sim.frames(2000 if profile == "typical" else 300)
    shortened = bare_integers = 0
    for frame in frames:
        _, payload = parse(frame)
        ps, amount_scale = sim.scales[payload["PS"]]
        fine = payload["PS"] in sim.fine_amount_pairs
        for entry in payload["AO"] + payload["BO"]:
            for name, scale in (("P", ps), ("A", amount_scale)):
                text = entry[name]
                assert isinstance(text, str) and CANONICAL.match(text), (payload["PS"], entry)
                shortened += 0 < places(text) < scale
                bare_integers += "." not in text and scale > 0
            assert places(entry["P"]) <= ps  # prices stay on the pair's tick
            assert places(entry["A"]) <= (12 if fine else amount_scale)
    # values shorter than their scale's width occur, with and without a point
    assert shortened > 1000 and bare_integers > 100


@pytest.mark.parametrize("profile", ["typical", "hard"])
@pytest.mark.parametrize("seed", [11, 12])
def test_stream_is_made_of_net_changes_and_replays_to_the_truth(profile: Any, seed: int) -> None:
    sim = FeedSimulator.many(6, seed=seed, profile=profile, anomalies=False)
    frames = sim.frames(1200 if profile == "typical" else 300)
    books = replay_truth(frames)
    assert set(books) == set(sim.pairs)
    for pair, book in books.items():
        assert truth_of(book) == sim.levels(pair)
        assert book.seq == sim.seq(pair)
        assert book.anomalies == sim.anomalies(pair) == 0


def test_a_batch_that_touches_a_price_twice_sends_one_entry_for_it() -> None:
    # hard frames change 100-200 prices around a 100-level top: without netting, inserts
    # pushed out again and prices deleted and re-inserted in one batch would repeat prices
    sim = FeedSimulator(["BTCTRY"], seed=2, profile="hard", anomalies=False)
    sim.frames(1)
    for _ in range(100):
        before = sim.levels("BTCTRY")
        _, payload = parse(sim.frames(1)[0])
        after = sim.levels("BTCTRY")
        for key, old, new in (("BO", before[0], after[0]), ("AO", before[1], after[1])):
            old_side, new_side = dict(old), dict(new)
            changed = {
                price
                for price in old_side.keys() | new_side.keys()
                if old_side.get(price) != new_side.get(price)
            }
            # exactly one entry for each price whose level differs, and none for any other
            assert [Decimal(e["P"]) for e in payload[key]] == sorted(changed, reverse=key == "BO")


@pytest.mark.no_sanitizer  # the simulator's statistics: no core code to check
def test_a_top_insert_on_a_full_side_comes_with_a_cp3_at_the_far_edge() -> None:
    sim = FeedSimulator(["BTCTRY"], seed=5, anomalies=False)
    sim.frames(1)
    pushed_out = backfilled = 0
    for _ in range(3000):
        before = sim.levels("BTCTRY")
        _, payload = parse(sim.frames(1)[0])
        for key, side in (("BO", before[0]), ("AO", before[1])):
            assert len(side) == 100
            best, worst = side[0][0], side[-1][0]
            sign = -1 if key == "BO" else 1  # sign * price grows away from the best
            entries = [(entry["CP"], sign * Decimal(entry["P"])) for entry in payload[key]]
            cp = Counter(kind for kind, _ in entries)
            assert cp[1] == cp[3]  # the side keeps its 100 levels
            # a new best level and nothing else on the side: the worst level leaves
            if len(entries) == 2 and entries[0][0] == 1 and entries[0][1] < sign * best:
                pushed_out += entries[1] == (3, sign * worst)
            # an inner level deleted and nothing else: a level comes into view beyond the worst
            if len(entries) == 2 and entries[0][0] == 3 and entries[1][0] == 1:
                backfilled += entries[1][1] > sign * worst
    assert pushed_out > 20 and backfilled > 20


def test_both_sides_keep_the_window_size() -> None:
    for window in (100, 7):
        sim = FeedSimulator.many(5, seed=37, profile="hard", levels=window)
        for _ in range(5):
            sim.frames(60)
            for pair in sim.pairs:
                bids, asks = sim.levels(pair)
                assert len(bids) == len(asks) == window


def test_a_431_carries_the_whole_window_best_first() -> None:
    sim = FeedSimulator(["USDTTRY"], seed=1, levels=100)
    kind, payload = parse(sim.frames(1)[0])
    assert kind == 431
    bids, asks = sim.levels("USDTTRY")
    assert len(payload["AO"]) == len(payload["BO"]) == 100
    assert [(Decimal(e["P"]), Decimal(e["A"])) for e in payload["AO"]] == asks
    assert [(Decimal(e["P"]), Decimal(e["A"])) for e in payload["BO"]] == bids
    assert payload["CS"] == sim.seq("USDTTRY")


def test_levels_are_exact_decimals_best_first_and_never_crossed() -> None:
    sim = FeedSimulator.many(10, seed=4, profile="hard")
    fine_seen = 0
    for _ in range(10):
        sim.frames(50)
        for pair in sim.pairs:
            ps, amount_scale = sim.scales[pair]
            bids, asks = sim.levels(pair)
            assert bids and asks
            assert all(b[0] > c[0] for b, c in zip(bids, bids[1:]))
            assert all(b[0] < c[0] for b, c in zip(asks, asks[1:]))
            assert bids[0][0] < asks[0][0]
            for price, amount in bids + asks:
                assert price > 0 and amount > 0
                assert price.as_tuple().exponent == -ps
                exponent = amount.as_tuple().exponent
                if exponent != -amount_scale:  # a fine amount keeps its own digits
                    assert pair in sim.fine_amount_pairs
                    assert isinstance(exponent, int) and -12 <= exponent < -amount_scale
                    assert exponent <= -9 and amount.as_tuple().digits[-1] != 0
                    fine_seen += 1
    assert fine_seen > 0


# -- fine amounts --------------------------------------------------------------------------


@pytest.mark.no_sanitizer  # the simulator's statistics: no core code to check
def test_fine_amounts_come_on_btctry_and_a_seeded_minority_of_pairs_that_can_hold_them() -> None:
    sim = FeedSimulator.many(380, seed=0)
    fine = sim.fine_amount_pairs
    assert fine[0] == "BTCTRY"
    assert list(fine) == [pair for pair in sim.pairs if pair in fine]  # in the pairs' order
    assert 5 < len(fine) < 380 // 4
    assert FeedSimulator.many(380, seed=1).fine_amount_pairs != fine  # seeded
    # an amount scale of 12 or more leaves nothing finer to send
    assert FeedSimulator(["BTCTRY"], scales={"BTCTRY": (0, 12)}).fine_amount_pairs == ()
    # at scale 11 a fine amount has 12 places
    sim11 = FeedSimulator(["BTCTRY"], seed=2, scales={"BTCTRY": (0, 11)})
    assert sim11.fine_amount_pairs == ("BTCTRY",)
    amounts = re.findall(r'"A":"([0-9.]+)"', b"".join(sim11.frames(3000)).decode())
    assert {places(amount) for amount in amounts if places(amount) > 11} == {12}


@pytest.mark.no_sanitizer  # the simulator's statistics: no core code to check
def test_fine_amounts_are_a_few_per_mille_of_new_amounts_with_9_to_12_places() -> None:
    sim = FeedSimulator(["BTCTRY", "USDTTRY", "ETHTRY"], seed=3)
    assert sim.fine_amount_pairs == ("BTCTRY",)
    new_amounts: Counter[str] = Counter()
    fine: Counter[str] = Counter()
    for frame in sim.frames(20_000):
        _, payload = parse(frame)
        pair = payload["PS"]
        scale = sim.scales[pair][1]
        for entry in payload["AO"] + payload["BO"]:
            if entry.get("CP", 1) in (0, 1):  # an amount born here (431 levels too)
                new_amounts[pair] += 1
                digits = places(entry["A"])
                if digits > scale:
                    assert 9 <= digits <= 12, entry
                    fine[pair] += 1
    assert set(fine) == {"BTCTRY"}
    assert 0.001 < fine["BTCTRY"] / new_amounts["BTCTRY"] < 0.01
    assert sim.scales == {"BTCTRY": (0, 8), "USDTTRY": (2, 2), "ETHTRY": (0, 8)}  # unchanged


@pytest.mark.parametrize("profile", ["typical", "hard"])
def test_the_engine_rescales_for_fine_amounts_and_still_equals_the_truth(profile: Any) -> None:
    sim = FeedSimulator.many(60, seed=14, profile=profile)
    frames = sim.frames(6000 if profile == "typical" else 1500)
    books = BookSet(scales=sim.scales)
    assert set(apply_all(books, frames)) == {Status.APPLIED}
    most = most_amount_places(frames)
    rescaled = 0
    for pair in books:
        book = books[pair]
        ps, amount_scale = sim.scales[pair]
        assert book.price_scale == ps
        assert book.amount_scale == max(amount_scale, most[pair])
        if book.amount_scale != amount_scale:
            assert pair in sim.fine_amount_pairs and 9 <= book.amount_scale <= 12
            rescaled += 1
        assert_book_is_truth(book, sim, pair)
    assert rescaled >= 2


@pytest.mark.no_sanitizer  # the simulator's statistics: no core code to check
def test_every_amount_of_a_fine_pair_fits_int64_units_at_scale_12() -> None:
    sim = FeedSimulator.many(380, seed=5)
    frames = sim.frames(4000)
    largest: dict[str, Decimal] = {}
    for frame in frames:
        _, payload = parse(frame)
        for entry in payload["AO"] + payload["BO"]:
            amount = Decimal(entry["A"])
            largest[payload["PS"]] = max(largest.get(payload["PS"], amount), amount)
    checked = 0
    for pair in sim.fine_amount_pairs:
        if pair in largest:
            assert largest[pair].scaleb(12) <= INT64_MAX, pair
            checked += 1
    assert checked > 10
    # and some pair that gets none has amounts that would not fit
    assert any(
        amount.scaleb(12) > INT64_MAX
        for pair, amount in largest.items()
        if pair not in sim.fine_amount_pairs
    )


# -- anomalies -----------------------------------------------------------------------------


def test_anomalies_of_both_kinds_come_at_a_realistic_rate_and_the_engine_counts_them() -> None:
    sim = FeedSimulator(["BTCTRY", "ETHTRY"], seed=21)
    frames = sim.frames(24_000)
    replayed = replay_truth(frames)  # checks each re-announce is deleted in the next frame
    books = BookSet(scales=sim.scales)
    assert set(apply_all(books, frames)) == {Status.APPLIED}
    for pair in sim.pairs:
        book = replayed[pair]
        n_frames = sum(f'"PS":"{pair}"'.encode() in frame for frame in frames) - 1
        absent, reannounced = len(book.absent_deletes), len(book.reannounces)
        assert 1 / 1000 < absent / n_frames < 1 / 150, (pair, absent, n_frames)
        assert 1 / 2000 < reannounced / n_frames < 1 / 250, (pair, reannounced, n_frames)
        assert sim.anomalies(pair) == absent + reannounced
        assert books[pair].anomalies == sim.anomalies(pair)
        assert truth_of(book) == sim.levels(pair)
        assert_book_is_truth(books[pair], sim, pair)


def test_the_engine_counts_exactly_the_announced_anomalies_on_many_pairs() -> None:
    sim = FeedSimulator.many(50, seed=15)
    books = BookSet(scales=sim.scales)
    frames: list[bytes] = []
    for _ in range(4):
        chunk = sim.frames(2500)
        frames += chunk
        assert set(apply_all(books, chunk)) == {Status.APPLIED}
        for pair in books:
            assert_book_is_truth(books[pair], sim, pair)
    replayed = replay_truth(frames)
    assert sum(book.anomalies for book in replayed.values()) > 20
    for pair in books:
        assert replayed[pair].anomalies == sim.anomalies(pair) == books[pair].anomalies


def test_anomalies_can_be_switched_off() -> None:
    sim = FeedSimulator(["BTCTRY", "ETHTRY"], seed=21, anomalies=False)
    frames = sim.frames(5_000)
    books = BookSet(scales=sim.scales)
    apply_all(books, frames)
    replayed = replay_truth(frames)
    for pair in sim.pairs:
        assert sim.anomalies(pair) == books[pair].anomalies == replayed[pair].anomalies == 0
        assert_book_is_truth(books[pair], sim, pair)


def test_a_snapshot_counts_no_anomaly() -> None:
    sim = FeedSimulator(["BTCTRY"], seed=21)
    book = Book("BTCTRY", *sim.scales["BTCTRY"])
    apply_all_book = [book.apply(frame) for frame in sim.frames(3000)]
    assert set(apply_all_book) == {Status.APPLIED}
    counted = sim.anomalies("BTCTRY")
    assert counted > 0 and book.anomalies == counted
    snapshot = sim.snapshot("BTCTRY")
    assert sim.anomalies("BTCTRY") == counted
    fresh = Book("BTCTRY", *sim.scales["BTCTRY"])
    assert fresh.apply(snapshot) == Status.APPLIED and fresh.anomalies == 0
    assert book.apply(snapshot) == Status.APPLIED and book.anomalies == counted


# -- spellings -----------------------------------------------------------------------------


def values(frame: bytes) -> tuple[int, int, str, list[list[tuple[int, Decimal, Decimal]]]]:
    """What a frame says, whatever its spelling: type, CS, pair, and per side the entries as
    ``(CP, price, amount)`` (CP -1 in a 431)."""
    kind, payload = parse(frame)
    sides = [
        [(e.get("CP", -1), Decimal(e["P"]), Decimal(e["A"])) for e in payload[key]]
        for key in ("AO", "BO")
    ]
    return kind, payload["CS"], payload["PS"], sides


@pytest.mark.parametrize("profile", ["typical", "hard"])
@pytest.mark.parametrize("seed", [1, 2])
def test_both_spellings_describe_the_same_book_evolution(profile: Any, seed: int) -> None:
    exchange = FeedSimulator.many(20, seed=seed, profile=profile)
    fixed = FeedSimulator.many(20, seed=seed, profile=profile, spelling="fixed")
    assert exchange.spelling == "exchange" and fixed.spelling == "fixed"
    assert fixed.scales == exchange.scales
    assert fixed.fine_amount_pairs == exchange.fine_amount_pairs
    a = exchange.frames(1500 if profile == "typical" else 150)
    b = fixed.frames(len(a))
    assert a != b
    assert [values(frame) for frame in a] == [values(frame) for frame in b]
    books_a, books_b = BookSet(scales=exchange.scales), BookSet(scales=fixed.scales)
    apply_all(books_a, a)
    apply_all(books_b, b)
    for pair in exchange.pairs:
        # the same decimals, digit for digit
        assert str(exchange.levels(pair)) == str(fixed.levels(pair))
        assert exchange.anomalies(pair) == fixed.anomalies(pair)
        assert exchange.seq(pair) == fixed.seq(pair)
        assert exchange.snapshot(pair) != fixed.snapshot(pair)
        assert values(exchange.snapshot(pair)) == values(fixed.snapshot(pair))
        if pair in books_a:
            assert levels(books_a[pair]) == levels(books_b[pair])
            assert books_a[pair].amount_scale == books_b[pair].amount_scale
            assert_book_is_truth(books_b[pair], fixed, pair)
    # and the texts differ exactly by the canonical form of each number
    for frame_a, frame_b in zip(a, b):
        _, payload_a = parse(frame_a)
        _, payload_b = parse(frame_b)
        for key in ("AO", "BO"):
            for entry_a, entry_b in zip(payload_a[key], payload_b[key]):
                assert entry_a["P"] == canonical(entry_b["P"])
                assert entry_a["A"] == canonical(entry_b["A"])


@pytest.mark.parametrize("profile", ["typical", "hard"])
def test_fixed_spelling_writes_fixed_width_numbers_and_cp_a_p_entries(profile: Any) -> None:
    sim = FeedSimulator.many(30, seed=3, profile=profile, spelling="fixed")
    patterns = {
        pair: (fixed_pattern(ps), fixed_pattern(amount_scale))
        for pair, (ps, amount_scale) in sim.scales.items()
    }
    fine = 0
    for frame in sim.frames(1500 if profile == "typical" else 300):
        kind, payload = parse(frame)
        assert frame == json.dumps([kind, payload], separators=(",", ":")).encode()
        assert list(payload) == PAYLOAD_KEYS
        pair = payload["PS"]
        price_re, amount_re = patterns[pair]
        for key in ("AO", "BO"):
            for entry in payload[key]:
                assert list(entry) == (["CP", "A", "P"] if kind == 432 else ["A", "P"])
                assert price_re.match(entry["P"]), (pair, entry)
                if not amount_re.match(entry["A"]):
                    # a fine amount: its own exact digits, more than the scale's
                    assert pair in sim.fine_amount_pairs, (pair, entry)
                    assert CANONICAL.match(entry["A"]) and 9 <= places(entry["A"]) <= 12
                    assert places(entry["A"]) > sim.scales[pair][1]
                    fine += 1
    assert fine > 0


def test_fixed_spelling_writes_numbers_as_the_simulator_always_did() -> None:
    sim = FeedSimulator(["BTCTRY", "USDTTRY"], seed=1, spelling="fixed", anomalies=False)
    frames = sim.frames(50)
    text = b"".join(frames)
    assert re.search(rb'\{"A":"0\.[0-9]{8}","P":"2[0-9]{6}"\}', text)  # BTCTRY 431 level
    assert re.search(rb'\{"CP":[013],"A":"[0-9]+\.[0-9]{8}","P":"[0-9]{7}"\}', text)
    assert re.search(rb'"A":"[0-9]+\.[0-9]*0","P"', text)  # trailing zeros kept
    assert re.search(rb'"P":"[0-9]+\.00"', text)  # a USDTTRY price on a whole lira


# -- sequence numbers ----------------------------------------------------------------------


def test_cs_rises_by_one_per_frame_of_each_pair() -> None:
    sim = FeedSimulator.many(12, seed=8)
    first = {pair: sim.seq(pair) for pair in sim.pairs}
    last: dict[str, int] = {}
    for frame in sim.frames(1500):
        kind, payload = parse(frame)
        pair, cs = payload["PS"], payload["CS"]
        if pair not in last:
            assert kind == 431 and cs == first[pair]
        else:
            assert (cs - last[pair]) % 2**32 == 1
            assert cs == (last[pair] + 1 if last[pair] != INT32_MAX else INT32_MIN)
        last[pair] = cs
    assert last == {pair: sim.seq(pair) for pair in sim.pairs}


def test_cs_wraps_from_int32_max_to_int32_min_and_the_engine_follows() -> None:
    # a seed whose pair starts close to 2**31 - 1 (about a quarter of them do)
    seed = next(s for s in range(100) if FeedSimulator(seed=s).seq("BTCTRY") > INT32_MAX - 300)
    sim = FeedSimulator(seed=seed)
    frames = sim.frames(400)
    cs = [parse(frame)[1]["CS"] for frame in frames]
    wrap = cs.index(INT32_MAX)
    assert cs[wrap + 1] == INT32_MIN and cs[-1] < 0
    book = Book("BTCTRY", *sim.scales["BTCTRY"])
    assert [book.apply(frame) for frame in frames] == [Status.APPLIED] * len(frames)
    assert_book_is_truth(book, sim, "BTCTRY")


def test_starting_sequences_include_negative_and_near_wrap_values() -> None:
    sim = FeedSimulator.many(100, seed=0)
    seqs = [sim.seq(pair) for pair in sim.pairs]
    assert all(INT32_MIN <= s <= INT32_MAX for s in seqs)
    assert any(s < 0 for s in seqs)
    assert any(s > INT32_MAX - 300 for s in seqs)


# -- consistency: the engine gives the truth -----------------------------------------------


@pytest.mark.parametrize(
    ("n_pairs", "n_frames", "profile"),
    [
        (1, 20_000, "typical"),
        (1, 1_500, "hard"),
        (380, 8_000, "typical"),
        (380, 1_500, "hard"),
    ],
    ids=["one-pair-typical", "one-pair-hard", "380-pairs-typical", "380-pairs-hard"],
)
def test_engine_applies_the_stream_exactly(n_pairs: int, n_frames: int, profile: Any) -> None:
    sim = FeedSimulator.many(n_pairs, seed=2024, profile=profile)
    books = BookSet(scales=sim.scales)
    checkpoints = 8 if n_pairs == 1 else 3
    sent: list[bytes] = []
    for _ in range(checkpoints):
        frames = sim.frames(n_frames // checkpoints)
        sent += frames
        statuses = apply_all(books, frames)
        assert set(statuses) == {Status.APPLIED}, statuses  # no STALE, GAP or CROSSED
        for pair in books:
            assert_book_is_truth(books[pair], sim, pair)
    most = most_amount_places(sent)
    assert set(books) == set(most)
    assert sum(books[pair].anomalies for pair in books) >= n_frames // 1000
    assert len(books) > 0.9 * n_pairs
    for pair in books:
        book = books[pair]
        ps, amount_scale = sim.scales[pair]
        assert book.price_scale == ps
        assert book.amount_scale == max(amount_scale, most[pair])  # fine amounts rescale
        if pair not in sim.fine_amount_pairs:
            assert book.amount_scale == amount_scale
        assert len(book.bids) == len(book.asks) == 100


def test_engine_infers_the_scales_when_not_told() -> None:
    sim = FeedSimulator.many(40, seed=6)
    books = BookSet()  # bundled table for the 22, inferred (and rescaled) for the rest
    assert set(apply_all(books, sim.frames(3000))) == {Status.APPLIED}
    for pair in books:
        assert_book_is_truth(books[pair], sim, pair)


def test_engine_agrees_after_every_frame() -> None:
    sim = FeedSimulator(["XRPTRY"], seed=13, profile="hard", levels=30)
    book = Book("XRPTRY", *sim.scales["XRPTRY"])
    for _ in range(300):
        assert book.apply(sim.frames(1)[0]) == Status.APPLIED
        assert_book_is_truth(book, sim, "XRPTRY")
        assert len(book.bids) == len(book.asks) == 30


@pytest.mark.parametrize(
    ("profile", "n_pairs", "n_frames"), [("typical", 3, 1500), ("hard", 25, 250)]
)
def test_reference_model_agrees_with_the_engine_on_the_stream(
    profile: Any, n_pairs: int, n_frames: int
) -> None:
    sim = FeedSimulator.many(n_pairs, seed=21, profile=profile)
    frames = sim.frames(n_frames)
    core, ref = BookSet(scales=sim.scales), RefBookSet(scales=sim.scales)
    for frame in frames:
        assert core.apply(frame) == ref.apply(frame)
    if profile == "typical":
        assert sum(ref[pair].anomalies for pair in ref) > 0
    for pair in sim.pairs:
        if pair in core:
            assert ref[pair].anomalies == sim.anomalies(pair)
            assert levels(core[pair]) == levels(ref[pair])


# -- snapshots -----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["typical", "hard"])
def test_snapshot_mid_stream_equals_the_truth_and_the_stream_continues_from_it(
    profile: Any,
) -> None:
    sim = FeedSimulator.many(3, seed=17, profile=profile)
    books = BookSet(scales=sim.scales)
    apply_all(books, sim.frames(600))
    for pair in sim.pairs:
        snap = sim.snapshot(pair)
        kind, payload = parse(snap)
        assert kind == 431 and payload["CS"] == sim.seq(pair) and payload["PS"] == pair
        fresh = Book(pair, *sim.scales[pair])
        assert fresh.apply(snap) == Status.APPLIED
        assert book_levels(fresh) == sim.levels(pair) and fresh.anomalies == 0
        assert books.apply(snap) == (pair, Status.APPLIED)  # a 431 inside the stream
        assert_book_is_truth(books[pair], sim, pair)
        # a resync: the next 432s of this pair apply on top of the snapshot
        counted = sim.anomalies(pair)
        for frame in sim.frames(60):
            _, p = parse(frame)
            if p["PS"] == pair:
                assert fresh.apply(frame) == Status.APPLIED
            assert books.apply(frame)[1] == Status.APPLIED
        assert book_levels(fresh) == sim.levels(pair)
        assert fresh.anomalies == sim.anomalies(pair) - counted
    for pair in sim.pairs:
        assert_book_is_truth(books[pair], sim, pair)


def test_a_lost_frame_is_seen_as_a_gap_and_a_snapshot_resyncs() -> None:
    sim = FeedSimulator(["ETHTRY"], seed=19)
    book = Book("ETHTRY", *sim.scales["ETHTRY"])
    frames = sim.frames(100)
    for frame in frames[:50]:
        assert book.apply(frame) == Status.APPLIED
    assert book.apply(frames[51]) == Status.GAP  # frames[50] lost
    assert not book.synced
    assert book.apply(sim.snapshot("ETHTRY")) == Status.APPLIED
    assert book_levels(book) == sim.levels("ETHTRY") and book.synced


# -- what the streams look like ------------------------------------------------------------


def change_counts(frames: Iterable[bytes]) -> tuple[list[int], Counter[int]]:
    sizes: list[int] = []
    kinds: Counter[int] = Counter()
    for frame in frames:
        kind, payload = parse(frame)
        if kind != 432:
            continue
        entries = payload["AO"] + payload["BO"]
        sizes.append(len(entries))
        kinds.update(entry["CP"] for entry in entries)
    return sizes, kinds


@pytest.mark.no_sanitizer  # the simulator's statistics: no core code to check
def test_typical_frames_are_mostly_small_updates_with_occasional_big_ones() -> None:
    sim = FeedSimulator(seed=23)
    sizes, kinds = change_counts(sim.frames(20_000))
    small = sum(1 <= n <= 30 for n in sizes) / len(sizes)
    big = sum(50 <= n <= 200 for n in sizes) / len(sizes)
    assert small > 0.95
    assert 0.003 < big < 0.04
    assert min(sizes) >= 1 and max(sizes) <= 250
    assert kinds.most_common(1)[0][0] == 0  # CP 0 amount updates dominate
    assert kinds[1] > 0 and kinds[3] > 0


@pytest.mark.no_sanitizer  # the simulator's statistics: no core code to check
def test_typical_updates_are_near_the_top_of_the_book() -> None:
    # in the usual small frames (a big batch changes most of the top, each level once, and
    # goes deeper)
    sim = FeedSimulator(["BTCTRY"], seed=29)
    sim.frames(1)  # the 431
    depths: list[int] = []
    for _ in range(2000):
        bids, asks = sim.levels("BTCTRY")
        rank = {("BO", p): i for i, (p, _) in enumerate(bids)}
        rank.update({("AO", p): i for i, (p, _) in enumerate(asks)})
        _, payload = parse(sim.frames(1)[0])
        if len(payload["AO"]) + len(payload["BO"]) > 30:
            continue
        for key in ("AO", "BO"):
            for entry in payload[key]:
                if entry["CP"] == 0 and (key, Decimal(entry["P"])) in rank:
                    depths.append(rank[key, Decimal(entry["P"])])
    assert sum(d < 10 for d in depths) / len(depths) > 0.8
    assert max(depths) >= 10  # but not only the top


def test_hard_frames_are_big_and_move_the_price_fast() -> None:
    sim = FeedSimulator(["BTCTRY"], seed=31, profile="hard")
    sim.frames(1)
    moves = 0
    for _ in range(200):
        before = sim.levels("BTCTRY")[0][0][0]
        sizes, kinds = change_counts(sim.frames(1))
        assert sizes[0] >= 100
        after = sim.levels("BTCTRY")[0][0][0]
        moves += abs(after - before) >= 1000  # BTCTRY: 1000 TRY is ~10 level spacings
    assert moves > 40


# -- pairs and scales ----------------------------------------------------------------------


def test_many_starts_with_the_bundled_pairs_and_makes_up_the_rest() -> None:
    sim = FeedSimulator.many(380, seed=0)
    assert len(sim.pairs) == len(set(sim.pairs)) == 380
    bundled = list(obengine.DEFAULT_SCALES)
    assert list(sim.pairs[: len(bundled)]) == bundled
    for pair in bundled:
        assert sim.scales[pair] == obengine.DEFAULT_SCALES[pair]
    for pair in sim.pairs[len(bundled) :]:
        assert re.fullmatch(r"[A-Z]{2}[0-9]{2}(TRY|USDT|BTC)", pair), pair
    assert set(sim.scales) == set(sim.pairs)
    assert all(0 <= s <= 18 for scales in sim.scales.values() for s in scales)
    assert len(set(sim.scales.values())) > 5  # a variety of scales
    assert FeedSimulator.many(3).pairs == ("BTCTRY", "ETHTRY", "LTCTRY")


def test_scales_can_be_given_per_pair() -> None:
    sim = FeedSimulator(["BTCTRY", "FOOTRY"], seed=1, scales={"BTCTRY": (2, 6)})
    assert sim.scales["BTCTRY"] == (2, 6)
    assert all(0 <= s <= 18 for s in sim.scales["FOOTRY"])  # made up, seeded
    frames = sim.frames(50)
    replay_truth(frames)
    price, amount = sim.levels("BTCTRY")[1][0]
    assert price.as_tuple().exponent == -2 and amount.as_tuple().exponent == -6
    assert max(places(e["P"]) for f in frames for e in parse(f)[1]["AO"]) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pairs": []},
        {"pairs": ["BTCTRY", "BTCTRY"]},
        {"pairs": [""]},
        {"pairs": ['BAD"PAIR']},
        {"profile": "calm"},
        {"levels": 0},
        {"scales": {"BTCTRY": (19, 8)}},
        {"scales": {"BTCTRY": (-1, 8)}},
        {"spelling": "pretty"},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FeedSimulator(**kwargs)


def test_a_pair_symbol_string_is_not_a_list_of_pairs() -> None:
    with pytest.raises(TypeError):
        FeedSimulator("BTCTRY")


def test_unknown_pair_is_a_key_error() -> None:
    sim = FeedSimulator()
    for method in (sim.levels, sim.snapshot, sim.seq, sim.anomalies):
        with pytest.raises(KeyError):
            method("NOPE")
