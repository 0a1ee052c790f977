"""Keyframes: book frames, in the exchange's own spelling, that rebuild a book exactly.

A recorder writes them at the start of every segment (``Recording(keyframes=...)``), so that a
replay can start at any segment: it applies the segment's KEYFRAME records, in order, to a fresh
:class:`obengine.BookSet` and then goes on with the segment's frames.

Why sometimes two frames. A 431 carries levels and a CS, but not the book's scales: a book's
scales only go up (``docs/rules.md``, "Rescaling") and the book may have reached them with a
value it no longer holds (an amount of 12 places that has been deleted since; and every book
made with the bundled scales, say BTCTRY at 8 amount places, whose amounts now need fewer). A
book that has turned wide stays wide, also when its values would now fit int64. So when the
levels alone would not bring a fresh book (at any smaller scales, ``(0, 0)`` included) to this
book's scales and width, :func:`snapshot_frames` adds one *helper level* to the 431: an ask
above every price of the book (or, where that cannot be, a bid below every price), whose price
has exactly ``price_scale`` decimal places and whose amount exactly ``amount_scale`` (and is
above int64 in units when the book must turn wide). The 431 carries CS ``seq - 1``; a 432 with
CS ``seq`` then deletes the helper level (a ``CP 3`` of a present level: no anomaly). The result:
the same levels, ``seq``, scales and width as the book, synced, no anomaly counted.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from obengine._core import Book

__all__ = ["keyframes", "scales", "snapshot_frame", "snapshot_frames"]

_INT64_MAX = 2**63 - 1
_CS_MIN = -(2**63 - 1)  # the lowest CS a book takes
_M_LIMIT = 2**96  # a .NET decimal's mantissa is below this (docs/rules.md, "Numbers")
_NARROW_SCALE = 18


def _canonical(text: str) -> str:
    """``"2.500000"`` -> ``"2.5"``, ``"90.00"`` -> ``"90"``: how the exchange writes numbers."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _places(text: str) -> int:
    return len(text) - text.index(".") - 1 if "." in text else 0


def _units(text: str, scale: int) -> int:
    """``text`` (canonical, at most ``scale`` places) in units of ``10**-scale``."""
    whole, _, frac = text.partition(".")
    shift: int = 10 ** (scale - len(frac))  # scale >= len(frac)
    return int(whole + frac) * shift


