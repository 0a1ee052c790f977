"""The BtcTurk REST API without I/O: what each endpoint sends, how its answer is read, the error
it maps to, the client-side rate limits, the clock offset and the retry policy.

Every endpoint is a :class:`Call`: the request (method, host, path, query, body, whether it is
signed) plus the function that turns the answer's ``data`` into typed results with exact
``Decimal`` values. :meth:`Session.run` is a generator that carries one call through rate limiting,
clock sync, signing, decoding and retries, yielding :class:`Send` (perform this HTTP request and
send back a :class:`Reply`, or throw a :class:`~obengine.TransportError` into the generator) and
:class:`Sleep` (wait this long, then send back ``None``). The asyncio client and its synchronous
twin in :mod:`obengine.rest` are two small loops over that generator, so both behave the same by
construction, and all of it is tested here without a socket.

Numbers: the exchange writes most prices and amounts as strings and some as JSON numbers (the
ticker, user transactions, OHLC); the body is decoded with ``parse_float=Decimal``, so no value
ever passes through a float. Balances may use a comma as the decimal separator
(``"27223,7283250757643288"``), which :func:`to_decimal` accepts.
"""
from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from obengine.auth import BtcTurkSigner, KrakenSigner
from obengine.errors import AuthError, ExchangeError, RateLimited, ServerError, TransportError

T = TypeVar("T")

Host = Literal["api", "graph"]
Side = Literal["buy", "sell"]
OrderMethod = Literal["limit", "market", "stoplimit", "stopmarket"]

INT64_MAX = 2**63 - 1

# -- rate limits -------------------------------------------------------------------------------

#: Requests per minute, from the exchange's API reference ("Rate Limits"). A request counts
#: against every bucket it belongs to (see :func:`buckets_of`).
RATE_LIMITS: Mapping[str, int] = {
    "/api/v1/*": 600,
    "GET /api/v1/users/balances": 90,
    "POST /api/v1/order": 300,
    "DELETE /api/v1/order": 300,
    "GET /api/v1/openOrders": 300,
    "GET /api/v1/allOrders": 300,
    "GET /api/v1/users/transactions/trade": 90,
    "GET /api/v1/users/transactions/crypto": 90,
    "GET /api/v1/users/transactions/fiat": 90,
    "GET /api/v2/ticker": 600,
    "GET /api/v2/orderbook": 60,
}

WINDOW_S = 60.0


def buckets_of(method: str, path: str) -> tuple[str, ...]:
    """The rate-limit buckets a request counts against."""
    out: list[str] = []
    if path.startswith("/api/v1/"):
        out.append("/api/v1/*")
    key = f"{method} {path}"
    if key in RATE_LIMITS:
        out.append(key)
    return tuple(out)


class RateLimiter:
    """Client-side sliding-window limits: :meth:`reserve` says how long to wait so that no
    bucket sees more than its limit of requests in any ``window_s``, and books the request at
    that time. Times are seconds of a monotonic clock."""

    def __init__(self, limits: Mapping[str, int] = RATE_LIMITS, window_s: float = WINDOW_S) -> None:
        self.limits = dict(limits)
        self.window_s = window_s
        self._sent: dict[str, deque[float]] = {}

    def reserve(self, buckets: Sequence[str], now: float) -> float:
        """Seconds to wait before sending a request of these buckets (0 when it may go now);
        the request is booked at ``now + wait``."""
        at = now
        for name in buckets:
            limit = self.limits.get(name)
            if limit is None:
                continue
            sent = self._sent.setdefault(name, deque())
            while sent and sent[0] <= now - self.window_s:
                sent.popleft()
            if len(sent) >= limit:
                at = max(at, sent[-limit] + self.window_s)
        for name in buckets:
            if name in self.limits:
                self._sent.setdefault(name, deque()).append(at)
        return at - now


# -- exact numbers -----------------------------------------------------------------------------


def to_decimal(value: object, what: str = "value") -> Decimal:
    """An exact ``Decimal`` from what a body holds: a decimal string (a comma accepted as the
    decimal separator), an int, or a ``Decimal`` (a JSON number decoded with
    ``parse_float=Decimal``). ``ValueError`` for anything else, floats included."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if "," in text and "." not in text and text.count(",") == 1:
            text = text.replace(",", ".")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{what}: {value!r} is not a decimal number") from None
    else:
        raise ValueError(f"{what}: expected a decimal number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{what}: {value!r} is not a finite number")
    return result


def _opt_decimal(value: object, what: str) -> Decimal | None:
    return None if value is None or value == "" else to_decimal(value, what)


def _int(value: object, what: str) -> int:
    """An integer from an int, an integral Decimal (``1543836448605.0``) or a digit string."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected an integer, got a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, (Decimal, str)):
        d = to_decimal(value, what)
        if d != d.to_integral_value():
            raise ValueError(f"{what}: {value!r} is not an integer")
        return int(d)
    raise ValueError(f"{what}: expected an integer, got {type(value).__name__}")


