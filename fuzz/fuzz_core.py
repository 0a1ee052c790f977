#!/usr/bin/env python3
"""Coverage-guided fuzz target for obengine's native core (``obengine._core``), for atheris.

Each input is a *mode byte* followed by one or more frames separated by the byte 0xFF (which no
valid UTF-8 text contains, so no valid frame is lost by the split)::

    MODE FRAME [0xFF FRAME]...

The frames are applied in order to an ``obengine.Book``, to an ``obengine.BookSet`` and to their
pure-Python twins from ``tests/reference.py`` (``RefBook``, ``RefBookSet``), and, each as a
recording block of one record, to a second ``BookSet`` through ``apply_block`` (the path that
applies frames without the GIL); after every frame the harness checks what ``docs/rules.md``
promises:

* ``apply`` returns a ``Status`` (a BookSet: ``(pair, Status)``, ``(None, IGNORED)`` exactly for a
  frame that is not a book frame) or raises ``obengine.FrameError``, never another exception;
* a ``FrameError`` leaves the book (every book of the set, and the set's pairs) bit for bit
  unchanged: levels, scales, seq, synced, anomalies;
* ``FrameError.offset`` is None or within ``0..len(frame in UTF-8 bytes)``; ``.pair`` and ``.cs``
  have the right types, and agree with the reference where both know them;
* bids strictly descending and asks strictly ascending by price, prices and amounts > 0, the
  views read-only int64 ``(k, 2)`` with scales in 0..18 (a wide book, where the core has them:
  ``object`` arrays of Python ints, scales up to ``MAX_WIDE_SCALE``), a synced book never
  crossed, a ``CROSSED`` book not synced;
* differential: the core and the reference give the same status (or both raise ``FrameError``)
  and the same state after every frame, for the Book and for every book of the BookSet;
  ``apply_block`` gives what ``apply`` gives (the same status, read from its tallies, or the same
  ``FrameError`` returned instead of raised) and leaves the same books, bit for bit.

Mode byte (bits, low first):

* 0-1 how a frame is handed over: ``bytes``, ``str`` (UTF-8 with surrogateescape, so invalid bytes
  become lone surrogates), ``bytearray``, or a ``memoryview`` of an exactly sized numpy buffer
  (so AddressSanitizer sees a read one byte past the end);
* 2-4 the Book's scales: the pair's ``DEFAULT_SCALES`` (else (0, 0)), or one of ``SCALES``;
* 5   the BookSet gets ``scales={pair: scales}`` for the Book's pair (else ``None``);
* 6   the Book's pair is ``"BTCTRY"`` (else the first ``"PS":"NAME"`` written plainly in the
      frames, so that most frames are for the book);
* 7   also check the read API after every frame: ``top(n)``, ``best_bid``/``best_ask``,
      ``spread``/``mid``, ``snapshot()``.

Any broken promise raises ``AssertionError`` naming the frame, the object and what differs;
atheris then saves the input as ``crash-<sha1>``. Run it through ``fuzz/run.sh`` (see
``fuzz/README.md``). Without atheris: ``python fuzz/fuzz_core.py --explain FILE...`` replays saved
inputs and prints every frame's outcome; ``--replay FILE_OR_DIR...`` runs them silently.

Known defects of the core have their own switch below (``CHECK_...``, or the environment
``FUZZ_CHECK_...=0/1``), so that a run can go on finding other things while one is open.
"""
from __future__ import annotations

import os
import re
import sys
from decimal import Decimal
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))  # the reference model, tests/reference.py

# ----------------------------------------------------------------------------------------------
# Switches for known defects: False skips the check of that one property (and only in the
# narrow case where the defect shows), True checks it. The environment overrides each one:
# FUZZ_CHECK_ESCAPED_PAIR_OFFSET=1 (or 0), and so on; FUZZ_CHECK_ALL=1 turns them all on.
# ----------------------------------------------------------------------------------------------


def _switch(name: str, default: bool) -> bool:
    value = os.environ.get(f"FUZZ_{name}", os.environ.get("FUZZ_CHECK_ALL"))
    return default if value is None else value == "1"


# Defects fixed in a23e3c5 ("Core: fix the defects fuzzing found"): checked.

