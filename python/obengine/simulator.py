"""A seeded simulator of BtcTurk ``obdiff`` streams: realistic 431/432 frames, written as the
exchange writes them, consistent by construction.

:class:`FeedSimulator` keeps the true book of every pair it simulates and produces the frames a
client subscribed to those pairs' ``obdiff`` channels would receive on one socket: for each pair
one 431 (full book) first, then 432 change sets, pairs interleaved at random. Applying the frames
in order to an empty :class:`obengine.BookSet` gives exactly :meth:`FeedSimulator.levels`, with
exactly :meth:`FeedSimulator.anomalies` anomalies per book, no gap and no crossed book (see
``docs/rules.md``). Tests, benchmarks and ``obengine demo`` use it.

Units. Internally every price and amount is an ``int`` in *units* of the pair's scales:
``price_units = price * 10**price_scale``, ``amount_units = amount * 10**amount_scale``, with one
tick = one price unit (a fine amount, below, is a whole number of units at its own 9 to 12
places). Each value is written to a decimal string once, when its level or amount is born; no
float ever reaches a frame. The public accessors return :class:`decimal.Decimal` values.

Spelling (keyword ``spelling``), how the numbers and entries are written; the book evolution
(prices, amounts, CS, frames and their order) is the same for both, only the text differs:

- ``"exchange"`` (default), what the exchange sends: ``P`` and ``A`` are strings in canonical
  decimal form, trailing zeros of the fraction stripped and no point for an integer (``"2"``,
  ``"90"``, ``"436.5"``, ``"0.0092056"``); 431 levels ``{"A":..,"P":..}``, 432 entries
  ``{"CP":n,"P":..,"A":..}``.
- ``"fixed"``: fixed width with exactly the scale's fraction digits (``"0.12300000"`` at amount
  scale 8, ``"2150000"`` at price scale 0); 431 levels ``{"A":..,"P":..}``, 432 entries
  ``{"CP":n,"A":..,"P":..}``. A fine amount (below) is written with its own exact digits, as
  exactness wins over width.

Both write compact JSON with the payload keys in the exchange's order ``CS, PS, AO, BO, channel,
event, type``; ``AO`` and ``BO`` are always present (``[]`` when a side has no change), asks
ascending and bids descending by price, one entry per price in a frame; ``CS`` and ``CP`` are
JSON integers.

What a stream looks like:

- A 432 is the *net* difference of the book between the start and the end of the frame's batch
  of changes: for every price touched in the batch, absent before and present after is a
  ``CP 1`` with the new amount, present before and absent after a ``CP 3`` carrying the amount
  the level had before the frame (the last one the stream announced), present before and after
  with another amount a ``CP 0``; a price whose level is the same before and after gets no
  entry. Within a batch each level changes at most once (a change drawn at a level the batch
  has already changed goes to the next unchanged level below it) and a price the batch has
  emptied is not filled again, so a frame carries its batch's changes nearly one for one; only
  a level born in the batch and pushed out of the window again leaves no entry.
- Each side holds a window of ``levels`` price levels (100, as the exchange shows). A level
  entering a full side pushes the worst level out with a ``CP 3``; a level leaving is replaced
  from below (a ``CP 1`` beyond the worst level, as if the deeper book scrolled into view).
- Most changes are amount updates, with the depth of the touched level drawn from a
  geometric-like distribution (mostly the top few levels); the rest are inserts (at a free
  price, possibly inside the spread) and deletes.
- The mid price does a mean-reverting random walk: a move up takes out the best asks and puts
  new bids above the old best bid (a move down the opposite), which shifts the whole window.
- Amounts are log-uniform over a range that makes plausible order sizes for the pair's price
  and quote currency, often rounded (``"0.12"``); each pair draws them from a seeded pool of 256
  values, so generating a change costs no decimal formatting.
- Fine amounts: on some pairs (:attr:`FeedSimulator.fine_amount_pairs`: ``BTCTRY`` when
  simulated, plus a seeded minority of the others), about 4 in 1000 amounts drawn carry more
  decimals than the pair's amount scale, 9 to 12 places (``"0.000249498098"``), as the
  exchange's BTCTRY books did. A book applying the frames rescales its amount scale up (docs
  "Rescaling"): on those pairs it can rise to 12 in the frames, while ``scales`` keeps the scales
  the frames start with. Only pairs whose every possible amount fits int64 units at scale 12
  (below about 9.2e6) get fine amounts.
- Anomalies (keyword ``anomalies``, on by default), the legitimate ones the exchange sends, on
  prices the frame's batch has not touched: in about 1 in 300 of a pair's 432s, a ``CP 3`` for a
  price strictly inside the side's window range that is not in the book (an order that lived
  less than one batch; rarer on pairs whose levels sit on adjacent ticks, with few free prices);
  in about 1 in 500, a ``CP 1`` for a level already in the book with its same amount (a
  re-announce), and then, at the end of the pair's next batch, that level deleted, so the
  pair's next 432 carries a ``CP 3`` of the same price and amount. Each ``CP 3`` for an absent
  price and each re-announcing ``CP 1`` counts one anomaly in a book (docs "Changes"); the
  ``CP 3`` that follows a re-announce counts none. :meth:`FeedSimulator.anomalies` says how
  many a pair's book has counted after every frame sent so far. A 431 never carries one.
- Bids stay strictly below asks at every step, so no frame ever leaves a book crossed.
- CS starts at a seeded random value per pair (sometimes close to ``2**31 - 1``, sometimes
  negative) and rises by exactly 1 per 432 of that pair as a signed 32-bit counter: after
  ``2147483647`` comes ``-2147483648``.
- Profile ``"typical"``: about 98.5% of 432s carry 1-30 entries (mostly few), the rest 50-200;
  small price moves in some frames. Profile ``"hard"``: every 432 carries at least 100 entries,
  mostly 100-200 (up to about 330 when a fast move replaces a whole side), frequent fast moves
  of many levels, more inserts and deletes at the top. (A window of only a few levels may not
  hold as many changes: its frames are smaller.)

The only source of randomness is one ``random.Random(seed)``; the same arguments give
byte-identical frames on every run, however :meth:`FeedSimulator.frames` calls are chunked.
Prices are plausible, not market data: pairs whose real price would leave fewer than a few
thousand ticks get a higher price so that a 100-level side fits above zero.
"""
from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from obengine.scales import DEFAULT_SCALES

