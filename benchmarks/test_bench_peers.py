"""The peers follow the same book rules as obengine on the edge cases the workloads do not hit
(stale and gap frames, a 431 inside the stream, CS wrap-around, deletes of missing levels, zero
amounts). Not a benchmark: plain tests, run with the suite."""
from __future__ import annotations

import orjson
import pytest

import peers

PAIR = "BTCTRY"
SCALES = {PAIR: (0, 8)}


def frame(kind: int, cs: int, asks=(), bids=()) -> bytes:
    def entries(levels):
        out = []
        for lv in levels:
            if kind == 432:
                cp, p, a = lv
                out.append({"CP": cp, "A": a, "P": p})
            else:
                p, a = lv
                out.append({"A": a, "P": p})
        return out

    return orjson.dumps(
        [kind, {"CS": cs, "PS": PAIR, "AO": entries(asks), "BO": entries(bids), "channel": "obdiff", "event": PAIR, "type": kind}]
    )


STREAM = [
    frame(991, 0),
    frame(432, 9, asks=[(1, "200", "1.0")]),  # before any 431: gap, ignored
    frame(431, 10, asks=[("100", "1.00000000"), ("101", "2")], bids=[("99", "1"), ("98", "2"), ("97", "0")]),
    frame(432, 11, asks=[(0, "100", "5.5"), (1, "102", "3")], bids=[(3, "98", "2"), (3, "90", "1")]),
    frame(432, 11, asks=[(3, "100", "5.5")]),  # stale
    frame(432, 10, asks=[(3, "101", "2")]),  # stale
    frame(432, 12, bids=[(0, "99", "0"), (1, "96", "0.12345678")]),  # zero amount deletes
    frame(432, 14, asks=[(3, "102", "3")]),  # gap: unsynced
    frame(432, 15, asks=[(3, "101", "2")]),  # unsynced: ignored
    frame(431, 2147483646, asks=[("105", "1")], bids=[("95", "1"), ("94", "4")]),
    frame(432, 2147483647, asks=[(1, "106", "2")]),
    frame(432, -2147483648, asks=[(0, "105", "7")], bids=[(3, "94", "4"), (1, "93", "0.5")]),  # wraps
]


@pytest.mark.parametrize("cls", [c for c in peers.PATHS if c.kind in ("peer", "variant")], ids=lambda c: c.name)
def test_peer_follows_obengine_frame_by_frame(cls: type[peers.Path]) -> None:
    for needed in (cls, peers.Obengine):
        reason = needed.unavailable()
        if reason:
            pytest.skip(reason)
    ob_cls = peers.Obengine
    ob, peer = ob_cls(SCALES), cls(SCALES)
    for i, raw in enumerate(STREAM):
        ob.apply(raw)
        peer.apply(raw)
        if PAIR in ob.bookset:  # type: ignore[attr-defined]
            truth = {PAIR: ob.top(PAIR, 50)}
            if PAIR not in peer.books and truth[PAIR] == ([], []):
                continue  # obengine keeps an empty book for a pair seen before its 431
            assert peers.compare(peer, truth, 50) == [], f"after frame {i}: {raw!r}"
    assert ob.top(PAIR, 50) == (
        [(95, 1), (93, 0.5)],
        [(105, 7), (106, 2)],
    )
