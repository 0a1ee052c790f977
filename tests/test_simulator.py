"""The simulator (``obengine.simulator.FeedSimulator``): deterministic, exchange-shaped frames, a
stream consistent by construction, and the engine agreeing with its truth exactly."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pytest

import obengine
from obengine import Book, BookSet, Status
from helpers import levels
from obengine.simulator import FeedSimulator
from reference import RefBookSet

PAYLOAD_KEYS = ["CS", "PS", "AO", "BO", "channel", "event", "type"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Truth = tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]


# -- helpers -------------------------------------------------------------------------------


def no_floats(text: str) -> Any:
    raise AssertionError(f"a float in a frame: {text}")


def parse(frame: bytes) -> tuple[int, dict[str, Any]]:
    """The frame's ``(type, payload)``, checking the outer shape and that no float appears."""
    value = json.loads(frame, parse_float=no_floats)
    assert isinstance(value, list) and len(value) == 2
    kind, payload = value
    assert isinstance(kind, int) and isinstance(payload, dict)
    return kind, payload


def decimal_pattern(scale: int) -> re.Pattern[str]:
    """A positive decimal with exactly ``scale`` fraction digits, no sign, no exponent."""
    return re.compile(r"(0|[1-9][0-9]*)" + (rf"\.[0-9]{{{scale}}}" if scale else "") + r"\Z")


def book_levels(book: Any) -> Truth:
    """A book's levels as exact decimals, whatever its scales."""
    ps, amount_scale = book.price_scale, book.amount_scale

    def side(view: Any) -> list[tuple[Decimal, Decimal]]:
        return [
            (Decimal(int(p)).scaleb(-ps), Decimal(int(a)).scaleb(-amount_scale)) for p, a in view
        ]

    return side(book.bids), side(book.asks)


def assert_book_is_truth(book: Any, sim: FeedSimulator, pair: str) -> None:
    assert book_levels(book) == sim.levels(pair), pair
    assert book.anomalies == 0, pair
    assert book.synced, pair
    assert book.seq == sim.seq(pair), pair


def apply_all(books: Any, frames: Iterable[bytes]) -> Counter[Status]:
    statuses: Counter[Status] = Counter()
    for frame in frames:
        _, status = books.apply(frame)
        statuses[status] += 1
    return statuses


def replay_truth(frames: Sequence[bytes]) -> dict[str, dict[str, Any]]:
    """An independent model: replay frames into dicts of Decimal, asserting that every change
    is valid (CP 0 and CP 3 for present prices, CP 1 for absent ones), that CS follows on,
    and that the book is never crossed after a frame."""
    books: dict[str, dict[str, Any]] = {}
    for frame in frames:
        kind, payload = parse(frame)
        pair, cs = payload["PS"], payload["CS"]
        if kind == 431:
            book = books[pair] = {"AO": {}, "BO": {}, "seq": cs}
            for key in ("AO", "BO"):
                for entry in payload[key]:
                    price = Decimal(entry["P"])
                    assert price not in book[key]
                    book[key][price] = Decimal(entry["A"])
        else:
            book = books[pair]
            assert (cs - book["seq"]) % 2**32 == 1
            book["seq"] = cs
            for key in ("AO", "BO"):
                side = book[key]
                for entry in payload[key]:
                    price, amount, cp = Decimal(entry["P"]), Decimal(entry["A"]), entry["CP"]
                    assert price > 0 and amount > 0
                    if cp == 0:
                        assert price in side
                        side[price] = amount
                    elif cp == 1:
                        assert price not in side
                        side[price] = amount
                    else:
                        assert cp == 3 and price in side
                        del side[price]
        if book["AO"] and book["BO"]:
            assert max(book["BO"]) < min(book["AO"]), pair
    return books


# -- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["typical", "hard"])
def test_same_seed_gives_byte_identical_frames(profile: Any) -> None:
    a = FeedSimulator.many(5, seed=42, profile=profile)
    b = FeedSimulator.many(5, seed=42, profile=profile)
    assert a.pairs == b.pairs and a.scales == b.scales
    assert a.frames(300) == b.frames(300)
    assert a.frames(50) == b.frames(50)
    for pair in a.pairs:
        assert a.snapshot(pair) == b.snapshot(pair)
        assert a.levels(pair) == b.levels(pair)


def test_different_seeds_give_different_streams() -> None:
    assert FeedSimulator(seed=1).frames(20) != FeedSimulator(seed=2).frames(20)
    assert FeedSimulator.many(30, seed=1).pairs != FeedSimulator.many(30, seed=2).pairs


def test_stream_does_not_depend_on_how_it_is_chunked() -> None:
    whole = FeedSimulator.many(4, seed=9).frames(500)
    sim = FeedSimulator.many(4, seed=9)
    chunked = sim.frames(1) + sim.frames(0) + sim.frames(199) + sim.frames(300)
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
    got += probed.frames(250)
    assert got == expected


