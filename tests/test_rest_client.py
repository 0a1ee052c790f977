"""The REST client, async and sync, against the simulated exchange on loopback: every endpoint
read exactly (decimals compared as decimals) against the simulated market's truth, every fault
knob giving its typed error or its bounded retry, bad credentials, a clock 10 s off, Kraken's
token, and a grep of everything logged and raised for the secrets.

Each test body runs twice, once per client (``twin`` fixture): the simulated exchange runs on a
background thread (``SimExchange.in_thread``); the async client runs on an event loop of the
test's own, the sync client directly."""
from __future__ import annotations

import asyncio
import base64
import logging
import traceback
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from obengine import AuthError, ExchangeError, RateLimited, ServerError, TransportError
from obengine.auth import BtcTurkSigner, KrakenSigner
from obengine.rest import Policy, RestClient, SyncRestClient, kraken_ws_token, kraken_ws_token_sync
from obengine.sim import (
    DEMO_KRAKEN_API_KEY,
    DEMO_KRAKEN_SECRET,
    DEMO_PRIVATE_KEY,
    DEMO_PUBLIC_KEY,
    SimExchange,
)

# The REST side runs no native code of obengine's: nothing for the sanitizer build to check.
pytestmark = pytest.mark.no_sanitizer

FAST = Policy(retries=2, backoff_s=0.01, max_wait_s=5.0)
PAIR = "BTCTRY"


class Twin:
    """One client of either kind, with the same synchronous calls for the test bodies."""

    def __init__(self, mode: str, sim: SimExchange, **kwargs: Any) -> None:
        self.mode = mode
        kwargs.setdefault("policy", FAST)
        kwargs.setdefault("signer", BtcTurkSigner(DEMO_PUBLIC_KEY, DEMO_PRIVATE_KEY))
        if mode == "sync":
            self.client: Any = SyncRestClient(sim.url, sim.graph_url, **kwargs)
        else:
            self.loop = asyncio.new_event_loop()
            self.client = RestClient(sim.url, sim.graph_url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if self.mode == "sync" or not callable(method):
            return method
        return lambda *a, **k: self.loop.run_until_complete(method(*a, **k))

    def close(self) -> None:
        if self.mode == "sync":
            self.client.close()
        else:
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimExchange]:
    with SimExchange.in_thread(pairs=6, seed=3) as server:
        yield server