def _str(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{what}: expected a string, got {type(value).__name__}")


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what}: expected a list, got {type(value).__name__}")
    return value


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def places(d: Decimal) -> int:
    """Decimal places of the value itself (trailing zeros do not count): ``33245.00`` -> 0."""
    exp = d.normalize().as_tuple().exponent
    assert isinstance(exp, int)
    return max(0, -exp)


def units(d: Decimal, scale: int, what: str) -> int:
    """``d * 10**scale`` as an int64; ValueError when it is not whole or does not fit."""
    scaled = d.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{what}: {d} has more than {scale} decimal places")
    n = int(scaled)
    if not -INT64_MAX - 1 <= n <= INT64_MAX:
        raise ValueError(f"{what}: {d} does not fit int64 at scale {scale}")
    return n


def symbol(pair: str) -> str:
    """The websocket spelling of a pair: ``BTC_TRY`` and ``btctry`` -> ``BTCTRY``."""
    if not isinstance(pair, str) or not pair.strip():
        raise ValueError(f"pair must be a non-empty str, not {pair!r}")
    return pair.replace("_", "").strip().upper()


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairInfo:
    """One pair of ``exchange_info()``. ``symbol`` as the websocket spells it (``BTCTRY``);
    ``price_scale`` and ``amount_scale`` are the decimal places a ``Book`` of it takes: the
    amount scale is ``numeratorScale``, the price scale ``denominatorScale``, or 0 when the
    pair has no fraction (``hasFraction`` false: prices are integers whatever
    ``denominatorScale`` says, exchange staff in BTCTrader/broker-api-docs #205, #280)."""

    symbol: str
    name_normalized: str
    status: str
    numerator: str
    denominator: str
    price_scale: int
    amount_scale: int
    has_fraction: bool
    min_price: Decimal | None
    max_price: Decimal | None
    tick_size: Decimal | None
    min_exchange_value: Decimal | None
    order_methods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExchangeInfo:
    """``exchange_info()``: ``pairs`` keyed by symbol, ``currencies`` as ``{symbol: precision}``."""

    pairs: dict[str, PairInfo]
    currencies: dict[str, int]

    def scales(self) -> dict[str, tuple[int, int]]:
        """``{pair: (price_scale, amount_scale)}``, the mapping ``BookSet(scales=...)`` takes."""
        return {name: (p.price_scale, p.amount_scale) for name, p in self.pairs.items()}


@dataclass(frozen=True, slots=True)
class Ticker:
    """One pair's 24-hour ticker. Prices in the quote currency, ``volume`` in the base one,
    ``daily_percent`` in percent; ``timestamp_ms`` UTC ms since the epoch."""

    pair: str
    timestamp_ms: int
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
    numerator: str
    denominator: str