# -- shape of the frames -------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["typical", "hard"])
def test_frames_have_the_exchange_shape(profile: Any) -> None:
    sim = FeedSimulator.many(30, seed=3, profile=profile)
    patterns = {
        pair: (decimal_pattern(ps), decimal_pattern(amount_scale))
        for pair, (ps, amount_scale) in sim.scales.items()
    }
    started: set[str] = set()
    for frame in sim.frames(600):
        assert isinstance(frame, bytes)
        kind, payload = parse(frame)
        # compact JSON, keys in the exchange's order
        assert frame == json.dumps([kind, payload], separators=(",", ":")).encode()
        assert list(payload) == PAYLOAD_KEYS
        pair = payload["PS"]
        assert payload["event"] == pair and payload["channel"] == "obdiff"
        assert payload["type"] == kind
        assert isinstance(payload["CS"], int) and INT32_MIN <= payload["CS"] <= INT32_MAX
        # a pair's first frame is its 431, then only 432s
        assert kind == (432 if pair in started else 431)
        started.add(pair)
        price_re, amount_re = patterns[pair]
        for key in ("AO", "BO"):
            for entry in payload[key]:
                assert list(entry) == (["CP", "A", "P"] if kind == 432 else ["A", "P"])
                assert price_re.match(entry["P"]), (pair, entry)
                assert amount_re.match(entry["A"]), (pair, entry)
                if kind == 432:
                    assert entry["CP"] in (0, 1, 3)
        if kind == 432:
            assert payload["AO"] or payload["BO"]


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
                assert amount.as_tuple().exponent == -amount_scale


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


# -- consistency: an independent replay and the engine both give the truth -----------------


@pytest.mark.parametrize("profile", ["typical", "hard"])
def test_stream_uses_only_valid_changes_and_replays_to_the_truth(profile: Any) -> None:
    sim = FeedSimulator.many(6, seed=11, profile=profile)
    frames = sim.frames(1200 if profile == "typical" else 300)
    books = replay_truth(frames)
    assert set(books) == set(sim.pairs)
    for pair, book in books.items():
        bids, asks = sim.levels(pair)
        assert sorted(book["BO"].items(), reverse=True) == bids
        assert sorted(book["AO"].items()) == asks
        assert book["seq"] == sim.seq(pair)


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
def test_engine_applies_the_stream_exactly_with_no_anomaly(
    n_pairs: int, n_frames: int, profile: Any
) -> None:
    sim = FeedSimulator.many(n_pairs, seed=2024, profile=profile)
    books = BookSet(scales=sim.scales)
    checkpoints = 8 if n_pairs == 1 else 3
    sent: set[str] = set()
    for _ in range(checkpoints):
        frames = sim.frames(n_frames // checkpoints)
        sent.update(parse(frame)[1]["PS"] for frame in frames)
        statuses = apply_all(books, frames)
        assert set(statuses) == {Status.APPLIED}, statuses  # no STALE, GAP or CROSSED
        for pair in books:
            assert_book_is_truth(books[pair], sim, pair)
    assert set(books) == sent
    assert len(sent) > 0.9 * n_pairs
    for pair in books:
        book = books[pair]
        assert (book.price_scale, book.amount_scale) == sim.scales[pair]  # never rescaled
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


def test_reference_model_agrees_with_the_engine_on_the_stream() -> None:
    sim = FeedSimulator.many(25, seed=21, profile="hard")
    frames = sim.frames(250)
    core, ref = BookSet(scales=sim.scales), RefBookSet(scales=sim.scales)
    for frame in frames:
        assert core.apply(frame) == ref.apply(frame)
    for pair in sim.pairs:
        if pair in core:
            assert ref[pair].anomalies == 0
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
        assert_book_is_truth(fresh, sim, pair)
        assert books.apply(snap) == (pair, Status.APPLIED)  # a 431 inside the stream
        assert_book_is_truth(books[pair], sim, pair)
        # a resync: the next 432s of this pair apply on top of the snapshot
        for frame in sim.frames(60):
            _, p = parse(frame)
            if p["PS"] == pair:
                assert fresh.apply(frame) == Status.APPLIED
            assert books.apply(frame)[1] == Status.APPLIED
        assert_book_is_truth(fresh, sim, pair)
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
    assert_book_is_truth(book, sim, "ETHTRY")


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


def test_typical_updates_are_near_the_top_of_the_book() -> None:
    sim = FeedSimulator(["BTCTRY"], seed=29)
    sim.frames(1)  # the 431
    depths: list[int] = []
    for _ in range(2000):
        bids, asks = sim.levels("BTCTRY")
        rank = {("BO", p): i for i, (p, _) in enumerate(bids)}
        rank.update({("AO", p): i for i, (p, _) in enumerate(asks)})
        _, payload = parse(sim.frames(1)[0])
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


def test_sides_keep_the_window_size() -> None:
    for window in (100, 7):
        sim = FeedSimulator.many(5, seed=37, profile="hard", levels=window)
        for _ in range(5):
            sim.frames(60)
            for pair in sim.pairs:
                bids, asks = sim.levels(pair)
                assert len(bids) == len(asks) == window


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
    books = replay_truth(frames)
    price, amount = next(iter(books["BTCTRY"]["AO"].items()))
    assert price.as_tuple().exponent == -2 and amount.as_tuple().exponent == -6


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
    for method in (sim.levels, sim.snapshot, sim.seq):
        with pytest.raises(KeyError):
            method("NOPE")
