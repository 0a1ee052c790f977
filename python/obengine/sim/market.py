"""The simulated market and account behind the simulated exchange: pure Python, no I/O,
deterministic given the seed (apart from timestamps, which come from the ``clock``), exact
``Decimal`` everywhere (never a float for a price, an amount, a balance or a fee).

The market's truth is a :class:`obengine.simulator.FeedSimulator`: its books are the pairs' order
books, and :meth:`SimMarket.advance` steps its stream (returning the frames, for a websocket face
to send) before it fills the account's orders that the moved books cross.

Paper-trading model
-------------------
- The account is invisible to the market: its orders never appear in the books and its fills never
  change them (the feed goes on as if the account did not exist). So an order that rests after
  taking the crossing levels fills again against whatever crosses it at the next advance that
  touches its pair.
- A limit order that crosses the book when it arrives fills at once against the opposite levels, at
  their prices, up to the amount each shows (taker fee); the rest rests as an open order. A
  resting order fills at its own price (maker fee) when a later :meth:`SimMarket.advance` moves the
  opposite best price across it: as much as the crossing levels show, at most what is left.
- A market order fills at once against the book's levels at their prices (taker); what the
  visible levels (100 a side) cannot fill is canceled. Its ``quantity`` is in the base currency
  (the numerator); with ``market_buy_quantity="quote"`` a market *buy*'s quantity is the amount of
  the quote currency to spend (what users report of the real exchange), checked at the
  denominator's scale.
- Stop orders wait until the pair's mid price crosses ``stopPrice`` (a buy when the mid is at or
  above it, a sell when at or below; checked when the order arrives and at every advance that
  touches the pair), then behave as a limit (``stoplimit``) or market (``stopmarket``) order.
- Funds: a buy locks ``price * quantity * (1 + taker_fee)`` of the quote currency (a stop market
  buy: at ``stopPrice``; a market buy: the exact cost of its walk, plus the taker fee), a sell
  locks ``quantity`` of the base currency. ``free = balance - locked``; an order needing more than
  the free funds is refused (HTTP 400, ``code`` 502, "Not enough balance", after the exchange's
  FAQ). A fill moves the funds and charges the fee, in the quote currency, of the quote amount:
  ``maker_fee`` (default 0.0005) or ``taker_fee`` (default 0.0009); tax is 0. A market or stop
  market buy spends its lock, then the account's free funds, and no more: the last level it
  takes is cut to what is left (what it cannot buy is canceled).
- The starting account (overridable with ``balances=``): TRY 1,000,000, USDT 100,000, BTC 10, and
  every other asset about 100,000 TRY (10,000 USDT, 1 BTC) worth at its first pair's mid price,
  with a few seeded past deposits and withdrawals that add up to it.
- Public trades: one for every fill (the account's price and amount; the taker's side), and
  seeded synthetic trades on :meth:`SimMarket.advance` (on about ``trade_permille``/1000 of the
  frames, on the frame's pair: at the best bid or ask, an amount at the pair's amount scale no
  larger than that level's), plus some seeded trades of the two hours before the market was made,
  so that a pair's trades are never empty. Daily candles: 30 seeded past days, then every UTC day
  from the trades. Tickers: the book's best prices, the last trade, and the trades of the last 24
  hours (by minute).

Validation, as the exchange answers (:class:`MarketError`): an unknown pair (HTTP 400,
``"Pair NOPEUSDT does not exists."``, code 1037), a price or stop price with more decimals than the
pair's price scale (400, ``FAILED_INVALID_PRICE_SCALE``, 1126), a quantity with more decimals than
the pair's amount scale (400, ``FAILED_INVALID_QUANTITY_SCALE``, 1127: the code is a guess), not
enough balance (400, 502), an unknown or closed order id on cancel (404). The price filter's
``minPrice``, ``maxPrice`` and ``minExchangeValue`` are published, not enforced.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Literal

from obengine.simulator import FeedSimulator

__all__ = [
    "Balance",
    "Candle",
    "Fill",
    "MarketError",
    "Order",
    "OrderMethod",
    "OrderStatus",
    "PairInfo",
    "Side",
    "SimMarket",
    "Ticker",
    "Trade",
    "Transfer",
    "canonical",
    "fixed",
    "places",
]

Side = Literal["buy", "sell"]
OrderMethod = Literal["limit", "market", "stoplimit", "stopmarket"]
OrderStatus = Literal["Untouched", "Partial", "Filled", "Canceled"]
TransferKind = Literal["deposit", "withdrawal"]

DEFAULT_PAIRS = 24  # pairs of a default market: the 22 bundled ones and two made-up ones
MAKER_FEE = Decimal("0.0005")
TAKER_FEE = Decimal("0.0009")

# Every computation on money: exact, or an error (Inexact is trapped): never a silent rounding.
_EXACT = Context(
    prec=400, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Inexact, Overflow, DivisionByZero]
)
# Divisions whose result is then cut to a scale on purpose (ROUND_DOWN or ROUND_HALF_EVEN).
_ROUND = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow, DivisionByZero])

_DAY_MS = 86_400_000
_MINUTE_MS = 60_000
_HISTORY_DAYS = 30
_SEED_TRADES = 30  # per pair, over the two hours before the market was made
_TRADES_KEPT = 200  # per pair, for /api/v2/trades (which shows at most 50)
_MAX_NUMBER_TEXT = 64  # longest decimal text accepted in a request

_QUOTES = ("USDT", "TRY", "BTC", "ETH", "EUR", "USD")  # suffixes a pair name may end with
_FIAT = frozenset({"TRY", "USD", "EUR"})
_START = {"TRY": Decimal(1_000_000), "USDT": Decimal(100_000), "BTC": Decimal(10)}
_WORTH = {"TRY": Decimal(100_000), "USDT": Decimal(10_000), "BTC": Decimal(1)}
_QUOTE_PRECISION = {"TRY": 2, "USDT": 2, "USD": 2, "EUR": 2, "BTC": 8, "ETH": 8}
_MIN_EXCHANGE_VALUE = {"TRY": Decimal("10"), "USDT": Decimal("10"), "BTC": Decimal("0.0001")}
_NAMES = {
    "TRY": "Türk Lirası",
    "USDT": "Tether",
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
    "LTC": "Litecoin",
    "XRP": "Ripple",
    "XLM": "Stellar",
    "EOS": "EOS",
    "NEO": "NEO",
    "XTZ": "Tezos",
    "USD": "US Dollar",
    "EUR": "Euro",
}


class MarketError(Exception):
    """A request the exchange refuses. The HTTP layer answers ``status`` with the envelope
    ``{"success": false, "message": message, "code": code, "data": null}`` (preceded by
    ``"httpStatusCode": status`` when ``http_status_field``, as the exchange writes order errors).
    """

    def __init__(
        self, status: int, message: str, code: int, *, http_status_field: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.http_status_field = http_status_field


def _order_error(message: str, code: int = 400, status: int = 400) -> MarketError:
    return MarketError(status, message, code, http_status_field=True)


# -- decimal text --------------------------------------------------------------------------


def places(value: Decimal) -> int:
    """The number of decimal places ``value`` needs (trailing zeros do not count):
    ``places(Decimal("50000.00")) == 0``, ``places(Decimal("0.0010")) == 3``."""
    if value == 0:
        return 0
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    trailing = 0
    for digit in reversed(digits):
        if digit:
            break
        trailing += 1
    return max(0, -(exponent + trailing))


def fixed(value: Decimal, scale: int) -> str:
    """``value`` with exactly ``scale`` decimal places (``"33245.00"`` at scale 2), or with its
    own places when it needs more (exactness wins over width). Never an exponent."""
    if places(value) <= scale:
        value = value.quantize(Decimal(1).scaleb(-scale), context=_EXACT)
    return format(value, "f")


def canonical(value: Decimal) -> str:
    """``value`` without trailing zeros, no point for an integer (``"0.001"``, ``"90"``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def to_decimal(value: object, what: str) -> Decimal:
    """An exact, finite ``Decimal`` from a request's value: a ``Decimal`` (a JSON number read with
    ``parse_float=Decimal``), an ``int`` or a decimal string. Anything else (a float, a bool, a
    NaN, text that is not a number) is a :class:`MarketError` 400."""
    if isinstance(value, bool):
        raise _order_error(f"FAILED_INVALID_{what.upper()}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str) and 0 < len(value.strip()) <= _MAX_NUMBER_TEXT:
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise _order_error(f"FAILED_INVALID_{what.upper()}") from None
    else:
        raise _order_error(f"FAILED_INVALID_{what.upper()}")
    if not result.is_finite() or len(result.as_tuple().digits) > _MAX_NUMBER_TEXT:
        raise _order_error(f"FAILED_INVALID_{what.upper()}")
    return result


def _quantum(scale: int) -> Decimal:
    return Decimal(1).scaleb(-scale)


def _floor(value: Decimal, scale: int) -> Decimal:
    return value.quantize(_quantum(scale), rounding=ROUND_DOWN, context=_ROUND)


def _round(value: Decimal, scale: int) -> Decimal:
    return value.quantize(_quantum(scale), rounding=ROUND_HALF_EVEN, context=_ROUND)


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairInfo:
    """A pair as exchange info shows it.

    Attributes:
        id: the pair's id (1, 2, ... in the market's order).
        name: ``"BTCTRY"``.
        numerator, denominator: base and quote currencies (``"BTC"``, ``"TRY"``).
        price_scale: decimal places of a price (0 for BTCTRY).
        amount_scale: decimal places of an amount (``numeratorScale``).
        denominator_scale: ``denominatorScale`` as exchange info writes it: the price scale, or 2
            when the price scale is 0 (``hasFraction`` false), as the exchange does for BTCTRY.
            Prices in the order book and in orders are written with this many places.
        min_price, max_price, tick_size, min_exchange_value: the ``PRICE_FILTER`` (published, not
            enforced).
    """

    id: int
    name: str
    numerator: str
    denominator: str
    price_scale: int
    amount_scale: int
    denominator_scale: int
    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal
    min_exchange_value: Decimal

    @property
    def normalized(self) -> str:
        """``"BTC_TRY"``."""
        return f"{self.numerator}_{self.denominator}"

    @property
    def has_fraction(self) -> bool:
        """Whether prices have decimals (false for BTCTRY)."""
        return self.price_scale > 0


@dataclass
class Order:
    """An order of the account (a copy when returned by :class:`SimMarket`).

    ``quantity`` and ``filled`` are in the base currency, except for a market buy made with
    ``market_buy_quantity="quote"`` (``in_quote``): then both are in the quote currency. ``price``
    is 0 for market orders and ``stop_price`` 0 for non-stop ones. Times are UTC ms.
    ``locked`` is what the order still holds of ``lock_asset``."""

    id: int
    pair: str
    side: Side
    method: OrderMethod
    price: Decimal
    stop_price: Decimal
    quantity: Decimal
    client_id: str
    time_ms: int
    update_time_ms: int
    lock_asset: str
    locked: Decimal
    in_quote: bool = False
    filled: Decimal = Decimal(0)
    status: OrderStatus = "Untouched"
    triggered: bool = False

    @property
    def left(self) -> Decimal:
        """What is still to fill (``quantity - filled``)."""
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        """Whether it is still in the order list (untouched or partly filled)."""
        return self.status in ("Untouched", "Partial")

    @property
    def limit_type(self) -> bool:
        return self.method in ("limit", "stoplimit")


@dataclass(frozen=True)
class Fill:
    """One fill of the account's order: ``amount`` of the base at ``price``; ``fee`` and ``tax``
    in the quote currency (positive); ``maker`` when the order was resting. UTC ms."""

    id: int
    order_id: int
    pair: str
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal
    tax: Decimal
    time_ms: int
    maker: bool


@dataclass(frozen=True)
class Trade:
    """A public trade of a pair; ``side`` is the taker's. ``tid`` a decimal string. UTC ms."""

    tid: str
    pair: str
    price: Decimal
    amount: Decimal
    time_ms: int
    side: Side


@dataclass(frozen=True)
class Transfer:
    """A deposit or withdrawal: ``amount`` signed (negative for a withdrawal), ``funds`` the
    asset's balance after it. UTC ms."""

    id: int
    kind: TransferKind
    asset: str
    amount: Decimal
    funds: Decimal
    fee: Decimal
    tax: Decimal
    time_ms: int

    @property
    def fiat(self) -> bool:
        return self.asset in _FIAT


@dataclass(frozen=True)
class Candle:
    """A daily candle (``time_s``: the UTC day's start, seconds). ``average`` is ``total /
    volume`` rounded half-even to ``max(price_scale, 2)`` places; ``daily_change_percentage``
    is rounded to 2 places."""

    pair: str
    time_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    total: Decimal
    average: Decimal
    daily_change_amount: Decimal
    daily_change_percentage: Decimal


@dataclass(frozen=True)
class Ticker:
    """A pair's ticker: ``bid``/``ask`` the book's best, ``last`` the last trade, the rest over the
    trades of the last 24 hours (by minute). ``average`` and ``daily_percent`` rounded as in
    :class:`Candle`. UTC ms."""

    pair: PairInfo
    time_ms: int
    last: Decimal
    high: Decimal
    low: Decimal
    bid: Decimal
    ask: Decimal
    open: Decimal
    volume: Decimal
    average: Decimal
    daily: Decimal
    daily_percent: Decimal


@dataclass(frozen=True)
class Balance:
    """An asset of the account: ``free = balance - locked``."""

    asset: str
    name: str
    balance: Decimal
    locked: Decimal
    free: Decimal
    precision: int


class _Ohlc:
    """An accumulating candle: open, high, low, close, volume, total (sum of price * amount)."""

    __slots__ = ("start_ms", "open", "high", "low", "close", "volume", "total")

    def __init__(self, start_ms: int, price: Decimal) -> None:
        self.start_ms = start_ms
        self.open = self.high = self.low = self.close = price
        self.volume = Decimal(0)
        self.total = Decimal(0)

    def add(self, price: Decimal, amount: Decimal) -> None:
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.close = price
        self.volume += amount
        self.total += price * amount


def _split(name: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if name.endswith(quote) and len(name) > len(quote):
            return name[: -len(quote)], quote
    raise ValueError(f"cannot tell the quote currency of pair {name!r} (known: {', '.join(_QUOTES)})")


def _frame_pair(frame: bytes) -> str | None:
    start = frame.find(b'"PS":"')
    if start < 0:
        return None
    start += 6
    end = frame.find(b'"', start)
    return frame[start:end].decode() if end > start else None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SimMarket:
    """The simulated market (books, trades, candles, tickers) and one paper-trading account.

    Thread-safe: every public method holds the market's lock, so tests may call
    :meth:`advance` from their thread while the server answers in another.

    Args:
        pairs: ``None`` (:data:`DEFAULT_PAIRS` pairs of :meth:`FeedSimulator.many`), a number of
            pairs for :meth:`FeedSimulator.many`, or pair names (``"BTCTRY"``; the quote must be
            one of USDT, TRY, BTC, ETH, EUR, USD).
        seed: seed of the feed and of everything the market draws.
        feed: a ready simulator instead (``pairs`` must then be ``None``).
        clock: UTC ms now (default: this machine's clock); the HTTP server passes its own,
            offset one.
        maker_fee, taker_fee: fee rates on the quote amount of a fill.
        balances: starting balances by asset, replacing the default account (assets of the pairs
            missing here start at 0).
        market_buy_quantity: ``"base"`` (a market buy's quantity is in the base currency, like
            every other order's) or ``"quote"`` (in the quote currency to spend).
        trade_permille: synthetic public trades per 1000 frames of :meth:`advance`.
    """

    def __init__(
        self,
        pairs: int | Sequence[str] | None = None,
        *,
        seed: int = 0,
        feed: FeedSimulator | None = None,
        clock: Callable[[], int] | None = None,
        maker_fee: Decimal = MAKER_FEE,
        taker_fee: Decimal = TAKER_FEE,
        balances: Mapping[str, Decimal | str | int] | None = None,
        market_buy_quantity: Literal["base", "quote"] = "base",
        trade_permille: int = 300,
    ) -> None:
        if feed is not None and pairs is not None:
            raise ValueError("give pairs or feed, not both")
        if feed is None:
            if pairs is None:
                feed = FeedSimulator.many(DEFAULT_PAIRS, seed=seed)
            elif isinstance(pairs, int):
                feed = FeedSimulator.many(pairs, seed=seed)
            else:
                feed = FeedSimulator(list(pairs), seed=seed)
        if market_buy_quantity not in ("base", "quote"):
            raise ValueError(
                f"market_buy_quantity must be 'base' or 'quote', not {market_buy_quantity!r}"
            )
        for rate in (maker_fee, taker_fee):
            if not isinstance(rate, Decimal) or not 0 <= rate < 1:
                raise ValueError(f"fee rates must be Decimals in [0, 1), not {rate!r}")
        if not 0 <= trade_permille <= 1000:
            raise ValueError(f"trade_permille must be in 0..1000, not {trade_permille}")
        self.feed = feed
        self.seed = seed
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.market_buy_quantity = market_buy_quantity
        self.trade_permille = trade_permille
        self._clock = clock or _now_ms
        self._lock = threading.RLock()
        self._rng = random.Random(f"obengine.sim.market:{seed}")
        with localcontext(_EXACT):
            self._build(balances)

    # -- set-up ----------------------------------------------------------------------------

    def _build(self, balances: Mapping[str, Decimal | str | int] | None) -> None:
        rng = self._rng
        now = self._clock()
        self.pairs: dict[str, PairInfo] = {}
        for i, name in enumerate(self.feed.pairs, 1):
            numerator, denominator = _split(name)
            price_scale, amount_scale = self.feed.scales[name]
            bids, asks = self.feed.levels(name)
            top = asks[0][0] if asks else (bids[0][0] if bids else Decimal(1))
            digits = len(str(int(top))) if top >= 1 else 1
            self.pairs[name] = PairInfo(
                id=i,
                name=name,
                numerator=numerator,
                denominator=denominator,
                price_scale=price_scale,
                amount_scale=amount_scale,
                denominator_scale=price_scale if price_scale > 0 else 2,
                min_price=_quantum(price_scale),
                max_price=Decimal(10) ** (digits + 2),
                tick_size=_quantum(price_scale),
                min_exchange_value=_MIN_EXCHANGE_VALUE.get(denominator, Decimal("0.0001")),
            )
        self._aliases: dict[str, str] = {}
        for info in self.pairs.values():
            self._aliases[info.name.upper()] = info.name
            self._aliases[info.normalized.upper()] = info.name

        # currencies: denominators first (TRY, USDT, BTC, ...), then numerators in pair order
        precision: dict[str, int] = {}
        for info in self.pairs.values():
            precision[info.numerator] = max(precision.get(info.numerator, 0), info.amount_scale)
        first = ("TRY", "USDT", "BTC")
        order = sorted(
            {info.denominator for info in self.pairs.values()},
            key=lambda a: (first.index(a) if a in first else len(first), a),
        )
        for info in self.pairs.values():
            if info.numerator not in order:
                order.append(info.numerator)
        self.currencies: dict[str, int] = {
            asset: precision.get(asset, _QUOTE_PRECISION.get(asset, 8)) for asset in order
        }

        # the account
        self._balance: dict[str, Decimal] = {asset: Decimal(0) for asset in self.currencies}
        self._locked: dict[str, Decimal] = {asset: Decimal(0) for asset in self.currencies}
        if balances is not None:
            for asset, value in balances.items():
                amount = to_decimal(value, "balance")
                if amount < 0:
                    raise ValueError(f"{asset}: a balance must not be negative")
                self._balance[asset] = amount
                self.currencies.setdefault(asset, _QUOTE_PRECISION.get(asset, 8))
                self._locked.setdefault(asset, Decimal(0))
        else:
            for asset in self.currencies:
                self._balance[asset] = self._start_balance(asset)
        self._orders: dict[int, Order] = {}
        self._open: dict[str, list[int]] = {name: [] for name in self.pairs}
        self._fills: list[Fill] = []
        self._transfers: list[Transfer] = []
        self._next_order = 9_000_000 + rng.randrange(1_000_000)
        self._next_fill = 5_000_000 + rng.randrange(1_000_000)
        self._next_transfer = 600_000 + rng.randrange(100_000)
        self._next_tid = 636_692_470_000_000_000 + rng.randrange(10**9)

        # market history
        self._trades: dict[str, deque[Trade]] = {
            name: deque(maxlen=_TRADES_KEPT) for name in self.pairs
        }
        self._days: dict[str, dict[int, _Ohlc]] = {name: {} for name in self.pairs}
        self._minutes: dict[str, deque[_Ohlc]] = {name: deque() for name in self.pairs}
        self._last: dict[str, Decimal] = {}
        for name in self.pairs:
            self._seed_history(name, now)
        self._seed_transfers(now)

    def _start_balance(self, asset: str) -> Decimal:
        if asset in _START:
            return _START[asset]
        for info in self.pairs.values():
            if info.numerator != asset:
                continue
            mid = self._mid(info.name)
            worth = _WORTH.get(info.denominator)
            if mid is None or worth is None or mid <= 0:
                return Decimal(1000)
            amount = _floor(_ROUND.divide(worth, mid), info.amount_scale)
            return amount if amount > 0 else _quantum(info.amount_scale)
        return Decimal(0)

    def _seed_history(self, name: str, now: int) -> None:
        """Seeded trades over the two hours before ``now``, and 30 seeded daily candles before the
        day of the first of them."""
        rng = self._rng
        info = self.pairs[name]
        times = sorted(now - 1 - rng.randrange(2 * 3_600_000) for _ in range(_SEED_TRADES))
        for t in times:
            self._synthetic_trade(name, t)
        first = self._trades[name][0].price if self._trades[name] else (self._mid(name) or Decimal(1))
        day0 = times[0] // _DAY_MS * _DAY_MS
        tick = _quantum(info.price_scale)
        close = first
        for k in range(1, _HISTORY_DAYS + 1):
            start = day0 - k * _DAY_MS
            bp = rng.randrange(-300, 301)
            open_ = max(_round(close * (10_000 + bp) / 10_000, info.price_scale), tick)
            hi = max(open_, close)
            lo = min(open_, close)
            high = _round(hi * (10_000 + rng.randrange(0, 151)) / 10_000, info.price_scale)
            low = max(_round(lo * (10_000 - rng.randrange(0, 151)) / 10_000, info.price_scale), tick)
            span = int((high - low) / tick)
            average = low + tick * rng.randrange(span + 1)
            notional = _WORTH.get(info.denominator, Decimal(1)) * 10 * rng.randrange(1, 100)
            volume = _floor(_ROUND.divide(notional, average), info.amount_scale)
            if volume <= 0:
                volume = _quantum(info.amount_scale)
            candle = _Ohlc(start, open_)
            candle.high, candle.low, candle.close = high, low, close
            candle.volume, candle.total = volume, volume * average
            self._days[name][start] = candle
            close = open_

    def _seed_transfers(self, now: int) -> None:
        """A deposit and a withdrawal per asset with a starting balance, adding up to it."""
        rng = self._rng
        for asset, balance in self._balance.items():
            if balance <= 0:
                continue
            scale = self.currencies[asset]
            extra = _floor(balance * rng.randrange(1, 20) / 100, scale)
            deposit_ms = now - (10 + rng.randrange(10)) * _DAY_MS - rng.randrange(_DAY_MS)
            withdrawal_ms = now - (1 + rng.randrange(5)) * _DAY_MS - rng.randrange(_DAY_MS)
            self._transfers.append(
                self._transfer("deposit", asset, balance + extra, balance + extra, deposit_ms)
            )
            if extra > 0:
                withdrawal = self._transfer("withdrawal", asset, -extra, balance, withdrawal_ms)
                self._transfers.append(withdrawal)

    def _transfer(
        self, kind: TransferKind, asset: str, amount: Decimal, funds: Decimal, t: int
    ) -> Transfer:
        self._next_transfer += 1 + self._rng.randrange(50)
        return Transfer(self._next_transfer, kind, asset, amount, funds, Decimal(0), Decimal(0), t)

    # -- lookups ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The market's clock: UTC ms."""
        return self._clock()

    def find_pair(self, symbol: str) -> PairInfo | None:
        """The pair named ``symbol`` (``"BTCTRY"``, ``"BTC_TRY"``, any case), or ``None``."""
        name = self._aliases.get(symbol.strip().upper())
        return None if name is None else self.pairs[name]

    def pair(self, symbol: str) -> PairInfo:
        """The pair named ``symbol``, or the exchange's error for an unknown one (HTTP 400,
        ``"Pair NOPEUSDT does not exists."``, code 1037)."""
        info = self.find_pair(symbol)
        if info is None:
            raise MarketError(400, f"Pair {symbol} does not exists.", 1037)
        return info

    def levels(
        self, pair: str, limit: int | None = None
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The pair's book now, ``(bids, asks)`` best first as exact ``(price, amount)``, at most
        ``limit`` levels a side."""
        with self._lock:
            bids, asks = self.feed.levels(self.pair(pair).name)
        if limit is not None:
            bids, asks = bids[:limit], asks[:limit]
        return bids, asks

    def _mid(self, name: str) -> Decimal | None:
        bids, asks = self.feed.levels(name)
        if not bids or not asks:
            return None
        return (bids[0][0] + asks[0][0]) / 2

    def mid(self, pair: str) -> Decimal | None:
        """The pair's mid price (exact), or ``None`` when a side is empty."""
        with self._lock, localcontext(_EXACT):
            return self._mid(self.pair(pair).name)

    # -- the market moving -----------------------------------------------------------------

    def advance(self, frames: int = 1) -> list[bytes]:
        """Step the feed by ``frames`` frames (returned, as a websocket subscriber of every pair's
        ``obdiff`` would receive them), draw the synthetic public trades, then trigger the stop
        orders and fill the resting orders that the moved books cross (on the pairs the frames
        touched)."""
        if frames < 0:
            raise ValueError(f"frames must be >= 0, not {frames}")
        with self._lock, localcontext(_EXACT):
            out = self.feed.frames(frames)
            now = self._clock()
            touched: dict[str, None] = {}
            for frame in out:
                name = _frame_pair(frame)
                if name is None or name not in self.pairs:
                    continue
                touched[name] = None
                if self._rng.randrange(1000) < self.trade_permille:
                    self._synthetic_trade(name, now)
            for name in touched:
                self._match(name, now)
            return out

    def _synthetic_trade(self, name: str, t: int) -> None:
        rng = self._rng
        info = self.pairs[name]
        bids, asks = self.feed.levels(name)
        side: Side = "buy" if rng.randrange(2) else "sell"
        levels = asks if side == "buy" else bids
        if not levels:
            side = "sell" if side == "buy" else "buy"
            levels = asks if side == "buy" else bids
            if not levels:
                return
        price, shown = levels[0]
        most = int(_floor(shown, info.amount_scale).scaleb(info.amount_scale))
        units = 1 + rng.randrange(max(most, 1))
        amount = Decimal(units).scaleb(-info.amount_scale)
        self._record_trade(name, price, amount, t, side)

    def _record_trade(self, name: str, price: Decimal, amount: Decimal, t: int, side: Side) -> None:
        self._next_tid += 1 + self._rng.randrange(100_000)
        self._trades[name].append(Trade(str(self._next_tid), name, price, amount, t, side))
        self._last[name] = price
        day = t // _DAY_MS * _DAY_MS
        days = self._days[name]
        candle = days.get(day)
        if candle is None:
            candle = days[day] = _Ohlc(day, price)
        candle.add(price, amount)
        minute = t // _MINUTE_MS * _MINUTE_MS
        minutes = self._minutes[name]
        if minutes and minutes[-1].start_ms == minute:
            minutes[-1].add(price, amount)
        elif minutes and minutes[-1].start_ms > minute:  # an earlier time (the clock moved back)
            minutes[-1].add(price, amount)
        else:
            bucket = _Ohlc(minute, price)
            bucket.add(price, amount)
            minutes.append(bucket)

    # -- orders ----------------------------------------------------------------------------

    def submit(
        self,
        pair: str,
        side: str,
        method: str,
        quantity: object,
        price: object = None,
        stop_price: object = None,
        client_id: str = "",
    ) -> Order:
        """Place an order (see the module docstring for how it fills); returns it as it stands
        after its immediate fills. ``side`` ``"buy"``/``"sell"``; ``method`` ``"limit"``,
        ``"market"``, ``"stoplimit"``, ``"stopmarket"`` (any case); numbers as ``Decimal``, int
        or decimal strings. Raises :class:`MarketError` as the exchange refuses."""
        with self._lock, localcontext(_EXACT):
            info = self.pair(pair)
            side_ = side.lower() if isinstance(side, str) else ""
            if side_ not in ("buy", "sell"):
                raise _order_error("FAILED_INVALID_ORDER_TYPE")
            method_ = method.lower() if isinstance(method, str) else ""
            if method_ not in ("limit", "market", "stoplimit", "stopmarket"):
                raise _order_error("FAILED_INVALID_ORDER_METHOD")
            the_side: Side = "buy" if side_ == "buy" else "sell"
            the_method: OrderMethod = method_  # type: ignore[assignment]
            in_quote = (
                self.market_buy_quantity == "quote"
                and the_side == "buy"
                and the_method in ("market", "stopmarket")
            )
            qty = to_decimal(quantity, "quantity")
            if qty <= 0:
                raise _order_error("FAILED_INVALID_QUANTITY")
            qty_scale = info.denominator_scale if in_quote else info.amount_scale
            if places(qty) > qty_scale:
                raise _order_error("FAILED_INVALID_QUANTITY_SCALE", 1127)
            limit_price = Decimal(0)
            if the_method in ("limit", "stoplimit"):
                limit_price = to_decimal(price, "price")
                if limit_price <= 0:
                    raise _order_error("FAILED_INVALID_PRICE")
                if places(limit_price) > info.price_scale:
                    raise _order_error("FAILED_INVALID_PRICE_SCALE", 1126)
            stop = Decimal(0)
            if the_method in ("stoplimit", "stopmarket"):
                stop = to_decimal(stop_price, "stop_price")
                if stop <= 0:
                    raise _order_error("FAILED_INVALID_STOP_PRICE")
                if places(stop) > info.price_scale:
                    raise _order_error("FAILED_INVALID_PRICE_SCALE", 1126)
            if not isinstance(client_id, str):
                raise _order_error("FAILED_INVALID_CLIENT_ORDER_ID")

            # what it locks
            one_plus_taker = 1 + self.taker_fee
            if the_side == "sell":
                asset, need = info.numerator, qty
            elif the_method in ("limit", "stoplimit"):
                asset, need = info.denominator, limit_price * qty * one_plus_taker
            elif in_quote:
                asset, need = info.denominator, qty * one_plus_taker
            elif the_method == "stopmarket":
                asset, need = info.denominator, stop * qty * one_plus_taker
            else:
                _, asks = self.feed.levels(info.name)
                asset, need = info.denominator, self._walk_cost(asks, qty) * one_plus_taker
            if need > self._free(asset):
                raise MarketError(400, "Not enough balance", 502, http_status_field=True)

            now = self._clock()
            self._next_order += 1 + self._rng.randrange(100)
            order = Order(
                id=self._next_order,
                pair=info.name,
                side=the_side,
                method=the_method,
                price=limit_price,
                stop_price=stop,
                quantity=qty,
                client_id=client_id,
                time_ms=now,
                update_time_ms=now,
                lock_asset=asset,
                locked=need,
                in_quote=in_quote,
                triggered=the_method in ("limit", "market"),
            )
            self._locked[asset] += need
            self._orders[order.id] = order
            self._open[info.name].append(order.id)
            if not order.triggered:
                mid = self._mid(info.name)
                if mid is not None and self._crossed(order, mid):
                    order.triggered = True
            if order.triggered:
                self._execute(order, now)
            return replace(order)

    @staticmethod
    def _crossed(order: Order, mid: Decimal) -> bool:
        return mid >= order.stop_price if order.side == "buy" else mid <= order.stop_price

    @staticmethod
    def _walk_cost(levels: Iterable[tuple[Decimal, Decimal]], qty: Decimal) -> Decimal:
        cost = Decimal(0)
        left = qty
        for price, shown in levels:
            if left <= 0:
                break
            take = min(left, shown)
            cost += price * take
            left -= take
        return cost

    def _free(self, asset: str) -> Decimal:
        return self._balance.get(asset, Decimal(0)) - self._locked.get(asset, Decimal(0))

    def _execute(self, order: Order, now: int) -> None:
        """A triggered order's immediate part: take the crossing levels (a limit order up to its
        price); a market order then ends, a limit order rests with what is left."""
        bids, asks = self.feed.levels(order.pair)
        levels = asks if order.side == "buy" else bids
        info = self.pairs[order.pair]
        rate = self.taker_fee
        unit = _quantum(info.amount_scale)
        dust = False  # a quote-quantity buy whose rest cannot buy one unit more
        for price, shown in levels:
            if order.left <= 0:
                break
            if order.limit_type:
                beyond = price > order.price if order.side == "buy" else price < order.price
                if beyond:
                    break
            if order.in_quote:
                amount = min(shown, _floor(_ROUND.divide(order.left, price), info.amount_scale))
                while amount > 0 and price * amount > order.left:
                    amount -= unit
                if amount <= 0:
                    dust = True
                    break
            else:
                amount = min(shown, order.left)
            if order.side == "buy" and not order.limit_type:
                # a market buy spends its lock, then the free funds (a stop market buy locks at its
                # stop price, and the asks are above it when it triggers), and no more
                budget = order.locked + self._free(info.denominator)
                if price * amount * (1 + rate) > budget:
                    amount = _floor(_ROUND.divide(budget, price * (1 + rate)), info.amount_scale)
                    while amount > 0 and price * amount * (1 + rate) > budget:
                        amount -= unit
                    if amount <= 0:
                        break
            self._fill(order, price, amount, maker=False, now=now)
        if not order.limit_type:
            order.status = "Filled" if order.left <= 0 or (dust and order.filled > 0) else "Canceled"
            self._close(order, now)
        elif order.left <= 0:
            order.status = "Filled"
            self._close(order, now)

    def _fill(self, order: Order, price: Decimal, amount: Decimal, *, maker: bool, now: int) -> None:
        info = self.pairs[order.pair]
        rate = self.maker_fee if maker else self.taker_fee
        quote = price * amount
        fee = quote * rate
        base, quote_asset = info.numerator, info.denominator
        if order.side == "buy":
            if order.limit_type:
                release = order.price * amount * (1 + self.taker_fee)
            else:
                release = quote + fee
            release = min(release, order.locked)  # a market buy may spend free funds too
            order.locked -= release
            self._locked[quote_asset] -= release
            self._balance[quote_asset] -= quote + fee
            self._balance[base] += amount
        else:
            order.locked -= amount
            self._locked[base] -= amount
            self._balance[base] -= amount
            self._balance[quote_asset] += quote - fee
        order.filled += quote if order.in_quote else amount
        order.update_time_ms = now
        order.status = "Filled" if order.left <= 0 else "Partial"
        self._next_fill += 1 + self._rng.randrange(10)
        self._fills.append(
            Fill(
                self._next_fill, order.id, order.pair, order.side, price, amount, fee, Decimal(0),
                now, maker,
            )
        )
        taker: Side = ("sell" if order.side == "buy" else "buy") if maker else order.side
        self._record_trade(order.pair, price, amount, now, taker)

    def _close(self, order: Order, now: int) -> None:
        """Take a finished order out of the open list and release what it still locks."""
        if order.locked:
            self._locked[order.lock_asset] -= order.locked
            order.locked = Decimal(0)
        order.update_time_ms = now
        ids = self._open[order.pair]
        if order.id in ids:
            ids.remove(order.id)

    def _match(self, name: str, now: int) -> None:
        """After the book of ``name`` moved: trigger its stop orders whose stop the mid crossed,
        then fill its resting limit orders that the opposite best price crosses (maker)."""
        ids = list(self._open[name])
        if not ids:
            return
        mid = self._mid(name)
        just: set[int] = set()
        for oid in ids:
            order = self._orders[oid]
            if order.is_open and not order.triggered and mid is not None and self._crossed(order, mid):
                order.triggered = True
                just.add(oid)
                self._execute(order, now)
        bids, asks = self.feed.levels(name)
        for oid in ids:
            order = self._orders[oid]
            if oid in just or not order.is_open or not order.triggered or not order.limit_type:
                continue
            if order.side == "buy":
                crossing = sum((a for p, a in asks if p <= order.price), Decimal(0))
            else:
                crossing = sum((a for p, a in bids if p >= order.price), Decimal(0))
            if crossing <= 0:
                continue
            self._fill(order, order.price, min(crossing, order.left), maker=True, now=now)
            if order.left <= 0:
                self._close(order, now)

    def cancel(self, order_id: object) -> Order:
        """Cancel an open order; returns it. An unknown or closed id is a :class:`MarketError`
        (HTTP 404)."""
        with self._lock, localcontext(_EXACT):
            try:
                oid = int(str(order_id).strip())
            except ValueError:
                raise MarketError(400, "FAILED_INVALID_ORDER_ID", 400) from None
            order = self._orders.get(oid)
            if order is None or not order.is_open:
                raise MarketError(404, "FAILED_ORDER_NOT_FOUND", 404, http_status_field=True)
            order.status = "Canceled"
            self._close(order, self._clock())
            return replace(order)

    def order(self, order_id: int) -> Order:
        """A copy of the order ``order_id`` (``KeyError`` when unknown)."""
        with self._lock:
            return replace(self._orders[order_id])

    def open_orders(self, pair: str | None = None) -> list[Order]:
        """Copies of the open orders (of one pair, or all), newest first."""
        with self._lock:
            names = [self.pair(pair).name] if pair is not None else list(self.pairs)
            out = [replace(self._orders[oid]) for name in names for oid in self._open[name]]
        out.sort(key=lambda o: o.id, reverse=True)
        return out

    def all_orders(
        self,
        pair: str,
        *,
        order_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Order]:
        """Copies of the pair's orders, every status, newest first: ids >= ``order_id``, placed
        within ``start_ms..end_ms`` (UTC ms, inclusive) when given."""
        with self._lock:
            name = self.pair(pair).name
            out = [
                replace(o)
                for o in self._orders.values()
                if o.pair == name
                and (order_id is None or o.id >= order_id)
                and (start_ms is None or o.time_ms >= start_ms)
                and (end_ms is None or o.time_ms <= end_ms)
            ]
        out.sort(key=lambda o: o.id, reverse=True)
        return out

    # -- the account -----------------------------------------------------------------------

    def balances(self) -> list[Balance]:
        """Every asset of the account, quote currencies first."""
        with self._lock, localcontext(_EXACT):
            return [self._balance_of(asset) for asset in self.currencies]

    def balance(self, asset: str) -> Balance:
        """One asset's balance (``KeyError`` when the market has no such asset)."""
        with self._lock, localcontext(_EXACT):
            if asset not in self.currencies:
                raise KeyError(asset)
            return self._balance_of(asset)

    def _balance_of(self, asset: str) -> Balance:
        total = self._balance.get(asset, Decimal(0))
        locked = self._locked.get(asset, Decimal(0))
        name = _NAMES.get(asset, asset)
        return Balance(asset, name, total, locked, total - locked, self.currencies[asset])

    def fills(
        self,
        *,
        sides: Iterable[str] | None = None,
        assets: Iterable[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Fill]:
        """The account's fills, newest first: of these sides, of pairs whose base or quote is one
        of ``assets`` (any case), within ``start_ms..end_ms`` (UTC ms, inclusive)."""
        side_set = None if sides is None else {s.lower() for s in sides}
        asset_set = None if assets is None else {a.upper() for a in assets}
        with self._lock:
            out = []
            for f in self._fills:
                info = self.pairs[f.pair]
                if side_set is not None and f.side not in side_set:
                    continue
                if asset_set is not None and not ({info.numerator, info.denominator} & asset_set):
                    continue
                if start_ms is not None and f.time_ms < start_ms:
                    continue
                if end_ms is not None and f.time_ms > end_ms:
                    continue
                out.append(f)
        out.reverse()
        return out

    def transfers(
        self,
        fiat: bool,
        *,
        kinds: Iterable[str] | None = None,
        assets: Iterable[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Transfer]:
        """The account's fiat (TRY, USD, EUR) or crypto deposits and withdrawals, newest first,
        filtered like :meth:`fills` (``kinds``: ``"deposit"``, ``"withdrawal"``)."""
        kind_set = None if kinds is None else {k.lower() for k in kinds}
        asset_set = None if assets is None else {a.upper() for a in assets}
        with self._lock:
            out = [
                t
                for t in self._transfers
                if t.fiat == fiat
                and (kind_set is None or t.kind in kind_set)
                and (asset_set is None or t.asset in asset_set)
                and (start_ms is None or t.time_ms >= start_ms)
                and (end_ms is None or t.time_ms <= end_ms)
            ]
        out.sort(key=lambda t: t.time_ms, reverse=True)
        return out

    # -- public market data ----------------------------------------------------------------

    def trades(self, pair: str, last: int = 50) -> list[Trade]:
        """The pair's last ``last`` public trades, newest first."""
        with self._lock:
            trades = self._trades[self.pair(pair).name]
            out = list(trades)[-last:] if last > 0 else []
        out.reverse()
        return out

    def candles(self, pair: str, from_s: int | None = None, to_s: int | None = None) -> list[Candle]:
        """The pair's daily candles, oldest first, whose day starts within ``from_s..to_s`` (UTC
        seconds, inclusive) when given."""
        with self._lock, localcontext(_EXACT):
            info = self.pair(pair)
            out = []
            for start in sorted(self._days[info.name]):
                t = start // 1000
                if (from_s is not None and t < from_s) or (to_s is not None and t > to_s):
                    continue
                c = self._days[info.name][start]
                average, change, percent = self._stats(info, c)
                out.append(
                    Candle(
                        info.name, t, c.open, c.high, c.low, c.close, c.volume, c.total, average,
                        change, percent,
                    )
                )
            return out

    @staticmethod
    def _stats(info: PairInfo, c: _Ohlc) -> tuple[Decimal, Decimal, Decimal]:
        """(average, change, change percentage) of a candle."""
        avg_scale = max(info.price_scale, 2)
        average = _round(_ROUND.divide(c.total, c.volume), avg_scale) if c.volume else c.close
        change = c.close - c.open
        percent = _round(_ROUND.divide(change * 100, c.open), 2) if c.open else Decimal(0)
        return average, change, percent

    def ticker(self, pair: str) -> Ticker:
        """The pair's ticker now."""
        with self._lock, localcontext(_EXACT):
            return self._ticker(self.pair(pair))

    def tickers(self) -> list[Ticker]:
        """Every pair's ticker, in pair order."""
        with self._lock, localcontext(_EXACT):
            return [self._ticker(info) for info in self.pairs.values()]

    def _ticker(self, info: PairInfo) -> Ticker:
        now = self._clock()
        name = info.name
        minutes = self._minutes[name]
        while minutes and minutes[0].start_ms < now - _DAY_MS:
            minutes.popleft()
        bids, asks = self.feed.levels(name)
        mid = self._mid(name)
        last = self._last.get(name, mid if mid is not None else Decimal(0))
        bid = bids[0][0] if bids else last
        ask = asks[0][0] if asks else last
        if minutes:
            day = _Ohlc(minutes[0].start_ms, minutes[0].open)
            day.high = max(m.high for m in minutes)
            day.low = min(m.low for m in minutes)
            day.close = last
            day.volume = sum((m.volume for m in minutes), Decimal(0))
            day.total = sum((m.total for m in minutes), Decimal(0))
        else:
            day = _Ohlc(now, last)
        average, change, percent = self._stats(info, day)
        return Ticker(
            info, now, last, day.high, day.low, bid, ask, day.open, day.volume, average, change, percent
        )

    def __repr__(self) -> str:
        return f"SimMarket({len(self.pairs)} pairs, seed={self.seed!r})"
