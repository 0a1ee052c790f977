"""Pure-Python reference model of ``obengine.Book`` and ``obengine.BookSet``: the tests' oracle.

It follows ``docs/rules.md`` literally and favours being obviously right over being fast:

* JSON is parsed by the standard library's ``json`` decoder pieces (``JSONObject``,
  ``JSONArray``, ``scanstring``) driven by a small scanner of our own, so that objects keep
  every ``(key, value)`` pair in order (duplicate keys are visible), numbers keep their source
  text (exact, never a float) and string values keep the raw text written between their quotes
  (a string holding a number must match the JSON number grammar exactly, inside the quotes).
* Values are ``Decimal``; a level is stored as ``{price: amount}`` per side and turned into
  *units* (``value * 10**scale``, a Python int) only when asked. Rescaling is therefore just
  raising the scale. A narrow book (``wide`` False) becomes wide when an applied frame needs a
  scale above 18 or a unit count above int64 (see ``RefBook.needs_wide``); a wide book is never
  checked against int64 again.
* A frame is validated completely before anything changes, so a ``FrameError`` leaves the book
  untouched (atomicity by construction).

Byte offsets in error messages are not computed (``offset`` is ``None``); the tests only
require the reference to raise ``FrameError`` in the same cases as the core.
"""
from __future__ import annotations

import json.decoder
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from obengine import DEFAULT_SCALES, Status
from obengine.errors import FrameError

__all__ = [
    "MAX_SCALE",
    "WIDE_MAX_SCALE",
    "RefBook",
    "RefBookSet",
    "BookFrame",
    "Change",
    "parse_frame",
    "parse_json",
    "decimal_places",
    "to_units",
]

#: The scales a book can be made with, and the most decimal places of CS, CP and the type.
MAX_SCALE = 18
INT64_MAX = 2**63 - 1
#: rules.md, "Numbers": P and A are values a .NET decimal holds, m * 10**-s with s <= 28 and
#: m < 2**96; so a wide book's scales go up to 28.
WIDE_MAX_SCALE = 28
DECIMAL_M_LIMIT = 2**96
MAX_PAIR_BYTES = 64

# RFC 8259 number, ASCII digits only (``\d`` would also match other scripts' digits).
NUMBER_GRAMMAR = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?")
JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")

PAYLOAD_KEYS = frozenset({"CS", "PS", "event", "AO", "BO"})
LEVEL_KEYS_431 = frozenset({"P", "A"})  # CP is an unknown key in a 431
LEVEL_KEYS_432 = frozenset({"P", "A", "CP"})


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


class JNumber:
    """A JSON number token, kept as its source text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"JNumber({self.text!r})"


class JString(str):
    """A JSON string value (decoded); ``raw`` is the text between its quotes as written."""

    raw: str


class JObject:
    """A JSON object as the list of its ``(key, value)`` pairs, in order, duplicates kept.
    (Deliberately not a list subclass, so that it is never mistaken for a JSON array.)"""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self.pairs)

    def __repr__(self) -> str:
        return f"JObject({self.pairs!r})"


def _scan_string(text: str, end: int, strict: bool) -> tuple[JString, int]:
    value, new_end = json.decoder.scanstring(text, end, strict)
    string = JString(value)
    string.raw = text[end : new_end - 1]
    return string, new_end


def _make_scanner() -> Any:
    """A JSON value scanner like ``json.scanner.py_make_scanner``, but: objects become
    ``JObject``, strings ``JString``, numbers ``JNumber``; ``NaN``/``Infinity`` are refused."""
    memo: dict[str, str] = {}

    def scan(text: str, idx: int) -> tuple[Any, int]:
        try:
            char = text[idx]
        except IndexError:
            raise StopIteration(idx) from None
        if char == '"':
            return _scan_string(text, idx + 1, True)
        if char == "{":
            return json.decoder.JSONObject((text, idx + 1), True, scan, None, JObject, memo)
        if char == "[":
            return json.decoder.JSONArray((text, idx + 1), scan)
        for word, value in (("null", None), ("true", True), ("false", False)):
            if text.startswith(word, idx):
                return value, idx + len(word)
        match = NUMBER_GRAMMAR.match(text, idx)
        if match is not None:
            return JNumber(match.group()), match.end()
        raise StopIteration(idx)

    return scan


def parse_json(text: str) -> Any:
    """Parse one JSON text (RFC 8259) into JObject / list / JString / JNumber / bool / None."""
    scan = _make_scanner()
    try:
        start = JSON_WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
        value, end = scan(text, start)
    except StopIteration as exc:
        raise FrameError(f"invalid JSON: expecting a value at character {exc.value}") from None
    except RecursionError:
        raise FrameError("invalid JSON: nested too deeply for the reference parser") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise FrameError(f"invalid JSON: {exc}") from None
    end = JSON_WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
    if end != len(text):
        raise FrameError(f"invalid JSON: extra data at character {end}")
    if _depth(value) > MAX_DEPTH:
        raise FrameError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


#: rules.md: nesting deeper than this many arrays/objects (the frame's own array is 1) is an error.
MAX_DEPTH = 256


def _depth(value: Any) -> int:
    """How many arrays/objects deep value nests (0 for a scalar), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, JObject)):
            deepest = max(deepest, level)
            children = [v for _, v in item] if isinstance(item, JObject) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def frame_text(frame: Any) -> str:
    """The frame as text: ``str`` must be encodable as UTF-8, anything else is a buffer of
    UTF-8 bytes."""
    if isinstance(frame, str):
        try:
            frame.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FrameError(f"frame is not valid Unicode: {exc.reason}") from None
        return frame
    data = memoryview(frame).tobytes()  # TypeError for a non-buffer, as for the core
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"frame is not valid UTF-8: {exc.reason}") from None


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