#: A Book given a frame whose pair name is escaped (``"PS":"\u0042TCTRY"``) and names another
#: pair raised FrameError with a garbage offset (large negative). False: skip the offset-range
#: check for a Book's wrong-pair error when the frame holds a backslash.
CHECK_ESCAPED_PAIR_OFFSET = _switch("CHECK_ESCAPED_PAIR_OFFSET", True)

#: A str frame holding a lone surrogate raised FrameError with the offset as a *character*
#: index. True: check it is the UTF-8 byte offset of the first lone surrogate (surrogatepass).
CHECK_STR_SURROGATE_OFFSET = _switch("CHECK_STR_SURROGATE_OFFSET", True)

#: A BookSet's FrameError had pair None although PS was read. True: for an error the reference
#: raises after reading the whole frame (a value that does not fit at the book's scales, a
#: rescale overflow), require the core's FrameError to name the pair and CS.
CHECK_BOOKSET_ERROR_PAIR = _switch("CHECK_BOOKSET_ERROR_PAIR", True)

# Found by this harness, fixed since (tests/test_found_by_fuzzing.py): checked.

#: A Book's FrameError for a str frame holding a lone surrogate had pair None (it was raised
#: before the Book named itself), where every other error of a Book names the book's pair.
#: False: accept pair None for such frames.
CHECK_STR_SURROGATE_BOOK_PAIR = _switch("CHECK_STR_SURROGATE_BOOK_PAIR", True)

#: An object key (of the payload or of a level) holding an escaped lone surrogate
#: (``"x\ud800":1``) made the core raise FrameError while the reference skips it as an unknown
#: key, as rules.md says of unknown keys. False: stop checking an input at the first such frame
#: instead of failing.
CHECK_LONE_SURROGATE_KEY = _switch("CHECK_LONE_SURROGATE_KEY", True)

#: Not a known defect, just a switch: where both the core and the reference name the pair (CS)
#: of a failing frame, they must name the same one.
CHECK_ERROR_PAIR_AGREES = _switch("CHECK_ERROR_PAIR_AGREES", True)

#: Most frames one input is cut into (the rest are ignored), and how many bytes of a frame an
#: assertion message shows.
MAX_FRAMES = 48
SHOW = 300

SEPARATOR = b"\xff"

#: The Book's scales for mode bits 2-4 (index 0: the pair's DEFAULT_SCALES, else (0, 0)).
SCALES = [None, (0, 0), (0, 8), (2, 8), (8, 8), (18, 18), (3, 0), (1, 18)]

DEFAULT_PAIR = "BTCTRY"
PAIR_NAME = re.compile(rb'"PS":"([A-Za-z0-9_-]{1,64})"')

import numpy as np  # noqa: E402

import obengine  # noqa: E402
from obengine import Book, BookSet, DEFAULT_SCALES, FrameError, Status  # noqa: E402

if os.environ.get("FUZZ_INSTRUMENT_REFERENCE", "0") == "1":
    # Python coverage of the reference's parser as extra feedback (quick mode: the normal gcc
    # build of the core gives atheris no coverage of its own).
    import atheris

    with atheris.instrument_imports(include=["reference"]):
        import reference
else:
    import reference  # noqa: E402

from helpers import as_bytes, block_outcome  # noqa: E402
from reference import RefBook, RefBookSet  # noqa: E402

# The reference parses each frame once: RefBookSet.apply calls the module's parse_frame, which
# here remembers its last frame (by identity) and gives the same result (or raises the same
# FrameError) again. The reference's parsing is most of the harness's time.
_reference_parse = reference.parse_frame
_last_parse: list[Any] = [None, None]


def parse_frame(frame: Any) -> Any:
    if _last_parse[0] is not frame:
        try:
            result: Any = _reference_parse(frame)
        except FrameError as exc:
            result = exc
        _last_parse[0], _last_parse[1] = frame, result
    result = _last_parse[1]
    if isinstance(result, FrameError):
        raise result
    return result


reference.parse_frame = parse_frame

#: Scales of a narrow book (int64 units), and of a wide one (Python ints) where the core has them.
MAX_SCALE = obengine._core.MAX_SCALE
MAX_WIDE_SCALE = getattr(obengine._core, "MAX_WIDE_SCALE", MAX_SCALE)