@pytest.fixture(params=["async", "sync"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def twin(mode: str, sim: SimExchange) -> Iterator[Twin]:
    sim.faults.clear()
    sim.clock_offset_ms = 0
    client = Twin(mode, sim)
    yield client
    client.close()
    sim.faults.clear()


# -- public endpoints, exactly ---------------------------------------------------------------


def test_server_time_is_the_simulators_clock(twin: Twin, sim: SimExchange) -> None:
    sim.clock_offset_ms = 3_600_000
    before = sim.now_ms()
    server_ms = twin.server_time()
    assert before <= server_ms <= sim.now_ms()


def test_exchange_info_and_scales_match_the_market(twin: Twin, sim: SimExchange) -> None:
    info = twin.exchange_info()
    market = sim.market.pairs
    assert set(info.pairs) == set(market)
    for name, truth in market.items():
        pair = info.pairs[name]
        assert (pair.price_scale, pair.amount_scale) == (truth.price_scale, truth.amount_scale)
        assert pair.tick_size == truth.tick_size and pair.min_price == truth.min_price
        assert pair.has_fraction == (truth.price_scale > 0)
    assert twin.scales() == {name: (p.price_scale, p.amount_scale) for name, p in market.items()}
    assert twin.scales()[PAIR] == (0, 8)


def test_order_book_is_the_markets_book_in_units(twin: Twin, sim: SimExchange) -> None:
    book = twin.order_book(PAIR, limit=20)
    truth_bids, truth_asks = sim.market.levels(PAIR, 20)
    assert book.pair == PAIR and (book.price_scale, book.amount_scale) == (0, 8)
    assert book.levels() == (truth_bids, truth_asks)
    assert book.bids.shape == (20, 2) and book.bids[0, 0] > book.bids[1, 0]
    assert book.asks[0, 0] > book.bids[0, 0]
    assert abs(book.timestamp_ms - sim.now_ms()) < 60_000


def test_ticker_is_exact_for_every_pair_and_one(twin: Twin, sim: SimExchange) -> None:
    every = {t.pair: t for t in twin.ticker()}
    assert set(every) == set(sim.market.pairs)
    [one] = twin.ticker("BTC_TRY")
    truth = sim.market.ticker(PAIR)
    for field in ("last", "high", "low", "bid", "ask", "open", "volume", "average", "daily", "daily_percent"):
        value = getattr(one, field)
        assert isinstance(value, Decimal) and value == getattr(truth, field), field
    assert twin.ticker("NOPEUSDT") == []


def test_trades_and_candles_are_the_markets(twin: Twin, sim: SimExchange) -> None:
    trades = twin.trades(PAIR, last=10)
    truth = sim.market.trades(PAIR, 10)
    assert [(t.tid, t.price, t.amount, t.date_ms) for t in trades] == [
        (t.tid, t.price, t.amount, t.time_ms) for t in truth
    ]
    candles = twin.ohlc(PAIR)
    assert len(candles) >= 30
    assert [(c.time_s, c.open, c.close, c.volume, c.total) for c in candles] == [
        (c.time_s, c.open, c.close, c.volume, c.total) for c in sim.market.candles(PAIR)
    ]
    start = candles[5].time_s
    assert [c.time_s for c in twin.ohlc(PAIR, from_s=start, to_s=start)] == [start]


# -- private endpoints ---------------------------------------------------------------------


def test_balances_read_comma_decimals_exactly(twin: Twin, sim: SimExchange) -> None:
    assert sim.comma_decimals
    got = {b.asset: b for b in twin.balances()}
    for truth in sim.market.balances():
        b = got[truth.asset]
        assert (b.balance, b.locked, b.free) == (truth.balance, truth.locked, truth.free)
    assert got["TRY"].balance == Decimal(1_000_000)


def test_order_lifecycle_moves_balances_exactly(twin: Twin, sim: SimExchange) -> None:
    bids, asks = sim.market.levels(PAIR)
    price = bids[0][0] - 1000                     # below the best bid: rests
    before = {b.asset: b for b in twin.balances()}
    placed = twin.submit_order(PAIR, "buy", Decimal("0.01"), price, client_order_id="rest-1")
    assert placed.pair == PAIR and placed.side == "buy" and placed.quantity == Decimal("0.01")
    assert placed.price == price and placed.client_order_id == "rest-1"
    [open_] = [o for o in twin.open_orders(PAIR) if o.id == placed.id]
    assert open_.side == "buy" and open_.method == "limit" and open_.price == price
    locked = {b.asset: b for b in twin.balances()}["TRY"].locked - before["TRY"].locked
    assert locked == price * Decimal("0.01") * (1 + Decimal("0.0009"))
    twin.cancel_order(placed.id)
    assert placed.id not in [o.id for o in twin.open_orders(PAIR)]
    [closed] = twin.all_orders(PAIR, order_id=placed.id)
    assert closed.status == "Canceled"
    assert {b.asset: b for b in twin.balances()}["TRY"].locked == before["TRY"].locked


def test_a_crossing_limit_order_fills_and_user_trades_show_it(twin: Twin, sim: SimExchange) -> None:
    before = {b.asset: b.balance for b in twin.balances()}
    bids, asks = sim.market.levels(PAIR)
    best_price, best_amount = asks[0]
    quantity = min(best_amount, Decimal("0.001"))
    placed = twin.submit_order(PAIR, "buy", quantity, best_price)
    fills = twin.user_trades(sides=["buy"], assets=["btc"])
    assert any(t.price == best_price and t.amount == quantity and t.fee < 0 for t in fills)
    after = {b.asset: b.balance for b in twin.balances()}
    assert after["BTC"] - before["BTC"] == quantity
    fee = best_price * quantity * Decimal("0.0009")
    assert before["TRY"] - after["TRY"] == best_price * quantity + fee


def test_transactions_are_the_seeded_deposits_and_withdrawals(twin: Twin, sim: SimExchange) -> None:
    for fiat, call in ((False, twin.crypto_transactions), (True, twin.fiat_transactions)):
        got = call()
        truth = sim.market.transfers(fiat)
        assert [(t.id, t.currency, t.amount, t.funds) for t in got] == [
            (t.id, t.asset, t.amount, t.funds) for t in truth
        ]
    assert all(t.amount > 0 for t in twin.fiat_transactions(types=["deposit"]))


def test_order_errors_are_the_exchanges(twin: Twin) -> None:
    with pytest.raises(ExchangeError, match="NOPEUSDT") as info:
        twin.submit_order("NOPEUSDT", "buy", "1", "1")
    assert info.value.status == 400 and info.value.code == 1037
    with pytest.raises(ExchangeError, match="FAILED_INVALID_PRICE_SCALE") as scale:
        twin.submit_order(PAIR, "buy", "0.001", "100.5")
    assert scale.value.code == 1126


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["status", "truncated", "disconnect", "rate_limited"])
def test_a_read_recovers_from_one_transient_fault(twin: Twin, sim: SimExchange, kind: str) -> None:
    extra = {"retry_after_s": 0} if kind == "rate_limited" else {}
    sim.faults.add(kind, times=1, path="/api/v2/ticker", **extra)  # type: ignore[arg-type]
    assert twin.ticker(PAIR)[0].pair == PAIR
    assert twin.stats["retried"] == 1


@pytest.mark.parametrize(
    ("kind", "error", "params"),
    [
        ("status", ServerError, {"status": 500}),
        ("status", ServerError, {"status": 503}),
        ("truncated", TransportError, {}),
        ("disconnect", TransportError, {}),
        ("rate_limited", RateLimited, {"retry_after_s": 0}),
    ],
)
def test_a_persistent_fault_is_its_typed_error_after_bounded_retries(
    twin: Twin, sim: SimExchange, kind: str, error: type, params: dict[str, Any]
) -> None:
    sim.faults.add(kind, times=None, path="/api/v2/ticker", **params)  # type: ignore[arg-type]
    served = sim.requests
    with pytest.raises(error) as info:
        twin.ticker(PAIR)
    assert type(info.value) is error and info.value.endpoint == "GET /api/v2/ticker"
    assert sim.requests - served == FAST.retries + 1
    if params.get("status") == 503:
        assert info.value.maintenance  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("malformed", {}, "not JSON"),
        ("success_false", {"message": "FAILED_SOMETHING", "code": 9}, "FAILED_SOMETHING"),
        ("nonzero_code", {"message": "FAILED_OTHER", "code": 77}, "FAILED_OTHER"),
        ("wrong_shape", {}, "unexpected body"),
    ],
)
def test_a_bad_body_is_an_exchange_error_naming_the_endpoint(
    twin: Twin, sim: SimExchange, kind: str, params: dict[str, Any], match: str
) -> None:
    sim.faults.add(kind, times=1, path="/api/v2/trades", **params)  # type: ignore[arg-type]
    with pytest.raises(ExchangeError, match=match) as info:
        twin.trades(PAIR)
    assert type(info.value) is ExchangeError and "GET /api/v2/trades" in str(info.value)


