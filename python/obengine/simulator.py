"""A seeded simulator of BtcTurk ``obdiff`` streams: realistic 431/432 frames, consistent by
construction.

:class:`FeedSimulator` keeps the true book of every pair it simulates and produces the frames a
client subscribed to those pairs' ``obdiff`` channels would receive on one socket: for each pair
one 431 (full book) first, then 432 change sets, pairs interleaved at random. Applying the frames
in order to an empty :class:`obengine.BookSet` gives exactly :meth:`FeedSimulator.levels`, with
zero anomalies, no gap and no crossed book (see ``docs/rules.md``). Tests, benchmarks and
``obengine demo`` use it.

Units. Internally every price and amount is an ``int`` in *units* of the pair's scales:
``price_units = price * 10**price_scale``, ``amount_units = amount * 10**amount_scale``, with one
tick = one price unit. Frames carry them as decimal strings with exactly the scale's number of
fraction digits (``"0.12300000"`` at amount scale 8, ``"2150000"`` at price scale 0); no float
ever reaches a frame. The public accessors return :class:`decimal.Decimal` values.

What a stream looks like:

- Each side holds a window of ``levels`` price levels (100, as the exchange shows). A level
  entering a full side pushes the worst level out with a ``CP 3``; a level leaving is replaced
  from below (a ``CP 1`` beyond the worst level, as if the deeper book scrolled into view).
- Most changes are ``CP 0`` amount updates, with the depth of the touched level drawn from a
  geometric-like distribution (mostly the top few levels); the rest are inserts (``CP 1``, at
  a free price, possibly inside the spread) and deletes (``CP 3``).
- The mid price does a mean-reverting random walk: a move up takes out the best asks and puts
  new bids above the old best bid (a move down the opposite), which shifts the whole window.
- Amounts are log-uniform over a range that makes plausible order sizes for the pair's price
  and quote currency, often rounded (``"0.12000000"``); each pair draws them from a seeded pool
  of 256 values, so generating a change costs no decimal formatting.
- Bids stay strictly below asks at every step, so no frame ever leaves a book crossed.
- CS starts at a seeded random value per pair (sometimes close to ``2**31 - 1``, sometimes
  negative) and rises by exactly 1 per 432 of that pair as a signed 32-bit counter: after
  ``2147483647`` comes ``-2147483648``.
- Profile ``"typical"``: about 98.5% of 432s carry 1-30 changes (mostly few), the rest 50-200;
  small price moves in some frames. Profile ``"hard"``: every 432 carries 100-200 changes,
  frequent fast moves of many levels, more inserts and deletes at the top.

The only source of randomness is one ``random.Random(seed)``; the same arguments give
byte-identical frames on every run, however :meth:`FeedSimulator.frames` calls are chunked.
Prices are plausible, not market data: pairs whose real price would leave fewer than a few
thousand ticks get a higher price so that a 100-level side fits above zero.
"""
from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from obengine.scales import DEFAULT_SCALES

__all__ = ["FeedSimulator", "Profile"]

Profile = Literal["typical", "hard"]

_MAX_SCALE = 18
_MIN_MID_UNITS = 2_000  # a mid price of at least this many ticks (room for 100 bid levels)
_MAX_MID_UNITS = 10**12  # keeps prices far from int64 whatever the scale
_MAX_AMOUNT_EXP = 15  # amounts stay below 10**16 units
_AMOUNT_POOL = 256  # distinct amounts per pair (formatting each new one would be slower)

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


