"""Every path the benchmarks time, in one shape.

A *path* turns raw websocket frames (``bytes``, exactly as received) into books, end to end. Each
path is a class with:

``name``
    the id used in test names, reports and the gate.
``exact``
    True when the path keeps prices and amounts exactly (``Decimal``, fixed point); False when it
    keeps floats (see "Float paths" below).
``kind``
    ``"floor"`` (parses, keeps no book), ``"peer"`` (a tool people use, run the way its users run
    it: these are what the gate compares with), ``"variant"`` (a faster way to drive a peer than
    its users do, reported next to the peers but not gated) or ``"obengine"``.
``Path(scales)``
    a fresh, empty set of books; ``scales`` is ``{pair: (price_scale, amount_scale)}``.
``path.apply(raw)``
    apply one frame of a stream that may interleave many pairs; the path routes it by pair.
``path.top(pair, n)``
    ``(bids, asks)``: the best ``n`` levels of each side, best first, as lists of
    ``(price, amount)`` tuples: ``Decimal`` for exact paths, ``float`` for float paths. This is
    the form :func:`compare` checks against the simulator.
``path.read(pair, n)``
    the top ``n`` levels of both sides as numpy arrays, the way a user of that library naturally
    gets them (the read workload times this after every frame).

What every book path does with a frame (``docs/rules.md``, reduced to what a feed handler needs):
``431`` empties the pair's book and loads every level, sets ``seq`` to CS and marks it synced;
``432`` is applied only when synced and ``CS == seq + 1`` (32-bit serial arithmetic), entries with
``CP`` 0 or 1 set the level's amount (an amount of 0 deletes), ``CP`` 3 deletes; any other ``CS``
leaves the book alone (stale, or a gap that unsyncs it until the next 431). Other frame types are
ignored.

Float paths. A double holds about 15-17 significant digits, and the simulator (like the exchange)
sends amounts such as ``"78904526.47244561"`` (8 decimals on a large amount) that no double
holds. A float path is therefore checked against ``float(true_value)``: the double nearest to the
truth, the best any float book can do. That still catches every wrong level, wrong order, missed
delete or stale amount; it cannot catch what floats lose by design, which :func:`lossy_values`
counts and the benchmarks record (``extra_info["lossy_values"]``).

The peers do *less* than obengine, which favours them: no validation of the frame (a malformed
frame raises whatever the library raises, possibly after changing the book), no anomaly counts, no
crossed-book check, no atomicity. Each peer is written the way a competent user of the library
would write it, without deliberate slowness.
"""
from __future__ import annotations

import importlib
import json
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import orjson

__all__ = [
    "PATHS",
    "Path",
    "available_paths",
    "compare",
    "get_path",
    "lossy_values",
    "units_to_decimal",
]

_MASK32 = 0xFFFFFFFF
_EMPTY: tuple[Any, ...] = ()

Levels = list[tuple[Decimal, Decimal]]


