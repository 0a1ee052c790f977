"""obengine's native core: raw BtcTurk websocket frames in, exact order books out.

Fixed-point invariant
---------------------
Every price and amount is held as a count of *units*: ``price_units = price * 10**price_scale``
and ``amount_units = amount * 10**amount_scale``. A narrow book (every book, at first) holds int64
units with scales (decimal places) in 0..18; a wide book holds Python ints with scales in 0..28.
Units come only from decimal text parsed digit by digit (never through a float). A value that
cannot be held exactly is never rounded: the book rescales itself exactly (raising its scale and
multiplying every stored value by a power of ten, each multiplication of int64 units checked
against INT64_MAX first), and turns wide when int64 cannot hold the result; a value beyond what
a .NET decimal holds (the exchange's own type) raises FrameError and changes nothing. The full
rules are in docs/rules.md.

Atomicity
---------
``apply`` parses and checks the whole frame into a scratch area first (_frame.pxi), then converts
every value, checks any rescale and reserves room, and only then commits; the commit itself cannot
fail. ``apply``'s scratch area is module-wide: ``apply`` holds the GIL throughout, and between
parsing and committing it allocates no object the garbage collector tracks (a collection could run
a finalizer, and that another thread's apply), except the Book for a new pair, after which it
parses the frame again if anything else was parsed meanwhile (and, if that was a frame of the same
new pair, applies this one to the book it made: a pair never gets two books).

``BookSet.apply_block`` parses into its set's own scratch area and applies the frames it can in
plain C without the GIL (_run_records: parse_frame and commit_narrow touch no Python object), so
that a thread reading and decompressing the next block runs meanwhile; a frame that needs Python
(an error, a new pair's book, more rows, the wide path) is handed back and applied under the GIL.
While it runs, the set and its books are owned by its thread (BookSet._owner, BookCore.owner):
from another thread, what would change them or read their levels raises RuntimeError, so no
thread sees a frame half applied or changes the index or a book under the block. The same thread
may still re-enter (a finalizer), as it may during ``apply``; the re-parse check above covers the
set's scratch area then.

This module knows nothing of sockets, clocks or files.
"""
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, INT64_MAX
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, memmove, memset
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM

cdef extern from "Python.h":
    unsigned long PyThread_get_thread_ident()
cimport cython

import enum as _enum
from bisect import bisect_left as _bisect_left
from decimal import Decimal as _Decimal
from typing import TypedDict as _TypedDict

import numpy as _numpy

from obengine.errors import FrameError as _FrameError
from obengine.scales import DEFAULT_SCALES as _DEFAULT_SCALES

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL

include "_codes.pxi"
include "_fixed.pxi"
include "_frame.pxi"
include "_side.pxi"

cdef enum:
    ST_APPLIED = 0
    ST_IGNORED = 1
    ST_STALE = 2
    ST_GAP = 3
    ST_CROSSED = 4

cdef enum:
    TALLY_KEYFRAMES = 5         # BookCore.tally: after the ST_ codes
    TALLY_SYNCS = 6
    TALLY_SIZE = 7

cdef enum:
    NEED_ROOM = -2              # commit_narrow: a side needs more rows (Book._reserve, under the GIL)
    NEED_WIDE = -3              # commit_narrow: the frame needs Book._commit_wide


# What a Book knows that applying a frame reads and writes, in plain C, so that
# BookSet.apply_block can apply a frame without the GIL (commit_narrow). Inside the Book object,
# which never moves: a BookSet's index points at it. What applying reads comes first, so that it
# spans as few cache lines as it can (with hundreds of books, a book is seldom in the CPU's
# nearest cache).
ctypedef struct BookCore:
    Side sides[2]               # [0] asks, [1] bids
    int64_t seq
    int scale[2]                # [0] price, [1] amount: decimal places of the int64 units; -1 when wide
    bint has_seq
    bint synced
    int64_t anomalies
    unsigned long owner         # the thread of a BookSet.apply_block running on it, else 0
    int64_t tally[TALLY_SIZE]   # what BookSet.apply_block did to this book, by ST_ code and TALLY_ index


include "_index.pxi"
include "_errors.pxi"

#: Largest scale (decimal places) of a narrow book: 10**18 is the largest power of ten in int64.
MAX_SCALE = SCALE_LIMIT
#: Largest scale of a wide book: the most decimal places a .NET decimal has.
MAX_WIDE_SCALE = WIDE_SCALE_LIMIT


class Status(_enum.IntEnum):
    """What ``apply`` did with a frame.

    APPLIED: the frame changed the book (a 431, or the next 432 in sequence).
    IGNORED: not a book frame (trades, tickers, results...); nothing changed.
    STALE: a 432 whose CS is not newer than the book's; nothing changed.
    GAP: a 432 after a missing CS, or while the book is not synced; nothing changed, and the
         book stays unsynced until the next 431 (leave and re-join the pair's obdiff).
    CROSSED: the frame was applied but left best bid >= best ask; the book is marked not synced.
    """

    APPLIED = 0
    IGNORED = 1
    STALE = 2
    GAP = 3
    CROSSED = 4


#: What ``apply`` accepts: one websocket message exactly as received.
Frame = bytes | bytearray | memoryview | str

#: ``Book.snapshot()``: the whole book as exact decimal strings.
Snapshot = _TypedDict("Snapshot", {
    "pair": str, "seq": "int | None", "synced": bool, "price_scale": int, "amount_scale": int,
    "bids": "list[tuple[str, str]]", "asks": "list[tuple[str, str]]",
})


# A recording's records (docs/recording.md): u32 length | u8 kind | i64 wall_ns | i64 mono_ns,
# little-endian, then the payload.
cdef enum:
    RECORD_HEAD = 21
    RECORD_FRAME = 1
    RECORD_KEYFRAME = 2
    RECORD_EVENT = 3

cdef inline uint32_t _le32(const unsigned char* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)

