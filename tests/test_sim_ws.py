"""The simulated exchange's websocket side (``SimExchange(websocket=True)``, ``obengine.sim.ws``):
a real server on loopback, real ``websockets`` clients, and the frames they receive applied to an
``obengine.BookSet`` and compared with the market's truth. Login signatures are computed here with
``hmac`` directly, as an oracle independent of ``obengine.auth``.

No timed assertions: waits are bounded only to fail instead of hanging, and "nothing arrived"
is only asserted while the server itself reports it is holding everything back. To know that
everything a push sent has arrived, a test sends a *barrier*: a join of an unknown pair, whose
answer the server queues after everything before it (one ordered queue per connection)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

import obengine
from obengine import BookSet, FrameError, Status
from obengine.sim import DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY, SimExchange, WsFaults

T = TypeVar("T")

PAIRS = ["BTCTRY", "ETHTRY"]
PACKAGE_ROOT = str(Path(obengine.__file__).resolve().parent.parent)
WAIT_S = 30.0  # only so that a broken server fails the test instead of hanging it
HELLO = '[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]'
INT32_MAX = 2**31 - 1
_barriers = itertools.count(1)

Levels = list[tuple[Decimal, Decimal]]


# -- helpers -------------------------------------------------------------------------------


def run(scenario: Callable[[SimExchange], Awaitable[T]], **options: Any) -> T:
    """Run ``scenario(sim)`` against a fresh exchange with its websocket side."""
    options.setdefault("pairs", PAIRS)
    options.setdefault("websocket", True)

    async def main() -> T:
        async with SimExchange(**options) as sim:
            return await asyncio.wait_for(scenario(sim), 120)

    return asyncio.run(main())


class Client:
    """A websocket client that keeps every message it reads, and a BookSet fed with them."""

    def __init__(self, ws: ClientConnection, sim: SimExchange) -> None:
        self.ws = ws
        self.books = BookSet(scales=sim.market.feed.scales)
        self.log: list[str] = []

    async def recv(self) -> str:
        message = await asyncio.wait_for(self.ws.recv(), WAIT_S)
        assert isinstance(message, str), "text frames only"
        self.log.append(message)
        return message

    async def send(self, kind: int, payload: dict[str, Any]) -> None:
        await self.ws.send(json.dumps([kind, payload]))

    async def subscribe(self, channel: str, event: str, join: bool = True) -> dict[str, Any]:
        """Send a 151 and return the answer (type 100), which must come next."""
        await self.send(151, {"type": 151, "channel": channel, "event": event, "join": join})
        answer = json.loads(await self.recv())
        assert answer[0] == 100, answer
        payload: dict[str, Any] = answer[1]
        return payload

    async def join_book(self, pair: str) -> tuple[int, str]:
        """Join a pair's obdiff; wait for its 431, apply it; return ``(CS, raw 431)``."""
        assert (await self.subscribe("obdiff", pair))["ok"] is True
        raw = await self.recv()
        assert raw.startswith("[431,"), raw[:80]
        assert self.books.apply(raw) == (pair, Status.APPLIED)
        return cs(raw), raw

    async def barrier(self) -> list[str]:
        """Everything the server queued before now (a join of an unknown pair answers in order)."""
        name = f"ZZ{next(_barriers)}TRY"
        await self.send(151, {"type": 151, "channel": "obdiff", "event": name, "join": True})
        out: list[str] = []
        while True:
            message = await self.recv()
            if message.startswith("[100,") and f"obdiff:{name}" in message:
                return out
            out.append(message)

    async def login(self, public: str = DEMO_PUBLIC_KEY, private: str = DEMO_PRIVATE_KEY,
                    nonce: int | None = None) -> dict[str, Any]:
        nonce = nonce if nonce is not None else int.from_bytes(os.urandom(4), "big") % INT32_MAX + 1
        stamp = int(time.time() * 1000)
        await self.send(114, {"type": 114, "publicKey": public, "timestamp": stamp, "nonce": nonce,
                              "signature": signature(private, public, nonce)})
        while True:
            message = json.loads(await self.recv())
            if message[0] == 114:
                payload: dict[str, Any] = message[1]
                return payload