def test_a_slow_answer_is_a_transport_error(mode: str, sim: SimExchange) -> None:
    client = Twin(mode, sim, timeout_s=0.2, policy=Policy(retries=0))
    try:
        sim.faults.add("delay", times=1, path="/api/v2/ticker", delay_s=1.0)
        with pytest.raises(TransportError, match="Timeout"):
            client.ticker(PAIR)
    finally:
        client.close()
        sim.faults.clear()


def test_an_order_is_never_retried_even_when_its_answer_is_lost(twin: Twin, sim: SimExchange) -> None:
    twin.balances()                                           # clock synced before the fault
    bids, _ = sim.market.levels(PAIR)
    price = bids[0][0] - 2000
    before = len(twin.open_orders(PAIR))
    sim.faults.add("truncated", times=1, path="/api/v1/order", method="POST")
    with pytest.raises(TransportError):
        twin.submit_order(PAIR, "buy", "0.001", price)
    placed = [o for o in twin.open_orders(PAIR) if o.price == price]
    assert len(twin.open_orders(PAIR)) == before + 1 and len(placed) == 1   # placed once, not twice
    twin.cancel_order(placed[0].id)
    sim.faults.add("rate_limited", times=1, path="/api/v1/order", retry_after_s=0)
    served = sim.requests
    with pytest.raises(RateLimited):
        twin.submit_order(PAIR, "buy", "0.001", price)
    assert sim.requests - served == 1


def test_server_side_rate_limit_makes_a_read_wait_and_succeed(mode: str) -> None:
    with SimExchange.in_thread(pairs=2, seed=1, rate_limits={"GET /api/v2/ticker": 2}, rate_limit_window_s=1.0) as sim:
        client = Twin(mode, sim, rate_limits={})              # no client-side limit: the server's 429 shows
        try:
            for _ in range(4):
                assert client.ticker()
            assert client.stats["retried"] >= 1
        finally:
            client.close()


# -- credentials and the clock ----------------------------------------------------------------


def test_bad_credentials_are_clear_auth_errors(mode: str, sim: SimExchange) -> None:
    wrong_key = base64.b64encode(b"\x07" * 32).decode()
    for signer, reason, hint in [
        (BtcTurkSigner(DEMO_PUBLIC_KEY, wrong_key), "Invalid Signature", "base64 secret"),
        (BtcTurkSigner("not-a-key", DEMO_PRIVATE_KEY), "Invalid Public key", "public key"),
    ]:
        client = Twin(mode, sim, signer=signer)
        try:
            with pytest.raises(AuthError, match=reason) as info:
                client.balances()
            assert info.value.status == 401 and hint in info.value.hint
        finally:
            client.close()
    public = Twin(mode, sim, signer=None)
    try:
        with pytest.raises(AuthError, match="needs credentials"):
            public.balances()
    finally:
        public.close()