def number_text(value: Any) -> str | None:
    """The text of a JSON number, or of a string holding exactly a JSON number, else None."""
    if isinstance(value, JNumber):
        return value.text
    if isinstance(value, JString) and NUMBER_GRAMMAR.fullmatch(value.raw):
        return value.raw
    return None


@dataclass(frozen=True)
class Limit:
    """What a number must be to be read at all: at most ``places`` decimal places, and
    ``m < m_limit`` where the value is ``±m * 10**-s`` with the smallest ``s >= 0``."""

    places: int
    m_limit: int
    name: str  # for messages


#: P and A (rules.md: a .NET decimal).
DECIMAL = Limit(WIDE_MAX_SCALE, DECIMAL_M_LIMIT, "a .NET decimal (m < 2**96)")
#: CS, CP and the frame type (rules.md: fit int64 with s <= 18).
INT64 = Limit(MAX_SCALE, INT64_MAX + 1, "int64")


def exact_decimal(text: str, fail: Any, limit: Limit) -> Decimal:
    """The exact value of a JSON number's text, after checking it against ``limit``: write it
    as ``±m * 10**-s`` with ``m`` and ``s >= 0`` as small as possible; then ``s`` must be at
    most ``limit.places`` and ``m`` below ``limit.m_limit``."""
    match = NUMBER_GRAMMAR.fullmatch(text)
    assert match is not None
    sign, integer, fraction, exponent_text = match.groups()
    fraction = fraction or ""
    digits = (integer + fraction).lstrip("0")
    if not digits:
        return Decimal(0)  # zero whatever its spelling (m = 0, s = 0); -0 is 0
    too_many_places = f"more than {limit.places} decimal places"
    too_big = f"does not fit {limit.name}"
    exponent_text = (exponent_text or "0").lstrip("+")
    exponent_negative = exponent_text.startswith("-")
    exponent_digits = exponent_text.lstrip("-").lstrip("0") or "0"
    if len(exponent_digits) > 30:  # astronomically large or small: decide without int()
        fail(too_many_places if exponent_negative else too_big)
    exponent = int(exponent_digits) * (-1 if exponent_negative else 1) - len(fraction)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    # value = ±stripped * 10**exponent, the last digit of stripped non-zero
    places = max(0, -exponent)  # s
    if places > limit.places:
        fail(too_many_places)
    # m = stripped * 10**(exponent + places); count its digits before making it
    if len(stripped) + exponent + places > len(str(limit.m_limit)):
        fail(too_big)
    if int(stripped) * 10 ** (exponent + places) >= limit.m_limit:
        fail(too_big)
    return Decimal((1 if sign else 0, tuple(int(d) for d in stripped), exponent))