cdef inline uint64_t _le64(const unsigned char* p) noexcept nogil:
    return <uint64_t>_le32(p) | (<uint64_t>_le32(p + 4) << 32)

cdef tuple _STATUS = tuple(Status)
cdef object _IGNORED = Status.IGNORED
cdef tuple _NOT_A_BOOK_FRAME = (None, Status.IGNORED)

cdef enum:
    INITIAL_LEVELS = 128    # rows per side: the exchange's 100-level window plus headroom

# The scratch area every apply parses into (see "Atomicity" above).
cdef Parsed _PARSED
_PARSED.parses = 0
_PARSED.changes[0] = NULL
_PARSED.changes[1] = NULL
_PARSED.cap[0] = 0
_PARSED.cap[1] = 0
_PARSED.last_book = NULL


cdef inline const unsigned char* _acquire(object frame, Py_buffer* view, Py_ssize_t* size,
                                         bint* held, str pair) except NULL:
    """The frame's bytes (UTF-8 for str). If *held, release view with PyBuffer_Release. A str
    that has no UTF-8 raises FrameError naming pair (the Book's; None for a BookSet)."""
    if PyBytes_CheckExact(frame):           # what a websocket client hands over: inline
        held[0] = False
        size[0] = PyBytes_GET_SIZE(frame)
        return <const unsigned char*>PyBytes_AS_STRING(frame)
    return _acquire_other(frame, view, size, held, pair)


cdef const unsigned char* _acquire_other(object frame, Py_buffer* view, Py_ssize_t* size,
                                         bint* held, str pair) except NULL:
    cdef const char* s
    held[0] = False
    if PyUnicode_Check(frame):
        try:
            s = PyUnicode_AsUTF8AndSize(frame, size)
        except UnicodeEncodeError as e:     # a lone surrogate: no UTF-8 exists for it
            # the offset is in bytes of UTF-8, as for any frame: that of the text before it
            offset = len(frame[:e.start].encode("utf-8"))
            raise _FrameError(f"the str cannot be encoded as UTF-8: {e.reason}", pair=pair, offset=offset) from None
        return <const unsigned char*>s
    PyObject_GetBuffer(frame, view, PyBUF_SIMPLE)
    held[0] = True
    size[0] = view.len
    return <const unsigned char*>view.buf if view.buf != NULL else <const unsigned char*>b""


@cython.final
cdef class _Rows:
    """The memory of one side: cap rows of (price_units, amount_units) int64, zeroed, owned here,
    exported read-only through the buffer protocol as a (cap, 2) array. The engine writes it
    through raw pointers; numpy views of it keep this object, and so the memory, alive."""
    cdef int64_t* data
    cdef Py_ssize_t shape[2]
    cdef Py_ssize_t strides[2]

    def __dealloc__(self):
        PyMem_Free(self.data)

    def __getbuffer__(self, Py_buffer* view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("a book's levels are read-only")
        view.buf = self.data
        view.obj = self
        view.len = self.shape[0] * 2 * sizeof(int64_t)
        view.readonly = 1
        view.itemsize = sizeof(int64_t)
        view.format = INT64_FORMAT
        view.ndim = 2
        view.shape = self.shape
        view.strides = self.strides
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer* view):
        pass


cdef char* INT64_FORMAT = b"l" if sizeof(long) == 8 else b"q"


cdef _Rows _new_rows(Py_ssize_t rows):
    cdef _Rows r = _Rows.__new__(_Rows)
    r.data = <int64_t*>PyMem_Calloc(rows * 2, sizeof(int64_t))
    if r.data == NULL:
        raise MemoryError()
    r.shape[0] = rows
    r.shape[1] = 2
    r.strides[0] = 2 * sizeof(int64_t)
    r.strides[1] = sizeof(int64_t)
    return r


cdef str _units_text(object units, int scale):
    """Exact decimal text of units at scale (e.g. 12345, 2 -> '123.45')."""
    if scale == 0:
        return str(units)
    digits = str(units).rjust(scale + 1, "0")
    return digits[:-scale] + "." + digits[-scale:]


cdef int _check_scale(object value, str name) except -1:
    if not isinstance(value, int) or not 0 <= value <= SCALE_LIMIT:
        raise ValueError(f"{name} must be an int in 0..{SCALE_LIMIT}, got {value!r}")
    return 0


@cython.final
cdef class _Wide:
    """The levels of a wide book (docs/rules.md, "Wide books"): per side (0 asks, 1 bids) a list
    of keys ascending (asks: price_units, bids: -price_units, so that both are best first) and a
    list of amount_units beside it, all Python ints, at ``scale`` (price, amount)."""
    cdef readonly tuple scale
    cdef readonly list keys
    cdef readonly list amounts

    def __init__(self, scale, keys, amounts):
        self.scale = tuple(scale)
        self.keys = keys
        self.amounts = amounts

    cdef tuple level(self, int side, Py_ssize_t i):
        """``(price_units, amount_units)`` of the side's level i (0 = best)."""
        key = self.keys[side][i]
        return (key if side == 0 else -key, self.amounts[side][i])

    cdef object array(self, int side, Py_ssize_t n):
        """The side's best n levels as a new read-only (n, 2) object array of Python ints."""
        keys = self.keys[side][:n]
        out = _numpy.empty((len(keys), 2), dtype=object)
        out[:, 0] = keys if side == 0 else [-key for key in keys]
        out[:, 1] = self.amounts[side][:n]
        out.flags.writeable = False
        return out


cdef tuple _exact(const Num* n, const unsigned char* start, const unsigned char* end):
    """A parsed value as ``(m, s)``, value = m * 10**-s with s as small as it can be: read again
    from the frame's text for a wide value (see mark_wide), else from the Num."""
    cdef ob_u128 mant
    cdef int places
    cdef Num value = n[0]
    if value.dec == WIDE_DEC:
        wide_decimal(start + value.mant, end, &mant, &places)   # checked by the reader: cannot fail
        return ((<object><uint64_t>(mant >> 64)) << 64 | <object><uint64_t>mant, places)
    normalize(&value)
    return (value.mant, value.dec)


