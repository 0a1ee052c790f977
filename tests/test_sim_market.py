"""The simulated market and paper-trading account (``obengine.sim.market.SimMarket``) alone: no
server, no I/O. Exact decimals throughout."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from obengine.sim.market import MarketError, SimMarket, canonical, fixed, places

TAKER = Decimal("0.0009")
NOW = 1_700_000_000_000


def clock() -> int:
    return NOW


def test_market_is_deterministic_given_the_seed() -> None:
    def story(seed: int) -> tuple[Any, ...]:
        market = SimMarket(["BTCTRY", "XRPTRY"], seed=seed, clock=clock)
        market.advance(300)
        order = market.submit("XRPTRY", "sell", "market", "10")
        return (
            [(t.tid, t.price, t.amount) for t in market.trades("BTCTRY")],
            [(c.time_s, c.open, c.close, c.volume) for c in market.candles("XRPTRY")],
            [(b.asset, b.balance) for b in market.balances()],
            order.id,
        )

    assert story(5) == story(5)
    assert story(5) != story(6)


def test_default_market_has_24_pairs_and_the_starting_account() -> None:
    market = SimMarket(clock=clock)
    assert len(market.pairs) == 24 and list(market.pairs)[0] == "BTCTRY"
    assert market.pairs["BTCTRY"].denominator_scale == 2 and not market.pairs["BTCTRY"].has_fraction
    assert market.balance("TRY").balance == Decimal(1_000_000)
    assert market.balance("USDT").balance == Decimal(100_000)
    assert market.balance("BTC").balance == Decimal(10)
    assert all(b.balance > 0 for b in market.balances())
    assert market.find_pair("btc_try") is market.pairs["BTCTRY"]
    with pytest.raises(MarketError) as refused:
        market.pair("NOPEUSDT")
    assert (refused.value.status, refused.value.code) == (400, 1037)
    assert refused.value.message == "Pair NOPEUSDT does not exists."


def test_amounts_stay_at_their_scales_and_money_is_exact() -> None:
    market = SimMarket(["BTCTRY", "ETHBTC"], seed=2, clock=clock)
    market.advance(500)
    for name, info in market.pairs.items():
        assert market.trades(name)
        for t in market.trades(name):
            assert places(t.price) <= info.price_scale and places(t.amount) <= info.amount_scale
    before = market.balance("BTC").balance
    market.submit("ETHBTC", "buy", "market", "0.5")
    fills = market.fills()
    assert fills and all(not f.maker for f in fills)
    spent = sum((f.price * f.amount + f.fee for f in fills), Decimal(0))
    assert market.balance("BTC").balance == before - spent  # 8 + 8 + 4 decimals, exactly
    assert market.balance("BTC").locked == 0


def test_a_crossing_limit_order_takes_then_rests_the_rest() -> None:
    market = SimMarket(["ETHUSDT"], seed=1, clock=clock)
    _, asks = market.levels("ETHUSDT", 2)
    (p0, a0), (p1, _) = asks
    assert p0 < p1
    quantity = a0 + Decimal("0.5")
    order = market.submit("ETHUSDT", "buy", "limit", quantity, p0)  # only the best ask crosses
    assert order.status == "Partial" and order.filled == a0 and order.left == Decimal("0.5")
    (fill,) = market.fills()
    assert (fill.price, fill.amount, fill.fee) == (p0, a0, p0 * a0 * TAKER)
    lock = p0 * quantity * (1 + TAKER) - p0 * a0 * (1 + TAKER)
    assert market.balance("USDT").locked == lock == order.locked
    assert [o.id for o in market.open_orders("ETH_USDT")] == [order.id]


def test_stop_orders_trigger_when_the_mid_crosses_on_an_advance() -> None:
    market = SimMarket(["BTCTRY"], seed=0, clock=clock)
    mid = market.mid("BTCTRY")
    assert mid is not None
    up = market.submit("BTCTRY", "buy", "stopmarket", "0.001", stop_price=int(mid) + 1)
    down = market.submit("BTCTRY", "sell", "stoplimit", "0.001", price=1, stop_price=int(mid) - 1)
    assert not market.order(up.id).triggered and not market.order(down.id).triggered
    for _ in range(1000):
        market.advance(10)
        if market.order(up.id).triggered and market.order(down.id).triggered:
            break
    assert market.order(up.id).status == "Filled"
    assert market.order(down.id).status == "Filled"  # a sell at 1 TRY takes the best bids
    assert market.balance("TRY").locked == 0 and market.balance("BTC").locked == 0


def test_market_buy_in_the_quote_currency_when_asked() -> None:
    market = SimMarket(["BTCTRY"], seed=0, clock=clock, market_buy_quantity="quote")
    before = market.balance("TRY").balance
    order = market.submit("BTCTRY", "buy", "market", "1000.50")
    assert order.in_quote and order.status == "Filled"
    fills = market.fills()
    cost = sum((f.price * f.amount for f in fills), Decimal(0))
    assert 0 < cost <= Decimal("1000.50") and order.filled == cost
    assert market.balance("TRY").balance == before - cost - cost * TAKER
    assert market.balance("TRY").locked == 0
    with pytest.raises(MarketError) as refused:
        market.submit("BTCTRY", "buy", "market", "1000.505")  # TRY has 2 places
    assert refused.value.code == 1127


def test_starting_balances_can_be_given() -> None:
    market = SimMarket(["XRPTRY"], clock=clock, balances={"TRY": "100"})
    assert market.balance("TRY").balance == Decimal(100) and market.balance("XRP").balance == 0
    with pytest.raises(MarketError) as refused:
        market.submit("XRPTRY", "buy", "limit", "100", "20")
    assert refused.value.code == 502


def test_market_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        SimMarket(["BTCXYZ"])
    with pytest.raises(ValueError):
        SimMarket(["BTCTRY"], maker_fee=Decimal("-0.1"))
    with pytest.raises(ValueError):
        SimMarket(["BTCTRY"], market_buy_quantity="both")  # type: ignore[arg-type]


def test_decimal_text_helpers() -> None:
    assert fixed(Decimal("33245"), 2) == "33245.00"
    assert fixed(Decimal("0.000249498098"), 8) == "0.000249498098"  # exactness over width
    assert canonical(Decimal("0.00100000")) == "0.001" and canonical(Decimal("90.0")) == "90"
    assert canonical(Decimal("0E-8")) == "0"
    assert places(Decimal("50000.00")) == 0 and places(Decimal("1E+3")) == 0
    assert places(Decimal("0.0010")) == 3