@dataclass(frozen=True, slots=True)
class RestBook:
    """An order book from REST, named as on a :class:`obengine.Book`: ``bids`` and ``asks`` are
    int64 ``(k, 2)`` arrays of ``[price_units, amount_units]``, best first, owned by this object
    (they never change); ``price = price_units / 10**price_scale``. ``timestamp_ms``: the
    exchange's time of the book, UTC ms.

    A REST book carries no CS, so it cannot seed a live book: a live book starts from the 431
    that follows a websocket (re)subscription (leave and re-join the pair's ``obdiff``)."""

    pair: str
    timestamp_ms: int
    price_scale: int
    amount_scale: int
    bids: npt.NDArray[np.int64]
    asks: npt.NDArray[np.int64]

    def levels(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """``(bids, asks)`` as exact ``(price, amount)`` decimals, best first."""
        def side(rows: npt.NDArray[np.int64]) -> list[tuple[Decimal, Decimal]]:
            return [
                (Decimal(int(p)).scaleb(-self.price_scale), Decimal(int(a)).scaleb(-self.amount_scale))
                for p, a in rows
            ]

        return side(self.bids), side(self.asks)


@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade. ``date_ms``: UTC ms; ``tid``: the exchange's trade id (a string)."""

    pair: str
    date_ms: int
    tid: str
    price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Candle:
    """A daily OHLC candle from the graph host. ``time_s``: the day's start, UTC seconds."""

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


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset of the account. ``free = balance - locked`` (as the exchange reports it)."""

    asset: str
    asset_name: str
    balance: Decimal
    locked: Decimal
    free: Decimal
    order_fund: Decimal | None
    request_fund: Decimal | None
    precision: int | None


@dataclass(frozen=True, slots=True)
class Order:
    """An order of the account (``open_orders``, ``all_orders``). ``side`` is ``"buy"`` or
    ``"sell"``; ``method`` lower case (``"limit"``, ``"market"``, ...); times UTC ms."""

    id: int
    pair: str
    side: str
    method: str
    price: Decimal
    amount: Decimal
    quantity: Decimal
    status: str
    client_order_id: str | None
    time_ms: int
    update_time_ms: int | None


@dataclass(frozen=True, slots=True)
class SubmittedOrder:
    """The exchange's answer to ``submit_order``. ``datetime_ms``: UTC ms."""

    id: int
    pair: str
    side: str
    method: str
    price: Decimal | None
    stop_price: Decimal | None
    quantity: Decimal
    client_order_id: str | None
    datetime_ms: int


@dataclass(frozen=True, slots=True)
class UserTrade:
    """A fill of the account. ``amount`` is signed (negative for a sale), as are ``fee`` and
    ``tax`` (charges are negative); ``timestamp_ms`` UTC ms."""

    id: int
    price: Decimal
    numerator: str
    denominator: str
    order_type: str
    timestamp_ms: int
    amount: Decimal
    fee: Decimal
    tax: Decimal


@dataclass(frozen=True, slots=True)
class Transaction:
    """A crypto or fiat deposit or withdrawal. ``amount`` signed (negative for a withdrawal),
    ``funds`` the balance after it; ``timestamp_ms`` UTC ms."""

    id: int
    balance_type: str
    currency: str
    timestamp_ms: int
    funds: Decimal
    amount: Decimal
    fee: Decimal
    tax: Decimal


# -- calls -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the exchange and how to read its answer.

    ``parse`` takes the decoded body's ``data`` (the whole body when ``envelope`` is False) and
    may raise ``ValueError``, ``KeyError`` or ``TypeError`` for a body of the wrong shape: they
    become an :class:`~obengine.ExchangeError` naming the endpoint. ``retry_safe``: the request
    may be sent again after a failure (reads); an order submission or cancellation is not (a
    retry could act twice)."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    host: Host = "api"
    signed: bool = False
    envelope: bool = True

    @property
    def retry_safe(self) -> bool:
        return self.method == "GET"

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def buckets(self) -> tuple[str, ...]:
        return buckets_of(self.method, self.path)


def _params(**kwargs: object) -> tuple[tuple[str, str], ...]:
    """Query parameters in order; ``None`` left out; a list or tuple repeats its key."""
    out: list[tuple[str, str]] = []
    for key, value in kwargs.items():
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else (value,):
            out.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return tuple(out)


# public ---------------------------------------------------------------------------------------


def _server_time(body: Any) -> int:
    return _int(_dict(body, "body")["serverTime"], "serverTime")


def server_time() -> Call[int]:
    """The exchange's clock, UTC ms since the epoch."""
    return Call("GET", "/api/v2/server/time", _server_time, envelope=False)


def _filters(symbol_: Mapping[str, Any]) -> dict[str, Any]:
    for f in symbol_.get("filters") or ():
        if isinstance(f, dict) and f.get("filterType") == "PRICE_FILTER":
            return f
    return {}


def _pair_info(raw: object) -> PairInfo:
    s = _dict(raw, "symbol")
    name = symbol(_str(s["name"], "name"))
    has_fraction = s.get("hasFraction", True)
    if not isinstance(has_fraction, bool):
        raise ValueError(f"{name}: hasFraction is not a bool")
    amount_scale = _int(s["numeratorScale"], f"{name} numeratorScale")
    denominator_scale = _int(s["denominatorScale"], f"{name} denominatorScale")
    price_filter = _filters(s)
    for scale in (amount_scale, denominator_scale):
        if not 0 <= scale <= 18:
            raise ValueError(f"{name}: scale {scale} out of 0..18")
    return PairInfo(
        symbol=name,
        name_normalized=_str(s.get("nameNormalized", name), "nameNormalized"),
        status=_str(s.get("status", ""), "status"),
        numerator=_str(s.get("numerator", ""), "numerator"),
        denominator=_str(s.get("denominator", ""), "denominator"),
        price_scale=denominator_scale if has_fraction else 0,
        amount_scale=amount_scale,
        has_fraction=has_fraction,
        min_price=_opt_decimal(price_filter.get("minPrice"), f"{name} minPrice"),
        max_price=_opt_decimal(price_filter.get("maxPrice"), f"{name} maxPrice"),
        tick_size=_opt_decimal(price_filter.get("tickSize"), f"{name} tickSize"),
        min_exchange_value=_opt_decimal(price_filter.get("minExchangeValue"), f"{name} minExchangeValue"),
        order_methods=tuple(_str(m, "orderMethods") for m in s.get("orderMethods") or ()),
    )


def _exchange_info(data: Any) -> ExchangeInfo:
    d = _dict(data, "data")
    pairs: dict[str, PairInfo] = {}
    for raw in _list(d["symbols"], "symbols"):
        info = _pair_info(raw)
        pairs[info.symbol] = info
    currencies: dict[str, int] = {}
    for raw in _list(d.get("currencies") or [], "currencies"):
        c = _dict(raw, "currency")
        currencies[_str(c["symbol"], "symbol")] = _int(c.get("precision", 0), "precision")
    return ExchangeInfo(pairs, currencies)


def exchange_info() -> Call[ExchangeInfo]:
    """Every pair with its scales, status and price filter."""
    return Call("GET", "/api/v2/server/exchangeinfo", _exchange_info)


def _ticker(raw: object) -> Ticker:
    t = _dict(raw, "ticker")
    pair = _str(t["pair"], "pair")

    def num(key: str) -> Decimal:
        return to_decimal(t[key], f"{pair} {key}")

    return Ticker(
        pair=pair,
        timestamp_ms=_int(t["timestamp"], "timestamp"),
        last=num("last"),
        high=num("high"),
        low=num("low"),
        bid=num("bid"),
        ask=num("ask"),
        open=num("open"),
        volume=num("volume"),
        average=num("average"),
        daily=num("daily"),
        daily_percent=num("dailyPercent"),
        numerator=_str(t.get("numeratorSymbol", ""), "numeratorSymbol"),
        denominator=_str(t.get("denominatorSymbol", ""), "denominatorSymbol"),
    )


def ticker(pair: str | None = None) -> Call[list[Ticker]]:
    """Tickers of every pair, or of one (``[]`` for a pair the exchange does not know, as it
    answers)."""
    return Call(
        "GET",
        "/api/v2/ticker",
        lambda data: [_ticker(t) for t in _list(data, "data")],
        params=_params(pairSymbol=None if pair is None else symbol(pair)),
    )


def _side_units(rows: object, what: str) -> tuple[list[Decimal], list[Decimal]]:
    prices: list[Decimal] = []
    amounts: list[Decimal] = []
    for i, row in enumerate(_list(rows, what)):
        level = _list(row, f"{what}[{i}]")
        if len(level) < 2:
            raise ValueError(f"{what}[{i}]: expected [price, amount]")
        prices.append(to_decimal(level[0], f"{what}[{i}] price"))
        amounts.append(to_decimal(level[1], f"{what}[{i}] amount"))
    return prices, amounts


def _rest_book(pair: str, known: tuple[int, int] | None) -> Callable[[Any], RestBook]:
    def parse(data: Any) -> RestBook:
        d = _dict(data, "data")
        bid_p, bid_a = _side_units(d["bids"], "bids")
        ask_p, ask_a = _side_units(d["asks"], "asks")
        price_scale, amount_scale = known if known is not None else (0, 0)
        # A value with more places than the known scale raises the scale, exactly (as a Book does).
        price_scale = max([price_scale, *(places(p) for p in bid_p + ask_p)])
        amount_scale = max([amount_scale, *(places(a) for a in bid_a + ask_a)])

        def array(prices: list[Decimal], amounts: list[Decimal], what: str) -> npt.NDArray[np.int64]:
            out = np.empty((len(prices), 2), dtype=np.int64)
            for i, (p, a) in enumerate(zip(prices, amounts)):
                out[i, 0] = units(p, price_scale, f"{what}[{i}] price")
                out[i, 1] = units(a, amount_scale, f"{what}[{i}] amount")
            out.setflags(write=False)
            return out

        return RestBook(
            pair=pair,
            timestamp_ms=_int(d["timestamp"], "timestamp"),
            price_scale=price_scale,
            amount_scale=amount_scale,
            bids=array(bid_p, bid_a, "bids"),
            asks=array(ask_p, ask_a, "asks"),
        )

    return parse


def order_book(pair: str, limit: int = 100, scales: tuple[int, int] | None = None) -> Call[RestBook]:
    """The pair's book, ``limit`` levels a side. ``scales``: the pair's ``(price_scale,
    amount_scale)`` when known (the client passes those of exchange info), so that the arrays
    use the same units as the pair's live ``Book``; a value with more places raises them."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int, not {limit!r}")
    name = symbol(pair)
    return Call(
        "GET", "/api/v2/orderbook", _rest_book(name, scales), params=_params(pairSymbol=name, limit=limit)
    )


def _trade(raw: object) -> Trade:
    t = _dict(raw, "trade")
    return Trade(
        pair=symbol(_str(t["pair"], "pair")),
        date_ms=_int(t["date"], "date"),
        tid=_str(t["tid"], "tid"),
        price=to_decimal(t["price"], "price"),
        amount=to_decimal(t["amount"], "amount"),
    )


def trades(pair: str, last: int = 50) -> Call[list[Trade]]:
    """The pair's last trades, newest first (``last``: 1..50, the exchange's maximum)."""
    if not isinstance(last, int) or isinstance(last, bool) or not 1 <= last <= 50:
        raise ValueError(f"last must be an int in 1..50, not {last!r}")
    return Call(
        "GET",
        "/api/v2/trades",
        lambda data: [_trade(t) for t in _list(data, "data")],
        params=_params(pairSymbol=symbol(pair), last=last),
    )


def _candle(raw: object) -> Candle:
    c = _dict(raw, "candle")

    def num(key: str) -> Decimal:
        return to_decimal(c[key], key)

    return Candle(
        pair=symbol(_str(c["pair"], "pair")),
        time_s=_int(c["time"], "time"),
        open=num("open"),
        high=num("high"),
        low=num("low"),
        close=num("close"),
        volume=num("volume"),
        total=num("total"),
        average=num("average"),
        daily_change_amount=num("dailyChangeAmount"),
        daily_change_percentage=num("dailyChangePercentage"),
    )


def ohlc(pair: str, from_s: int | None = None, to_s: int | None = None) -> Call[list[Candle]]:
    """Daily candles of the pair from the graph host; ``from_s``/``to_s`` UTC seconds."""
    if not isinstance(pair, str) or not pair.strip():
        raise ValueError(f"pair must be a non-empty str, not {pair!r}")
    return Call(
        "GET",
        "/v1/ohlcs",
        lambda body: [_candle(c) for c in _list(body, "body")],
        params=_params(pair=pair.strip().upper(), **{"from": from_s, "to": to_s}),
        host="graph",
        envelope=False,
    )


# private --------------------------------------------------------------------------------------


def _balance(raw: object) -> Balance:
    b = _dict(raw, "balance")
    asset = _str(b["asset"], "asset")

    def num(key: str) -> Decimal:
        return to_decimal(b[key], f"{asset} {key}")

    precision = b.get("precision")
    return Balance(
        asset=asset,
        asset_name=_str(b.get("assetname", asset), "assetname"),
        balance=num("balance"),
        locked=num("locked"),
        free=num("free"),
        order_fund=_opt_decimal(b.get("orderFund"), f"{asset} orderFund"),
        request_fund=_opt_decimal(b.get("requestFund"), f"{asset} requestFund"),
        precision=None if precision is None else _int(precision, "precision"),
    )


def balances() -> Call[list[Balance]]:
    """Every asset's balance, locked and free amounts."""
    return Call(
        "GET", "/api/v1/users/balances", lambda data: [_balance(b) for b in _list(data, "data")], signed=True
    )