cdef int _apply_change(list keys, list amounts, object key, object amount, int cp) except -1:
    """One change to a wide side (see docs/rules.md, "Changes", and side_apply); returns the
    anomalies it counts (0 or 1)."""
    cdef Py_ssize_t i = _bisect_left(keys, key)
    cdef bint found = i < len(keys) and keys[i] == key
    if cp == 3 or amount == 0:
        if found:
            del keys[i]
            del amounts[i]
        return cp != 3 or not found
    if found:
        amounts[i] = amount
        return cp == 1
    keys.insert(i, key)
    amounts.insert(i, amount)
    return cp == 0


cdef inline int _check_owner(unsigned long owner, str who, str name) except -1:
    """Refuse a set or a book that BookSet.apply_block is applying a block to in another thread
    (owner: that thread, 0 when none; see docs/rules.md, "Threads")."""
    if owner != 0 and owner != PyThread_get_thread_ident():
        raise RuntimeError(
            f"{who} {name}: another thread is applying a block to it (BookSet.apply_block); "
            "a BookSet and its books are used from one thread")
    return 0


cdef inline bint needs_room(const BookCore* b, const Parsed* ps, int side) noexcept nogil:
    """The side has fewer free rows than the frame has changes for it."""
    return ps.n[side] + (0 if ps.type == 431 else b.sides[side].n) > b.sides[side].cap


cdef int commit_narrow(BookCore* b, Parsed* ps) noexcept nogil:
    """Apply a parsed book frame of the book's pair in int64 units; returns an ST_ code, or,
    having changed nothing in the book, NEED_ROOM (a side needs more rows: Book._reserve makes
    them, then this runs again) or NEED_WIDE (int64 cannot hold what the frame needs, or the book
    is wide already: Book._commit_wide). It may have written the frame's values at new scales in
    ps either way; running it again on them gives the same result. No Python object: see
    BookSet.apply_block."""
    cdef int32_t d
    cdef int side, k
    cdef int new_scale[2]
    cdef int grow[2]
    cdef Change* c
    cdef Change* changes
    cdef bint snapshot = ps.type == 431
    if not snapshot:
        if not b.synced:
            return ST_GAP
        d = <int32_t>(<uint32_t>ps.cs - <uint32_t>b.seq)
        if d <= 0:
            return ST_STALE
        if d > 1:
            b.synced = False
            return ST_GAP
    if ps.wide or b.scale[0] < 0:      # a value beyond int64, or a book already wide
        return NEED_WIDE
    # 1. every value of the frame in units at the new scales. The reader has done it already
    #    when it read the frame at this book's scales and every value fitted (see _levels).
    new_scale[0] = b.scale[0]
    new_scale[1] = b.scale[1]
    if ps.unscaled or ps.scale[0] != new_scale[0] or ps.scale[1] != new_scale[1]:
        new_scale[0] = max(new_scale[0], settle_decimals(ps, new_scale[0], False))
        new_scale[1] = max(new_scale[1], settle_decimals(ps, new_scale[1], True))
        for side in range(2):
            changes = ps.changes[side]      # a local: the stores below might alias ps, for all C knows
            for k in range(ps.n[side]):
                c = changes + k
                if not (to_scale(&c.price, new_scale[0]) and to_scale(&c.amount, new_scale[1])):
                    return NEED_WIDE        # units beyond int64
    grow[0] = new_scale[0] - b.scale[0]
    grow[1] = new_scale[1] - b.scale[1]
    # 2. the rescale of what the book holds (a snapshot replaces it instead)
    if not snapshot:
        for k in range(2):          # column: 0 price, 1 amount
            if grow[k] and (side_max(&b.sides[0], k) > MAXMUL[grow[k]]
                            or side_max(&b.sides[1], k) > MAXMUL[grow[k]]):
                return NEED_WIDE    # the rescale would pass int64
    # 3. room for every level the frame carries
    if needs_room(b, ps, 0) or needs_room(b, ps, 1):
        return NEED_ROOM

    # 4. commit: nothing below can fail
    if snapshot:
        side_reset(&b.sides[0], ps.n[0])
        side_reset(&b.sides[1], ps.n[1])
    else:
        for k in range(2):
            if grow[k]:
                side_rescale(&b.sides[0], k, grow[k])
                side_rescale(&b.sides[1], k, grow[k])
    b.scale[0] = new_scale[0]
    b.scale[1] = new_scale[1]
    if snapshot:
        side_fill(&b.sides[0], ps.changes[0], ps.n[0], &b.anomalies, <AsksTag>0)
        side_fill(&b.sides[1], ps.changes[1], ps.n[1], &b.anomalies, <BidsTag>0)
    else:
        side_apply(&b.sides[0], ps.changes[0], ps.n[0], &b.anomalies, <AsksTag>0)
        side_apply(&b.sides[1], ps.changes[1], ps.n[1], &b.anomalies, <BidsTag>0)
    b.seq = ps.cs
    b.has_seq = True
    b.synced = True
    if b.sides[0].n and b.sides[1].n and side_rows(&b.sides[1])[0] >= side_rows(&b.sides[0])[0]:
        b.synced = False
        return ST_CROSSED
    return ST_APPLIED


