"""The feed's sans-I/O protocol: lists of frames in, events and frames to send out, no network.
Frames come from the seeded simulator (as the exchange spells them) and from the tests' frame
builders; books are checked against the simulator's truth."""
from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from helpers import f431, f432

from obengine import Status
from obengine.auth import BtcTurkSigner
from obengine.protocol import (
    Desynced,
    FeedProtocol,
    Hello,
    LoginResult,
    Malformed,
    PairState,
    SnapshotTimeout,
    Subscribed,
    Synced,
    TickerEvent,
    TradeEvent,
    Update,
    UserEvent,
    backoff,
    subscribe_message,
)
from obengine.simulator import FeedSimulator

PAIRS = ("BTCTRY", "ETHTRY", "XRPTRY")


def feed(proto: FeedProtocol, data: bytes, now: float) -> list[Any]:
    """Receive one frame; its update (returned) and the queued events, in order."""
    update = proto.receive(data, now)
    events = proto.events_received()
    return events + ([update] if update is not None else [])


def sent(proto: FeedProtocol) -> list[list[Any]]:
    return [json.loads(m) for m in proto.data_to_send()]


def joins(messages: list[list[Any]]) -> list[tuple[str, str, bool]]:
    return [(m[1]["channel"], m[1]["event"], m[1]["join"]) for m in messages if m[0] == 151]


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def started(pairs: tuple[str, ...] = PAIRS, seed: int = 1) -> tuple[FeedProtocol, FeedSimulator]:
    """A protocol connected and fed every pair's 431 (a simulator of those pairs)."""
    sim = FeedSimulator(pairs, seed=seed)
    proto = FeedProtocol(pairs, scales=sim.scales)
    proto.connected(0.0)
    proto.data_to_send()
    for pair in pairs:
        proto.receive(sim.snapshot(pair), 0.1)
    sim.frames(0)
    proto.events_received()
    return proto, sim


def frames_after_snapshots(sim: FeedSimulator, n: int) -> list[bytes]:
    """The next n 432s (the simulator's first frame of a pair is its 431, already given by
    snapshot(): skip those)."""
    out: list[bytes] = []
    while len(out) < n:
        out += [f for f in sim.frames(n - len(out)) if f.startswith(b"[432")]
    return out


def assert_books_match(proto: FeedProtocol, sim: FeedSimulator) -> None:
    for pair in proto.pairs:
        if proto.synced(pair):
            bids, asks = sim.levels(pair)
            snap = proto.books[pair].snapshot()
            assert [(Decimal(p), Decimal(a)) for p, a in snap["bids"]] == bids
            assert [(Decimal(p), Decimal(a)) for p, a in snap["asks"]] == asks


def test_connect_queues_the_login_then_a_join_per_pair_and_channel() -> None:
    signer = BtcTurkSigner("pub", "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=")
    proto = FeedProtocol(["BTCTRY", "ETHTRY"], channels=("obdiff", "trade"), signer=signer)
    proto.connected(0.0)
    messages = sent(proto)
    assert messages[0][0] == 114 and messages[0][1]["publicKey"] == "pub"
    assert joins(messages) == [
        ("obdiff", "BTCTRY", True), ("trade", "BTCTRY", True), ("obdiff", "ETHTRY", True), ("trade", "ETHTRY", True),
    ]
    assert proto.state("BTCTRY") is PairState.JOINING and not proto.all_synced()
    assert subscribe_message("obdiff", "BTCTRY") == (
        b'[151,{"type":151,"channel":"obdiff","event":"BTCTRY","join":true}]'
    )


def test_snapshot_syncs_a_pair_and_each_applied_frame_is_an_update() -> None:
    sim = FeedSimulator(PAIRS, seed=2)
    proto = FeedProtocol(PAIRS, scales=sim.scales)
    proto.connected(0.0)
    proto.data_to_send()
    updates = 0
    for i, frame in enumerate(sim.frames(600)):
        for event in feed(proto, frame, i * 0.01):
            if isinstance(event, Update):
                pair, book, status = event                    # unpacks as a 3-tuple
                assert status is Status.APPLIED and book is proto.books[pair] and proto.synced(pair)
                updates += 1
    assert proto.all_synced() and updates == 600 == proto.stats.updates
    assert proto.data_to_send() == []                          # nothing to ask: no desync
    assert_books_match(proto, sim)
    assert proto.stats.book_frames == 600 and proto.stats.gaps == 0