def _order(raw: object, side: str | None = None) -> Order:
    o = _dict(raw, "order")
    kind = _str(o.get("type", side or ""), "type").lower()
    update = o.get("updateTime")
    client = o.get("orderClientId")
    return Order(
        id=_int(o["id"], "id"),
        pair=symbol(_str(o.get("pairsymbol") or o.get("pairSymbol"), "pairsymbol")),
        side=side or kind,
        method=_str(o.get("method", ""), "method").lower(),
        price=to_decimal(o["price"], "price"),
        amount=to_decimal(o["amount"], "amount"),
        quantity=to_decimal(o["quantity"], "quantity"),
        status=_str(o.get("status", ""), "status"),
        client_order_id=_str(client, "orderClientId") or None if client is not None else None,
        time_ms=_int(o["time"], "time"),
        update_time_ms=None if update is None else _int(update, "updateTime"),
    )


def _open_orders(data: Any) -> list[Order]:
    d = _dict(data, "data")
    return [_order(o, "sell") for o in _list(d["asks"], "asks")] + [
        _order(o, "buy") for o in _list(d["bids"], "bids")
    ]


def open_orders(pair: str | None = None) -> Call[list[Order]]:
    """The account's open orders (sells first, then buys), of one pair or all."""
    return Call(
        "GET",
        "/api/v1/openOrders",
        _open_orders,
        params=_params(pairSymbol=None if pair is None else symbol(pair)),
        signed=True,
    )