def decimal_places(value: Decimal) -> int:
    """Decimal places of a value after dropping the trailing zeros of its fraction."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return 0
    exponent += len(digits) - len(significant)
    return max(0, -exponent)


def to_units(value: Decimal, scale: int) -> int:
    """``value * 10**scale`` as an exact int (the scale must hold all of the value's places)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + scale
    if shift >= 0:
        units = coefficient * 10**shift
    else:
        units, remainder = divmod(coefficient, 10**-shift)
        assert remainder == 0, f"{value} has more than {scale} decimal places"
    return -units if sign else units


def serial_delta(cs: int, seq: int) -> int:
    """``(cs - seq) mod 2**32`` read as a signed 32-bit integer."""
    delta = (cs - seq) % 2**32
    return delta - 2**32 if delta >= 2**31 else delta


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One AO/BO entry. A 431 entry is a ``cp == 1`` change."""

    side: str  # "asks" (AO) or "bids" (BO)
    cp: int
    price: Decimal
    amount: Decimal | None  # None only for a 432 CP 3 without A
    field: str  # "AO[3]"


@dataclass(frozen=True)
class BookFrame:
    kind: int  # 431 or 432
    pair: str
    cs: int
    changes: tuple[Change, ...]  # AO entries then BO entries, each in array order

    def price_places(self) -> int:
        return max((decimal_places(c.price) for c in self.changes), default=0)

    def amount_places(self) -> int:
        return max(
            (decimal_places(c.amount) for c in self.changes if c.amount is not None), default=0
        )


class _Context:
    """What is known of a frame so far, for error messages."""

    def __init__(self) -> None:
        self.pair: str | None = None
        self.cs: int | None = None

    def fail(self, reason: str) -> Any:
        raise FrameError(reason, pair=self.pair, cs=self.cs)


def _known_keys(obj: JObject, known: frozenset[str], where: str, ctx: _Context) -> dict[str, Any]:
    """The known keys of an object (unknown ones skipped); a known key twice is an error."""
    found: dict[str, Any] = {}
    for key, value in obj:
        if key in known:
            if key in found:
                ctx.fail(f"{where}{key}: duplicate key")
            found[key] = value
    return found


def _number(value: Any, field: str, ctx: _Context, limit: Limit) -> Decimal:
    text = number_text(value)
    if text is None:
        ctx.fail(f"{field}: not a number")
    assert text is not None
    return exact_decimal(text, lambda reason: ctx.fail(f"{field}: {reason}"), limit)


def _integer(value: Any, field: str, ctx: _Context) -> int:
    number = _number(value, field, ctx, INT64)
    if decimal_places(number) != 0:
        ctx.fail(f"{field}: not an integer")
    return int(number)


def parse_frame(frame: Any) -> BookFrame | None:
    """Validate a frame completely. None for a valid frame that is not a book frame."""
    top = parse_json(frame_text(frame))
    ctx = _Context()
    if not isinstance(top, list) or not top:
        ctx.fail("frame is not a non-empty JSON array")
    kind_value = top[0]
    if not isinstance(kind_value, JNumber):
        ctx.fail("frame type is not an integer")
    kind_number = exact_decimal(kind_value.text, lambda reason: ctx.fail(f"frame type: {reason}"), INT64)
    if decimal_places(kind_number) != 0:
        ctx.fail("frame type is not an integer")
    kind = int(kind_number)
    if kind not in (431, 432):
        return None
    if len(top) != 2 or not isinstance(top[1], JObject):
        ctx.fail(f"a {kind} frame must be [type, object]")
    payload = _known_keys(top[1], PAYLOAD_KEYS, "", ctx)

    # pair: PS when a string, else event when a string
    for key in ("PS", "event"):
        if payload.get(key) is not None and not isinstance(payload[key], JString):
            ctx.fail(f"{key}: not a string or null")
    pair = payload.get("PS")
    if pair is None:
        pair = payload.get("event")
    if pair is None:
        ctx.fail("no pair: PS and event are missing or null")
    try:
        pair_bytes = pair.encode("utf-8")  # an escaped lone surrogate has no UTF-8 form
    except UnicodeEncodeError:
        ctx.fail(f"PS/event: pair name {pair!r} is not valid Unicode")
    if not pair or len(pair_bytes) > MAX_PAIR_BYTES:
        ctx.fail(f"PS/event: bad pair name {pair!r}")
    ctx.pair = str(pair)

    if "CS" not in payload:
        ctx.fail("CS: missing")
    ctx.cs = _integer(payload["CS"], "CS", ctx)

    changes: list[Change] = []
    level_keys = LEVEL_KEYS_432 if kind == 432 else LEVEL_KEYS_431
    for key, side in (("AO", "asks"), ("BO", "bids")):
        entries = payload.get(key, [])
        if not isinstance(entries, list):
            ctx.fail(f"{key}: not an array")
        for i, entry in enumerate(entries):
            where = f"{key}[{i}]"
            if not isinstance(entry, JObject):
                ctx.fail(f"{where}: not an object")
            fields = _known_keys(entry, level_keys, f"{where}.", ctx)
            if "P" not in fields:
                ctx.fail(f"{where}.P: missing")
            price = _number(fields["P"], f"{where}.P", ctx, DECIMAL)
            if price <= 0:
                ctx.fail(f"{where}.P: price must be > 0")
            cp = 1
            if kind == 432:
                if "CP" not in fields:
                    ctx.fail(f"{where}.CP: missing")
                cp = _integer(fields["CP"], f"{where}.CP", ctx)
                if cp not in (0, 1, 3):
                    ctx.fail(f"{where}.CP: unknown change kind {cp}")
            amount = None
            if "A" in fields:
                amount = _number(fields["A"], f"{where}.A", ctx, DECIMAL)
                if amount < 0:
                    ctx.fail(f"{where}.A: amount must be >= 0")
            elif cp != 3:
                ctx.fail(f"{where}.A: missing")
            changes.append(Change(side, cp, price, amount, where))
    return BookFrame(kind, ctx.pair, ctx.cs, tuple(changes))


# --------------------------------------------------------------------------------------------
# Book
# --------------------------------------------------------------------------------------------


def _check_scale(name: str, scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise TypeError(f"{name} must be an int")
    if not 0 <= scale <= MAX_SCALE:
        raise ValueError(f"{name} must be in 0..{MAX_SCALE}, got {scale}")
    return scale


def apply_change(levels: dict[Decimal, Decimal], change: Change) -> int:
    """Apply one change to one side; returns the number of anomalies (0 or 1)."""
    present = change.price in levels
    if change.cp == 3:
        if present:
            del levels[change.price]
            return 0
        return 1
    assert change.amount is not None
    if change.amount == 0:
        levels.pop(change.price, None)
        return 1
    levels[change.price] = change.amount
    if change.cp == 0:
        return 0 if present else 1
    return 1 if present else 0  # CP 1


class RefBook:
    """The reference book of one pair. Same attribute names as ``obengine.Book``."""

    def __init__(self, pair: str, price_scale: int, amount_scale: int) -> None:
        if not isinstance(pair, str):
            raise TypeError("pair must be a str")
        self.pair = pair
        self.price_scale = _check_scale("price_scale", price_scale)
        self.amount_scale = _check_scale("amount_scale", amount_scale)
        self.seq: int | None = None
        self.synced = False
        self.anomalies = 0
        self.wide = False  # rules.md, "Wide books": True from the first frame int64 cannot hold
        self._asks: dict[Decimal, Decimal] = {}
        self._bids: dict[Decimal, Decimal] = {}

    def __repr__(self) -> str:
        return (
            f"RefBook({self.pair!r}, scales=({self.price_scale}, {self.amount_scale}), "
            f"seq={self.seq}, synced={self.synced}, anomalies={self.anomalies}, wide={self.wide}, "
            f"bids={self.levels()[0]}, asks={self.levels()[1]})"
        )

    # -- reading ---------------------------------------------------------------------------

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(bids, asks)`` as lists of ``(price_units, amount_units)``, best first."""

        def side(levels: dict[Decimal, Decimal], descending: bool) -> list[tuple[int, int]]:
            return [
                (to_units(price, self.price_scale), to_units(levels[price], self.amount_scale))
                for price in sorted(levels, reverse=descending)
            ]

        return side(self._bids, True), side(self._asks, False)

    # -- applying ---------------------------------------------------------------------------

    def needs_wide(self, frame: BookFrame, price_scale: int, amount_scale: int) -> bool:
        """rules.md, "Wide books": whether int64 cannot hold what an applied frame needs, at the
        scales it raises the book to: a scale above 18, a P or A of the frame (each one, the
        amount of a CP 3 and zero amounts included) above int64 in units, or, for a 432, a held
        value above int64 once rescaled (whether or not the frame then deletes it)."""
        if price_scale > MAX_SCALE or amount_scale > MAX_SCALE:
            return True
        prices = [change.price for change in frame.changes]
        amounts = [change.amount for change in frame.changes if change.amount is not None]
        if frame.kind == 432:  # a 431 empties the book: what it held is not rescaled
            prices += [*self._asks, *self._bids]
            amounts += [*self._asks.values(), *self._bids.values()]
        return any(to_units(p, price_scale) > INT64_MAX for p in prices) or any(
            to_units(a, amount_scale) > INT64_MAX for a in amounts
        )

    def apply(self, frame: Any) -> Status:
        book_frame = parse_frame(frame)
        if book_frame is None:
            return Status.IGNORED
        return self.apply_parsed(book_frame)

    def apply_parsed(self, frame: BookFrame) -> Status:
        ctx = _Context()
        ctx.pair, ctx.cs = frame.pair, frame.cs
        if frame.pair != self.pair:
            ctx.fail(f"frame for pair {frame.pair}, this book is {self.pair}")

        if frame.kind == 432:
            if not self.synced:
                return Status.GAP
            assert self.seq is not None
            delta = serial_delta(frame.cs, self.seq)
            if delta <= 0:
                return Status.STALE
            if delta > 1:
                self.synced = False
                return Status.GAP

        # Applied: a 431, or a 432 with delta == 1. Rescale first (nothing can fail any more:
        # every value of a parsed frame can be held, in a wide book if int64 cannot hold it).
        price_scale = max(self.price_scale, frame.price_places())
        amount_scale = max(self.amount_scale, frame.amount_places())
        wide = self.wide or self.needs_wide(frame, price_scale, amount_scale)
        if frame.kind == 431:
            asks: dict[Decimal, Decimal] = {}
            bids: dict[Decimal, Decimal] = {}
        else:
            asks, bids = dict(self._asks), dict(self._bids)

        anomalies = 0
        for change in frame.changes:
            anomalies += apply_change(asks if change.side == "asks" else bids, change)

        # commit
        self._asks, self._bids = asks, bids
        self.price_scale, self.amount_scale = price_scale, amount_scale
        self.wide = wide
        self.seq = frame.cs
        self.synced = True
        self.anomalies += anomalies
        if asks and bids and max(bids) >= min(asks):
            self.synced = False
            return Status.CROSSED
        return Status.APPLIED


# --------------------------------------------------------------------------------------------
# BookSet
# --------------------------------------------------------------------------------------------


class RefBookSet(Mapping[str, RefBook]):
    """Routes book frames by pair; creates a pair's book on first sight, after validation."""

    def __init__(self, scales: Mapping[str, tuple[int, int]] | None = None) -> None:
        self._scales = dict(scales or {})
        self._books: dict[str, RefBook] = {}

    def scales_for(self, pair: str) -> tuple[int, int]:
        if pair in self._scales:
            return self._scales[pair]
        return DEFAULT_SCALES.get(pair, (0, 0))

    def apply(self, frame: Any) -> tuple[str | None, Status]:
        book_frame = parse_frame(frame)
        if book_frame is None:
            return None, Status.IGNORED
        book = self._books.get(book_frame.pair)
        if book is None:
            new_book = RefBook(book_frame.pair, *self.scales_for(book_frame.pair))
            status = new_book.apply_parsed(book_frame)  # a FrameError creates no book
            self._books[book_frame.pair] = new_book
            return book_frame.pair, status
        return book_frame.pair, book.apply_parsed(book_frame)

    def __getitem__(self, pair: str) -> RefBook:
        return self._books[pair]

    def __iter__(self) -> Iterator[str]:
        return iter(self._books)

    def __len__(self) -> int:
        return len(self._books)