def is_wide(book: Any) -> bool:
    """Whether a book holds Python ints (rules.md, "Wide books"); False where the core and the
    reference have no wide books."""
    return bool(getattr(book, "wide", False))


class Mismatch(AssertionError):
    pass


class Skip(Exception):
    """A difference a switch above tolerates: the rest of the input is not checked."""


# ----------------------------------------------------------------------------------------------
# Input decoding
# ----------------------------------------------------------------------------------------------


def split_input(data: bytes) -> tuple[int, list[bytes]]:
    if not data:
        return 0, []
    return data[0], data[1:].split(SEPARATOR)[:MAX_FRAMES]


def join_input(mode: int, frames: list[bytes]) -> bytes:
    """The inverse of split_input (make_corpus.py uses it)."""
    for frame in frames:
        assert SEPARATOR not in frame
    return bytes([mode]) + SEPARATOR.join(frames)


def as_kind(frame: bytes, kind: int) -> Any:
    if kind == 0:
        return frame
    if kind == 1:
        return frame.decode("utf-8", "surrogateescape")
    if kind == 2:
        return bytearray(frame)
    # An exactly sized malloc'ed buffer (numpy's data allocation): a read past its end is a read
    # past an allocation, which AddressSanitizer reports (a bytes object has a NUL after its data).
    buf = np.empty(len(frame), dtype=np.uint8)
    buf[:] = np.frombuffer(frame, dtype=np.uint8)
    return memoryview(buf)


def utf8_len(frame: Any) -> int:
    if isinstance(frame, str):
        return len(frame.encode("utf-8", "surrogatepass"))
    return memoryview(frame).nbytes


def has_lone_surrogate(frame: Any) -> bool:
    if not isinstance(frame, str):
        return False
    try:
        frame.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def show(frame: Any) -> str:
    data = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else bytes(frame)
    text = repr(data[:SHOW])
    if len(data) > SHOW:
        text += f"... ({len(data)} bytes)"
    return f"{type(frame).__name__} {text}"


# ----------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------


def native_state(book: Any) -> tuple[Any, ...]:
    """Everything a frame may change, copied (the views are only valid until the next apply)."""
    return (
        book.bids.copy(),
        book.asks.copy(),
        book.price_scale,
        book.amount_scale,
        book.seq,
        book.synced,
        book.anomalies,
        is_wide(book),
    )


def same_rows(a: Any, b: Any) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == np.int64:
        return a.tobytes() == b.tobytes()  # bit for bit
    return a.tolist() == b.tolist()  # a wide book's Python ints