__all__ = ["FeedSimulator", "Profile", "Spelling"]

Profile = Literal["typical", "hard"]
Spelling = Literal["exchange", "fixed"]

_MAX_SCALE = 18
_MIN_MID_UNITS = 2_000  # a mid price of at least this many ticks (room for 100 bid levels)
_MAX_MID_UNITS = 10**12  # keeps prices far from int64 whatever the scale
_MAX_AMOUNT_EXP = 15  # amounts stay below 10**16 units
_AMOUNT_POOL = 256  # distinct amounts per pair (formatting each new one would be slower)
_INT64_MAX = 2**63 - 1

_FINE_SCALE = 12  # most decimal places of a fine amount
_FINE_MIN_PLACES = 9  # fewest decimal places of a fine amount
_FINE_SHARE = 0.004  # share of the amounts drawn on a fine pair that are fine
_FINE_PAIRS_SHARE = 0.1  # share of the other eligible pairs that get fine amounts
_ABSENT_DELETE_PER_10K = 33  # a CP 3 for an absent price: ~1 in 300 frames of a pair
_REANNOUNCE_PER_10K = 20  # a CP 1 re-announcing a level: ~1 in 500 frames of a pair

# Plausible prices (quote currency) for the bundled pairs; units follow from the scale.
_PRICES: dict[str, str] = {
    "BTCTRY": "2150000",
    "ETHTRY": "110000",
    "LTCTRY": "3000",
    "XRPTRY": "20",
    "USDTTRY": "34",
    "XLMTRY": "4",
    "EOSTRY": "25",
    "NEOTRY": "400",
    "XTZTRY": "30",
    "BTCUSDT": "63000",
    "ETHUSDT": "3300",
    "LTCUSDT": "85",
    "XRPUSDT": "0.6",
    "XLMUSDT": "0.11",
    "EOSUSDT": "0.8",
    "NEOUSDT": "12",
    "EOSBTC": "0.0000127",
    "ETHBTC": "0.052",
    "LTCBTC": "0.00135",
    "NEOBTC": "0.00019",
    "XLMBTC": "0.0000017",
    "XRPBTC": "0.0000095",
}

# Quote currencies of made-up pairs, as often as each should come.
_QUOTES = ("TRY",) * 7 + ("USDT",) * 2 + ("BTC",)

# Order notional ranges by quote currency, as powers of ten of the quote (lo, hi).
_NOTIONAL_EXP: dict[str, tuple[int, int]] = {"TRY": (2, 6), "USDT": (1, 5), "BTC": (-3, 1)}

# A level as the frames carry it: (amount, price), both decimal strings written once.
_Level = tuple[str, str]

# What a side looked like before the frame, for every key the frame touched (None: absent).
_Before = dict[int, _Level | None]