class _Connect:
    def __init__(self, sim: SimExchange, **kwargs: Any) -> None:
        self.sim = sim
        self.kwargs = kwargs
        self.cm: Any = None

    async def __aenter__(self) -> Client:
        self.cm = connect(self.sim.ws_url, compression=None, ping_interval=None,
                          open_timeout=WAIT_S, max_size=None, **self.kwargs)
        client = Client(await self.cm.__aenter__(), self.sim)
        assert await client.recv() == HELLO  # the hello comes first
        return client

    async def __aexit__(self, *exc: Any) -> None:
        await self.cm.__aexit__(*exc)


def client(sim: SimExchange, **kwargs: Any) -> _Connect:
    return _Connect(sim, **kwargs)


def signature(private: str, public: str, nonce: int) -> str:
    mac = hmac.new(base64.b64decode(private), f"{public}{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def cs(raw: str) -> int:
    value: int = json.loads(raw)[1]["CS"]
    return value


def wrap(value: int) -> int:
    return ((value + 2**31) % 2**32) - 2**31


def book_levels(books: BookSet, pair: str) -> tuple[Levels, Levels]:
    snap = books[pair].snapshot()
    return (
        [(Decimal(p), Decimal(a)) for p, a in snap["bids"]],
        [(Decimal(p), Decimal(a)) for p, a in snap["asks"]],
    )


def book_frames(messages: list[str], pair: str | None = None) -> list[str]:
    out = [m for m in messages if m.startswith(("[431,", "[432,"))]
    if pair is not None:
        out = [m for m in out if f'"PS":"{pair}"' in m[:64]]
    return out


def apply_all(books: BookSet, frames: list[str]) -> list[Status]:
    return [books.apply(f)[1] for f in frames]


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


# -- hello, subscriptions, CS ----------------------------------------------------------------


def test_hello_first_then_join_answers_and_a_431_then_432s_with_consecutive_cs() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            await c.send(151, {"type": 151, "channel": "obdiff", "event": "BTCTRY", "join": True})
            assert json.loads(await c.recv()) == [
                100, {"type": 100, "ok": True, "message": "join|obdiff:BTCTRY"}
            ]
            first = await c.recv()
            assert first.startswith('[431,{"CS":')
            payload = json.loads(first)[1]
            assert list(payload) == ["CS", "PS", "AO", "BO", "channel", "event", "type"]
            assert (payload["PS"], payload["channel"], payload["event"], payload["type"]) == (
                "BTCTRY", "obdiff", "BTCTRY", 431
            )
            base = payload["CS"]
            assert base != sim.market.feed.seq("BTCTRY")  # its own base, not the market's CS
            assert c.books.apply(first) == ("BTCTRY", Status.APPLIED)
            await sim.push(60)
            frames = await c.barrier()
            assert frames and all(f.startswith("[432,") for f in frames)  # BTCTRY's only
            assert book_frames(frames, "BTCTRY") == frames
            assert [cs(f) for f in frames] == [wrap(base + i) for i in range(1, len(frames) + 1)]
            assert set(apply_all(c.books, frames)) == {Status.APPLIED}
            assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")
            (info,) = sim.ws.subscriptions(pair="BTCTRY") if sim.ws else []
            assert (info.pair, info.live, info.cs) == ("BTCTRY", True, cs(frames[-1]))

    run(scenario)


def test_every_subscription_draws_a_fresh_cs_base() -> None:
    async def scenario(sim: SimExchange) -> list[int]:
        bases = []
        async with client(sim) as a, client(sim) as b:
            for c in (a, b):
                bases.append((await c.join_book("BTCTRY"))[0])
            assert (await a.subscribe("obdiff", "BTCTRY", join=False))["ok"] is True
            bases.append((await a.join_book("BTCTRY"))[0])  # a re-join: a fresh base again
        return bases

    bases = run(scenario)
    assert len(set(bases)) == 3


def test_cs_bases_are_drawn_near_the_signed_32_bit_top_negative_or_positive() -> None:
    from obengine.sim.market import SimMarket
    from obengine.sim.ws import SimWebsocket

    ws = SimWebsocket(SimMarket(["BTCTRY"]), seed=3)
    drawn = [ws._draw_base() for _ in range(2000)]
    assert all(-(2**31) <= b <= INT32_MAX for b in drawn)
    assert 200 < sum(b > INT32_MAX - 100 for b in drawn) < 600  # about 20%: they wrap soon
    assert 200 < sum(b < 0 for b in drawn) < 600  # about 20%


def test_a_subscription_crosses_the_signed_32_bit_wrap() -> None:
    async def scenario(sim: SimExchange) -> None:
        assert sim.ws is not None
        sim.ws.force_cs_base(INT32_MAX - 2)
        async with client(sim) as c:
            base, _ = await c.join_book("BTCTRY")
            assert base == INT32_MAX - 2
            await sim.push(40)
            frames = await c.barrier()
            assert len(frames) > 4
            seen = [cs(f) for f in frames]
            assert seen[:4] == [INT32_MAX - 1, INT32_MAX, -(2**31), -(2**31) + 1]
            assert set(apply_all(c.books, frames)) == {Status.APPLIED}
            assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")

    run(scenario)


def test_after_pushes_every_client_book_equals_the_truth_exactly() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as a, client(sim) as b:
            for pair in PAIRS:
                await a.join_book(pair)
            await b.join_book("ETHTRY")
            for n in (1, 50, 300):
                await sim.push(n)
                for c in (a, b):
                    assert set(apply_all(c.books, await c.barrier())) <= {Status.APPLIED}
                for pair in PAIRS:
                    assert book_levels(a.books, pair) == sim.truth(pair)
                assert book_levels(b.books, "ETHTRY") == sim.truth("ETHTRY")
                assert "BTCTRY" not in b.books

    run(scenario)


def test_a_late_joiner_gets_the_current_book_and_only_the_frames_after_it() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            await sim.push(200)  # nobody subscribed: the market moves, nothing is sent
            assert await c.barrier() == []
            await c.join_book("BTCTRY")
            assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")
            await sim.push(100)
            assert set(apply_all(c.books, await c.barrier())) == {Status.APPLIED}
            assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")

    run(scenario)


def test_frames_pushed_during_the_join_delay_are_in_the_431_and_never_before_it() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            assert (await c.subscribe("obdiff", "BTCTRY"))["ok"] is True
            await sim.push(150)  # before the 431 (0.3 s after the join)
            await sim.push(150)
            messages = [await c.recv()]  # the 431 first: nothing of the pair before it
            messages += await c.barrier()
            frames = book_frames(messages, "BTCTRY")
            assert frames[0].startswith("[431,")
            assert set(apply_all(c.books, frames)) == {Status.APPLIED}
            assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")

    run(scenario, join_delay_s=0.3)


def test_in_thread_with_a_synchronous_client_and_push_sync() -> None:
    from websockets.sync.client import connect as sync_connect

    with SimExchange.in_thread(pairs=PAIRS, websocket=True) as sim:
        assert sim.ws is not None
        books = BookSet(scales=sim.market.feed.scales)
        with sync_connect(sim.ws_url, compression=None, open_timeout=WAIT_S) as ws:
            assert ws.recv(timeout=WAIT_S) == HELLO
            ws.send(json.dumps([151, {"type": 151, "channel": "obdiff", "event": "ETHTRY",
                                      "join": True}]))
            assert "join|obdiff:ETHTRY" in str(ws.recv(timeout=WAIT_S))
            assert books.apply(ws.recv(timeout=WAIT_S)) == ("ETHTRY", Status.APPLIED)
            frames = sim.ws.push_sync(100)
            expected = sum(1 for f in frames if f.startswith(b'[432,{"CS":')
                           and b'"PS":"ETHTRY"' in f[:64])
            statuses = [books.apply(ws.recv(timeout=WAIT_S))[1] for _ in range(expected)]
            assert set(statuses) == {Status.APPLIED}
            assert book_levels(books, "ETHTRY") == sim.truth("ETHTRY")


def test_a_market_moved_behind_the_servers_back_gets_a_fresh_431_as_the_new_base() -> None:
    async def scenario(sim: SimExchange) -> None:
        assert sim.ws is not None
        async with client(sim) as c:
            base, _ = await c.join_book("BTCTRY")
            sim.market.advance(100)  # not through push: the subscribers do not see these
            await sim.push(100)
            frames = await c.barrier()
            assert frames[0].startswith("[431,") and cs(frames[0]) == wrap(base + 1)
            assert set(apply_all(c.books, frames)) == {Status.APPLIED}
            assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")
            assert sim.ws.resyncs == 1

    run(scenario)


def test_leave_stops_the_pair_and_only_that_pair() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            for pair in PAIRS:
                await c.join_book(pair)
            answer = await c.subscribe("obdiff", "BTCTRY", join=False)
            assert answer == {"type": 100, "ok": True, "message": "leave|obdiff:BTCTRY"}
            await sim.push(100)
            frames = await c.barrier()
            assert frames and book_frames(frames, "ETHTRY") == frames
            assert set(apply_all(c.books, frames)) == {Status.APPLIED}
            assert book_levels(c.books, "ETHTRY") == sim.truth("ETHTRY")
            # leaving again, and joining twice, are refused
            assert (await c.subscribe("obdiff", "BTCTRY", join=False))["ok"] is False
            assert (await c.subscribe("obdiff", "ETHTRY"))["ok"] is False

    run(scenario)


def test_an_unknown_or_lower_case_pair_gets_ok_and_then_nothing() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            for event in ("btctry", "NOPETRY"):
                answer = await c.subscribe("obdiff", event)
                assert answer == {"type": 100, "ok": True, "message": f"join|obdiff:{event}"}
            assert (await c.subscribe("nochannel", "BTCTRY"))["ok"] is True
            await asyncio.sleep(0.1)  # past the join delay: still nothing may come
            await sim.push(100)
            assert await c.barrier() == []

    run(scenario)


def test_unknown_messages_from_the_client_are_ignored() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            await c.send(999, {"type": 999})
            await c.ws.send("not json at all")
            await c.ws.send(b"\x00binary")
            await c.ws.send("[151]")
            await c.send(151, {"type": 151, "channel": "obdiff", "event": "BTCTRY"})  # no join
            assert await c.barrier() == []
            await c.join_book("BTCTRY")

    run(scenario)


# -- trades, tickers, orderbook ----------------------------------------------------------------


def test_trade_channel_sends_a_421_list_then_422_singles() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            assert (await c.subscribe("trade", "BTCTRY"))["ok"] is True
            kind, payload = json.loads(await c.recv(), parse_float=Decimal)
            assert kind == 421 and list(payload) == ["symbol", "items", "channel", "event", "type"]
            assert (payload["symbol"], payload["channel"], payload["event"]) == (
                "BTCTRY", "trade", "BTCTRY"
            )
            trades = sim.market.trades("BTCTRY", 50)
            assert [item["I"] for item in payload["items"]] == [t.tid for t in trades]
            first = payload["items"][0]
            assert list(first) == ["D", "I", "A", "P", "S"]
            assert first["D"] == str(trades[0].time_ms) and first["S"] in (0, 1)
            assert len(first["A"].split(".")[1]) == 10 and Decimal(first["A"]) == trades[0].amount
            assert Decimal(first["P"]) == trades[0].price
            before = {t.tid for t in sim.market.trades("BTCTRY", 200)}
            await sim.push(300)
            singles = [json.loads(m) for m in await c.barrier()]
            new = [t for t in reversed(sim.market.trades("BTCTRY", 200)) if t.tid not in before]
            assert new and [m[0] for m in singles] == [422] * len(new)
            assert [m[1]["I"] for m in singles] == [t.tid for t in new]  # oldest first
            one = singles[0][1]
            assert one["PS"] == "BTCTRY" and one["type"] == 422
            assert one["S"] == (1 if new[0].side == "buy" else 0)

    run(scenario)


def test_ticker_channel_all_and_one_pair() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            assert (await c.subscribe("ticker", "all"))["ok"] is True
            kind, payload = json.loads(await c.recv())
            assert kind == 401 and [i["PS"] for i in payload["items"]] == PAIRS
            assert (payload["event"], payload["type"]) == ("all", 401)
            assert (await c.subscribe("ticker", "ETHTRY"))["ok"] is True
            kind, one = json.loads(await c.recv())
            assert kind == 402 and one["PS"] == "ETHTRY" and one["type"] == 402
            bids, asks = sim.truth("ETHTRY")
            assert Decimal(one["B"]) == bids[0][0] and Decimal(one["A"]) == asks[0][0]
            assert (one["NS"], one["DS"]) == ("ETH", "TRY")
            await sim.push(20)
            after = [json.loads(m) for m in await c.barrier()]
            assert [m[0] for m in after].count(401) == 1
            assert [m[0] for m in after].count(402) == 1

    run(scenario)


def test_orderbook_channel_sends_a_full_book_about_every_interval() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            assert (await c.subscribe("orderbook", "ETHTRY"))["ok"] is True
            first, second = await c.recv(), await c.recv()
            for raw in (first, second):
                payload = json.loads(raw)[1]
                assert raw.startswith("[431,") and payload["channel"] == "orderbook"
            assert cs(second) == wrap(cs(first) + 1)
            assert c.books.apply(second) == ("ETHTRY", Status.APPLIED)
            assert book_levels(c.books, "ETHTRY") == sim.truth("ETHTRY")

    run(scenario, ws_options={"orderbook_interval_s": 0.05})


# -- the REST side sees the same market --------------------------------------------------------


def test_the_rest_order_book_equals_the_websocket_book() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c, httpx.AsyncClient(base_url=sim.url, timeout=WAIT_S) as rest:
            await c.join_book("BTCTRY")
            await sim.push(250)
            assert set(apply_all(c.books, await c.barrier())) == {Status.APPLIED}
            resp = await rest.get("/api/v2/orderbook", params={"pairSymbol": "BTCTRY"})
            data = json.loads(resp.content)["data"]
            rest_bids = [(Decimal(p), Decimal(a)) for p, a in data["bids"]]
            rest_asks = [(Decimal(p), Decimal(a)) for p, a in data["asks"]]
            assert (rest_bids, rest_asks) == book_levels(c.books, "BTCTRY")

    run(scenario)


# -- login ------------------------------------------------------------------------------------


def test_login_with_the_demo_keys_and_refusals() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            wrong = base64.b64encode(b"\x01" * 32).decode()
            refused = await c.login(public="not-a-key")
            assert refused == {"type": 114, "id": 0, "ok": False,
                               "message": "Unauthorized - Invalid Public key"}
            assert (await c.login(private=wrong))["message"] == "Unauthorized - Invalid Signature"
            stamp = int(time.time() * 1000)  # a millisecond timestamp as the nonce (#590)
            assert (await c.login(nonce=stamp))["message"] == "Unauthorized - Invalid Request"
            await c.send(114, {"type": 114, "publicKey": DEMO_PUBLIC_KEY})
            assert json.loads(await c.recv())[1]["message"] == "Unauthorized - Invalid Request"
            ok = await c.login(nonce=3000)
            assert ok["ok"] is True and ok["type"] == 114
            again = await c.login(nonce=3000)  # a nonce used before (#607)
            assert again["ok"] is False and again["message"] == "Unauthorized - Invalid Request"
            # a logged-in connection hears of balance changes
            sim.market.submit("BTCTRY", "buy", "limit", "0.01", "1000000")
            await sim.push(1)
            assert any(m.startswith("[201,") for m in await c.barrier())

    run(scenario)


def test_login_against_configured_keys() -> None:
    public, private = "my-key", base64.b64encode(b"\x07" * 32).decode()

    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            assert (await c.login())["ok"] is False  # the demo pair is not configured here
            assert (await c.login(public, private))["ok"] is True

    run(scenario, api_keys={public: private})


# -- fault knobs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, options",
    [
        ("drop", {}),
        ("duplicate", {}),
        ("reorder", {}),
        ("truncate", {}),
        ("bad_value", {}),
        ("bad_value", {"field": "P"}),
        ("crossed", {}),
    ],
    ids=["drop", "duplicate", "reorder", "truncate", "bad_amount", "bad_price", "crossed"],
)
def test_a_frame_fault_does_what_it_says_and_a_rejoin_recovers(
    kind: str, options: dict[str, Any]
) -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            base, _ = await c.join_book("BTCTRY")
            await c.join_book("ETHTRY")
            rule = sim.ws_faults.add(kind, pair="BTCTRY", **options)  # type: ignore[arg-type]
            before = c.books["BTCTRY"].snapshot()
            await sim.push(80)
            received = await c.barrier()
            frames = book_frames(received, "BTCTRY")
            assert rule.fired == 1 and len(sim.ws_faults) == 0
            # the other pair is untouched
            others = book_frames(received, "ETHTRY")
            assert set(apply_all(c.books, others)) == {Status.APPLIED}
            assert book_levels(c.books, "ETHTRY") == sim.truth("ETHTRY")
            seen = frames
            if kind == "drop":
                assert cs(seen[0]) == wrap(base + 2)
                assert c.books.apply(seen[0])[1] == Status.GAP
            elif kind == "duplicate":
                assert [cs(f) for f in seen[:3]] == [wrap(base + 1), wrap(base + 1), wrap(base + 2)]
                statuses = apply_all(c.books, seen)
                assert statuses[:3] == [Status.APPLIED, Status.STALE, Status.APPLIED]
                assert set(statuses[2:]) == {Status.APPLIED}
                assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")  # nothing lost
            elif kind == "reorder":
                assert [cs(f) for f in seen[:3]] == [wrap(base + 2), wrap(base + 1), wrap(base + 3)]
                assert c.books.apply(seen[0])[1] == Status.GAP
            elif kind == "truncate":
                with pytest.raises(json.JSONDecodeError):
                    json.loads(seen[0])
                with pytest.raises(FrameError):
                    c.books.apply(seen[0])
                assert c.books["BTCTRY"].snapshot() == before  # refused whole
                assert c.books.apply(seen[1])[1] == Status.GAP
            elif kind == "bad_value":
                payload = json.loads(seen[0])[1]  # valid JSON ...
                assert cs(seen[0]) == wrap(base + 1)
                bad = payload["BO"][-1]
                assert bad == ({"CP": 0, "P": "1", "A": "1e999999"} if not options
                               else {"CP": 1, "P": "-5", "A": "1"})
                assert len(payload["AO"]) + len(payload["BO"]) > 1  # ... with good levels first
                with pytest.raises(FrameError):
                    c.books.apply(seen[0])
                assert c.books["BTCTRY"].snapshot() == before  # refused whole
                assert c.books.apply(seen[1])[1] == Status.GAP  # the real frame never came
            else:
                assert kind == "crossed"
                payload = json.loads(seen[0])[1]
                assert cs(seen[0]) == wrap(base + 1) and payload["AO"] == []
                assert c.books.apply(seen[0])[1] == Status.CROSSED
                bid, ask = c.books["BTCTRY"].best_bid, c.books["BTCTRY"].best_ask
                assert bid is not None and ask is not None and bid[0] >= ask[0]
                assert c.books["BTCTRY"].synced is False
                assert c.books.apply(seen[1])[1] == Status.GAP
            # the client's way out: leave and re-join for a fresh 431
            await c.subscribe("obdiff", "BTCTRY", join=False)
            await c.join_book("BTCTRY")
            await sim.push(80)
            assert set(apply_all(c.books, book_frames(await c.barrier(), "BTCTRY"))) <= {
                Status.APPLIED
            }
            assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")

    run(scenario)