def all_orders(
    pair: str,
    *,
    order_id: int | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    page: int | None = None,
    limit: int | None = None,
) -> Call[list[Order]]:
    """The account's orders of a pair, open, filled and canceled; times UTC ms."""
    return Call(
        "GET",
        "/api/v1/allOrders",
        lambda data: [_order(o) for o in _list(data, "data")],
        params=_params(
            orderId=order_id, pairSymbol=symbol(pair), startTime=start_ms, endTime=end_ms, page=page, limit=limit
        ),
        signed=True,
    )


def _number_text(value: Decimal | str | int, what: str) -> str:
    """A JSON number's text for an exact decimal; floats are refused (they are not exact)."""
    if isinstance(value, float):
        raise TypeError(f"{what}: pass a Decimal or a decimal string, not a float (it is not exact)")
    if isinstance(value, bool) or not isinstance(value, (Decimal, str, int)):
        raise TypeError(f"{what}: expected a Decimal, str or int, not {type(value).__name__}")
    d = to_decimal(value, what)
    if d < 0:
        raise ValueError(f"{what}: must not be negative, not {d}")
    text = format(d, "f")
    return text


def _submitted(data: Any) -> SubmittedOrder:
    d = _dict(data, "data")
    client = d.get("newOrderClientId")
    return SubmittedOrder(
        id=_int(d["id"], "id"),
        pair=symbol(_str(d["pairSymbol"], "pairSymbol")),
        side=_str(d["type"], "type").lower(),
        method=_str(d.get("method", ""), "method").lower(),
        price=_opt_decimal(d.get("price"), "price"),
        stop_price=_opt_decimal(d.get("stopPrice"), "stopPrice"),
        quantity=to_decimal(d["quantity"], "quantity"),
        client_order_id=_str(client, "newOrderClientId") or None if client is not None else None,
        datetime_ms=_int(d["datetime"], "datetime"),
    )