def _wrap_cs(value: int) -> int:
    """``value`` as a signed 32-bit integer (CS wraps from 2147483647 to -2147483648)."""
    return ((value + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


def _fixed(units: int, scale: int) -> str:
    """``units`` (>= 0) at ``scale`` with exactly ``scale`` fraction digits: ``"0.12300000"``
    for 12300000 units at scale 8, ``"2150000"`` for 2150000 units at scale 0."""
    if scale == 0:
        return str(units)
    whole, fraction = divmod(units, 10**scale)
    return "%d.%0*d" % (whole, scale, fraction)


def _canonical(units: int, scale: int) -> str:
    """``units`` (>= 0) at ``scale`` in canonical decimal form: trailing zeros of the fraction
    stripped, no point for an integer (``"90"``, ``"436.5"``, ``"0.0092056"``)."""
    if scale == 0:
        return str(units)
    whole, fraction = divmod(units, 10**scale)
    if fraction == 0:
        return str(whole)
    return ("%d.%0*d" % (whole, scale, fraction)).rstrip("0")


def _places(text: str) -> int:
    """The number of fraction digits written in a decimal string."""
    point = text.find(".")
    return 0 if point < 0 else len(text) - point - 1


# How each spelling writes a number, and its 432 entry templates, by CP, with the indexes of the
# level's (amount, price) fields in the template's order.
_WRITERS: dict[str, Callable[[int, int], str]] = {"exchange": _canonical, "fixed": _fixed}
_ENTRIES: dict[str, tuple[tuple[str, str, str], tuple[int, int]]] = {
    "exchange": (
        ('{"CP":0,"P":"%s","A":"%s"}', '{"CP":1,"P":"%s","A":"%s"}', '{"CP":3,"P":"%s","A":"%s"}'),
        (1, 0),
    ),
    "fixed": (
        ('{"CP":0,"A":"%s","P":"%s"}', '{"CP":1,"A":"%s","P":"%s"}', '{"CP":3,"A":"%s","P":"%s"}'),
        (0, 1),
    ),
}


class _Table:
    """A discrete distribution over ``0..len(weights)-1`` from integer weights: a draw is
    ``bisect_right(cum, rng.random() * total)``, done inline by the callers (exact float
    arithmetic only, so draws are platform independent)."""

    __slots__ = ("cum", "total")

    def __init__(self, weights: Sequence[int]) -> None:
        cum: list[float] = []
        acc = 0
        for w in weights:
            acc += w
            cum.append(float(acc))
        self.cum = cum[:-1]
        self.total = float(acc)

    @classmethod
    def geometric(cls, n: int, num: int, den: int) -> _Table:
        """Weights proportional to ``(num/den)**i`` for ``i < n``, computed in integers."""
        weights: list[int] = []
        w = 10**12
        for _ in range(n):
            weights.append(max(w, 1))
            w = w * num // den
        return cls(weights)


@dataclass(frozen=True)
class _Params:
    """The knobs of one profile. Probabilities are per mille, sizes count frame entries."""

    big_permille: int  # share of big frames
    small_sizes: tuple[int, int]  # entries of a normal frame (geometric within the range)
    big_sizes: tuple[int, int]  # entries of a big frame (uniform within the range)
    move_permille: int  # chance of a price move in a normal frame
    move_levels: tuple[int, int]  # levels taken out by a move in a normal frame
    big_move_permille: int  # chance of a price move in a big frame
    big_move_levels: tuple[int, int]  # levels taken out by a move in a big frame
    ops: tuple[int, int, int]  # weights of update, insert, delete
    depth_ratio: tuple[int, int]  # depth i has weight (num/den)**i


_PROFILES: dict[str, _Params] = {
    "typical": _Params(
        big_permille=15,
        small_sizes=(1, 30),
        big_sizes=(50, 200),
        move_permille=120,
        move_levels=(1, 2),
        big_move_permille=500,
        big_move_levels=(3, 15),
        ops=(80, 10, 10),
        depth_ratio=(8, 10),
    ),
    "hard": _Params(
        big_permille=1000,
        small_sizes=(100, 200),
        big_sizes=(100, 200),
        move_permille=0,
        move_levels=(1, 1),
        big_move_permille=650,
        big_move_levels=(5, 40),
        ops=(30, 35, 35),
        depth_ratio=(6, 10),
    ),
}


class _Side:
    """One side of a true book. ``keys`` holds ``sign * price_units`` ascending, so the best
    level comes first on both sides (asks: sign +1, bids: sign -1); ``levels`` maps each key to
    the level's ``(amount, price)`` as the decimal strings the frames carry (written once, when
    the level or its amount is born). ``changed``: during a batch, every level above that
    depth has changed in the batch (a lower bound that spares rescanning them)."""

    __slots__ = ("sign", "keys", "levels", "changed")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[int] = []
        self.levels: dict[int, _Level] = {}
        self.changed = 0


class _Pair:
    """The state of one simulated pair: its true book, CS, and generation parameters."""

    __slots__ = (
        "name",
        "asks",
        "bids",
        "seq",
        "started",
        "anchor",
        "gap",
        "price_scale",
        "amount_scale",
        "amount_exp",
        "amounts",
        "fine_share",
        "anomalies",
        "pending",
        "tail431",
        "tail432",
    )

    def __init__(self, name: str, price_scale: int, amount_scale: int) -> None:
        self.name = name
        self.asks = _Side(1)
        self.bids = _Side(-1)
        self.seq = 0  # CS of the last frame sent (or of the 431 still to come)
        self.started = False  # has its 431 been sent by frames()?
        self.anchor = 0  # mid price (units) the walk reverts to
        self.gap = 1  # mean distance between adjacent levels, ticks
        self.price_scale = price_scale
        self.amount_scale = amount_scale
        self.amount_exp = (0, 0)  # amount units lie in [10**lo, 10**(hi+1))
        self.amounts: list[str] = []  # the pool new amounts are drawn from, written
        self.fine_share = 0.0  # share of the amounts drawn that are fine (0: none)
        self.anomalies = 0  # anomalies a book counts after every frame sent so far
        self.pending: tuple[_Side, int] | None = None  # a re-announced level to delete next
        self.tail431 = f',"channel":"obdiff","event":"{name}","type":431}}]'
        self.tail432 = f',"channel":"obdiff","event":"{name}","type":432}}]'


class FeedSimulator:
    """Seeded, deterministic BtcTurk ``obdiff`` feed for one or many pairs, written as the
    exchange writes it (see the module docstring for the stream's rules).

    Args:
        pairs: pair symbols as the websocket spells them (``"BTCTRY"``), unique.
        seed: seed of the one ``random.Random`` behind everything.
        profile: ``"typical"`` (1-30 changes a frame, rare big ones) or ``"hard"`` (100-200
            changes a frame, fast moves that shift the window, churn at the top).
        levels: window size per side (the exchange shows 100).
        scales: ``{pair: (price_scale, amount_scale)}`` (decimal places); pairs missing here
            take :data:`obengine.DEFAULT_SCALES`, else plausible seeded random scales.
        spelling: ``"exchange"`` (canonical numbers, 432 entries ``CP, P, A``: what the exchange
            sends) or ``"fixed"`` (numbers with exactly the scale's fraction digits, entries
            ``CP, A, P``). Only the text differs: the same arguments give the same book
            evolution in both.
        anomalies: send the exchange's legitimate anomalies (``CP 3`` for an absent price,
            ``CP 1`` re-announcing a present level then its ``CP 3``); ``False`` for none.

    Attributes:
        pairs: the simulated pairs, in the order given.
        scales: ``(price_scale, amount_scale)`` every pair's frames start with; pass it to
            ``obengine.BookSet(scales=...)``. Prices always use exactly these digits; amounts
            too, except on :attr:`fine_amount_pairs`.
        fine_amount_pairs: the pairs (in the order of ``pairs``) some of whose amounts carry 9
            to 12 decimal places, more than their amount scale: a book of such a pair raises its
            amount scale (up to 12) when one arrives. Every other pair's frames keep its
            ``scales`` exactly.
        spelling: the spelling the frames are written in.
    """

    pairs: tuple[str, ...]
    scales: dict[str, tuple[int, int]]
    fine_amount_pairs: tuple[str, ...]
    spelling: Spelling

    def __init__(
        self,
        pairs: Sequence[str] = ("BTCTRY",),
        *,
        seed: int = 0,
        profile: Profile = "typical",
        levels: int = 100,
        scales: Mapping[str, tuple[int, int]] | None = None,
        spelling: Spelling = "exchange",
        anomalies: bool = True,
    ) -> None:
        if isinstance(pairs, str):
            raise TypeError("pairs must be a sequence of symbols, not one string")
        names = tuple(pairs)
        if not names:
            raise ValueError("pairs must not be empty")
        if len(set(names)) != len(names):
            raise ValueError("pairs must be unique")
        for name in names:
            if not isinstance(name, str) or not 0 < len(name.encode()) <= 64:
                raise ValueError(f"invalid pair symbol {name!r}")
            if '"' in name or "\\" in name or not name.isprintable():
                raise ValueError(f"pair symbol {name!r} needs JSON escaping; not supported")
        if profile not in _PROFILES:
            raise ValueError(f"profile must be 'typical' or 'hard', not {profile!r}")
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive int, not {levels!r}")
        if spelling not in _WRITERS:
            raise ValueError(f"spelling must be 'exchange' or 'fixed', not {spelling!r}")

        self.pairs = names
        self.profile: Profile = profile
        self.window = levels
        self.spelling = spelling
        self._seed = seed
        self._inject = bool(anomalies)
        self._write = _WRITERS[spelling]
        self._entries, self._fields = _ENTRIES[spelling]
        self._rng = random.Random(seed)
        self._params = _PROFILES[profile]
        p = self._params
        self._depth = _Table.geometric(levels, *p.depth_ratio)
        lo, hi = p.small_sizes
        self._small = _Table.geometric(hi - lo + 1, 9, 10) if lo != hi else _Table([1])
        self._ops = _Table(p.ops)
        self._pow10: list[int] = [10**i for i in range(_MAX_AMOUNT_EXP + 2)]

        given = dict(scales) if scales is not None else {}
        self.scales = {}
        self._pairs: dict[str, _Pair] = {}
        for name in names:
            if name in given:
                ps, amount_scale = given[name]
            elif name in DEFAULT_SCALES:
                ps, amount_scale = DEFAULT_SCALES[name]
            else:
                ps, amount_scale = self._random_scales()
            for s in (ps, amount_scale):
                if not isinstance(s, int) or not 0 <= s <= _MAX_SCALE:
                    raise ValueError(f"{name}: scales must be ints in 0..{_MAX_SCALE}")
            self.scales[name] = (ps, amount_scale)
            self._pairs[name] = self._new_pair(name, ps, amount_scale)
        self._order = [self._pairs[name] for name in names]
        self.fine_amount_pairs = tuple(p.name for p in self._order if p.fine_share)

    @classmethod
    def many(
        cls,
        n_pairs: int,
        *,
        seed: int = 0,
        profile: Profile = "typical",
        levels: int = 100,
        spelling: Spelling = "exchange",
        anomalies: bool = True,
    ) -> FeedSimulator:
        """A simulator of ``n_pairs`` pairs: the bundled pairs of ``DEFAULT_SCALES`` first, then
        made-up symbols (``"AB12TRY"``) with plausible seeded scales. 380 is the exchange's
        real number of pairs. Other arguments as for the constructor."""
        if n_pairs < 1:
            raise ValueError("n_pairs must be >= 1")
        names = list(DEFAULT_SCALES)[:n_pairs]
        taken = set(names)
        rng = random.Random(f"obengine.simulator.many:{seed}")
        scales: dict[str, tuple[int, int]] = {}
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        while len(names) < n_pairs:
            quote = rng.choice(_QUOTES)
            name = rng.choice(letters) + rng.choice(letters) + f"{rng.randrange(100):02d}" + quote
            if name in taken:
                continue
            taken.add(name)
            names.append(name)
            scales[name] = (
                rng.choice((0, 1, 2, 2, 2, 3, 4, 4, 5, 6, 8)),
                rng.choice((0, 1, 2, 2, 4, 4, 6, 8, 8, 8)),
            )
        return cls(
            names,
            seed=seed,
            profile=profile,
            levels=levels,
            scales=scales,
            spelling=spelling,
            anomalies=anomalies,
        )

    # -- public accessors ------------------------------------------------------------------

    def frames(self, n: int) -> list[bytes]:
        """The next ``n`` frames of the stream, as the exchange sends them (compact JSON,
        UTF-8). Stateful: the next call continues where this one ended. A pair's first frame
        is its 431; after that its 432s follow with CS rising by one (signed 32-bit)."""
        out: list[bytes] = []
        order = self._order
        count = len(order)
        rnd = self._rng.random
        for _ in range(n):
            pair = order[int(rnd() * count)] if count > 1 else order[0]
            if pair.started:
                out.append(self._diff(pair))
            else:
                pair.started = True
                out.append(self._full(pair))
        return out

    def snapshot(self, pair: str) -> bytes:
        """A 431 of the pair's current book, CS = :meth:`seq` (what a resubscribe gives).
        Does not change the stream, and carries no anomaly."""
        return self._full(self._get(pair))

    def levels(
        self, pair: str
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The pair's true book now: ``(bids, asks)``, each best first, as exact
        ``(price, amount)`` decimals, the same whatever the spelling: prices with exactly the
        pair's price scale digits, amounts with exactly its amount scale digits, except a fine
        amount, which keeps its own 9 to 12."""
        p = self._get(pair)
        ps, scale = p.price_scale, p.amount_scale
        quantum = Decimal(1).scaleb(-scale)
        result: list[list[tuple[Decimal, Decimal]]] = []
        for side in (p.bids, p.asks):
            sign, levels = side.sign, side.levels
            rows: list[tuple[Decimal, Decimal]] = []
            for key in side.keys:
                text = levels[key][0]
                amount = Decimal(text)
                if _places(text) < scale:  # written shorter ("exchange" spelling)
                    amount = amount.quantize(quantum)
                rows.append((Decimal(key * sign).scaleb(-ps), amount))
            result.append(rows)
        return result[0], result[1]

    def seq(self, pair: str) -> int:
        """The pair's current CS: that of its last frame sent (or of its first 431, not yet
        sent), a signed 32-bit integer."""
        return self._get(pair).seq

    def anomalies(self, pair: str) -> int:
        """How many anomalies a book of ``pair`` has counted (``obengine.Book.anomalies``) once
        it has applied every frame :meth:`frames` sent so far, in order (a 431 from
        :meth:`snapshot` adds none). Always 0 with ``anomalies=False``."""
        return self._get(pair).anomalies

    def __repr__(self) -> str:
        return (
            f"FeedSimulator({len(self.pairs)} pairs, seed={self._seed!r}, "
            f"profile={self.profile!r}, levels={self.window}, spelling={self.spelling!r}, "
            f"anomalies={self._inject})"
        )

    # -- set-up ----------------------------------------------------------------------------

    def _get(self, pair: str) -> _Pair:
        try:
            return self._pairs[pair]
        except KeyError:
            raise KeyError(f"{pair!r} is not simulated here") from None

    def _random_scales(self) -> tuple[int, int]:
        rng = self._rng
        return rng.choice((0, 1, 2, 2, 3, 4, 5, 8)), rng.choice((0, 2, 4, 4, 6, 8, 8))

    def _new_pair(self, name: str, ps: int, amount_scale: int) -> _Pair:
        rng = self._rng
        write = self._write
        p = _Pair(name, ps, amount_scale)
        if name in _PRICES:
            mid = int(Decimal(_PRICES[name]).scaleb(ps))
        else:
            mid = rng.randrange(10**4, 10**7)
        mid = min(max(mid, _MIN_MID_UNITS), _MAX_MID_UNITS)
        p.anchor = mid
        p.gap = max(1, mid // 20_000)

        # amounts: notional in the quote currency within _NOTIONAL_EXP, whatever the price
        quote = next((q for q in ("USDT", "TRY", "BTC") if name.endswith(q)), "TRY")
        n_lo, n_hi = _NOTIONAL_EXP[quote]
        price_exp = len(str(mid)) - 1 - ps  # floor(log10(price))
        lo = min(max(n_lo - price_exp + amount_scale, 0), _MAX_AMOUNT_EXP)
        hi = min(max(n_hi - price_exp + amount_scale - 1, lo + 2), _MAX_AMOUNT_EXP)
        p.amount_exp = (lo, hi)
        p.amounts = [write(self._new_units(p), amount_scale) for _ in range(_AMOUNT_POOL)]

        # fine amounts: BTCTRY and a seeded minority, among the pairs whose largest amount
        # (below 10**(hi+1) units) still fits int64 once rescaled to _FINE_SCALE places
        chosen = rng.random() < _FINE_PAIRS_SHARE or name == "BTCTRY"
        fits = (
            amount_scale < _FINE_SCALE
            and (10 ** (hi + 1) - 1) * 10 ** (_FINE_SCALE - amount_scale) <= _INT64_MAX
        )
        if chosen and fits:
            p.fine_share = _FINE_SHARE

        r = rng.random()
        if r < 0.25:  # close to the top of int32: wraps within a few hundred frames
            p.seq = 0x7FFF_FFFF - rng.randrange(200)
        elif r < 0.40:
            p.seq = -rng.randrange(1, 0x8000_0000)
        else:
            p.seq = rng.randrange(1, 0x7FFF_FFFF)

        # initial book: spread of 1..gap ticks around the mid, levels gap apart on average
        g2 = 2 * p.gap
        ask = mid + 1 + rng.randrange(p.gap)
        bid = ask - 1 - rng.randrange(p.gap)
        asks, bids = p.asks, p.bids
        for _ in range(self.window):
            asks.keys.append(ask)
            asks.levels[ask] = (self._amount(p), write(ask, ps))
            ask += rng.randrange(1, g2) if g2 > 2 else 1
            if bid > 0:
                bids.keys.append(-bid)
                bids.levels[-bid] = (self._amount(p), write(bid, ps))
                bid -= rng.randrange(1, g2) if g2 > 2 else 1
        return p

    # -- amounts ---------------------------------------------------------------------------

    def _amount(self, p: _Pair) -> str:
        """A random amount: from the pair's pool (written once, drawn with one random()), or,
        on a fine pair, a new fine amount for a share ``p.fine_share`` of the draws."""
        x = self._rng.random() * _AMOUNT_POOL
        i = int(x)
        if x - i < p.fine_share:  # never true when fine_share is 0
            return self._fine_amount(p)
        return p.amounts[i]

    def _new_units(self, p: _Pair) -> int:
        """A random positive amount in units of the pair's amount scale: log-uniform over the
        pair's range, rounded to a few significant digits half of the time (as people type
        amounts)."""
        rnd = self._rng.random
        lo, hi = p.amount_exp
        d = lo + int(rnd() * (hi - lo + 1))
        base = self._pow10[d]
        a = base + int(rnd() * 9 * base)
        if rnd() < 0.5:
            k = d - int(rnd() * 4)
            if k > 0:
                a -= a % self._pow10[k]
        return a

    def _fine_amount(self, p: _Pair) -> str:
        """A new amount with 9 to 12 decimal places, more than the pair's amount scale: a
        random amount of the pair's range followed by more digits, the last one not 0. Below
        ``10**(hi+1)`` units of the pair's scale, so it fits int64 at scale 12 (see
        ``_new_pair``)."""
        rnd = self._rng.random
        scale = p.amount_scale
        lo = max(_FINE_MIN_PLACES, scale + 1)
        places = lo + int(rnd() * (_FINE_SCALE - lo + 1))
        more = 10 ** (places - scale)
        tail = 1 + int(rnd() * (more - 1))
        if tail % 10 == 0:
            tail += 1
        return self._write(self._new_units(p) * more + tail, places)

    # -- generation ------------------------------------------------------------------------
    #
    # A 432 is made from a *batch* of changes to the true book. Every change records, in the
    # batch's ``before`` dict of its side, the level its key had before the batch (None:
    # absent), the first time the batch touches that key; the frame is the net difference
    # between ``before`` and the side at the end (``_net``). A level born in the batch and
    # gone again leaves ``before``. Within a batch each level changes at most once and no
    # price comes back, so every key in ``before`` makes exactly one entry and the batch stops
    # when the frame has as many entries as it should.

    @staticmethod
    def _remove(side: _Side, i: int, before: _Before) -> None:
        """Take the level at depth ``i`` out of the side."""
        key = side.keys.pop(i)
        level = side.levels.pop(key)
        if key not in before:
            before[key] = level
        elif before[key] is None:  # born in this batch: no entry at all
            del before[key]
        if i < side.changed:
            side.changed -= 1

    def _put(self, p: _Pair, side: _Side, pos: int, key: int, before: _Before) -> None:
        """Insert a new level with key ``key`` at index ``pos`` (the caller checked that it is
        free and keeps the book uncrossed); push out the worst level if the side overflows its
        window."""
        keys, levels = side.keys, side.levels
        keys.insert(pos, key)
        if pos <= side.changed:
            side.changed += 1
        if key not in before:
            before[key] = None
        levels[key] = (self._amount(p), self._write(key * side.sign, p.price_scale))
        if len(keys) > self.window:
            self._remove(side, len(keys) - 1, before)

    def _delete(self, p: _Pair, side: _Side, other: _Side, i: int, before: _Before) -> None:
        """Delete the level at depth ``i``, then backfill the window from below if the side
        is short."""
        self._remove(side, i, before)
        if len(side.keys) < self.window:
            self._backfill(p, side, other, before)

    def _update(self, p: _Pair, side: _Side, i: int, before: _Before) -> None:
        """A new amount for the level at depth ``i``."""
        key = side.keys[i]
        old_amount, price = old = side.levels[key]
        if key not in before:
            before[key] = old
        if i == side.changed:
            side.changed = i + 1
        amount = self._amount(p)
        while amount == old_amount:
            amount = self._write(self._new_units(p), p.amount_scale)
        side.levels[key] = (amount, price)

    @staticmethod
    def _bound(p: _Pair, side: _Side, other: _Side) -> int:
        """The smallest key ``side`` may take without crossing: one tick behind the other
        side's best price (or behind the anchor when the other side is empty)."""
        return -other.keys[0] + 1 if other.keys else side.sign * p.anchor + 1

    def _insert(self, p: _Pair, side: _Side, other: _Side, i: int, before: _Before) -> bool:
        """Insert a new level about ``i`` level spacings behind the other side's best price
        (so inserts are spread over ticks, not over existing levels, which keeps the window's
        density and the spread stable). False, and nothing done, if that price is taken or was
        changed earlier in the batch, is out of the window, or is not a valid price."""
        keys = side.keys
        gap = p.gap
        key = self._bound(p, side, other) + i * gap + int(self._rng.random() * gap)
        if side.sign < 0 and key > -1:  # a bid price must be >= 1
            return False
        pos = bisect_left(keys, key)
        if pos >= self.window or (pos < len(keys) and keys[pos] == key) or key in before:
            return False
        self._put(p, side, pos, key, before)
        return True

    def _backfill(self, p: _Pair, side: _Side, other: _Side, before: _Before) -> None:
        """Bring a level into view below the worst one (1 to 2*gap-1 ticks further, past any
        price changed earlier in the batch), as the deeper book scrolls into the window."""
        keys = side.keys
        if keys:
            key = keys[-1] + 1 + int(self._rng.random() * (2 * p.gap - 1))
        else:
            key = self._bound(p, side, other) + int(self._rng.random() * p.gap)
        while key in before:
            key += 1
        if side.sign < 0 and key > -1:
            return
        self._put(p, side, len(keys), key, before)

    def _move(self, p: _Pair, levels: int, ask_before: _Before, bid_before: _Before) -> None:
        """A price move of about ``levels`` level spacings (``levels * gap`` ticks), up or down,
        reverting to the anchor: the levels of one side within that distance of its best are
        taken out (and backfilled from below), then the other side steps in behind the new
        best with levels about one gap apart, filling the whole vacated range (no holes).
        Comes first in a batch."""
        asks, bids = p.asks, p.bids
        if not asks.keys or not bids.keys:
            return
        mid = (asks.keys[0] - bids.keys[0]) // 2
        dev = (mid - p.anchor) * 5000 // p.anchor  # 1 = 0.02 % away from the anchor
        up = self._rng.random() * 1000 < 500 - min(max(dev, -400), 400)
        if up:
            taken, taken_before, stepping, step_before = asks, ask_before, bids, bid_before
        else:
            taken, taken_before, stepping, step_before = bids, bid_before, asks, ask_before
        gap = p.gap
        limit = taken.keys[0] + levels * gap
        while len(taken.keys) > 1 and taken.keys[0] < limit:
            self._delete(p, taken, stepping, 0, taken_before)
        keys = stepping.keys
        bound = self._bound(p, stepping, taken)
        slots = min((keys[0] - bound) // gap if keys else levels, self.window)
        rnd = self._rng.random
        for j in range(slots - 1, -1, -1):  # farthest first, so that each is a new best
            key = bound + j * gap + int(rnd() * gap)
            if (keys and key >= keys[0]) or (stepping.sign < 0 and key > -1):
                continue
            self._put(p, stepping, 0, key, step_before)

    def _settle(self, p: _Pair, ask_before: _Before, bid_before: _Before) -> None:
        """Delete the level re-announced in the pair's previous frame, if the batch has not,
        so this frame carries its ``CP 3`` with the re-announced amount (the level's amount
        before the batch)."""
        assert p.pending is not None
        side, key = p.pending
        p.pending = None
        if key in side.levels:
            other, before = (p.bids, ask_before) if side is p.asks else (p.asks, bid_before)
            self._delete(p, side, other, bisect_left(side.keys, key), before)

    def _anomaly(self, p: _Pair, ask_before: _Before, bid_before: _Before) -> None:
        """Now and then, one of the exchange's legitimate anomalies, on a key the batch has not
        touched, written into ``before`` as a state the side did not have (the book stays as
        it is): a level at a free price (the net is a ``CP 3`` for an absent price), or no
        level at a present one (a ``CP 1`` re-announcing it with its amount; its ``CP 3`` comes
        in the pair's next frame, see ``_settle``). Each counts one anomaly."""
        rnd = self._rng.random
        r = rnd() * 10_000
        if r >= _ABSENT_DELETE_PER_10K + _REANNOUNCE_PER_10K:
            return
        if rnd() < 0.5:
            side, before = p.asks, ask_before
        else:
            side, before = p.bids, bid_before
        keys = side.keys
        if r < _ABSENT_DELETE_PER_10K:  # a CP 3 for a free price inside the window's range
            if len(keys) < 2 or keys[-1] - keys[0] < 2:
                return
            key = keys[0] + 1 + int(rnd() * (keys[-1] - keys[0] - 1))
            if key in side.levels or key in before:
                return
            before[key] = (self._amount(p), self._write(key * side.sign, p.price_scale))
        else:  # a CP 1 re-announcing an unchanged level, near the top as most changes are
            n = len(keys)
            i = bisect_right(self._depth.cum, rnd() * self._depth.total)
            while i < n and keys[i] in before:
                i += 1
            if i >= n:
                return
            key = keys[i]
            before[key] = None
            p.pending = (side, key)
        p.anomalies += 1

    def _net(self, side: _Side, before: _Before) -> str:
        """The side's 432 entries: the net change of every key in ``before``, best first."""
        levels = side.levels
        (t0, t1, t3), (a, b) = self._entries, self._fields
        out: list[str] = []
        for key, old in sorted(before.items()):  # keys are unique: sorted by key
            new = levels.get(key)
            if new is None:
                if old is not None:
                    out.append(t3 % (old[a], old[b]))
            elif old is None:
                out.append(t1 % (new[a], new[b]))
            elif new[0] != old[0]:
                out.append(t0 % (new[a], new[b]))
        return ",".join(out)

    def _diff(self, p: _Pair) -> bytes:
        """The pair's next 432: a batch of changes to its book, as their net; advances its
        CS."""
        rnd = self._rng.random
        params = self._params
        ask_before: _Before = {}
        bid_before: _Before = {}
        p.asks.changed = p.bids.changed = 0
        if rnd() * 1000 < params.big_permille:
            lo, hi = params.big_sizes
            size = lo + int(rnd() * (hi - lo + 1))
            move_permille, (m_lo, m_hi) = params.big_move_permille, params.big_move_levels
        else:
            small = self._small
            size = params.small_sizes[0] + bisect_right(small.cum, rnd() * small.total)
            move_permille, (m_lo, m_hi) = params.move_permille, params.move_levels
        if move_permille and rnd() * 1000 < move_permille:
            self._move(p, m_lo + int(rnd() * (m_hi - m_lo + 1)), ask_before, bid_before)

        depth_cum, depth_total = self._depth.cum, self._depth.total
        ops_cum, ops_total = self._ops.cum, self._ops.total
        asks, bids = p.asks, p.bids
        tries = 4 * size + 20  # a small window may not have `size` levels to change
        while len(ask_before) + len(bid_before) < size and tries:  # one entry per key
            tries -= 1
            if rnd() < 0.5:
                side, other, before = asks, bids, ask_before
            else:
                side, other, before = bids, asks, bid_before
            op = bisect_right(ops_cum, rnd() * ops_total)
            i = bisect_right(depth_cum, rnd() * depth_total)
            if op == 1:
                if self._insert(p, side, other, i, before):
                    continue
                op = 0  # that price is taken: update a level instead
            keys = side.keys
            n = len(keys)
            if n == 0:
                self._backfill(p, side, other, before)
                continue
            if i >= n:
                i = n - 1
            # a level changes once in a batch: take the first unchanged one from depth i
            c = side.changed
            if i <= c:
                while c < n and keys[c] in before:
                    c += 1
                side.changed = i = c
            else:
                while i < n and keys[i] in before:
                    i += 1
            if i == n:
                continue
            if op == 0 or n == 1:
                self._update(p, side, i, before)
            else:
                self._delete(p, side, other, i, before)
        if p.pending is not None:
            self._settle(p, ask_before, bid_before)
        if self._inject:
            self._anomaly(p, ask_before, bid_before)

        p.seq = seq = _wrap_cs(p.seq + 1)
        return (
            f'[432,{{"CS":{seq},"PS":"{p.name}","AO":[{self._net(asks, ask_before)}],'
            f'"BO":[{self._net(bids, bid_before)}]{p.tail432}'
        ).encode()

    def _full(self, p: _Pair) -> bytes:
        """A 431 of the pair's book as it is now, CS = its current seq."""
        sides: list[str] = []
        for side in (p.asks, p.bids):
            levels = side.levels
            sides.append(",".join(['{"A":"%s","P":"%s"}' % levels[k] for k in side.keys]))
        return (
            f'[431,{{"CS":{p.seq},"PS":"{p.name}","AO":[{sides[0]}],"BO":[{sides[1]}]{p.tail431}'
        ).encode()