def test_a_fault_for_one_connection_leaves_the_others_alone() -> None:
    async def scenario(sim: SimExchange) -> None:
        assert sim.ws is not None
        async with client(sim) as a, client(sim) as b:
            await a.join_book("BTCTRY")
            await b.join_book("BTCTRY")
            ids = [info.id for info in sim.ws.connections]
            sim.ws_faults.add("drop", connection=ids[1], times=None)
            await sim.push(60)
            assert set(apply_all(a.books, await a.barrier())) == {Status.APPLIED}
            assert book_levels(a.books, "BTCTRY") == sim.truth("BTCTRY")
            assert await b.barrier() == []  # every 432 dropped
            sim.ws_faults.clear()

    run(scenario)


def test_stall_sends_nothing_not_even_pings_until_it_ends() -> None:
    async def scenario(sim: SimExchange) -> None:
        ws = sim.ws
        assert ws is not None
        async with client(sim) as c:
            await c.join_book("BTCTRY")
            await until(lambda: ws.connections[0].pings >= 2)  # pings come while all is well
            sim.ws_faults.add("stall", pair="BTCTRY", seconds=600)
            await sim.push(60)
            await until(lambda: ws.connections[0].stalled)
            held = ws.connections[0]
            await asyncio.sleep(0.3)  # many ping intervals
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(c.ws.recv(), 0.2)
            now = ws.connections[0]
            assert now.stalled  # still held: so nothing may have been written
            assert (now.sent, now.pings) == (held.sent, held.pings)
            assert now.queued > 0
            ws.resume()  # end it (a stall of `seconds` ends on its own)
            frames = await c.barrier()
            assert set(apply_all(c.books, frames)) == {Status.APPLIED}
            assert book_levels(c.books, "BTCTRY") == sim.truth("BTCTRY")
            await until(lambda: ws.connections[0].pings > held.pings)

    run(scenario, ping_interval_s=0.02)