def _wrap_cs(value: int) -> int:
    """``value`` as a signed 32-bit integer (CS wraps from 2147483647 to -2147483648)."""
    return ((value + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


def _formatter(scale: int) -> tuple[str, int]:
    """``(fmt, div)`` such that ``fmt % divmod(units, div)`` writes a non-negative number of
    units with exactly ``scale`` fraction digits: ``"0.12300000"`` for 12300000 units at scale
    8, ``"2150000"`` for 2150000 units at scale 0 (``%.0s`` swallows the zero remainder)."""
    if scale == 0:
        return "%d%.0s", 1
    return f"%d.%0{scale}d", 10**scale


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
    ops: tuple[int, int, int]  # weights of update (CP 0), insert (CP 1), delete (CP 3)
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
    level comes first on both sides (asks: sign +1, bids: sign -1); ``levels`` maps
    ``price_units`` to the level's ``(amount, price)`` as the decimal strings the frames carry
    (formatted once, when the level or its amount is born)."""

    __slots__ = ("sign", "keys", "levels")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[int] = []
        self.levels: dict[int, tuple[str, str]] = {}


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
        "amount_exp",
        "amounts",
        "pfmt",
        "pdiv",
        "afmt",
        "adiv",
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
        self.amount_exp = (0, 0)  # amount units lie in [10**lo, 10**(hi+1))
        self.amounts: list[str] = []  # the pool new amounts are drawn from, formatted
        pfmt, pdiv = _formatter(price_scale)
        afmt, adiv = _formatter(amount_scale)
        self.pfmt: str = pfmt  # price_units -> str: pfmt % divmod(price_units, pdiv)
        self.pdiv: int = pdiv
        self.afmt: str = afmt  # amount_units -> str: afmt % divmod(amount_units, adiv)
        self.adiv: int = adiv
        self.tail431 = f',"channel":"obdiff","event":"{name}","type":431}}]'
        self.tail432 = f',"channel":"obdiff","event":"{name}","type":432}}]'


class FeedSimulator:
    """Seeded, deterministic BtcTurk ``obdiff`` feed for one or many pairs.

    Args:
        pairs: pair symbols as the websocket spells them (``"BTCTRY"``), unique.
        seed: seed of the one ``random.Random`` behind everything.
        profile: ``"typical"`` (1-30 changes a frame, rare big ones) or ``"hard"`` (100-200
            changes a frame, fast moves that shift the window, churn at the top).
        levels: window size per side (the exchange shows 100).
        scales: ``{pair: (price_scale, amount_scale)}`` (decimal places); pairs missing here
            take :data:`obengine.DEFAULT_SCALES`, else plausible seeded random scales.

    Attributes:
        pairs: the simulated pairs, in the order given.
        scales: ``(price_scale, amount_scale)`` of every pair; pass it to
            ``obengine.BookSet(scales=...)`` (the frames always use exactly these digits).
    """

    pairs: tuple[str, ...]
    scales: dict[str, tuple[int, int]]

    def __init__(
        self,
        pairs: Sequence[str] = ("BTCTRY",),
        *,
        seed: int = 0,
        profile: Profile = "typical",
        levels: int = 100,
        scales: Mapping[str, tuple[int, int]] | None = None,
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

        self.pairs = names
        self.profile: Profile = profile
        self.window = levels
        self._seed = seed
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

    @classmethod
    def many(
        cls, n_pairs: int, *, seed: int = 0, profile: Profile = "typical", levels: int = 100
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
        return cls(names, seed=seed, profile=profile, levels=levels, scales=scales)

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
        Does not change the stream."""
        return self._full(self._get(pair))

    def levels(
        self, pair: str
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The pair's true book now: ``(bids, asks)``, each best first, as exact
        ``(price, amount)`` decimals with the pair's scale digits."""
        p = self._get(pair)
        result: list[list[tuple[Decimal, Decimal]]] = []
        for side in (p.bids, p.asks):
            sign, levels = side.sign, side.levels
            result.append(
                [
                    (Decimal(price), Decimal(amount))
                    for amount, price in (levels[k * sign] for k in side.keys)
                ]
            )
        return result[0], result[1]

    def seq(self, pair: str) -> int:
        """The pair's current CS: that of its last frame sent (or of its first 431, not yet
        sent), a signed 32-bit integer."""
        return self._get(pair).seq

    def __repr__(self) -> str:
        return (
            f"FeedSimulator({len(self.pairs)} pairs, seed={self._seed!r}, "
            f"profile={self.profile!r}, levels={self.window})"
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
        p.amounts = [self._new_amount(p) for _ in range(_AMOUNT_POOL)]

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
        pfmt, pdiv = p.pfmt, p.pdiv
        for _ in range(self.window):
            asks.keys.append(ask)
            asks.levels[ask] = (self._amount(p), pfmt % divmod(ask, pdiv))
            ask += rng.randrange(1, g2) if g2 > 2 else 1
            if bid > 0:
                bids.keys.append(-bid)
                bids.levels[bid] = (self._amount(p), pfmt % divmod(bid, pdiv))
                bid -= rng.randrange(1, g2) if g2 > 2 else 1
        return p

    # -- generation ------------------------------------------------------------------------

    def _amount(self, p: _Pair) -> str:
        """A random amount from the pair's pool (formatted once, drawn with one random())."""
        return p.amounts[int(self._rng.random() * _AMOUNT_POOL)]

    def _new_amount(self, p: _Pair) -> str:
        """A random positive amount, formatted: log-uniform in units over the pair's range,
        rounded to a few significant digits half of the time (as people type amounts)."""
        rnd = self._rng.random
        lo, hi = p.amount_exp
        d = lo + int(rnd() * (hi - lo + 1))
        base = self._pow10[d]
        a = base + int(rnd() * 9 * base)
        if rnd() < 0.5:
            k = d - int(rnd() * 4)
            if k > 0:
                a -= a % self._pow10[k]
        return p.afmt % divmod(a, p.adiv)

    def _put(self, p: _Pair, side: _Side, pos: int, key: int, out: list[str]) -> None:
        """Insert a new level (``CP 1``) with key ``key`` at index ``pos`` (the caller checked
        that it is free and keeps the book uncrossed); push out the worst level (``CP 3``) if
        the side overflows its window."""
        keys = side.keys
        keys.insert(pos, key)
        level = (self._amount(p), p.pfmt % divmod(key * side.sign, p.pdiv))
        side.levels[key * side.sign] = level
        out.append('{"CP":1,"A":"%s","P":"%s"}' % level)
        if len(keys) > self.window:
            out.append('{"CP":3,"A":"%s","P":"%s"}' % side.levels.pop(keys.pop() * side.sign))

    @staticmethod
    def _bound(p: _Pair, side: _Side, other: _Side) -> int:
        """The smallest key ``side`` may take without crossing: one tick behind the other
        side's best price (or behind the anchor when the other side is empty)."""
        return -other.keys[0] + 1 if other.keys else side.sign * p.anchor + 1

    def _insert(self, p: _Pair, side: _Side, other: _Side, i: int, out: list[str]) -> bool:
        """Insert a new level about ``i`` level spacings behind the other side's best price
        (so inserts are spread over ticks, not over existing levels, which keeps the window's
        density and the spread stable). False, and nothing done, if that price is taken, is
        out of the window, or is not a valid price."""
        keys = side.keys
        gap = p.gap
        key = self._bound(p, side, other) + i * gap + int(self._rng.random() * gap)
        if side.sign < 0 and key > -1:  # a bid price must be >= 1
            return False
        pos = bisect_left(keys, key)
        if pos >= self.window or (pos < len(keys) and keys[pos] == key):
            return False
        self._put(p, side, pos, key, out)
        return True

    def _backfill(self, p: _Pair, side: _Side, other: _Side, out: list[str]) -> None:
        """Bring a level into view below the worst one (``CP 1``, 1 to 2*gap-1 ticks further),
        as the deeper book scrolls into the window."""
        keys = side.keys
        if keys:
            key = keys[-1] + 1 + int(self._rng.random() * (2 * p.gap - 1))
        else:
            key = self._bound(p, side, other) + int(self._rng.random() * p.gap)
        if side.sign < 0 and key > -1:
            return
        self._put(p, side, len(keys), key, out)

    def _delete(self, p: _Pair, side: _Side, other: _Side, i: int, out: list[str]) -> None:
        """Delete the level at depth ``i`` (``CP 3``, carrying its last amount), then backfill
        the window from below if the side is short."""
        out.append('{"CP":3,"A":"%s","P":"%s"}' % side.levels.pop(side.keys.pop(i) * side.sign))
        if len(side.keys) < self.window:
            self._backfill(p, side, other, out)

    def _update(self, p: _Pair, side: _Side, i: int, out: list[str]) -> None:
        """A new amount (``CP 0``) for the existing level at depth ``i``."""
        price = side.keys[i] * side.sign
        old_amount, price_str = side.levels[price]
        amount = self._amount(p)
        while amount == old_amount:
            amount = self._new_amount(p)
        side.levels[price] = level = (amount, price_str)
        out.append('{"CP":0,"A":"%s","P":"%s"}' % level)

    def _move(self, p: _Pair, levels: int, ask_out: list[str], bid_out: list[str]) -> None:
        """A price move of about ``levels`` level spacings (``levels * gap`` ticks), up or down,
        reverting to the anchor: the levels of one side within that distance of its best are
        taken out (and backfilled from below), then the other side steps in behind the new
        best with levels about one gap apart, filling the whole vacated range (no holes)."""
        asks, bids = p.asks, p.bids
        if not asks.keys or not bids.keys:
            return
        mid = (asks.keys[0] - bids.keys[0]) // 2
        dev = (mid - p.anchor) * 5000 // p.anchor  # 1 = 0.02 % away from the anchor
        up = self._rng.random() * 1000 < 500 - min(max(dev, -400), 400)
        if up:
            taken, taken_out, stepping, step_out = asks, ask_out, bids, bid_out
        else:
            taken, taken_out, stepping, step_out = bids, bid_out, asks, ask_out
        gap = p.gap
        limit = taken.keys[0] + levels * gap
        while len(taken.keys) > 1 and taken.keys[0] < limit:
            self._delete(p, taken, stepping, 0, taken_out)
        keys = stepping.keys
        bound = self._bound(p, stepping, taken)
        slots = min((keys[0] - bound) // gap if keys else levels, self.window)
        rnd = self._rng.random
        for j in range(slots - 1, -1, -1):  # farthest first, so that each is a new best
            key = bound + j * gap + int(rnd() * gap)
            if (keys and key >= keys[0]) or (stepping.sign < 0 and key > -1):
                continue
            self._put(p, stepping, 0, key, step_out)

    def _diff(self, p: _Pair) -> bytes:
        """The pair's next 432: advances its book and its CS."""
        rnd = self._rng.random
        params = self._params
        ask_out: list[str] = []
        bid_out: list[str] = []
        if rnd() * 1000 < params.big_permille:
            lo, hi = params.big_sizes
            size = lo + int(rnd() * (hi - lo + 1))
            move_permille, (m_lo, m_hi) = params.big_move_permille, params.big_move_levels
        else:
            small = self._small
            size = params.small_sizes[0] + bisect_right(small.cum, rnd() * small.total)
            move_permille, (m_lo, m_hi) = params.move_permille, params.move_levels
        if move_permille and rnd() * 1000 < move_permille:
            self._move(p, m_lo + int(rnd() * (m_hi - m_lo + 1)), ask_out, bid_out)

        depth_cum, depth_total = self._depth.cum, self._depth.total
        ops_cum, ops_total = self._ops.cum, self._ops.total
        asks, bids = p.asks, p.bids
        while len(ask_out) + len(bid_out) < size:
            if rnd() < 0.5:
                side, other, out = asks, bids, ask_out
            else:
                side, other, out = bids, asks, bid_out
            op = bisect_right(ops_cum, rnd() * ops_total)
            i = bisect_right(depth_cum, rnd() * depth_total)
            if op == 1:
                if self._insert(p, side, other, i, out):
                    continue
                op = 0  # that price is taken: update a level instead
            n = len(side.keys)
            if n == 0:
                self._backfill(p, side, other, out)
                continue
            if i >= n:
                i = n - 1
            if op == 0 or n == 1:
                self._update(p, side, i, out)
            else:
                self._delete(p, side, other, i, out)

        p.seq = seq = _wrap_cs(p.seq + 1)
        return (
            f'[432,{{"CS":{seq},"PS":"{p.name}","AO":[{",".join(ask_out)}],'
            f'"BO":[{",".join(bid_out)}]{p.tail432}'
        ).encode()

    def _full(self, p: _Pair) -> bytes:
        """A 431 of the pair's book as it is now, CS = its current seq."""
        sides: list[str] = []
        for side in (p.asks, p.bids):
            sign, levels = side.sign, side.levels
            sides.append(",".join(['{"A":"%s","P":"%s"}' % levels[k * sign] for k in side.keys]))
        return (
            f'[431,{{"CS":{p.seq},"PS":"{p.name}","AO":[{sides[0]}],"BO":[{sides[1]}]{p.tail431}'
        ).encode()