def submit_order(
    pair: str,
    side: Side,
    quantity: Decimal | str,
    price: Decimal | str | None = None,
    *,
    method: OrderMethod = "limit",
    stop_price: Decimal | str | None = None,
    client_order_id: str | None = None,
) -> Call[SubmittedOrder]:
    """Place an order. ``quantity`` in the base currency, ``price`` and ``stop_price`` in the
    quote currency, as ``Decimal`` or decimal strings (a float is refused: it is not exact);
    they are sent as JSON numbers written from their exact decimal text."""
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', not {side!r}")
    if method not in ("limit", "market", "stoplimit", "stopmarket"):
        raise ValueError(f"method must be limit, market, stoplimit or stopmarket, not {method!r}")
    if method in ("limit", "stoplimit") and price is None:
        raise ValueError(f"a {method} order needs a price")
    if method in ("stoplimit", "stopmarket") and stop_price is None:
        raise ValueError(f"a {method} order needs a stop_price")
    fields = [
        f'"quantity":{_number_text(quantity, "quantity")}',
        f'"price":{_number_text(price, "price") if price is not None else "0"}',
        f'"stopPrice":{_number_text(stop_price, "stop_price") if stop_price is not None else "0"}',
        f'"newOrderClientId":{json.dumps(client_order_id or "")}',
        f'"orderMethod":"{method}"',
        f'"orderType":"{side}"',
        f'"pairSymbol":"{symbol(pair)}"',
    ]
    return Call("POST", "/api/v1/order", _submitted, body=("{" + ",".join(fields) + "}").encode(), signed=True)


def cancel_order(order_id: int) -> Call[None]:
    """Cancel an open order by its id."""
    if isinstance(order_id, bool) or not isinstance(order_id, int):
        raise TypeError(f"order_id must be an int, not {type(order_id).__name__}")
    return Call("DELETE", "/api/v1/order", lambda data: None, params=_params(id=order_id), signed=True)


def _user_trade(raw: object) -> UserTrade:
    t = _dict(raw, "trade")

    def num(key: str) -> Decimal:
        return to_decimal(t[key], key)

    return UserTrade(
        id=_int(t["id"], "id"),
        price=num("price"),
        numerator=_str(t["numeratorSymbol"], "numeratorSymbol"),
        denominator=_str(t["denominatorSymbol"], "denominatorSymbol"),
        order_type=_str(t["orderType"], "orderType"),
        timestamp_ms=_int(t["timestamp"], "timestamp"),
        amount=num("amount"),
        fee=num("fee"),
        tax=num("tax"),
    )


def _assets(assets: Sequence[str] | None) -> list[str] | None:
    return None if assets is None else [a.lower() for a in assets]