def test_a_gap_desyncs_only_that_pair_and_asks_once_to_rejoin() -> None:
    proto, sim = started()
    frames = frames_after_snapshots(sim, 300)
    dropped = next(i for i, f in enumerate(frames) if b'"PS":"ETHTRY"' in f)
    asked: list[list[Any]] = []
    desyncs: list[Desynced] = []
    other_updates = 0
    for i, frame in enumerate(frames):
        if i == dropped:
            continue
        events = feed(proto, frame, 1.0 + i * 0.01)
        asked += sent(proto)
        desyncs += of(events, Desynced)
        other_updates += sum(1 for e in of(events, Update) if e.pair != "ETHTRY")
        assert not any(e.pair == "ETHTRY" for e in of(events, Update) if i > dropped)
    assert [(d.pair, d.reason) for d in desyncs] == [("ETHTRY", "gap")]
    assert joins(asked) == [("obdiff", "ETHTRY", False), ("obdiff", "ETHTRY", True)]   # once
    assert proto.state("ETHTRY") is PairState.JOINING and proto.synced("BTCTRY") and proto.synced("XRPTRY")
    assert other_updates > 0 and proto.stats.gaps == 1 and proto.stats.resyncs == 1
    proto.receive(sim.snapshot("ETHTRY"), 5.0)                 # the fresh 431 of the re-join
    assert of(proto.events_received(), Synced) == [Synced("ETHTRY", sim.seq("ETHTRY"))]
    updates = [e for frame in frames_after_snapshots(sim, 100) for e in feed(proto, frame, 6.0)]
    assert proto.all_synced() and len(of(updates, Update)) == 100
    assert_books_match(proto, sim)


def test_a_crossed_book_desyncs_and_rejoins() -> None:
    proto = FeedProtocol(["BTCTRY"], scales={"BTCTRY": (0, 8)})
    proto.connected(0.0)
    proto.data_to_send()
    events = feed(proto, f431(10, asks=[("101", "1")], bids=[("100", "1")]).encode(), 0.1)
    events += feed(proto, f432(11, bids=[("102", "1", 1)]).encode(), 0.2)
    assert [type(e) for e in events] == [Synced, Update, Desynced]
    assert events[-1].reason == "crossed" and proto.stats.crossed == 1
    assert joins(sent(proto)) == [("obdiff", "BTCTRY", False), ("obdiff", "BTCTRY", True)]