class Path:
    """Base class: parse, route by pair, keep the sequence; subclasses keep the levels."""

    name: ClassVar[str] = "?"
    kind: ClassVar[str] = "peer"
    exact: ClassVar[bool] = True
    #: the distributions whose versions a report should name
    libraries: ClassVar[tuple[str, ...]] = ("orjson",)
    loads: ClassVar[Any] = staticmethod(orjson.loads)

    #: the module this path needs beyond orjson; importing it tells whether the path can run here
    module: ClassVar[str | None] = None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this path cannot run here (its library missing or broken), or None."""
        if cls.module is None:
            return None
        try:
            importlib.import_module(cls.module)
        except Exception as exc:  # ImportError, or a wheel that fails as it loads
            return f"{cls.module} cannot be imported here ({type(exc).__name__}: {exc})"
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        """``{distribution: version}`` of the libraries this path uses."""
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for dist in cls.libraries:
            try:
                out[dist] = version(dist)
            except PackageNotFoundError:
                out[dist] = "?"
        return out

    def __init__(self, scales: dict[str, tuple[int, int]]) -> None:
        self.scales = dict(scales)
        # pair -> [seq, synced, book]
        self.books: dict[str, list[Any]] = {}

    @classmethod
    def fed(cls, scales: dict[str, tuple[int, int]], frames: list[bytes]) -> Path:
        """A fresh path with ``frames`` applied (a round's untimed setup)."""
        path = cls(scales)
        apply = path.apply
        for raw in frames:
            apply(raw)
        return path

    def apply(self, raw: bytes) -> str | None:
        msg: Any = self.loads(raw)
        kind = msg[0]
        if kind != 432 and kind != 431:
            return None
        payload = msg[1]
        pair: str = payload.get("PS") or payload.get("event")
        cs = payload["CS"]
        if cs.__class__ is str:
            cs = int(cs)
        entry = self.books.get(pair)
        if kind == 431:
            if entry is None:
                entry = self.books[pair] = [cs, True, None]
            entry[2] = self._load(pair, entry[2], payload)
            entry[0] = cs
            entry[1] = True
            return pair
        if entry is None or not entry[1]:
            return pair
        d = (cs - entry[0]) & _MASK32
        if d == 1:
            self._change(entry[2], payload)
            entry[0] = cs
        elif 1 < d < 0x80000000:  # a gap: keep the levels, wait for a 431 (d == 0 or d < 0: stale)
            entry[1] = False
        return pair

    # subclasses ------------------------------------------------------------------------
    def _load(self, pair: str, book: Any, payload: dict[str, Any]) -> Any:
        """Replace ``book`` (None on first sight) by the 431 ``payload``; return the book."""
        raise NotImplementedError

    def _change(self, book: Any, payload: dict[str, Any]) -> None:
        """Apply the entries of a 432 ``payload``."""
        raise NotImplementedError

    def top(self, pair: str, n: int) -> tuple[Levels, Levels]:
        raise NotImplementedError

    def read(self, pair: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
class OrjsonFloor(Path):
    """``orjson.loads`` of every frame and nothing else: no book. The floor for any path that
    parses with a JSON library; not a correct book, so never checked and never a peer."""

    name = "orjson-floor"
    kind = "floor"

    def __init__(self, scales: dict[str, tuple[int, int]]) -> None:
        super().__init__(scales)
        self.apply = orjson.loads  # type: ignore[method-assign,assignment]


# --------------------------------------------------------------------------------------------
class NaiveJson(Path):
    """The naive path: stdlib ``json.loads``, a plain ``dict`` per side keyed by ``Decimal``
    price, sorted on every read. Exact."""

    name = "json-dict"
    libraries = ()
    loads = staticmethod(json.loads)

    def _load(self, pair: str, book: Any, payload: dict[str, Any]) -> Any:
        D = Decimal
        asks: dict[Decimal, Decimal] = {}
        bids: dict[Decimal, Decimal] = {}
        for side, entries in ((asks, payload.get("AO") or _EMPTY), (bids, payload.get("BO") or _EMPTY)):
            for e in entries:
                amount = D(e["A"])
                if amount:
                    side[D(e["P"])] = amount
                else:
                    side.pop(D(e["P"]), None)
        return (bids, asks)

    def _change(self, book: Any, payload: dict[str, Any]) -> None:
        D = Decimal
        bids, asks = book
        for side, entries in ((asks, payload.get("AO") or _EMPTY), (bids, payload.get("BO") or _EMPTY)):
            for e in entries:
                price = D(e["P"])
                if e["CP"] == 3:
                    side.pop(price, None)
                else:
                    amount = D(e["A"])
                    if amount:
                        side[price] = amount
                    else:
                        side.pop(price, None)

    def top(self, pair: str, n: int) -> tuple[Levels, Levels]:
        bids, asks = self.books[pair][2]
        return sorted(bids.items(), reverse=True)[:n], sorted(asks.items())[:n]

    def read(self, pair: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        bids, asks = self.books[pair][2]
        b = sorted(bids.items(), reverse=True)[:n]
        a = sorted(asks.items())[:n]
        return (
            np.array([(float(p), float(q)) for p, q in b], dtype=np.float64),
            np.array([(float(p), float(q)) for p, q in a], dtype=np.float64),
        )


# --------------------------------------------------------------------------------------------
class SortedContainers(Path):
    """orjson + ``sortedcontainers.SortedDict`` per side keyed by ``Decimal`` price (both sides
    ascending; bids are read from the end). The common pure-Python feed-handler way. Exact."""

    name = "sortedcontainers"
    libraries = ("orjson", "sortedcontainers")
    module = "sortedcontainers"

    def __init__(self, scales: dict[str, tuple[int, int]]) -> None:
        super().__init__(scales)
        from sortedcontainers import SortedDict

        self._SortedDict = SortedDict

    def _load(self, pair: str, book: Any, payload: dict[str, Any]) -> Any:
        D = Decimal
        asks: dict[Decimal, Decimal] = {}
        bids: dict[Decimal, Decimal] = {}
        for side, entries in ((asks, payload.get("AO") or _EMPTY), (bids, payload.get("BO") or _EMPTY)):
            for e in entries:
                amount = D(e["A"])
                if amount:
                    side[D(e["P"])] = amount
                else:
                    side.pop(D(e["P"]), None)
        # building from a dict sorts once instead of inserting level by level
        return (self._SortedDict(bids), self._SortedDict(asks))

    def _change(self, book: Any, payload: dict[str, Any]) -> None:
        D = Decimal
        bids, asks = book
        for side, entries in ((asks, payload.get("AO") or _EMPTY), (bids, payload.get("BO") or _EMPTY)):
            for e in entries:
                price = D(e["P"])
                if e["CP"] == 3:
                    side.pop(price, None)
                else:
                    amount = D(e["A"])
                    if amount:
                        side[price] = amount
                    else:
                        side.pop(price, None)

    def top(self, pair: str, n: int) -> tuple[Levels, Levels]:
        bids, asks = self.books[pair][2]
        return bids.items()[-n:][::-1] if n else [], asks.items()[:n]

    def read(self, pair: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        bids, asks = self.books[pair][2]
        b = bids.items()[-n:][::-1]
        a = asks.items()[:n]
        return (
            np.array([(float(p), float(q)) for p, q in b], dtype=np.float64),
            np.array([(float(p), float(q)) for p, q in a], dtype=np.float64),
        )


# --------------------------------------------------------------------------------------------
class OrderBookC(Path):
    """orjson + the C ``order_book.OrderBook`` from PyPI ``order-book`` (what cryptofeed uses),
    keyed by ``Decimal`` price with ``Decimal`` amounts, exactly as cryptofeed feeds it. Exact.
    A 431 builds a new ``OrderBook`` (as cryptofeed does on a snapshot); no ``max_depth``, so no
    level is dropped."""

    name = "order-book"
    libraries = ("orjson", "order-book")
    module = "order_book"

    def __init__(self, scales: dict[str, tuple[int, int]]) -> None:
        super().__init__(scales)
        from order_book import OrderBook

        self._OrderBook = OrderBook

    def _load(self, pair: str, book: Any, payload: dict[str, Any]) -> Any:
        D = Decimal
        book = self._OrderBook()
        for side, entries in ((book.asks, payload.get("AO") or _EMPTY), (book.bids, payload.get("BO") or _EMPTY)):
            for e in entries:
                amount = D(e["A"])
                price = D(e["P"])
                if amount:
                    side[price] = amount
                elif price in side:
                    del side[price]
        return book

    def _change(self, book: Any, payload: dict[str, Any]) -> None:
        D = Decimal
        for side, entries in ((book.asks, payload.get("AO") or _EMPTY), (book.bids, payload.get("BO") or _EMPTY)):
            for e in entries:
                price = D(e["P"])
                if e["CP"] != 3:
                    amount = D(e["A"])
                    if amount:
                        side[price] = amount
                        continue
                if price in side:
                    del side[price]

    def top(self, pair: str, n: int) -> tuple[Levels, Levels]:
        book = self.books[pair][2]
        bids, asks = book.bids, book.asks
        return (
            [bids.index(i) for i in range(min(n, len(bids)))],
            [asks.index(i) for i in range(min(n, len(asks)))],
        )

    def read(self, pair: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        book = self.books[pair][2]
        out = []
        for side in (book.bids, book.asks):
            index = side.index
            levels = [index(i) for i in range(min(n, len(side)))]
            out.append(np.array([(float(p), float(q)) for p, q in levels], dtype=np.float64))
        return out[0], out[1]


class OrderBookCFloat(OrderBookC):
    """Like ``order-book`` but keyed by ``float`` price with ``float`` amounts: the fastest way to
    use that library (C comparisons of floats instead of ``Decimal`` rich comparisons). Not exact
    (see "Float paths" in the module docstring), and not how cryptofeed, the library's main user,
    feeds it (cryptofeed keeps ``Decimal`` prices and amounts), so it is a ``variant``: in every
    table, not in the gate."""

    name = "order-book-float"
    exact = False
    kind = "variant"

    def _load(self, pair: str, book: Any, payload: dict[str, Any]) -> Any:
        book = self._OrderBook()
        for side, entries in ((book.asks, payload.get("AO") or _EMPTY), (book.bids, payload.get("BO") or _EMPTY)):
            for e in entries:
                amount = float(e["A"])
                price = float(e["P"])
                if amount:
                    side[price] = amount
                elif price in side:
                    del side[price]
        return book

    def _change(self, book: Any, payload: dict[str, Any]) -> None:
        for side, entries in ((book.asks, payload.get("AO") or _EMPTY), (book.bids, payload.get("BO") or _EMPTY)):
            for e in entries:
                price = float(e["P"])
                if e["CP"] != 3:
                    amount = float(e["A"])
                    if amount:
                        side[price] = amount
                        continue
                if price in side:
                    del side[price]


    def read(self, pair: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        book = self.books[pair][2]
        out = []
        for side in (book.bids, book.asks):
            index = side.index
            out.append(np.array([index(i) for i in range(min(n, len(side)))], dtype=np.float64))
        return out[0], out[1]


# --------------------------------------------------------------------------------------------
class Ccxt(Path):
    """orjson + ccxt's websocket order book (``ccxt.async_support.base.ws.order_book.OrderBook``,
    the price-level book ccxt pro keeps for L2 feeds: ``Asks``/``Bids`` sides with
    ``store(price, amount)``, amount 0 deletes; ``reset(snapshot)`` for a snapshot). Prices and
    amounts are floats, as ccxt's parsers (``safe_float``) produce them. Not exact (see "Float
    paths" in the module docstring). ``IndexedOrderBook`` (order ids) and
    ``CountedOrderBook`` (order counts) do not fit a price-level feed."""

    name = "ccxt"
    libraries = ("orjson", "ccxt")
    exact = False
    module = "ccxt.async_support.base.ws.order_book"

    def __init__(self, scales: dict[str, tuple[int, int]]) -> None:
        super().__init__(scales)
        from ccxt.async_support.base.ws.order_book import OrderBook

        self._OrderBook = OrderBook

    def _load(self, pair: str, book: Any, payload: dict[str, Any]) -> Any:
        if book is None:
            book = self._OrderBook({"symbol": pair})
        book.reset(
            {
                "asks": [[float(e["P"]), float(e["A"])] for e in payload.get("AO") or _EMPTY],
                "bids": [[float(e["P"]), float(e["A"])] for e in payload.get("BO") or _EMPTY],
                "nonce": payload["CS"],
                "symbol": pair,
            }
        )
        return book

    def _change(self, book: Any, payload: dict[str, Any]) -> None:
        for side, entries in ((book["asks"], payload.get("AO") or _EMPTY), (book["bids"], payload.get("BO") or _EMPTY)):
            store = side.store
            for e in entries:
                store(float(e["P"]), 0.0 if e["CP"] == 3 else float(e["A"]))
        book["nonce"] = payload["CS"]

    def top(self, pair: str, n: int) -> tuple[Levels, Levels]:
        book = self.books[pair][2]
        return [(p, q) for p, q in book["bids"][:n]], [(p, q) for p, q in book["asks"][:n]]

    def read(self, pair: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        book = self.books[pair][2]
        return (
            np.array(book["bids"][:n], dtype=np.float64),
            np.array(book["asks"][:n], dtype=np.float64),
        )


# --------------------------------------------------------------------------------------------
class Nautilus(Path):
    """orjson + nautilus-trader's ``OrderBook`` (``BookType.L2_MBP``), fed with its own objects
    built from the parsed frame inside the timed path, as an adapter must: one ``OrderBookDelta``
    per entry (``BookOrder`` with ``Price.from_str`` / ``Quantity.from_str``; ``UPDATE`` for CP 0/1,
    which inserts a missing level, ``DELETE`` for CP 3; a 431 starts with a ``CLEAR`` delta),
    gathered in one ``OrderBookDeltas`` per frame and applied with ``apply_deltas``. Prices and
    sizes are nautilus fixed point (exact for up to 16 decimals); level sizes read back with
    ``BookLevel.size()`` are doubles, so :meth:`read` returns floats, while :meth:`top` reads the
    orders' exact ``Quantity``. Timestamps are 0 (a real adapter also reads a clock)."""

    name = "nautilus"
    libraries = ("orjson", "nautilus_trader")
    module = "nautilus_trader.model.book"

    def __init__(self, scales: dict[str, tuple[int, int]]) -> None:
        super().__init__(scales)
        from nautilus_trader.model.book import OrderBook
        from nautilus_trader.model.data import BookOrder, OrderBookDelta, OrderBookDeltas
        from nautilus_trader.model.enums import BookAction, BookType, OrderSide, RecordFlag
        from nautilus_trader.model.identifiers import InstrumentId
        from nautilus_trader.model.objects import Price, Quantity

        self._OrderBook = OrderBook
        self._Delta = OrderBookDelta
        self._Deltas = OrderBookDeltas
        self._BookOrder = BookOrder
        self._price = Price.from_str
        self._qty = Quantity.from_str
        self._zero = Quantity.from_int(0)
        self._BookType = BookType.L2_MBP
        self._ADD = BookAction.ADD
        self._UPDATE = BookAction.UPDATE
        self._DELETE = BookAction.DELETE
        self._BUY = OrderSide.BUY
        self._SELL = OrderSide.SELL
        self._F_LAST = int(RecordFlag.F_LAST)
        self._F_SNAPSHOT = int(RecordFlag.F_SNAPSHOT)
        self._InstrumentId = InstrumentId
        self._ids: dict[str, Any] = {}

    def _load(self, pair: str, book: Any, payload: dict[str, Any]) -> Any:
        iid = self._ids.get(pair)
        if iid is None:
            iid = self._ids[pair] = self._InstrumentId.from_str(pair + ".BTCTURK")
            book = self._OrderBook(iid, self._BookType)
        seq = payload["CS"] & _MASK32
        Delta, BookOrder, price, qty, ADD = self._Delta, self._BookOrder, self._price, self._qty, self._ADD
        flags = self._F_SNAPSHOT
        deltas = [Delta.clear(iid, seq, 0, 0)]
        for side, entries in ((self._SELL, payload.get("AO") or _EMPTY), (self._BUY, payload.get("BO") or _EMPTY)):
            for e in entries:
                q = qty(e["A"])
                if q.raw:
                    deltas.append(Delta(iid, ADD, BookOrder(side, price(e["P"]), q, 0), flags, seq, 0, 0))
        self._finish(book, iid, deltas)
        return book

    def _finish(self, book: Any, iid: Any, deltas: list[Any]) -> None:
        last = deltas[-1]
        # mark the end of the frame's batch, as an adapter does
        deltas[-1] = self._Delta(iid, last.action, last.order, last.flags | self._F_LAST, last.sequence, 0, 0)
        book.apply_deltas(self._Deltas(iid, deltas))

    def _change(self, book: Any, payload: dict[str, Any]) -> None:
        iid = book.instrument_id
        seq = payload["CS"] & _MASK32
        Delta, BookOrder, price, qty = self._Delta, self._BookOrder, self._price, self._qty
        UPDATE, DELETE, zero = self._UPDATE, self._DELETE, self._zero
        deltas = []
        for side, entries in ((self._SELL, payload.get("AO") or _EMPTY), (self._BUY, payload.get("BO") or _EMPTY)):
            for e in entries:
                if e["CP"] != 3:
                    q = qty(e["A"])
                    if q.raw:
                        deltas.append(Delta(iid, UPDATE, BookOrder(side, price(e["P"]), q, 0), 0, seq, 0, 0))
                        continue
                deltas.append(Delta(iid, DELETE, BookOrder(side, price(e["P"]), zero, 0), 0, seq, 0, 0))
        if deltas:
            self._finish(book, iid, deltas)

    def top(self, pair: str, n: int) -> tuple[Levels, Levels]:
        book = self.books[pair][2]
        out = []
        for levels in (book.bids()[:n], book.asks()[:n]):
            out.append(
                [(lv.price.as_decimal(), sum((o.size.as_decimal() for o in lv.orders()), Decimal(0))) for lv in levels]
            )
        return out[0], out[1]

    def read(self, pair: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        book = self.books[pair][2]
        # the Cython OrderBook has no depth argument: bids()/asks() build every level
        return (
            np.array([(lv.price.as_double(), lv.size()) for lv in book.bids()[:n]], dtype=np.float64),
            np.array([(lv.price.as_double(), lv.size()) for lv in book.asks()[:n]], dtype=np.float64),
        )


# --------------------------------------------------------------------------------------------
class Obengine(Path):
    """obengine: ``BookSet.apply(raw)`` does the parsing, validation, routing, sequencing and
    book update in the native core; ``book.top(n)`` returns read-only int64 views (no copy)."""

    name = "obengine"
    libraries = ("obengine", "numpy")
    kind = "obengine"
    module = "obengine._core"

    def __init__(self, scales: dict[str, tuple[int, int]]) -> None:
        super().__init__(scales)
        from obengine import BookSet

        self.bookset = BookSet(self.scales)
        self.apply = self.bookset.apply  # type: ignore[method-assign,assignment]

    def top(self, pair: str, n: int) -> tuple[Levels, Levels]:
        book = self.bookset[pair]
        ps, qs = book.price_scale, book.amount_scale
        bids, asks = book.top(n)
        return units_to_decimal(bids, ps, qs), units_to_decimal(asks, ps, qs)

    def read(self, pair: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.bookset[pair].top(n)


PATHS: tuple[type[Path], ...] = (
    OrjsonFloor,
    NaiveJson,
    SortedContainers,
    OrderBookC,
    OrderBookCFloat,
    Ccxt,
    Nautilus,
    Obengine,
)


def get_path(name: str) -> type[Path]:
    for cls in PATHS:
        if cls.name == name:
            return cls
    raise KeyError(name)


def available_paths() -> list[type[Path]]:
    return [cls for cls in PATHS if cls.unavailable() is None]


# --------------------------------------------------------------------------------------------
def units_to_decimal(rows: np.ndarray, price_scale: int, amount_scale: int) -> Levels:
    """obengine's ``(k, 2)`` int64 rows as exact ``(price, amount)`` Decimals."""
    return [(Decimal(int(p)).scaleb(-price_scale), Decimal(int(q)).scaleb(-amount_scale)) for p, q in rows.tolist()]


def as_float(levels: Levels) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in levels]


def compare(path: Path, truth: dict[str, tuple[Levels, Levels]], n: int = 20) -> list[str]:
    """Differences between ``path``'s books and ``truth`` (``{pair: (bids, asks)}``, each cut to
    ``n`` levels); an empty list when every pair matches. Exact paths must match exactly (Decimal
    equality ignores the exponent: ``1.50 == 1.5``); float paths must hold ``float(truth)``."""
    problems = []
    for pair, (t_bids, t_asks) in truth.items():
        try:
            bids, asks = path.top(pair, n)
        except KeyError:
            problems.append(f"{path.name}: no book for {pair}")
            continue
        for side, got, want in (("bids", bids, t_bids[:n]), ("asks", asks, t_asks[:n])):
            got = [(x[0], x[1]) for x in got]
            if not path.exact:
                want = as_float(want)  # type: ignore[assignment]
            if got != want:
                for i, (g, w) in enumerate(zip(got, want)):
                    if g != w:
                        problems.append(f"{path.name}: {pair} {side}[{i}] is {g}, truth {w}")
                        break
                else:
                    problems.append(f"{path.name}: {pair} {side} has {len(got)} levels, truth {len(want)}")
    return problems


def lossy_values(truth: dict[str, tuple[Levels, Levels]]) -> tuple[int, int]:
    """``(lossy, total)``: how many prices and amounts of ``truth`` a double cannot give back
    (the shortest repr of ``float(value)`` is another decimal: the value has more significant
    digits than a double holds)."""
    lossy = total = 0
    for bids, asks in truth.values():
        for p, q in bids + asks:
            total += 2
            lossy += (Decimal(repr(float(p))) != p) + (Decimal(repr(float(q))) != q)
    return lossy, total