def same_native_state(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return same_rows(a[0], b[0]) and same_rows(a[1], b[1]) and a[2:] == b[2:]


def comparable(book: Any) -> tuple[Any, ...]:
    """A book's state as plain Python values, for either implementation."""
    if isinstance(book, RefBook):
        bids, asks = book.levels()
    else:
        bids = [tuple(row) for row in book.bids.tolist()]
        asks = [tuple(row) for row in book.asks.tolist()]
    return (bids, asks, book.price_scale, book.amount_scale, book.seq, book.synced, book.anomalies,
            is_wide(book))


FIELDS = ("bids", "asks", "price_scale", "amount_scale", "seq", "synced", "anomalies", "wide")


def describe_difference(core: tuple[Any, ...], ref: tuple[Any, ...]) -> str:
    parts = []
    for name, a, b in zip(FIELDS, core, ref):
        if a == b:
            continue
        if name in ("bids", "asks"):
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            parts.append(
                f"{name}: core {len(a)} levels, reference {len(b)}; first difference at level "
                f"{first}: core {a[first] if first < len(a) else None}, "
                f"reference {b[first] if first < len(b) else None}"
            )
        else:
            parts.append(f"{name}: core {a!r}, reference {b!r}")
    return "; ".join(parts)


def check_invariants(book: Any, where: str) -> None:
    wide = is_wide(book)
    for name, view, descending in (("bids", book.bids, True), ("asks", book.asks, False)):
        dtype = np.dtype(object) if wide else np.dtype(np.int64)
        if view.dtype != dtype or view.ndim != 2 or view.shape[1] != 2:
            raise Mismatch(f"{where}: {name} is {view.dtype} {view.shape}, not {dtype} (k, 2) "
                           f"({'wide' if wide else 'narrow'} book)")
        if wide:
            if any(type(x) is not int for row in view.tolist() for x in row):
                raise Mismatch(f"{where}: {name} of a wide book holds a non-int")
        elif view.flags.writeable:
            raise Mismatch(f"{where}: {name} view is writeable")
        if len(view):
            prices, amounts = view[:, 0], view[:, 1]
            steps = np.diff(prices)
            if (steps >= 0).any() if descending else (steps <= 0).any():
                raise Mismatch(f"{where}: {name} prices not strictly {'de' if descending else 'a'}"
                               f"scending: {prices.tolist()[:20]}")
            if (prices <= 0).any():
                raise Mismatch(f"{where}: {name} has a price <= 0: {view.tolist()[:20]}")
            if (amounts <= 0).any():
                raise Mismatch(f"{where}: {name} has an amount <= 0: {view.tolist()[:20]}")
    limit = MAX_WIDE_SCALE if wide else MAX_SCALE
    for name in ("price_scale", "amount_scale"):
        scale = getattr(book, name)
        if not 0 <= scale <= limit:
            raise Mismatch(f"{where}: {name} {scale} out of 0..{limit}")
    bids, asks = book.bids, book.asks
    if book.synced and len(bids) and len(asks) and bids[0, 0] >= asks[0, 0]:
        raise Mismatch(f"{where}: synced but crossed: best bid {bids[0].tolist()}, best ask "
                       f"{asks[0].tolist()}")


def check_read_api(book: Any, where: str) -> None:
    bids, asks = book.bids.copy(), book.asks.copy()
    for n in (0, 1, 5, 1000):
        tb, ta = book.top(n)
        if tb.tolist() != bids[:n].tolist() or ta.tolist() != asks[:n].tolist():
            raise Mismatch(f"{where}: top({n}) is not the first {n} rows of bids/asks")
    best_bid = tuple(bids[0].tolist()) if len(bids) else None
    best_ask = tuple(asks[0].tolist()) if len(asks) else None
    if book.best_bid != best_bid or book.best_ask != best_ask:
        raise Mismatch(f"{where}: best_bid/best_ask {book.best_bid}/{book.best_ask}, rows say "
                       f"{best_bid}/{best_ask}")
    ps = book.price_scale
    if best_bid and best_ask:
        spread = Decimal(best_ask[0] - best_bid[0]).scaleb(-ps)
        mid = (Decimal(best_ask[0] + best_bid[0]) / 2).scaleb(-ps)
        if book.spread != spread or book.mid != mid:
            raise Mismatch(f"{where}: spread/mid {book.spread}/{book.mid}, expected {spread}/{mid}")
    elif book.spread is not None or book.mid is not None:
        raise Mismatch(f"{where}: spread/mid not None with an empty side")
    snap = book.snapshot()
    scale = (ps, book.amount_scale)
    for name, rows in (("bids", bids), ("asks", asks)):
        want = [(Decimal(p).scaleb(-scale[0]), Decimal(a).scaleb(-scale[1])) for p, a in rows.tolist()]
        got = [(Decimal(p), Decimal(a)) for p, a in snap[name]]
        if got != want:
            raise Mismatch(f"{where}: snapshot()[{name!r}] does not match the rows")
    if (snap["pair"], snap["seq"], snap["synced"], snap["price_scale"], snap["amount_scale"]) != (
        book.pair, book.seq, book.synced, ps, book.amount_scale
    ):
        raise Mismatch(f"{where}: snapshot() header does not match the book")


# ----------------------------------------------------------------------------------------------
# One frame
# ----------------------------------------------------------------------------------------------


def core_outcome(obj: Any, frame: Any, where: str) -> Any:
    """``apply``'s result, or the FrameError it raised (anything else is a failure)."""
    try:
        return obj.apply(frame)
    except FrameError as exc:
        return exc
    except Exception as exc:
        raise Mismatch(f"{where}: apply raised {type(exc).__name__}: {exc} (only FrameError is "
                       "allowed)") from exc


def ref_outcome(call: Any, where: str) -> Any:
    try:
        return call()
    except FrameError as exc:
        return exc
    except Exception as exc:
        raise Mismatch(f"{where}: the REFERENCE raised {type(exc).__name__}: {exc}") from exc


def check_error(
    exc: FrameError,
    frame: Any,
    where: str,
    ref_exc: FrameError,
    after_parse: bool,
    wrong_pair: bool,
    is_set: bool,
    own_pair: str | None,
) -> None:
    """The promises about a FrameError's attributes."""
    offset = exc.offset
    size = utf8_len(frame)
    if offset is not None:
        skip = (
            not CHECK_ESCAPED_PAIR_OFFSET
            and wrong_pair
            and not is_set
            and "\\" in (frame if isinstance(frame, str) else bytes(frame).decode("latin-1"))
        )
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise Mismatch(f"{where}: FrameError.offset is {offset!r}, not an int or None")
        if not skip and not 0 <= offset <= size:
            raise Mismatch(f"{where}: FrameError.offset {offset} outside 0..{size} ({exc})")
    surrogate = has_lone_surrogate(frame)
    if CHECK_STR_SURROGATE_OFFSET and surrogate:
        first = next(i for i, ch in enumerate(frame) if 0xD800 <= ord(ch) <= 0xDFFF)
        want = len(frame[:first].encode("utf-8", "surrogatepass"))
        if offset != want:
            raise Mismatch(f"{where}: lone surrogate at byte {want} (character {first}), "
                           f"FrameError.offset is {offset}")
    if exc.pair is not None and not isinstance(exc.pair, str):
        raise Mismatch(f"{where}: FrameError.pair is {exc.pair!r}")
    if exc.cs is not None and (not isinstance(exc.cs, int) or isinstance(exc.cs, bool)):
        raise Mismatch(f"{where}: FrameError.cs is {exc.cs!r}")
    if own_pair is not None and exc.pair != own_pair and (CHECK_STR_SURROGATE_BOOK_PAIR or not surrogate):
        raise Mismatch(f"{where}: a Book's FrameError names pair {exc.pair!r}, not the book's "
                       f"{own_pair!r} ({exc})")
    if CHECK_ERROR_PAIR_AGREES:
        # (A Book names its own pair, checked above; a BookSet the frame's, as the reference.)
        if is_set and exc.pair is not None and ref_exc.pair is not None and exc.pair != ref_exc.pair:
            raise Mismatch(f"{where}: FrameError names pair {exc.pair!r}, the reference "
                           f"{ref_exc.pair!r} ({exc})")
        if exc.cs is not None and ref_exc.cs is not None and exc.cs != ref_exc.cs:
            raise Mismatch(f"{where}: FrameError names CS {exc.cs}, the reference {ref_exc.cs} ({exc})")
    if after_parse and (CHECK_BOOKSET_ERROR_PAIR or not is_set):
        # The whole frame was read: the core knows its pair and CS.
        if exc.pair is None or exc.cs is None:
            raise Mismatch(f"{where}: FrameError after the whole frame was read names pair "
                           f"{exc.pair!r}, CS {exc.cs!r} (the frame's are {ref_exc.pair!r}, "
                           f"{ref_exc.cs!r}): {exc}")


class Run:
    """The four objects one input drives, and the checks after each frame."""

    def __init__(self, mode: int, frames: list[bytes], log: Any = None) -> None:
        self.kind = mode & 3
        self.read_api = bool(mode & 0x80)
        self.log = log
        pair = DEFAULT_PAIR
        if not mode & 0x40:
            for raw in frames:  # the first plainly written pair name (a full parse costs more)
                found = PAIR_NAME.search(raw)
                if found:
                    pair = found.group(1).decode("ascii")
                    break
        choice = SCALES[(mode >> 2) & 7]
        scales = choice if choice is not None else DEFAULT_SCALES.get(pair, (0, 0))
        set_scales = {pair: scales} if mode & 0x20 else None
        self.book = Book(pair, *scales)
        self.ref_book = RefBook(pair, *scales)
        self.books = BookSet(set_scales)
        self.ref_books = RefBookSet(set_scales)
        self.block_books = BookSet(set_scales)
        self.pair = pair
        if log:
            log(f"mode 0x{mode:02x}: {['bytes', 'str', 'bytearray', 'memoryview'][self.kind]}, "
                f"Book({pair!r}, {scales[0]}, {scales[1]}), BookSet(scales={set_scales}), "
                f"read API {'on' if self.read_api else 'off'}")

    def frame(self, i: int, raw: bytes) -> None:
        frame = as_kind(raw, self.kind)
        where = f"frame {i} ({show(frame)})"

        # The reference, parse first: an error here is one "before the whole frame was read".
        parsed = ref_outcome(lambda: parse_frame(frame), f"{where} parse")
        parse_error = isinstance(parsed, FrameError)

        # -- Book ------------------------------------------------------------------------------
        before = native_state(self.book)
        got = core_outcome(self.book, frame, f"{where} Book")
        if parse_error:
            want = parsed
        elif parsed is None:
            want = Status.IGNORED
        else:
            want = ref_outcome(lambda: self.ref_book.apply_parsed(parsed), f"{where} RefBook")
        self.compare(frame, where + " Book", got, want, before, self.book, self.ref_book, parsed, False)

        # -- BookSet ---------------------------------------------------------------------------
        before_set = {p: native_state(b) for p, b in self.books.items()}
        got = core_outcome(self.books, frame, f"{where} BookSet")
        if parse_error:
            want = parsed
        else:
            want = ref_outcome(lambda: self.ref_books.apply(frame), f"{where} RefBookSet")
        if isinstance(got, FrameError) or isinstance(want, FrameError):
            self.compare_error(frame, where + " BookSet", got, want, parsed, True)
            after = {p: native_state(b) for p, b in self.books.items()}
            if after.keys() != before_set.keys() or any(
                not same_native_state(after[p], before_set[p]) for p in after
            ):
                raise Mismatch(f"{where} BookSet: a FrameError changed the set: pairs "
                               f"{sorted(before_set)} -> {sorted(after)} ({got})")
        else:
            if not isinstance(got, tuple) or len(got) != 2 or not isinstance(got[1], Status):
                raise Mismatch(f"{where} BookSet: apply returned {got!r}, not (pair, Status)")
            if got != want:
                raise Mismatch(f"{where} BookSet: core returned {got!r}, reference {want!r}")
            if (got[0] is None) != (got[1] is Status.IGNORED):
                raise Mismatch(f"{where} BookSet: apply returned {got!r}")
        if list(self.books) != list(self.ref_books):
            raise Mismatch(f"{where} BookSet: pairs {list(self.books)}, reference "
                           f"{list(self.ref_books)}")
        for p in self.books:
            self.compare_state(f"{where} BookSet[{p!r}]", self.books[p], self.ref_books[p])
        self.compare_block(frame, raw, where, got)
        if self.log:
            self.log(f"  {i}: {show(frame)}\n     Book -> {self.outcome_text(self.book_result)}; "
                     f"BookSet -> {self.outcome_text(got)}")

    def compare_block(self, frame: Any, raw: bytes, where: str, got: Any) -> None:
        """The same frame through ``apply_block``, as a block of one FRAME record, into a set
        that has had every frame before it the same way: what ``BookSet.apply`` did."""
        where += " BookSet.apply_block"
        books = self.block_books
        if has_lone_surrogate(frame):       # no UTF-8 to record: the str path, as apply took it
            outcome = core_outcome(books, frame, where)
        else:
            try:
                outcome = block_outcome(books, as_bytes(frame))
            except AssertionError as exc:
                raise Mismatch(f"{where}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - any exception is a finding
                raise Mismatch(f"{where}: raised {type(exc).__name__}: {exc}") from exc
        if isinstance(got, FrameError) or isinstance(outcome, FrameError):
            if not (isinstance(got, FrameError) and isinstance(outcome, FrameError)) or (
                (str(outcome), outcome.pair, outcome.cs, outcome.offset) != (str(got), got.pair, got.cs, got.offset)
            ):
                raise Mismatch(f"{where}: {self.outcome_text(outcome)}, apply: {self.outcome_text(got)}")
        elif outcome != got:
            raise Mismatch(f"{where}: {outcome!r}, apply: {got!r}")
        if list(books) != list(self.books):
            raise Mismatch(f"{where}: pairs {list(books)}, apply's {list(self.books)}")
        for p in books:
            if not same_native_state(native_state(books[p]), native_state(self.books[p])):
                raise Mismatch(f"{where}: book {p!r} differs from apply's: "
                               f"{describe_difference(comparable(books[p]), comparable(self.books[p]))}")

    @staticmethod
    def outcome_text(result: Any) -> str:
        if isinstance(result, FrameError):
            return f"FrameError({str(result)!r}, pair={result.pair!r}, cs={result.cs!r}, offset={result.offset!r})"
        return repr(result)

    def compare(self, frame: Any, where: str, got: Any, want: Any, before: Any, book: Any,
                ref: Any, parsed: Any, is_set: bool) -> None:
        self.book_result = got
        if isinstance(got, FrameError) or isinstance(want, FrameError):
            self.compare_error(frame, where, got, want, parsed, is_set)
            after = native_state(book)
            if not same_native_state(before, after):
                raise Mismatch(f"{where}: a FrameError changed the book: "
                               f"{describe_difference(comparable_from(after), comparable_from(before))} ({got})")
        else:
            if not isinstance(got, Status):
                raise Mismatch(f"{where}: apply returned {got!r}, not a Status")
            if got is not want:
                raise Mismatch(f"{where}: core returned {got!r}, reference {want!r}")
            if got is Status.CROSSED and book.synced:
                raise Mismatch(f"{where}: CROSSED but the book is still synced")
        self.compare_state(where, book, ref)

    def compare_error(self, frame: Any, where: str, got: Any, want: Any, parsed: Any,
                      is_set: bool) -> None:
        if not isinstance(got, FrameError):
            raise Mismatch(f"{where}: core returned {got!r}, the reference raised FrameError: {want}")
        if not isinstance(want, FrameError):
            if not CHECK_LONE_SURROGATE_KEY and "lone surrogate in a key" in str(got):
                raise Skip(f"{where}: CHECK_LONE_SURROGATE_KEY is off ({got})")
            raise Mismatch(f"{where}: core raised FrameError ({got}; offset {got.offset}), the "
                           f"reference returned {want!r}")
        after_parse = not isinstance(parsed, FrameError)
        wrong_pair = after_parse and parsed is not None and parsed.pair != self.pair
        check_error(got, frame, where, want, after_parse, wrong_pair, is_set,
                    None if is_set else self.pair)

    def compare_state(self, where: str, book: Any, ref: Any) -> None:
        check_invariants(book, where)
        core, expected = comparable(book), comparable(ref)
        if core != expected:
            raise Mismatch(f"{where}: state differs from the reference: "
                           f"{describe_difference(core, expected)}")
        if self.read_api:
            check_read_api(book, where)


def comparable_from(state: tuple[Any, ...]) -> tuple[Any, ...]:
    return ([tuple(r) for r in state[0].tolist()], [tuple(r) for r in state[1].tolist()], *state[2:])


def test_one_input(data: bytes) -> None:
    mode, frames = split_input(data)
    if not frames:
        return
    run = Run(mode, frames)
    try:
        for i, raw in enumerate(frames):
            run.frame(i, raw)
    except Skip:
        pass


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------


def explain(paths: list[str]) -> int:
    """Replay saved inputs without atheris, printing every frame's outcome."""
    failed = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        print(f"== {path} ({len(data)} bytes)")
        mode, frames = split_input(data)
        if not frames:
            print("  (empty input)")
            continue
        run = Run(mode, frames, log=print)
        try:
            for i, raw in enumerate(frames):
                run.frame(i, raw)
        except AssertionError as exc:
            failed += 1
            print(f"  FAILED: {exc}")
        except Skip as exc:
            print(f"  skipped from here: {exc}")
    return 1 if failed else 0


def replay(paths: list[str]) -> int:
    """Run every input of the given files and folders once, without atheris (coverage runs,
    regression checks); print the failures."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, name) for name in os.listdir(path))
        else:
            files.append(path)
    failed = 0
    for name in files:
        with open(name, "rb") as f:
            data = f.read()
        try:
            test_one_input(data)
        except AssertionError as exc:
            failed += 1
            print(f"FAILED {name}: {exc}")
    print(f"replayed {len(files)} inputs, {failed} failed")
    return 1 if failed else 0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--explain":
        sys.exit(explain(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--replay":
        sys.exit(replay(sys.argv[2:]))
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