def test_a_malformed_book_frame_is_counted_logged_and_resyncs_its_pair(caplog: pytest.LogCaptureFixture) -> None:
    proto, sim = started()
    frame = frames_after_snapshots(sim, 1)[0]
    pair = json.loads(frame)[1]["PS"]
    bad = frame.replace(b'"P":"', b'"P":"-', 1)                # valid JSON, a value the rules refuse
    proto.receive(bad, 1.0)
    events = proto.events_received()
    [malformed] = of(events, Malformed)
    assert malformed.pair == pair and malformed.cs == json.loads(frame)[1]["CS"]
    assert [(d.pair, d.reason) for d in of(events, Desynced)] == [(pair, "malformed")]
    assert pair in caplog.text and "malformed" in caplog.text
    proto.receive(frame[: len(frame) // 2], 1.1)               # cut short: counted again, no new rejoin
    assert proto.stats.malformed == 2 and proto.stats.resyncs == 1
    proto.receive(b"\xff\xfe not json", 1.2)
    assert proto.stats.malformed == 3


def test_a_flapping_pair_waits_longer_before_each_rejoin() -> None:
    proto = FeedProtocol(["BTCTRY"], scales={"BTCTRY": (0, 8)}, rejoin_backoff_s=1.0)
    proto.connected(0.0)
    proto.data_to_send()
    delays = []
    now = 0.0
    for cs in range(100, 400, 100):
        proto.receive(f431(cs, asks=[("101", "1")], bids=[("100", "1")]).encode(), now)
        proto.receive(f432(cs + 5).encode(), now)             # a gap at once
        [d] = of(proto.events_received(), Desynced)
        delays.append(d.rejoin_in_s)
        if d.rejoin_in_s:
            assert joins(sent(proto)) == []                    # not yet
            assert proto.next_deadline() == now + d.rejoin_in_s
            now += d.rejoin_in_s
            proto.tick(now)
        assert joins(sent(proto)) == [("obdiff", "BTCTRY", False), ("obdiff", "BTCTRY", True)]
    assert delays == [0.0, 1.0, 2.0]
    now += 61.0                                                 # stable for a while: forgiven
    proto.receive(f431(900, asks=[("101", "1")], bids=[("100", "1")]).encode(), now - 61.0)
    proto.receive(f432(905).encode(), now)
    assert of(proto.events_received(), Desynced)[0].rejoin_in_s == 0.0


def test_a_join_without_a_snapshot_times_out_and_is_tried_again() -> None:
    proto = FeedProtocol(["btctry"], snapshot_timeout_s=10.0)
    proto.connected(0.0)
    proto.data_to_send()
    assert proto.next_deadline() == 10.0
    proto.tick(9.9)
    assert proto.events_received() == []
    proto.tick(10.0)
    [timeout] = proto.events_received()
    assert isinstance(timeout, SnapshotTimeout) and timeout.pair == "btctry" and timeout.waited_s == 10.0
    assert joins(sent(proto)) == [("obdiff", "btctry", False), ("obdiff", "btctry", True)]
    proto.tick(20.0)
    [second] = proto.events_received()
    assert second.rejoin_in_s == 1.0 and joins(sent(proto)) == []
    proto.tick(21.0)
    assert joins(sent(proto)) == [("obdiff", "btctry", False), ("obdiff", "btctry", True)]
    assert proto.stats.timeouts == 2


def test_reconnect_rejoins_everything_and_books_wait_for_their_new_431() -> None:
    proto, sim = started()
    proto.disconnected(1.0)
    proto.connected(2.0)
    assert proto.stats.reconnects == 1
    assert [e for _, e, _ in joins(sent(proto))] == list(PAIRS)
    assert not any(proto.synced(p) for p in PAIRS)
    early = [e for f in frames_after_snapshots(sim, 50) for e in feed(proto, f, 2.1)]   # before the 431s
    assert of(early, Update) == []
    for pair in PAIRS:
        proto.receive(sim.snapshot(pair), 2.2)
    assert proto.all_synced()
    assert_books_match(proto, sim)


def test_control_and_market_messages_become_typed_events() -> None:
    proto = FeedProtocol(["BTCTRY"], channels=("obdiff", "trade", "ticker"))
    proto.connected(0.0)
    messages = [
        b'[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]',
        b'[ 991 , { "type" : 991 , "current" : "5.1.0" , "min" : "2.3.0" } ]',
        b'[100,{"type":100,"ok":true,"message":"join|obdiff:BTCTRY"}]',
        b'[100,{"ok":false,"message":"join|obdiff:BTCTRY","type":100}]',
        b'[100,{"type":100,"ok":true,"message":"leave|obdiff:BTCTRY"}]',
        b'[114,{"type":114,"ok":false,"id":0,"message":"Unauthorized - Invalid Public key"}]',
        b'[421,{"symbol":"BTCTRY","items":[{"D":"1700000000000","I":"100","A":"76.5900000000",'
        b'"P":"2150000.0000000000","S":1}],"channel":"trade","event":"BTCTRY","type":421}]',
        b'[422,{"D":"1700000000001","I":"101","A":"0.1","P":"2150001","S":0,"PS":"BTCTRY",'
        b'"channel":"trade","event":"BTCTRY","type":422}]',
        b'[402,{"PS":"BTCTRY","H":"2200000","L":"2100000","La":"2150000","O":"2120000","V":"304.41",'
        b'"AV":"2150000.5","D":"-318","B":"2149999","A":"2150001","DP":"-1.02","type":402}]',
        b'[201,{"type":201,"UserID":5,"payload":"deposit"}]',
        b'[999,{"type":999}]',
        b'[423,{"channel":"trade"}]',
    ]
    for m in messages:
        proto.receive(m, 1.0)
    events = proto.events_received()
    assert of(events, Hello) == [Hello("6.0.0", "2.3.0"), Hello("5.1.0", "2.3.0")]
    assert [(s.ok, s.channel, s.event, s.join) for s in of(events, Subscribed)] == [
        (True, "obdiff", "BTCTRY", True), (False, "obdiff", "BTCTRY", True), (True, "obdiff", "BTCTRY", False),
    ]
    assert of(events, LoginResult) == [LoginResult(False, "Unauthorized - Invalid Public key")]
    assert proto.logged_in is False
    trades = of(events, TradeEvent)
    assert [(t.pair, t.trade_id, t.price, t.amount, t.side, t.time_ms) for t in trades] == [
        ("BTCTRY", "100", Decimal("2150000"), Decimal("76.59"), "buy", 1700000000000),
        ("BTCTRY", "101", Decimal("2150001"), Decimal("0.1"), "sell", 1700000000001),
    ]
    [ticker] = of(events, TickerEvent)
    assert ticker.volume == Decimal("304.41") and ticker.daily_percent == Decimal("-1.02") and ticker.open == 2120000
    assert of(events, UserEvent)[0].kind == "balance"
    assert proto.stats.ignored == 2 and proto.stats.malformed == 0


def test_a_bad_trade_message_is_malformed_not_raised() -> None:
    proto = FeedProtocol(["BTCTRY"], channels=("trade",))
    proto.receive(b'[422,{"PS":"BTCTRY","P":"abc","A":"1","I":"1","D":"1"}]', 0.0)
    [event] = proto.events_received()
    assert isinstance(event, Malformed) and event.pair == "BTCTRY"


def test_a_random_mix_of_faults_always_ends_with_exact_books() -> None:
    """Drops, duplicates, reorders and corrupted frames at random; every desync is answered by a
    re-join, modelled here by handing over a fresh snapshot when the protocol asks; no update is
    ever given for a book that differs from the truth at its CS."""
    rng = random.Random(7)
    proto, sim = started(seed=4)
    truth_at: dict[tuple[str, int], Any] = {}
    pending: list[str] = []
    now = 1.0
    held: bytes | None = None
    for _ in range(3000):
        now += 0.01
        [frame] = frames_after_snapshots(sim, 1)
        pair = json.loads(frame)[1]["PS"]
        bids, asks = sim.levels(pair)
        truth_at[(pair, sim.seq(pair))] = (bids, asks)
        roll = rng.random()
        if roll < 0.02:
            continue                                              # dropped
        if roll < 0.04:
            frame = frame[: rng.randrange(5, len(frame))]         # cut
        elif roll < 0.06 and held is None:
            held = frame                                          # delivered late (reordered)
            continue
        deliveries = [frame]
        if held is not None and rng.random() < 0.5:
            deliveries.append(held)
            held = None
        if rng.random() < 0.02:
            deliveries.append(frame)                              # duplicated
        events = [e for data in deliveries for e in feed(proto, data, now)]
        for m in sent(proto):
            if m[0] == 151 and m[1]["join"]:
                pending.append(m[1]["event"])
        for event in events:
            if isinstance(event, Update):
                snap = event.book.snapshot()
                got = ([(Decimal(p), Decimal(a)) for p, a in snap["bids"]],
                       [(Decimal(p), Decimal(a)) for p, a in snap["asks"]])
                assert got == truth_at.get((event.pair, snap["seq"]), got if snap["seq"] is None else None)
        while pending:                                            # the server answers a re-join
            p = pending.pop(0)
            proto.receive(sim.snapshot(p), now)
            truth_at[(p, sim.seq(p))] = sim.levels(p)
        proto.tick(now + 100)                                     # let any delayed re-join go
        for m in sent(proto):
            if m[0] == 151 and m[1]["join"]:
                pending.append(m[1]["event"])
    while pending:
        proto.receive(sim.snapshot(pending.pop(0)), now)
    assert proto.stats.gaps + proto.stats.malformed > 20
    for pair in PAIRS:
        if not proto.synced(pair):
            proto.receive(sim.snapshot(pair), now)
    assert proto.all_synced()
    assert_books_match(proto, sim)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    delays = backoff(initial_s=0.5, factor=2.0, max_s=4.0, jitter=0.5, rng=random.Random(1))
    values = [next(delays) for _ in range(8)]
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(cap / 2 <= v <= cap for v, cap in zip(values, caps))
    assert len(set(values)) == len(values)