def decimal_text(units: int, scale: int) -> str:
    """``units * 10**-scale`` written canonically."""
    digits = str(units)
    if scale == 0:
        return digits
    digits = digits.rjust(scale + 1, "0")
    whole, frac = digits[:-scale], digits[-scale:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


Level = tuple[str, str]  # (P, A), canonical


def _book_frame(kind: int, cs: int, pair: str, asks: list[str], bids: list[str]) -> bytes:
    name = json.dumps(pair, ensure_ascii=False)
    return (
        f'[{kind},{{"CS":{cs},"PS":{name},"AO":[{",".join(asks)}],"BO":[{",".join(bids)}],'
        f'"channel":"obdiff","event":{name},"type":{kind}}}]'
    ).encode()


def _full(cs: int, pair: str, asks: list[Level], bids: list[Level]) -> bytes:
    """A 431: levels ``{"A":..,"P":..}``, asks ascending then bids descending (as given)."""
    return _book_frame(
        431,
        cs,
        pair,
        [f'{{"A":"{a}","P":"{p}"}}' for p, a in asks],
        [f'{{"A":"{a}","P":"{p}"}}' for p, a in bids],
    )


def _levels(
    book: Book, require_synced: bool = True
) -> tuple[int, str, int, int, list[Level], list[Level]] | None:
    snap = book.snapshot()
    seq = snap["seq"]
    if seq is None or (require_synced and not snap["synced"]):
        return None
    bids = [(_canonical(p), _canonical(a)) for p, a in snap["bids"]]
    asks = [(_canonical(p), _canonical(a)) for p, a in snap["asks"]]
    return seq, snap["pair"], snap["price_scale"], snap["amount_scale"], asks, bids


def snapshot_frame(book: Book, *, require_synced: bool = True) -> bytes | None:
    """A 431 of ``book``'s levels (exact decimal strings, canonical as the exchange writes
    them) with ``CS = book.seq``: what a fresh subscription would have sent for this book.

    It rebuilds the book's levels and ``seq`` exactly; its scales only as far as the levels'
    decimal places carry them (see the module docstring; :func:`snapshot_frames` rebuilds
    everything). ``None`` for a book that is not synced (never synced, or after a gap or a
    crossed book): a 431 always leaves a book synced, so no 431 describes such a book, and
    its levels are not a state the exchange vouches for. With ``require_synced=False``, ``None``
    only for a book that never synced.
    """
    got = _levels(book, require_synced)
    if got is None:
        return None
    seq, pair, _, _, asks, bids = got
    return _full(seq, pair, asks, bids)


def snapshot_frames(book: Book, *, require_synced: bool = True) -> list[bytes]:
    """The frames that make a fresh book (of any scales up to ``book``'s) equal to ``book``:
    the same levels, ``seq``, ``price_scale``, ``amount_scale`` and ``wide``, synced, with no
    anomaly. One 431 (as :func:`snapshot_frame`) when its levels carry the scales and the
    width; else a 431 with a helper level and CS ``seq - 1``, then a 432 with CS ``seq`` that
    deletes it (module docstring). Empty for a book that is not synced, or with
    ``require_synced=False`` only for one that never synced (the frames then describe its levels
    as if it were synced: a parallel replay moves books between processes that way).

    Raises:
        ValueError: no price is free for the helper level (a narrow book whose highest price is
            int64's largest unit and whose lowest bid is one unit): not a book the exchange
            can produce.
    """
    got = _levels(book, require_synced)
    if got is None:
        return []
    seq, pair, ps, scale, asks, bids = got
    every = asks + bids
    price_places = max((_places(p) for p, _ in every), default=0)
    amount_places = max((_places(a) for _, a in every), default=0)
    wide_anyway = ps > _NARROW_SCALE or scale > _NARROW_SCALE or any(
        _units(p, ps) > _INT64_MAX or _units(a, scale) > _INT64_MAX for p, a in every
    )
    make_wide = book.wide and not wide_anyway
    if price_places == ps and amount_places == scale and not make_wide:
        return [_full(seq, pair, asks, bids)]

    # The helper level: exactly ps and scale decimal places, above int64 in amount units when
    # it must make the book wide, and at a price no level has, where it crosses nothing.
    amount = decimal_text(10 ** max(19, scale) + 1 if make_wide else 1, scale)
    price_limit = _M_LIMIT if book.wide or make_wide else _INT64_MAX + 1
    top = max((_units(p, ps) for p, _ in every), default=0) + 1
    while ps and top % 10 == 0:
        top += 1
    if top < price_limit:
        helper = (decimal_text(top, ps), amount)
        first = _full(_previous_cs(seq), pair, asks + [helper], bids)
        side = "AO"
    else:
        lowest = min((_units(p, ps) for p, _ in every), default=2)
        if lowest <= 1:
            raise ValueError(f"{pair}: no free price for a keyframe's helper level")
        helper = (decimal_text(1, ps), amount)
        first = _full(_previous_cs(seq), pair, asks, bids + [helper])
        side = "BO"
    entry = f'{{"CP":3,"P":"{helper[0]}","A":"{helper[1]}"}}'
    second = _book_frame(
        432, seq, pair, [entry] if side == "AO" else [], [entry] if side == "BO" else []
    )
    return [first, second]


def gap_frame(pair: str, seq: int) -> bytes:
    """An empty 432 two past ``seq``: to a book at ``seq`` a gap, which leaves its levels and
    ``seq`` as they are and marks it unsynced (``docs/rules.md``)."""
    cs = seq + 2 if seq + 2 <= _INT64_MAX else seq + 2 - 2**32
    return _book_frame(432, cs, pair, [], [])


def _previous_cs(seq: int) -> int:
    """The CS one before ``seq`` (CS is compared modulo 2**32): ``seq - 1``, kept within what
    a book accepts (a magnitude that fits int64: -(2**63) itself is refused)."""
    return seq - 1 if seq - 1 >= _CS_MIN else seq - 1 + 2**32


def keyframes(books: Mapping[str, Book]) -> list[bytes]:
    """:func:`snapshot_frames` of every synced book, by pair name: what ``Recording``'s
    ``keyframes`` callback returns (``keyframes=lambda: keyframes(feed.books)``)."""
    out: list[bytes] = []
    for pair in sorted(books):
        out.extend(snapshot_frames(books[pair]))
    return out


def scales(books: Mapping[str, Book]) -> dict[str, list[int]]:
    """``{pair: [price_scale, amount_scale]}`` of every book, for a segment's HEADER."""
    return {pair: [book.price_scale, book.amount_scale] for pair, book in sorted(books.items())}