def user_trades(
    *,
    sides: Sequence[Side] = ("buy", "sell"),
    assets: Sequence[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Call[list[UserTrade]]:
    """The account's fills; ``assets`` filters by currency (``["btc", "try"]``); times UTC ms."""
    return Call(
        "GET",
        "/api/v1/users/transactions/trade",
        lambda data: [_user_trade(t) for t in _list(data, "data")],
        params=_params(type=list(sides), symbol=_assets(assets), startDate=start_ms, endDate=end_ms),
        signed=True,
    )


def _transaction(raw: object) -> Transaction:
    t = _dict(raw, "transaction")

    def num(key: str) -> Decimal:
        return to_decimal(t[key], key)

    return Transaction(
        id=_int(t["id"], "id"),
        balance_type=_str(t["balanceType"], "balanceType"),
        currency=_str(t["currencySymbol"], "currencySymbol"),
        timestamp_ms=_int(t["timestamp"], "timestamp"),
        funds=num("funds"),
        amount=num("amount"),
        fee=num("fee"),
        tax=num("tax"),
    )


def transactions(
    kind: Literal["crypto", "fiat"],
    *,
    types: Sequence[Literal["deposit", "withdrawal"]] = ("deposit", "withdrawal"),
    assets: Sequence[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Call[list[Transaction]]:
    """The account's crypto or fiat deposits and withdrawals; times UTC ms. (The reference's
    heading says POST, its rate-limit table and the exchange's clients use GET.)"""
    if kind not in ("crypto", "fiat"):
        raise ValueError(f"kind must be 'crypto' or 'fiat', not {kind!r}")
    return Call(
        "GET",
        f"/api/v1/users/transactions/{kind}",
        lambda data: [_transaction(t) for t in _list(data, "data")],
        params=_params(type=list(types), symbol=_assets(assets), startDate=start_ms, endDate=end_ms),
        signed=True,
    )


# -- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Perform this request; send back a :class:`Reply`, or throw a TransportError."""

    method: str
    host: Host
    path: str
    params: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    body: bytes | None

    def __repr__(self) -> str:  # headers may hold a signature: never shown
        return f"Send({self.method} {self.host}:{self.path})"


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds``, then send back ``None``. ``reason`` says why, for the log."""

    seconds: float
    reason: str = ""


@dataclass(frozen=True)
class Reply:
    """What came back: the status, the headers (names lower case) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


_AUTH_HINTS = (
    ("nonce", "the stamp is more than about 5 s from the exchange's clock: sync this machine's "
     "clock; the client re-syncs its offset from /api/v2/server/time"),
    ("signature", "the private key must be the base64 secret the exchange showed, given as is"),
    ("public key", "check the public key and that it was created for this API (REST or websocket)"),
    ("private key", "check the private key: the base64 secret the exchange showed"),
    ("headers are missing", "the request was not signed: pass a signer to the client"),
    ("invalid request", "the private key may be wrong, or the account not yet verified"),
)


def auth_hint(message: str) -> str:
    """What usually causes an ``Unauthorized - ...`` reason."""
    low = message.lower()
    for key, hint in _AUTH_HINTS:
        if key in low:
            return hint
    return "check the keys, their permissions and the IP allowed for them"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _message_code(body: bytes) -> tuple[str | None, int | None]:
    """The exchange's message and code from an error body, when it is the usual envelope."""
    try:
        doc = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    message = doc.get("message")
    code = doc.get("code")
    return (
        message if isinstance(message, str) and message else None,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
    )


def decode(call: Call[T], reply: Reply) -> T:
    """The result of ``call`` from its reply, or the error it means (see the errors in
    :mod:`obengine.errors`): a failed status, an envelope whose ``success`` is false or whose
    ``code`` is not 0 (even with ``success: true``, as the exchange answers an invalid nonce),
    a body that is not JSON or not of the endpoint's shape."""
    endpoint = call.endpoint
    status = reply.status
    if status >= 400:
        message, code = _message_code(reply.body)
        text = message or f"HTTP {status}"
        if status == 401 or (message or "").startswith("Unauthorized"):
            raise AuthError(text, hint=auth_hint(text), status=status, code=code, endpoint=endpoint)
        if status == 429:
            raise RateLimited(
                text, retry_after_s=_retry_after(reply.headers), status=status, code=code, endpoint=endpoint
            )
        if status >= 500:
            if status == 503 and message is None:
                text = "HTTP 503: the exchange is offline for maintenance"
            raise ServerError(text, status=status, code=code, endpoint=endpoint)
        raise ExchangeError(text, status=status, code=code, endpoint=endpoint)
    try:
        doc = json.loads(reply.body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        start = reply.body[:40].decode("utf-8", "replace")
        raise ExchangeError(
            f"the body is not JSON (it starts {start!r})", status=status, endpoint=endpoint
        ) from None
    if call.envelope:
        if not isinstance(doc, dict) or "success" not in doc:
            raise ExchangeError("the body is not the exchange's envelope", status=status, endpoint=endpoint)
        message = doc.get("message")
        text = message if isinstance(message, str) and message else ""
        code = doc.get("code")
        failed_code = code not in (None, 0, "", "0")
        if doc.get("success") is not True or failed_code:
            code_int = code if isinstance(code, int) and not isinstance(code, bool) else None
            text = text or "the exchange reported a failure without a message"
            if text.startswith("Unauthorized"):
                raise AuthError(text, hint=auth_hint(text), status=status, code=code_int, endpoint=endpoint)
            raise ExchangeError(text, status=status, code=code_int, endpoint=endpoint)
        doc = doc.get("data")
    try:
        return call.parse(doc)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, InvalidOperation) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ExchangeError(f"unexpected body: {what}", status=status, endpoint=endpoint) from None


# -- the session: rate limits, clock, signing, retries ----------------------------------------


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Policy:
    """Retries of reads (GET): after a 429 (waiting its ``Retry-After``, at most
    ``max_wait_s``), a 5xx or a transport error (waiting ``backoff_s * 2**attempt``), at most
    ``retries`` times. Orders are never retried. ``clock_resync_s``: how often the offset to the
    exchange's clock is measured again (it is also measured before the first signed call, and
    after an invalid-nonce answer)."""

    retries: int = 3
    backoff_s: float = 0.25
    max_wait_s: float = 60.0
    clock_resync_s: float = 600.0


@dataclass
class Session:
    """What a client keeps between calls: the signer, the client-side rate limits, the offset of
    the exchange's clock and the counters. Drive :meth:`run` (see the module docstring)."""

    signer: BtcTurkSigner | None = None
    policy: Policy = field(default_factory=Policy)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    monotonic: Callable[[], float] = time.monotonic
    wall_ms: Callable[[], int] = _wall_ms
    clock_offset_ms: int | None = None
    _synced_at: float = float("-inf")
    requests: int = 0
    retried: int = 0

    def _send(self, call: Call[Any], headers: dict[str, str]) -> Send:
        if call.body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        return Send(call.method, call.host, call.path, call.params, headers, call.body)

    def _sync_clock(self) -> Generator[Send | Sleep, Reply | None, None]:
        """Measure the offset of the exchange's clock: its time minus the midpoint of ours."""
        call = server_time()
        before = self.wall_ms()
        reply = yield self._send(call, {})
        after = self.wall_ms()
        assert reply is not None
        self.requests += 1
        server_ms = decode(call, reply)
        self.clock_offset_ms = server_ms - (before + after) // 2
        self._synced_at = self.monotonic()

    def run(self, call: Call[T]) -> Generator[Send | Sleep, Reply | None, T]:
        """Carry ``call`` through: wait for the rate limits, sync the clock when signing needs
        it, sign, send, decode; retry a read as :class:`Policy` says; re-sync the clock and
        retry once after an invalid-nonce refusal of a read. Returns the result or raises the
        call's error."""
        if call.signed and self.signer is None:
            raise AuthError(
                "this endpoint needs credentials",
                hint="pass signer=BtcTurkSigner(...) (or BtcTurkSigner.from_env()) to the client",
                endpoint=call.endpoint,
            )
        attempt = 0
        resynced = False
        while True:
            wait = self.limiter.reserve(call.buckets, self.monotonic())
            if wait > 0:
                yield Sleep(wait, "client-side rate limit")
            headers: dict[str, str] = {}
            if call.signed:
                assert self.signer is not None
                if self.monotonic() - self._synced_at >= self.policy.clock_resync_s:
                    yield from self._sync_clock()
                headers = self.signer.headers(self.wall_ms() + (self.clock_offset_ms or 0))
            try:
                reply = yield self._send(call, headers)
                assert reply is not None
                self.requests += 1
                return decode(call, reply)
            except AuthError as exc:
                nonce = call.signed and "nonce" in exc.message.lower()
                if nonce:
                    self._synced_at = float("-inf")  # measure the clock before the next signed request
                if not (nonce and call.retry_safe and not resynced):
                    raise
                resynced = True
                continue
            except (RateLimited, ServerError, TransportError) as exc:
                delay = self._retry_delay(call, exc, attempt)
                if delay is None:
                    raise
                failure: ExchangeError = exc
            attempt += 1
            self.retried += 1
            yield Sleep(delay, f"retry {attempt} of {call.endpoint} after: {failure}")

    def _retry_delay(self, call: Call[Any], exc: ExchangeError, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None: raise."""
        if not call.retry_safe or attempt >= self.policy.retries:
            return None
        after = exc.retry_after_s if isinstance(exc, RateLimited) else None
        delay = self.policy.backoff_s * 2**attempt if after is None else after
        if delay > self.policy.max_wait_s:
            return None
        return delay


# -- Kraken's websocket token ----------------------------------------------------------------

KRAKEN_TOKEN_PATH = "/0/private/GetWebSocketsToken"


def kraken_token_request(signer: KrakenSigner, nonce_ms: int) -> tuple[dict[str, str], bytes]:
    """Headers and form body of ``POST /0/private/GetWebSocketsToken`` with ``nonce_ms``."""
    body = f"nonce={nonce_ms}".encode()
    headers = signer.headers(KRAKEN_TOKEN_PATH, nonce_ms, body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return headers, body


def kraken_token_decode(reply: Reply) -> str:
    """The token from Kraken's answer, or its error (``AuthError`` for a refused key,
    signature or nonce)."""
    endpoint = f"POST {KRAKEN_TOKEN_PATH}"
    if reply.status >= 400:
        if reply.status == 429:
            raise RateLimited("HTTP 429", retry_after_s=_retry_after(reply.headers), endpoint=endpoint)
        cls = ServerError if reply.status >= 500 else ExchangeError
        raise cls(f"HTTP {reply.status}", status=reply.status, endpoint=endpoint)
    try:
        doc = _dict(json.loads(reply.body), "body")
        errors = [_str(e, "error") for e in _list(doc.get("error") or [], "error")]
        if errors:
            text = "; ".join(errors)
            if any(e.startswith(("EAPI:Invalid key", "EAPI:Invalid signature", "EAPI:Invalid nonce",
                                 "EGeneral:Permission denied")) for e in errors):
                raise AuthError(
                    text,
                    hint="the key needs the WebSockets API permission; the secret is the base64 text "
                    "Kraken showed; the nonce must rise with every call of a key",
                    status=reply.status,
                    endpoint=endpoint,
                )
            raise ExchangeError(text, status=reply.status, endpoint=endpoint)
        return _str(_dict(doc["result"], "result")["token"], "token")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ExchangeError(f"unexpected body: {exc}", status=reply.status, endpoint=endpoint) from None
