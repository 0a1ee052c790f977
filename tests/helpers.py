"""Frame builders and state readers shared by the tests (both implementations)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from obengine import FrameError
from reference import RefBook

PAIR = "BTCTRY"

Level = tuple[int, int]
#: ``(bids, asks, price_scale, amount_scale, seq, synced, anomalies, wide)``
State = tuple[list[Level], list[Level], int, int, "int | None", bool, int, bool]


def _dump(frame: Any) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _book_frame(kind: int, cs: Any, asks: list[dict[str, Any]], bids: list[dict[str, Any]], pair: str) -> str:
    """A book frame laid out as the exchange sends it."""
    return _dump(
        [
            kind,
            {"CS": cs, "PS": pair, "AO": asks, "BO": bids, "channel": "obdiff", "event": pair, "type": kind},
        ]
    )


def f431(
    cs: Any,
    asks: Iterable[Sequence[Any]] = (),
    bids: Iterable[Sequence[Any]] = (),
    pair: str = PAIR,
) -> str:
    """A full book as the exchange sends it; levels are ``(P, A)``, values as given (str/int)."""
    return _book_frame(431, cs, [{"A": a, "P": p} for p, a in asks], [{"A": a, "P": p} for p, a in bids], pair)


def _entry(level: Sequence[Any]) -> dict[str, Any]:
    """A 432 entry in the exchange's member order: CP, P, A."""
    p, a, cp = level
    entry: dict[str, Any] = {"CP": cp, "P": p}
    if a is not None:
        entry["A"] = a
    return entry


def f432(
    cs: Any,
    asks: Iterable[Sequence[Any]] = (),
    bids: Iterable[Sequence[Any]] = (),
    pair: str = PAIR,
) -> str:
    """A change set; entries are ``(P, A, CP)``, ``A`` None to leave it out."""
    return _book_frame(432, cs, [_entry(level) for level in asks], [_entry(level) for level in bids], pair)


#: The base book most tests start from (``book`` fixture): two levels a side, as ``(P, A)``.
BASE_ASKS = [("2150010", "0.5"), ("2150020", "1.25")]
BASE_BIDS = [("2150000", "0.1"), ("2149990", "2")]


def raw(frame: Any) -> str:
    """A frame from a Python structure (for hand-made payloads)."""
    return _dump(frame)


def _units(view: Any) -> list[Level]:
    """A core view (an int64 array of a narrow book, an object array of Python ints of a wide
    one) as ``(price_units, amount_units)`` tuples; anything else in it (a float) is a failure."""
    rows = view.tolist()  # Python ints either way
    for row in rows:
        assert len(row) == 2 and all(type(x) is int for x in row), (view.dtype, row)
    return [(p, a) for p, a in rows]


def levels(book: Any) -> tuple[list[Level], list[Level]]:
    """``(bids, asks)`` as lists of ``(price_units, amount_units)`` ints, best first."""
    if isinstance(book, RefBook):
        return book.levels()
    return _units(book.bids), _units(book.asks)


def state(book: Any) -> State:
    """Everything a frame may change, ``wide`` last."""
    bids, asks = levels(book)
    return (
        bids,
        asks,
        book.price_scale,
        book.amount_scale,
        book.seq,
        book.synced,
        book.anomalies,
        book.wide,
    )


def outcome(book: Any, frame: Any) -> Any:
    """What ``apply`` returns (a ``Status``, or a BookSet's ``(pair, Status)``), or ``"FrameError"``."""
    try:
        return book.apply(frame)
    except FrameError:
        return "FrameError"


def set_state(books: Any) -> dict[str, State]:
    return {pair: state(books[pair]) for pair in books}


def as_bytes(frame: Any) -> bytes:
    """A frame given as ``str``, ``bytes`` or a buffer, as the UTF-8 bytes a recording holds."""
    return frame.encode("utf-8") if isinstance(frame, str) else bytes(frame)


def record_block(frames: Iterable[bytes], wall0: int = 0) -> bytes:
    """A recording block's records (docs/recording.md): each frame a FRAME record, received at
    ``wall0 + i`` ns (and monotonic ``i``)."""
    from obengine.record.format import Kind, encode_record

    return b"".join(encode_record(Kind.FRAME, wall0 + i, i, f) for i, f in enumerate(frames))


_TALLIED = ("APPLIED", "STALE", "GAP", "CROSSED")    # BookSet.tallies(): the first four counts


def block_outcome(books: Any, frame: bytes) -> Any:
    """What ``BookSet.apply`` would return for ``frame``, got through ``apply_block`` as a block
    of one FRAME record: ``(pair, Status)`` (read from what the call added to the tallies),
    ``(None, Status.IGNORED)``, or the ``FrameError`` it returned instead of raising."""
    from obengine import Status

    before = books.tallies()
    end, ignored, errors = books.apply_block(record_block([frame]))
    if errors:
        (offset, error), = errors
        assert offset == 0 and isinstance(error, FrameError), errors
        return error
    if ignored:
        return (None, Status.IGNORED)
    changed = [(pair, Status[_TALLIED[k]]) for pair, counts in books.tallies().items()
               for k in range(4) if counts[k] != before.get(pair, (0,) * 6)[k]]
    assert len(changed) == 1, f"apply_block changed the tallies by {changed}"
    return changed[0]


def modules_imported_by(module: str, candidates: Sequence[str]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has in ``sys.modules`` after importing
    ``module`` (this test process has imported everything already)."""
    import subprocess
    import sys

    code = f"import sys, {module}\nprint(','.join(m for m in {list(candidates)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]