@cython.final
cdef class Book:
    """The L2 order book of one pair, in fixed point.

    ``Book(pair, price_scale, amount_scale)``: prices are held as ``price * 10**price_scale``
    and amounts as ``amount * 10**amount_scale``, both int64 (see ``bids``). The scales only
    ever rise, when a frame brings more decimal places (an exact rescale).

    Feed it every frame of the pair's ``obdiff`` subscription with ``apply``. A Book is not
    thread-safe; use it from one thread.
    """
    cdef BookCore _c            # first: see BookCore
    cdef tuple _results         # (pair, Status) per status, prebuilt: what BookSet.apply returns
    cdef bytes _pair_bytes
    cdef readonly str pair
    cdef _Rows _ask_rows        # the memory of each side
    cdef _Rows _bid_rows
    cdef object _ask_array      # numpy arrays over those rows, made on the first read
    cdef object _bid_array
    cdef _Wide _wide            # None while narrow; the levels and scales of a wide book

    def __init__(self, str pair, int price_scale, int amount_scale):
        cdef int side
        if self._pair_bytes is not None:
            # A BookSet's index points into the book (its sides, its pair name's buffer).
            raise TypeError("a Book is initialized once")
        encoded = pair.encode("utf-8")
        if not 0 < len(encoded) <= MAX_PAIR:
            raise ValueError(f"pair must be 1 to {MAX_PAIR} bytes of UTF-8, got {pair!r}")
        _check_scale(price_scale, "price_scale")
        _check_scale(amount_scale, "amount_scale")
        self.pair = pair
        self._pair_bytes = encoded
        self._results = ((pair, _STATUS[0]), (pair, _STATUS[1]), (pair, _STATUS[2]),
                         (pair, _STATUS[3]), (pair, _STATUS[4]))
        self._c.scale[0] = price_scale
        self._c.scale[1] = amount_scale
        self._c.seq = 0
        self._c.has_seq = False
        self._c.synced = False
        self._c.anomalies = 0
        self._ask_rows = _new_rows(INITIAL_LEVELS)
        self._bid_rows = _new_rows(INITIAL_LEVELS)
        self._c.sides[0].lv = self._ask_rows.data
        self._c.sides[1].lv = self._bid_rows.data
        for side in range(2):
            self._c.sides[side].cap = INITIAL_LEVELS
            side_reset(&self._c.sides[side], 0)

    @cython.binding(False)      # a plain method, called without a bound method's layer: 6 ns a call
    @cython.embedsignature.format("clinic")     # so that inspect.signature still reads it
    def apply(self, frame):
        """Apply one websocket frame (``bytes``, ``str`` or a buffer, exactly as received).

        Returns a ``Status``. Raises ``FrameError`` for a malformed frame or one for another
        pair, leaving the book unchanged. Views from ``bids``/``asks``/``top`` taken before
        the call are no longer valid after it.
        """
        cdef Py_buffer view
        cdef Py_ssize_t size
        cdef bint held
        cdef const unsigned char* buf
        _check_owner(self._c.owner, "Book", self.pair)
        buf = _acquire(frame, &view, &size, &held, self.pair)
        if not held:                        # bytes and str: nothing to release
            return self._apply(buf, size)
        try:
            return self._apply(buf, size)
        finally:
            PyBuffer_Release(&view)

    cdef object _apply(self, const unsigned char* buf, Py_ssize_t size):
        cdef Parsed* ps = &_PARSED
        if parse_frame(ps, buf, size, NULL, self._c.scale):
            raise _frame_error(ps, self.pair)
        if ps.type != 431 and ps.type != 432:
            return _IGNORED
        if ps.pair_len != len(self._pair_bytes) or memcmp(ps.pair, <const char*>self._pair_bytes, ps.pair_len):
            got = (<const char*>ps.pair)[:ps.pair_len].decode("utf-8", "replace")
            ps.err = E_WRONG_PAIR
            ps.err_pos = ps.pair_pos
            raise _frame_error(ps, self.pair, f"got {got!r}")
        return _STATUS[self._commit(ps)]

    cdef int _commit(self, Parsed* ps) except -1:
        """Apply a parsed book frame of this pair; returns an ST_ code: commit_narrow, after
        making the room on a side that it asks for, or _commit_wide when int64 cannot hold what
        the frame needs (or the book is wide already)."""
        cdef int side
        cdef int status = commit_narrow(&self._c, ps)
        if status == NEED_ROOM:
            for side in range(2):
                if needs_room(&self._c, ps, side):
                    self._reserve(ps, side, ps.type == 431)
            status = commit_narrow(&self._c, ps)    # the same checks again: they pass, and it has room
        if status == NEED_WIDE:
            return self._commit_wide(ps)
        return status

    cdef int _commit_wide(self, Parsed* ps) except -1:
        """Apply a parsed book frame, whose sequence has been checked (a 431, or the next 432),
        in Python ints: the book is wide from here on (docs/rules.md, "Wide books"). Cannot fail
        on a value (the reader has checked each against .NET decimal's range); the book's new
        levels are built apart and swapped in at the end."""
        cdef Py_ssize_t n_asks = ps.n[0], total = ps.n[0] + ps.n[1], k, i
        cdef const unsigned char* start = ps.start
        cdef const unsigned char* end = ps.end
        cdef bint snapshot = ps.type == 431
        cdef int64_t cs = ps.cs
        cdef int side
        cdef Change* copy
        cdef int64_t* rows
        # The changes out of the scratch area before any Python object is made (a collection
        # could run an apply that reuses it: see "Atomicity" above).
        copy = <Change*>PyMem_Malloc(max(total, 1) * sizeof(Change))
        if copy == NULL:
            raise MemoryError()
        if n_asks:          # a side's array is NULL until a frame has had a level on it
            memcpy(copy, ps.changes[0], n_asks * sizeof(Change))
        if total > n_asks:
            memcpy(copy + n_asks, ps.changes[1], (total - n_asks) * sizeof(Change))
        try:
            values = [(_exact(&copy[k].price, start, end), _exact(&copy[k].amount, start, end), copy[k].cp)
                      for k in range(total)]
        finally:
            PyMem_Free(copy)
        old = self._wide
        scale = list(old.scale) if old is not None else [self._c.scale[0], self._c.scale[1]]
        new_scale = [max([scale[0]] + [price[1] for price, _, _ in values]),
                     max([scale[1]] + [amount[1] for _, amount, _ in values])]
        # the book's levels as Python ints at the new scales: keys ascending (asks: price, bids:
        # -price), amounts beside them
        keys = [[], []]
        amounts = [[], []]
        if not snapshot:
            for side in range(2):
                if old is not None:
                    keys[side] = list(old.keys[side])
                    amounts[side] = list(old.amounts[side])
                else:
                    rows = side_rows(&self._c.sides[side])
                    for i in range(self._c.sides[side].n):
                        keys[side].append(rows[2 * i] if side == 0 else -rows[2 * i])
                        amounts[side].append(rows[2 * i + 1])
                for factor, column in ((10 ** (new_scale[0] - scale[0]), keys[side]),
                                       (10 ** (new_scale[1] - scale[1]), amounts[side])):
                    if factor != 1:         # Python ints: exact, and never overflow
                        column[:] = [x * factor for x in column]
        anomalies = 0
        for k, ((price, price_places), (amount, amount_places), cp) in enumerate(values):
            side = 0 if k < n_asks else 1
            price *= 10 ** (new_scale[0] - price_places)
            amount *= 10 ** (new_scale[1] - amount_places)
            anomalies += _apply_change(keys[side], amounts[side], price if side == 0 else -price, amount, cp)
        wide = _Wide(new_scale, keys, amounts)

        # commit: nothing below can fail
        self._wide = wide
        self._c.scale[0] = -1                 # the reader writes no value at an int64 scale
        self._c.scale[1] = -1
        self._c.anomalies += anomalies
        self._c.seq = cs
        self._c.has_seq = True
        self._c.synced = True
        if keys[0] and keys[1] and -keys[1][0] >= keys[0][0]:
            self._c.synced = False
            return ST_CROSSED
        return ST_APPLIED

    cdef int _reserve(self, Parsed* ps, int side, bint snapshot) except -1:
        """Make room on a side for every level the frame carries, before committing (called
        when the side has fewer free rows than the frame has changes for it)."""
        cdef Side* s = &self._c.sides[side]
        cdef Py_ssize_t need = (0 if snapshot else s.n) + ps.n[side]
        cdef Py_ssize_t rows, off
        cdef int64_t* data
        rows = max(need, s.cap + s.cap // 2)
        rows = (rows + 15) & ~15
        grown = _new_rows(rows)
        data = grown.data
        off = (rows - s.n) >> 1
        if not snapshot:                # a snapshot replaces the levels: nothing to carry over
            memcpy(data + 2 * off, side_rows(s), s.n * 2 * sizeof(int64_t))
        if side == 0:                   # views of the old rows keep them alive
            self._ask_rows = grown
            self._ask_array = None
        else:
            self._bid_rows = grown
            self._bid_array = None
        s.lv = data
        s.off = off
        s.cap = rows
        return 0

    @property
    def price_scale(self):
        """Decimal places of prices: ``price = price_units / 10**price_scale``."""
        return self._c.scale[0] if self._wide is None else self._wide.scale[0]

    @property
    def amount_scale(self):
        """Decimal places of amounts: ``amount = amount_units / 10**amount_scale``."""
        return self._c.scale[1] if self._wide is None else self._wide.scale[1]

    @property
    def wide(self):
        """False while the book holds int64 units (scales 0..18, zero-copy views); True once a
        frame needed more and the book holds Python ints (scales 0..28, views are copies). A
        book stays wide. See docs/rules.md, "Wide books"."""
        return self._wide is not None

    @property
    def seq(self):
        """CS of the last applied frame, as the exchange sent it; None before the first 431."""
        return self._c.seq if self._c.has_seq else None

    @property
    def synced(self):
        """True while the book follows the feed; False before the first 431 and after a gap or
        a crossed book, until the next 431."""
        return self._c.synced

    @property
    def anomalies(self):
        """How many changes did not match the book (see docs/rules.md, "Changes")."""
        return self._c.anomalies

    @property
    def bids(self):
        """Bids, best (highest) first: a read-only array of shape (k, 2), columns
        ``[price_units, amount_units]``.

        Narrow book: an int64 view on the book's own memory (no copy), valid until the next
        ``apply`` on this book (or its BookSet); after that its contents are unspecified.
        ``.copy()`` it to keep a state. Wide book (``wide``): an object array of Python ints,
        a copy made by this read.
        """
        return self._view(1, self._count(1))

    @property
    def asks(self):
        """Asks, best (lowest) first; same layout and validity as ``bids``."""
        return self._view(0, self._count(0))

    def top(self, Py_ssize_t n=10):
        """``(bids, asks)``: views of the best n levels of each side (fewer if the side is
        shorter). Same layout and validity as ``bids``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return (self._view(1, min(n, self._count(1))), self._view(0, min(n, self._count(0))))

    cdef inline Py_ssize_t _count(self, int side):
        """Levels on a side (0 asks, 1 bids)."""
        return self._c.sides[side].n if self._wide is None else len(self._wide.keys[side])

    cdef inline object _view(self, int side, Py_ssize_t n):
        """The side's best n levels as a read-only numpy view of its rows (a copy when wide)."""
        cdef Py_ssize_t off
        _check_owner(self._c.owner, "Book", self.pair)
        off = self._c.sides[side].off
        if self._wide is not None:
            return self._wide.array(side, n)
        if side == 0:
            if self._ask_array is None:
                self._ask_array = _numpy.asarray(self._ask_rows)
            return self._ask_array[off:off + n]
        if self._bid_array is None:
            self._bid_array = _numpy.asarray(self._bid_rows)
        return self._bid_array[off:off + n]

    cdef object _best(self, int side):
        """``(price_units, amount_units)`` of the side's best level, or None."""
        cdef int64_t* row
        _check_owner(self._c.owner, "Book", self.pair)
        row = side_rows(&self._c.sides[side])
        if self._wide is not None:
            return self._wide.level(side, 0) if self._wide.keys[side] else None
        return (row[0], row[1]) if self._c.sides[side].n else None

    @property
    def best_bid(self):
        """``(price_units, amount_units)`` of the best bid, or None."""
        return self._best(1)

    @property
    def best_ask(self):
        """``(price_units, amount_units)`` of the best ask, or None."""
        return self._best(0)

    @property
    def spread(self):
        """Best ask minus best bid as an exact Decimal price, or None if a side is empty."""
        ask, bid = self._best(0), self._best(1)
        if ask is None or bid is None:
            return None
        return _Decimal(f"{ask[0] - bid[0]}E-{self.price_scale}")   # Python ints: no overflow

    @property
    def mid(self):
        """(best bid + best ask) / 2 as an exact Decimal price, or None if a side is empty."""
        ask, bid = self._best(0), self._best(1)
        if ask is None or bid is None:
            return None
        return _Decimal(f"{(ask[0] + bid[0]) * 5}E-{self.price_scale + 1}")   # exact, whatever the context

    def to_float(self, Py_ssize_t n=10):
        """``(bids, asks)``: float64 copies of the top n levels in real units (price, amount),
        shape (k, 2). Floats are approximations: for display and models, not for the book."""
        bids, asks = self.top(n)
        factor = _numpy.array([10.0 ** -self.price_scale, 10.0 ** -self.amount_scale])
        return bids.astype(_numpy.float64) * factor, asks.astype(_numpy.float64) * factor

    def snapshot(self):
        """The whole book as exact decimal strings: a dict with pair, seq, synced, the scales,
        and bids/asks as lists of (price, amount) best first."""
        return {
            "pair": self.pair,
            "seq": self.seq,
            "synced": self._c.synced,
            "price_scale": self.price_scale,
            "amount_scale": self.amount_scale,
            "bids": self._side_text(1),
            "asks": self._side_text(0),
        }

    cdef list _side_text(self, int side):
        cdef Py_ssize_t i
        cdef const int64_t* lv
        _check_owner(self._c.owner, "Book", self.pair)
        lv = side_rows(&self._c.sides[side])
        price_scale, amount_scale = self.price_scale, self.amount_scale
        if self._wide is not None:
            levels = [self._wide.level(side, i) for i in range(self._count(side))]
        else:
            levels = [(lv[2 * i], lv[2 * i + 1]) for i in range(self._c.sides[side].n)]
        return [(_units_text(price, price_scale), _units_text(amount, amount_scale)) for price, amount in levels]

    def __repr__(self):
        return (f"<Book {self.pair} seq={self.seq} {'synced' if self._c.synced else 'not synced'} "
                f"bids={self._count(1)} asks={self._count(0)} scales={self.price_scale}/{self.amount_scale}"
                f"{' wide' if self._wide is not None else ''}>")


cdef enum:
    RUN_END = 0         # _run_records: at the end of the data, or before a record later than until
    RUN_PYTHON = 1      # at a book frame (parsed into ps) that needs Python to apply
    RUN_CUT = 2         # at a record that breaks the framing: its header cut by the data's end,
    RUN_LONG = 3        # its length past the data's end,
    RUN_KIND = 4        # or a kind no recording has


cdef inline void tally(BookCore* b, int status, bint keyframe, bint snapshot, bint was_synced) noexcept nogil:
    """Count an applied FRAME or KEYFRAME record in the book's tallies (BookSet.tallies)."""
    if keyframe:
        b.tally[TALLY_KEYFRAMES] += 1
    else:
        b.tally[status] += 1
        if snapshot and not was_synced and status == ST_APPLIED:
            b.tally[TALLY_SYNCS] += 1


cdef int _run_records(Parsed* ps, const PairIndex* index, const unsigned char* buf, Py_ssize_t size,
                      Py_ssize_t* at, int64_t until, Py_ssize_t* ignored, int* parse_rc) noexcept nogil:
    """BookSet.apply_block's loop over the records from *at, without the GIL: applies each
    FRAME and KEYFRAME record it can apply in plain C (commit_narrow, into a book the index
    has), passes over the rest, and returns a RUN_ code with *at at the record it stopped at."""
    cdef Py_ssize_t pos = at[0], length
    cdef const unsigned char* rec
    cdef const PairSlot* slot
    cdef BookCore* b
    cdef int kind, status
    cdef bint was_synced
    cdef int stop = RUN_END
    while pos < size:
        rec = buf + pos
        if size - pos < RECORD_HEAD:
            stop = RUN_CUT
            break
        length = <Py_ssize_t>_le32(rec)
        kind = rec[4]
        if length > size - pos - RECORD_HEAD:
            stop = RUN_LONG
            break
        if kind == RECORD_FRAME or kind == RECORD_KEYFRAME:
            if <int64_t>_le64(rec + 5) > until:
                break
            parse_rc[0] = parse_frame(ps, rec + RECORD_HEAD, length, index, NULL)
            if parse_rc[0]:
                stop = RUN_PYTHON
                break
            if ps.type != 431 and ps.type != 432:
                ignored[0] += 1
            else:
                if ps.core == NULL:         # read the general way: look the pair up here
                    slot = index_find(index, ps.pair, ps.pair_len)
                    if slot == NULL:        # a new pair: its book is a Python object
                        stop = RUN_PYTHON
                        break
                    ps.book = slot.book
                    ps.core = slot.core
                b = <BookCore*>ps.core
                was_synced = b.synced
                status = commit_narrow(b, ps)
                if status < 0:
                    stop = RUN_PYTHON
                    break
                tally(b, status, kind == RECORD_KEYFRAME, ps.type == 431, was_synced)
        elif kind > RECORD_EVENT:
            stop = RUN_KIND
            break
        pos += RECORD_HEAD + length
    at[0] = pos
    return stop


@cython.final
cdef class BookSet:
    """Books for many pairs, fed from one socket: ``apply`` routes each frame by its pair.

    ``BookSet(scales=None)``: a book is created when its pair is first seen, with scales from
    ``scales[pair]`` (``{pair: (price_scale, amount_scale)}``), else ``obengine.DEFAULT_SCALES``,
    else (0, 0) and then inferred from the first snapshot (the rescale raises them). A read-only
    mapping of pair to ``Book``. Not thread-safe; use it from one thread (while ``apply_block``
    lets other threads run, it refuses them the set and its books).
    """
    cdef dict _books
    cdef dict _scales
    cdef PairIndex _index   # _books by the pair's UTF-8 bytes (_index.pxi): routing makes no object
    cdef Parsed* _scratch   # apply_block's scratch area (apply's is the module's _PARSED)
    cdef unsigned long _owner   # the thread inside apply_block, else 0

    def __cinit__(self):
        self._index.slots = NULL
        self._index.mask = -1
        self._scratch = NULL
        self._owner = 0

    def __dealloc__(self):
        PyMem_Free(self._index.slots)
        if self._scratch != NULL:
            free(self._scratch.changes[0])      # grown with realloc (_grow_changes)
            free(self._scratch.changes[1])
            PyMem_Free(self._scratch)

    def __init__(self, scales=None):
        self._books = {}
        self._scales = dict(_DEFAULT_SCALES)
        if scales is not None:
            for pair, value in dict(scales).items():
                try:
                    price_scale, amount_scale = value
                except (TypeError, ValueError):
                    raise ValueError(f"scales[{pair!r}] must be (price_scale, amount_scale), got {value!r}") from None
                _check_scale(price_scale, f"scales[{pair!r}] price_scale")
                _check_scale(amount_scale, f"scales[{pair!r}] amount_scale")
                self._scales[pair] = (price_scale, amount_scale)

    @cython.binding(False)      # a plain method, called without a bound method's layer: 6 ns a call
    @cython.embedsignature.format("clinic")     # so that inspect.signature still reads it
    def apply(self, frame):
        """Apply one websocket frame to the book of its pair.

        Returns ``(pair, Status)``, or ``(None, Status.IGNORED)`` for a frame that is not a
        book frame. Raises ``FrameError`` for a malformed frame; no book changes and none is
        created.
        """
        cdef Py_buffer view
        cdef Py_ssize_t size
        cdef bint held
        cdef const unsigned char* buf
        _check_owner(self._owner, "BookSet", "apply")
        buf = _acquire(frame, &view, &size, &held, None)
        if not held:                        # bytes and str: nothing to release
            return self._apply(buf, size)
        try:
            return self._apply(buf, size)
        finally:
            PyBuffer_Release(&view)

    cdef object _apply(self, const unsigned char* buf, Py_ssize_t size):
        cdef Parsed* ps = &_PARSED
        cdef Book book
        cdef bint new = False
        if parse_frame(ps, buf, size, &self._index, NULL):
            raise _frame_error(ps, None)
        if ps.type != 431 and ps.type != 432:
            return _NOT_A_BOOK_FRAME
        if ps.book != NULL:             # the reader looked the pair up as soon as it had read it
            book = <Book>ps.book
            return book._results[book._commit(ps)]
        book = self._route(ps, buf, size, &new)
        status = book._commit(ps)       # raises before a new book is kept
        if new:
            self._add(book)
        return book._results[status]

    cdef Book _route(self, Parsed* ps, const unsigned char* buf, Py_ssize_t size, bint* new):
        """The book of the book frame just parsed into ps: the one indexed for its pair, else a
        new one (then *new is set: keep it with _add once its first commit has succeeded). ps
        still holds the frame on return."""
        cdef const PairSlot* slot
        cdef uint64_t parses
        cdef Book book
        if ps.book != NULL:
            return <Book>ps.book
        slot = index_find(&self._index, ps.pair, ps.pair_len)
        if slot != NULL:
            return <Book>slot.book
        parses = ps.parses
        pair = PyUnicode_DecodeUTF8(<const char*>ps.pair, ps.pair_len, NULL)
        price_scale, amount_scale = self._scales.get(pair, (0, 0))
        book = Book(pair, price_scale, amount_scale)
        if ps.parses != parses:
            # Making the Book ran the garbage collector, and a finalizer (or another thread)
            # applied a frame into the scratch area: read this (unchanged) frame again. That
            # frame may have been of this very pair and created its book: then this frame goes
            # to that book, and the one made here is dropped, never seen by the index.
            parse_frame(ps, buf, size, NULL, NULL)
            slot = index_find(&self._index, ps.pair, ps.pair_len)
            if slot != NULL:
                return <Book>slot.book
        new[0] = True
        return book

    def apply_block(self, data, Py_ssize_t start=0, until_ns=None):
        """Apply the FRAME and KEYFRAME records of a recording's block, in order, in one call.

        ``data`` is a block's decompressed records, back to back (``docs/recording.md``:
        ``u32 length | u8 kind | i64 wall_ns | i64 mono_ns | payload``); reading starts at byte
        ``start`` (a record's offset); HEADER and EVENT records are passed over. Each FRAME and
        KEYFRAME payload is applied exactly as ``apply`` would. Stops at the end of ``data``, or
        before the first FRAME or KEYFRAME record whose ``wall_ns`` is later than ``until_ns``.

        Returns ``(end, ignored, errors)``: ``end``, the offset where it stopped (``len(data)``
        when it went through); ``ignored``, frames that were not book frames; ``errors``, a list
        of ``(offset, FrameError)`` for malformed frames, which changed no book (the replay
        goes on). Counts what it did per book, read with ``tallies()``.

        Releases the GIL while it applies the frames that need no Python object (those of a
        pair the set has a book for, in int64 units, with room for their levels: nearly all),
        so other threads run meanwhile (a replay reads and decompresses the next block). Until
        it returns, the set and its books belong to the calling thread: from another thread,
        ``apply`` and ``apply_block`` on the set, and ``apply`` and every read of a book's levels
        (``bids``, ``asks``, ``top``, ``best_bid``, ``snapshot``, ...), raise RuntimeError.
        ``data`` must not change meanwhile (a ``bytes`` object cannot).

        Raises ValueError if the records do not tile ``data`` (nothing after that record is
        applied; the reader checks the framing of every block it yields, so a block from
        ``obengine.record.iter_blocks`` never raises it).
        """
        cdef Py_buffer view
        cdef const unsigned char* buf
        cdef const unsigned char* rec
        cdef Py_ssize_t size, pos, length
        cdef int64_t until = INT64_MAX if until_ns is None else until_ns
        cdef int kind, status, stop, parse_rc = 0
        cdef Parsed* ps
        cdef Book book
        cdef bint new, was_synced
        cdef Py_ssize_t ignored = 0
        cdef list errors = []
        cdef unsigned long owner = self._owner
        _check_owner(self._owner, "BookSet", "apply_block")
        if self._scratch == NULL:
            self._scratch = <Parsed*>PyMem_Calloc(1, sizeof(Parsed))
            if self._scratch == NULL:
                raise MemoryError()
        ps = self._scratch
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        self._own(PyThread_get_thread_ident())
        try:
            buf = <const unsigned char*>view.buf
            size = view.len
            if start < 0 or start > size:
                raise ValueError(f"start {start} is outside the block's {size} bytes")
            pos = start
            while True:
                with nogil:
                    stop = _run_records(ps, &self._index, buf, size, &pos, until, &ignored, &parse_rc)
                if stop == RUN_END:
                    break
                rec = buf + pos
                if stop == RUN_CUT:
                    raise ValueError(f"a record header cut at byte {pos} of {size}")
                if stop == RUN_LONG:
                    raise ValueError(f"the record at byte {pos} runs past the block's {size} bytes")
                if stop == RUN_KIND:
                    raise ValueError(f"unknown record kind {rec[4]} at byte {pos}")
                # RUN_PYTHON: the frame at pos, parsed into ps, needs Python: an error to make,
                # a new pair's book, or more rows or the wide path for its book
                length = <Py_ssize_t>_le32(rec)
                kind = rec[4]
                if parse_rc:
                    errors.append((pos, _frame_error(ps, None)))
                else:
                    new = False
                    book = self._route(ps, rec + RECORD_HEAD, length, &new)
                    was_synced = book._c.synced
                    try:
                        status = book._commit(ps)
                    except _FrameError as e:
                        errors.append((pos, e))
                    else:
                        if new:
                            self._add(book)
                            book._c.owner = self._owner
                        tally(&book._c, status, kind == RECORD_KEYFRAME, ps.type == 431, was_synced)
                pos += RECORD_HEAD + length
            return pos, ignored, errors
        finally:
            self._own(owner)
            PyBuffer_Release(&view)

    cdef void _own(self, unsigned long owner):
        """Mark the set and its books as used by apply_block in thread owner (0: by none)."""
        cdef Book book
        self._owner = owner
        for book in self._books.values():
            book._c.owner = owner

    def tallies(self):
        """What ``apply_block`` did, per pair: ``{pair: (applied, stale, gaps, crossed,
        keyframes, syncs)}``. ``applied``, ``stale``, ``gaps`` and ``crossed`` count FRAME
        records by status; ``keyframes`` counts KEYFRAME records applied; ``syncs`` counts the
        FRAME 431s that brought a book that was not synced (never, or since a gap or a crossed
        book) back in sync. Frames given to ``apply`` are not counted."""
        cdef Book book
        out = {}
        for pair, book in self._books.items():
            t = book._c.tally
            out[pair] = (t[ST_APPLIED], t[ST_STALE], t[ST_GAP], t[ST_CROSSED], t[TALLY_KEYFRAMES], t[TALLY_SYNCS])
        return out

    cdef int _add(self, Book book) except -1:
        """Keep a new book and index it. The index borrows the book from the dict, so a pair is
        never added twice: replacing its dict entry would free a book the index points at."""
        cdef PairSlot entry
        if book.pair in self._books:
            raise RuntimeError(f"BookSet: a second book for {book.pair!r} (re-entrant apply)")
        self._books[book.pair] = book
        entry.book = <PyObject*>book
        entry.name = PyBytes_AS_STRING(book._pair_bytes)
        entry.name_len = PyBytes_GET_SIZE(book._pair_bytes)
        entry.core = &book._c
        entry.results = <PyObject*>book._results
        entry.applied = PyTuple_GET_ITEM(book._results, ST_APPLIED)
        try:
            index_add(&self._index, &entry, len(self._books))
        except MemoryError:
            del self._books[book.pair]
            raise
        return 0

    def __getitem__(self, pair):
        return self._books[pair]

    def __iter__(self):
        return iter(self._books)

    def __len__(self):
        return len(self._books)

    def __contains__(self, pair):
        return pair in self._books

    def get(self, pair, default=None, /):
        return self._books.get(pair, default)

    def keys(self):
        return self._books.keys()

    def values(self):
        return self._books.values()

    def items(self):
        return self._books.items()

    def __repr__(self):
        return f"<BookSet {len(self._books)} books>"


def record_offsets(data, Py_ssize_t count):
    """Where each of the ``count`` records of a recording block's decompressed ``data`` starts
    (``docs/recording.md``), in one pass over the length prefixes: what
    ``obengine.record.format.record_offsets`` does, here so that reading a block costs no
    Python per record.

    Raises ValueError: the records do not tile ``data`` exactly (a header cut short, a length
    running past the end, another count) or a kind is unknown.
    """
    cdef Py_buffer view
    cdef const unsigned char* buf
    cdef Py_ssize_t size, pos = 0, n = 0
    cdef list out = []
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        buf = <const unsigned char*>view.buf
        size = view.len
        while pos < size:
            if size - pos < RECORD_HEAD:
                raise ValueError(f"a record header cut at byte {pos} of {size}")
            if buf[pos + 4] > RECORD_EVENT:
                raise ValueError(f"unknown record kind {buf[pos + 4]} at byte {pos}")
            out.append(pos)
            n += 1
            pos += RECORD_HEAD + <Py_ssize_t>_le32(buf + pos)
        if pos != size:
            raise ValueError(f"the last record runs {pos - size} bytes past the block's data")
        if n != count:
            raise ValueError(f"{n} records, the block header says {count}")
        return out
    finally:
        PyBuffer_Release(&view)


import collections.abc
collections.abc.Mapping.register(BookSet)