def test_abort_closes_the_connection_without_a_close_frame() -> None:
    async def scenario(sim: SimExchange) -> None:
        assert sim.ws is not None
        async with client(sim) as c:
            await c.join_book("BTCTRY")
            sim.ws_faults.add("abort", pair="BTCTRY")
            await sim.push(60)
            with pytest.raises(ConnectionClosedError) as caught:
                while True:
                    await c.recv()
            assert caught.value.rcvd is None  # no close frame
            assert not any(m.startswith("[432,") for m in c.log)  # the 432 was not sent
        ws = sim.ws
        await until(lambda: ws.connections == [])

    run(scenario)


def test_refuse_handshake_answers_503_for_the_next_attempts() -> None:
    async def scenario(sim: SimExchange) -> None:
        sim.ws_faults.add("refuse_handshake", times=2)
        for _ in range(2):
            with pytest.raises(InvalidStatus) as caught:
                async with client(sim):
                    pass
            assert caught.value.response.status_code == 503
        async with client(sim) as c:  # the third gets in
            await c.join_book("BTCTRY")
        sim.ws_faults.add("refuse_handshake", seconds=600)  # every attempt for 10 minutes
        for _ in range(3):
            with pytest.raises(InvalidStatus):
                async with client(sim):
                    pass
        sim.ws_faults.clear()
        async with client(sim):
            pass
        assert sim.ws is not None and sim.ws.refused == 5

    run(scenario)


