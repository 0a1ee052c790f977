"""The live feed (obengine.connect) against the simulated exchange's websocket on loopback, under
every fault knob, separately and mixed: every desync is answered by a re-join, every book
converges exactly to the truth, every book seen in the loop equals a state the true book had (in
order), no exception escapes the loop for a bad frame, and every dropped connection is followed by
a reconnect that joins every pair again.

A consumer task runs the user's loop (``async for pair, book, status in feed``) and records each
book it is shown; the test's task moves the market and programs the faults. Waits are bounded
guards against a hang, never timed assertions."""
from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

import obengine
from obengine import AuthError, Status
from obengine.auth import BtcTurkSigner
from obengine.feed import Feed
from obengine.protocol import TradeEvent, Update
from obengine.sim import DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY, SimExchange

PAIRS = ["BTCTRY", "ETHTRY", "XRPTRY", "USDTTRY"]
GUARD_S = 30.0          # a hang guard, not a timing requirement

Levels = tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]


def _levels(book: obengine.Book) -> Levels:
    snap = book.snapshot()
    return (
        tuple((Decimal(p), Decimal(a)) for p, a in snap["bids"]),
        tuple((Decimal(p), Decimal(a)) for p, a in snap["asks"]),
    )


class Harness:
    """The simulator, a feed on it, a consumer task running the user's loop, and the history of
    every pair's true book."""

    def __init__(self, sim: SimExchange, feed: Feed) -> None:
        self.sim = sim
        self.feed = feed
        self.history: dict[str, list[Levels]] = {p: [self.truth(p)] for p in PAIRS}
        self.seen: list[tuple[str, Levels]] = []
        self.errors: list[BaseException] = []
        self.items: list[Any] = []
        self.task = asyncio.create_task(self._consume())

    def truth(self, pair: str) -> Levels:
        bids, asks = self.sim.truth(pair)
        return tuple(bids), tuple(asks)

    async def _consume(self) -> None:
        try:
            async for item in self.feed:
                self.items.append(item)
                if isinstance(item, Update):
                    pair, book, status = item
                    assert status is Status.APPLIED and self.feed.synced(pair)
                    self.seen.append((pair, _levels(book)))
        except BaseException as exc:  # anything escaping the user's loop is a failure
            if not isinstance(exc, asyncio.CancelledError):
                self.errors.append(exc)
            raise

    async def push(self, frames: int) -> None:
        """Move the market one frame at a time, recording each pair's true book."""
        for _ in range(frames):
            out = await self.sim.push(1)
            for frame in out:
                for pair in PAIRS:
                    if f'"PS":"{pair}"'.encode() in frame:
                        self.history[pair].append(self.truth(pair))
            await asyncio.sleep(0)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Keep the market moving (a frame at a time) until ``condition`` holds."""
        async def wait() -> None:
            while not condition():
                assert not self.errors, self.errors
                await self.push(1)
                await asyncio.sleep(0.01)

        try:
            await asyncio.wait_for(wait(), GUARD_S)
        except TimeoutError:
            pytest.fail(f"not reached within the {GUARD_S} s guard: {what}; stats {self.feed.stats}")

    def exact(self) -> bool:
        return all(
            self.feed.synced(p) and _levels(self.feed.books[p]) == self.truth(p) for p in PAIRS
        )

    async def converge(self) -> None:
        """Every pair synced and equal to the truth (the market keeps moving meanwhile)."""
        await self.push(2)
        await self.until(self.exact, "every book synced and exact")

    def check_seen(self) -> None:
        """Every book shown in the loop equals a state its true book had, in order."""
        assert not self.errors, self.errors
        position = {p: 0 for p in PAIRS}
        for pair, levels in self.seen:
            history = self.history[pair]
            try:
                position[pair] = history.index(levels, position[pair])
            except ValueError:
                raise AssertionError(f"{pair}: the loop was shown a book that was never the truth") from None


@contextlib.asynccontextmanager
async def running(feed_kwargs: dict[str, Any] | None = None, **sim_kwargs: Any) -> AsyncIterator[Harness]:
    sim_kwargs.setdefault("pairs", PAIRS)
    sim_kwargs.setdefault("seed", 3)
    async with SimExchange(websocket=True, **sim_kwargs) as sim:
        await sim.push(5)                    # a market that has moved before the client came
        async with obengine.connect(
            PAIRS, url=sim.ws_url, scales=sim.market.feed.scales,
            reconnect_initial_s=0.05, reconnect_max_s=0.2, **(feed_kwargs or {}),
        ) as feed:
            harness = Harness(sim, feed)
            try:
                await harness.until(lambda: all(feed.synced(p) for p in PAIRS), "all synced")
                yield harness
            finally:
                harness.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await harness.task


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


# -- the normal case ---------------------------------------------------------------------------


def test_books_follow_the_market_exactly_and_every_update_was_true() -> None:
    async def main() -> None:
        async with running() as h:
            await h.push(200)
            await h.converge()
            h.check_seen()
            stats = h.feed.stats
            assert stats.gaps == stats.malformed == stats.resyncs == stats.reconnects == 0
            assert stats.updates >= 200 and len(h.seen) == stats.updates
            assert all(h.feed.since_last_frame()[p] is not None for p in PAIRS)

    run(main)


def test_a_subscription_crossing_the_32_bit_wrap_and_negative_bases_stay_exact() -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=4) as sim:
            assert sim.ws is not None
            sim.ws.force_cs_base(2**31 - 3, -1748790363, 2**31 - 1, -(2**31))
            async with obengine.connect(PAIRS, url=sim.ws_url, scales=sim.market.feed.scales) as feed:
                h = Harness(sim, feed)
                try:
                    await h.until(lambda: all(feed.synced(p) for p in PAIRS), "all synced")
                    await h.push(150)
                    await h.converge()
                    h.check_seen()
                    assert feed.stats.gaps == 0
                    assert any(feed.books[p].seq is not None and feed.books[p].seq < 0 for p in PAIRS)
                finally:
                    h.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await h.task

    run(main)


# -- every fault, alone --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "counter", "params"),
    [
        ("drop", "gaps", {}),
        ("reorder", "gaps", {}),
        ("duplicate", "stale", {}),
        ("truncate", "malformed", {}),
        ("bad_value", "malformed", {}),
        ("bad_value", "malformed", {"field": "P"}),
        ("crossed", "crossed", {}),
    ],
)
def test_a_bad_frame_desyncs_its_pair_which_rejoins_and_converges(kind: str, counter: str, params: dict[str, Any]) -> None:
    async def main() -> None:
        async with running() as h:
            await h.push(20)
            h.sim.ws_faults.add(kind, pair="ETHTRY", **params)  # type: ignore[arg-type]
            await h.push(60)
            await h.until(lambda: getattr(h.feed.stats, counter) >= 1, f"the {kind} fault seen")
            await h.converge()
            h.check_seen()
            if counter != "stale":
                assert h.feed.stats.resyncs >= 1       # answered by a leave and a join
            assert h.feed.stats.reconnects == 0

    run(main)


@pytest.mark.parametrize("kind", ["abort", "stall"])
def test_a_dropped_or_silent_connection_reconnects_and_rejoins_everything(kind: str) -> None:
    async def main() -> None:
        params: dict[str, Any] = {"seconds": 5.0} if kind == "stall" else {}
        feed_kwargs = {"ping_interval_s": 0.2, "ping_timeout_s": 0.5} if kind == "stall" else {}
        async with running(feed_kwargs=feed_kwargs) as h:
            await h.push(10)
            joins_before = h.sim.ws.accepted if h.sim.ws else 0  # type: ignore[union-attr]
            h.sim.ws_faults.add(kind, pair="BTCTRY", **params)  # type: ignore[arg-type]
            await h.push(10)
            await h.until(lambda: h.feed.stats.reconnects >= 1, "a reconnect")
            await h.converge()
            h.check_seen()
            assert h.sim.ws is not None and h.sim.ws.accepted > joins_before
            subs = {s.pair for s in h.sim.ws.subscriptions(channel="obdiff")}
            assert subs == set(PAIRS)                  # every pair joined again

    run(main)


def test_refused_handshakes_are_retried_until_the_server_lets_the_client_in() -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=5) as sim:
            sim.ws_faults.add("refuse_handshake", times=3)
            async with obengine.connect(
                PAIRS, url=sim.ws_url, scales=sim.market.feed.scales, reconnect_initial_s=0.05
            ) as feed:
                await feed.wait_synced(GUARD_S)
                assert feed.refused_handshakes == 3 and feed.connections == 1

    run(main)


def test_a_pair_the_exchange_never_snapshots_times_out_and_the_others_sync() -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=6) as sim:
            async with obengine.connect(
                [*PAIRS, "nopetry"], url=sim.ws_url, scales=sim.market.feed.scales, snapshot_timeout_s=0.3
            ) as feed:
                async def wait() -> None:
                    while feed.stats.timeouts < 1 or not all(feed.synced(p) for p in PAIRS):
                        await asyncio.wait_for(feed.__anext__(), 1.0)

                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wait(), GUARD_S)
                assert feed.stats.timeouts >= 1 and not feed.synced("nopetry")
                assert all(feed.synced(p) for p in PAIRS)

    run(main)


# -- faults mixed, during resyncs and reconnects ----------------------------------------------------


def test_mixed_faults_during_resyncs_and_reconnects_still_converge_exactly() -> None:
    async def main() -> None:
        async with running(seed=8) as h:
            faults = h.sim.ws_faults
            rules = []
            for round_ in range(3):
                rules += [
                    faults.add("drop", pair="BTCTRY"),
                    faults.add("truncate", pair="ETHTRY"),
                    faults.add("duplicate", pair="XRPTRY"),
                ]
                await h.push(15)
                rules += [
                    faults.add("bad_value", pair="BTCTRY"),   # while BTCTRY may be resyncing
                    faults.add("crossed", pair="USDTTRY"),
                    faults.add("reorder", pair="ETHTRY"),
                ]
                await h.push(15)
                if round_ == 1:
                    rules.append(faults.add("abort"))          # a reconnect with resyncs pending
                    await h.until(lambda: rules[-1].fired > 0, "the abort")
                    rules.append(faults.add("drop", pair="XRPTRY"))   # right after the reconnect
                await h.push(30)
            await h.until(lambda: all(rule.fired for rule in rules), "every fault fired")
            await h.converge()
            h.check_seen()
            stats = h.feed.stats
            assert stats.reconnects >= 1 and stats.resyncs >= 3
            assert stats.gaps + stats.malformed + stats.crossed >= 3


# -- login and other channels ---------------------------------------------------------------------


def test_login_with_the_demo_keys_and_a_clear_error_when_refused() -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS[:1], seed=9) as sim:
            signer = BtcTurkSigner(DEMO_PUBLIC_KEY, DEMO_PRIVATE_KEY)
            async with obengine.connect(PAIRS[:1], url=sim.ws_url, credentials=signer,
                                        scales=sim.market.feed.scales) as feed:
                await feed.wait_synced(GUARD_S)
                assert feed.protocol.logged_in is True
            wrong = BtcTurkSigner(DEMO_PUBLIC_KEY, base64.b64encode(b"\x05" * 32).decode())
            async with obengine.connect(PAIRS[:1], url=sim.ws_url, credentials=wrong,
                                        scales=sim.market.feed.scales) as feed:
                with pytest.raises(AuthError, match="Unauthorized") as info:
                    await asyncio.wait_for(feed.wait_synced(), GUARD_S)
                assert "websocket access" in str(info.value)
            sim.ws_faults.add("refuse_login")                # the right keys, refused by the server
            async with obengine.connect(PAIRS[:1], url=sim.ws_url, credentials=signer,
                                        scales=sim.market.feed.scales) as feed:
                with pytest.raises(AuthError, match="Invalid Public key"):
                    await asyncio.wait_for(feed.wait_synced(), GUARD_S)

    run(main)


def test_trades_come_through_the_same_loop_with_exact_values() -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS[:1], seed=10) as sim:
            async with obengine.connect(PAIRS[:1], url=sim.ws_url, channels=("obdiff", "trade"),
                                        scales=sim.market.feed.scales) as feed:
                trades: list[TradeEvent] = []

                async def read() -> None:
                    async for item in feed:
                        if isinstance(item, TradeEvent):
                            trades.append(item)
                            if len(trades) >= 5:
                                return

                await asyncio.wait_for(read(), GUARD_S)
                truth = {t.tid: t for t in sim.market.trades(PAIRS[0], 50)}
                for t in trades:
                    assert t.trade_id in truth and t.price == truth[t.trade_id].price
                    assert t.amount == truth[t.trade_id].amount and isinstance(t.price, Decimal)

    run(main)


def test_scales_from_the_simulators_rest_side_when_not_given() -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=11) as sim:
            async with obengine.connect(PAIRS, url=sim.ws_url, rest_url=sim.url) as feed:
                await feed.wait_synced(GUARD_S)
                fine = sim.market.feed.fine_amount_pairs    # their books raise the amount scale
                for p in PAIRS:
                    price_scale, amount_scale = sim.market.feed.scales[p]
                    assert feed.books[p].price_scale == price_scale
                    assert feed.books[p].amount_scale == amount_scale or (
                        p in fine and feed.books[p].amount_scale > amount_scale
                    )
                assert any(p not in fine for p in PAIRS)

    run(main)


def test_callback_style_gets_the_same_updates() -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS[:2], seed=12) as sim:
            got: list[str] = []

            async def on_update(item: Any) -> None:
                got.append(item.pair)
                if len(got) >= 10:
                    await feed.aclose()

            async with obengine.connect(PAIRS[:2], url=sim.ws_url, scales=sim.market.feed.scales,
                                        on_update=on_update) as feed:
                runner = asyncio.create_task(feed.run())
                while not runner.done():
                    await sim.push(1)
                    await asyncio.sleep(0.005)
                await runner
            assert len(got) >= 10 and set(got) <= set(PAIRS[:2])

    run(main)


def test_tickers_come_through_the_same_loop_with_exact_values() -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS[:1], seed=13) as sim:
            async with obengine.connect(PAIRS[:1], url=sim.ws_url, channels=("obdiff", "ticker"),
                                        scales=sim.market.feed.scales) as feed:
                async def first_ticker() -> Any:
                    async for item in feed:
                        if not isinstance(item, Update):
                            return item

                ticker = await asyncio.wait_for(first_ticker(), GUARD_S)
                truth = sim.market.ticker(PAIRS[0])
                assert ticker.pair == PAIRS[0]
                assert (ticker.last, ticker.bid, ticker.ask, ticker.volume) == (truth.last, truth.bid, truth.ask, truth.volume)

    run(main)