def test_a_clock_ten_seconds_off_is_resynced_and_the_next_signed_get_succeeds(twin: Twin, sim: SimExchange) -> None:
    twin.balances()
    assert abs(twin.clock_offset_ms) < 2_000
    sim.clock_offset_ms = 10_000                              # the exchange's clock jumps 10 s
    assert twin.balances()
    assert 8_000 < twin.clock_offset_ms < 12_000
    assert twin.stats["requests"] >= 4                        # balances, refused, time, balances


def test_kraken_token_from_the_simulator(mode: str, sim: SimExchange) -> None:
    signer = KrakenSigner(DEMO_KRAKEN_API_KEY, DEMO_KRAKEN_SECRET)
    fetch: Any = kraken_ws_token_sync if mode == "sync" else (
        lambda s, **k: asyncio.run(kraken_ws_token(s, **k))
    )
    first, second = fetch(signer, base_url=sim.url), fetch(signer, base_url=sim.url)
    assert first and second and first != second               # a fresh token every time
    bad = KrakenSigner(DEMO_KRAKEN_API_KEY, base64.b64encode(b"\x01" * 64).decode())
    with pytest.raises(AuthError, match="Invalid signature"):
        fetch(bad, base_url=sim.url)


# -- secrets ---------------------------------------------------------------------------------


def test_no_secret_in_anything_logged_or_raised(mode: str, sim: SimExchange, caplog: pytest.LogCaptureFixture) -> None:
    """Run every endpoint and every failure with DEBUG logging on, then look for the secrets in
    the log records and in each error's message, repr, args and formatted traceback."""
    caplog.set_level(logging.DEBUG)
    secrets = {DEMO_PRIVATE_KEY, DEMO_KRAKEN_SECRET}
    raw = base64.b64decode(DEMO_PRIVATE_KEY)
    secrets |= {raw.hex(), repr(raw)[2:-1], base64.b64decode(DEMO_KRAKEN_SECRET).hex()}
    seen: list[str] = []
    client = Twin(mode, sim)
    wrong = Twin(mode, sim, signer=BtcTurkSigner(DEMO_PUBLIC_KEY, base64.b64encode(b"\x07" * 32).decode()))
    calls = [
        lambda: client.balances(), lambda: client.open_orders(), lambda: client.all_orders(PAIR),
        lambda: client.user_trades(), lambda: client.crypto_transactions(), lambda: client.fiat_transactions(),
        lambda: client.ticker(), lambda: client.order_book(PAIR), lambda: client.trades(PAIR),
        lambda: client.ohlc(PAIR), lambda: client.submit_order("NOPEUSDT", "buy", "1", "1"),
        lambda: client.cancel_order(123456789), lambda: wrong.balances(),
        lambda: kraken_ws_token_sync(KrakenSigner(DEMO_KRAKEN_API_KEY, DEMO_KRAKEN_SECRET), base_url=sim.url),
        lambda: kraken_ws_token_sync(
            KrakenSigner(DEMO_KRAKEN_API_KEY, base64.b64encode(b"\x01" * 64).decode()), base_url=sim.url
        ),
    ]
    try:
        sim.faults.add("status", times=None, path="/api/v1/users/transactions", status=502)
        sim.clock_offset_ms = 20_000
        for call in calls:
            try:
                seen.append(repr(call()))
            except Exception as exc:  # every failure is looked at
                seen += [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
        seen += [repr(client.client), repr(client.signer)]
    finally:
        sim.faults.clear()
        sim.clock_offset_ms = 0
        client.close()
        wrong.close()
    seen += [r.getMessage() for r in caplog.records]
    assert any("/api/v1/users/balances" in line for line in seen)     # the log did record calls
    assert any("502" in line for line in seen)                        # and failures were seen
    text = "\n".join(seen)
    for secret in secrets:
        assert secret not in text


def test_the_sync_twin_has_every_method_of_the_async_client_with_the_same_signature() -> None:
    import inspect

    def methods(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(fn)
            for name, fn in vars(cls).items()
            if callable(fn) and not name.startswith("_") and name not in ("aclose", "close")
        }

    async_methods, sync_methods = methods(RestClient), methods(SyncRestClient)
    assert set(async_methods) == set(sync_methods) and len(async_methods) == 15
    for name, sig in async_methods.items():
        assert sig == sync_methods[name], name