def test_refuse_login_answers_the_next_login_ok_false() -> None:
    async def scenario(sim: SimExchange) -> None:
        async with client(sim) as c:
            sim.ws_faults.add("refuse_login")
            refused = await c.login()
            assert refused == {"type": 114, "id": 0, "ok": False,
                               "message": "Unauthorized - Invalid Public key"}
            assert (await c.login())["ok"] is True

    run(scenario)


def test_fault_rules_check_their_arguments() -> None:
    faults = WsFaults()
    with pytest.raises(ValueError):
        faults.add("nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        faults.add("refuse_login", pair="BTCTRY")
    with pytest.raises(ValueError):
        faults.add("drop", seconds=1)
    with pytest.raises(ValueError):
        faults.add("bad_value", value='"')
    assert faults.add("stall").seconds == 1.0
    assert len(faults) == 1


# -- keepalive and slow clients ---------------------------------------------------------------


def test_a_client_that_answers_no_ping_is_closed_with_1000() -> None:
    async def scenario(sim: SimExchange) -> None:
        ws = sim.ws
        assert ws is not None
        async with client(sim) as c:
            c.ws.transport.pause_reading()  # this client reads nothing, so it answers no ping
            await until(lambda: ws.connections == [])
            c.ws.transport.resume_reading()
            with pytest.raises(ConnectionClosed) as caught:
                while True:
                    await c.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1000

    run(scenario, ping_interval_s=0.05, ping_timeout_s=0.2, ws_options={"close_timeout_s": 0.2})


def test_a_client_whose_queue_overflows_is_dropped_and_the_others_are_not() -> None:
    async def scenario(sim: SimExchange) -> None:
        ws = sim.ws
        assert ws is not None
        async with client(sim) as slow, client(sim) as fine:
            for pair in PAIRS:
                await slow.join_book(pair)
            await fine.join_book("ETHTRY")
            await sim.push(600)  # ~600 frames queued at once for one, ~300 for the other
            assert ws.dropped == 1
            with pytest.raises(ConnectionClosedError) as caught:
                while True:
                    await slow.recv()
            assert caught.value.rcvd is None
            assert set(apply_all(fine.books, await fine.barrier())) == {Status.APPLIED}
            assert book_levels(fine.books, "ETHTRY") == sim.truth("ETHTRY")

    run(scenario, ws_options={"max_queue": 450})


def test_a_client_that_stops_reading_is_dropped_once_its_socket_is_full() -> None:
    async def scenario(sim: SimExchange) -> None:
        ws = sim.ws
        assert ws is not None
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", ws.port))
        async with client(sim, sock=sock, max_queue=1) as c:
            for pair in PAIRS:
                await c.join_book(pair)
            c.ws.transport.pause_reading()  # reads nothing from now on
            deadline = time.monotonic() + WAIT_S
            while ws.dropped == 0:
                assert time.monotonic() < deadline, "never dropped"
                await sim.push(500)
                await asyncio.sleep(0.05)
            c.ws.transport.resume_reading()
            with pytest.raises(ConnectionClosedError) as caught:
                while True:
                    await c.recv()
            assert caught.value.rcvd is None

    run(scenario, ws_options={"send_timeout_s": 0.2})


# -- obengine sim ------------------------------------------------------------------------------


def test_obengine_sim_serves_the_websocket_feed_too() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "obengine", "sim", "--pairs", "2", "--tick", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        url = None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("websocket:"):
                url = line.split()[1]
            if line.startswith("OBENGINE_KRAKEN_SECRET="):
                break
        assert url is not None and url.startswith("ws://127.0.0.1:"), lines

        async def follow() -> list[Status]:
            async with connect(url, compression=None, open_timeout=WAIT_S) as ws:
                assert await asyncio.wait_for(ws.recv(), WAIT_S) == HELLO
                await ws.send(json.dumps([151, {"type": 151, "channel": "obdiff", "event": "BTCTRY",
                                                "join": True}]))
                assert "join|obdiff:BTCTRY" in str(await asyncio.wait_for(ws.recv(), WAIT_S))
                books = BookSet()
                statuses: list[Status] = []
                while len(statuses) < 4:  # the 431, then 432s as the market ticks
                    statuses.append(books.apply(await asyncio.wait_for(ws.recv(), WAIT_S))[1])
                return statuses

        assert asyncio.run(follow()) == [Status.APPLIED] * 4
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert DEMO_PRIVATE_KEY not in err
