# One side of a book: sorted levels, best first, in a block of rows (a _Rows object's memory,
# which numpy views without copying). Included by _core.pyx.
#
# A level is a row of two int64 (price_units, amount_units). The side's levels are the rows
# off .. off + n - 1 of an array of cap rows, with free rows on both ends: an insert or a delete
# shifts whichever part of the side is shorter, and the changes of a live feed land near the top,
# so a change moves a few rows instead of the whole side (at 100 levels, ~1.5 KB of memory traffic
# per change saved, which matters once hundreds of books no longer fit in cache). The levels stay
# contiguous, so numpy views them as a (k, 2) array.
#
# Asks are ascending (a lower price is better), bids descending. The small functions that compare
# prices take the side as a flag, and are inlined where it is a constant. side_apply and side_fill,
# too large for gcc to copy per side (it kept one, testing the flag around every comparison), take
# the side as a type instead: a tag, AsksTag or BidsTag, whose value is never read, so that Cython
# writes one copy of each per side, the flag a constant in it.

ctypedef char AsksTag
ctypedef short BidsTag
ctypedef fused SideTag:
    AsksTag
    BidsTag

ctypedef struct Side:
    int64_t* lv         # the side's block of rows (owned by a _Rows object)
    Py_ssize_t off      # row of the best level
    Py_ssize_t n        # number of levels
    Py_ssize_t cap      # rows in the array


cdef inline int64_t* side_rows(const Side* s) noexcept nogil:
    """The best level's row; levels follow it, best first."""
    return s.lv + 2 * s.off


cdef enum:
    TOP = 8         # levels side_find counts at each end of a side before it bisects the rest


cdef inline bint _better(int64_t a, int64_t b, bint asks) noexcept nogil:
    """Price a is better than price b: lower on the asks, higher on the bids."""
    return a < b if asks else a > b


cdef inline Py_ssize_t side_find(const Side* s, bint asks, int64_t price, bint* found) noexcept nogil:
    """Index of price in the side, or where it would be inserted; *found says which.

    A feed's changes land mostly among the first TOP levels (two thirds, in the simulator's
    typical stream) and among the last TOP, where the far end of the exchange's 100-level window
    moves in and out of view (a fifth). Both ends are searched by counting the better levels,
    which reads rows that sit side by side; only what falls between is bisected. The bisection is
    branch-free: the loop runs log2(n) times whatever the data, and the step is taken by
    arithmetic, not by a jump the CPU would have to guess (levels hit by a feed are close to
    random, so a guessed branch misses half the time). Each of its steps waits for a row that,
    with hundreds of books, is seldom in the CPU's nearest cache: that wait is what counting at
    the far end saves.
    """
    cdef const int64_t* lv = side_rows(s)
    cdef Py_ssize_t n = s.n
    cdef Py_ssize_t base = 0, half, length = n, j
    if n == 0 or _better(lv[2 * (n - 1)], price, asks):     # worse than the worst: append
        found[0] = False
        return n
    if n > TOP:
        # Most changes land near the top: count the better levels among the first TOP.
        for j in range(TOP):
            base += _better(lv[2 * j], price, asks)
        if base < TOP:
            found[0] = lv[2 * base] == price
            return base
        length = n - TOP
        if n > 2 * TOP:
            if _better(lv[2 * (n - TOP - 1)], price, asks):
                # Most of the others land among the last TOP, where the far end of the
                # exchange's window moves in and out of view: count there the same way.
                base = n - TOP
                for j in range(n - TOP, n):
                    base += _better(lv[2 * j], price, asks)
                found[0] = lv[2 * base] == price
                return base
            length = n - 2 * TOP        # bisect between the first and the last TOP
    while length > 1:
        half = length >> 1
        base += half * _better(lv[2 * (base + half - 1)], price, asks)
        length -= half
    base += _better(lv[2 * base], price, asks)
    found[0] = lv[2 * base] == price
    return base


cdef inline void _move_rows(int64_t* lv, Py_ssize_t to, Py_ssize_t start, Py_ssize_t rows) noexcept nogil:
    if rows and to != start:
        memmove(lv + 2 * to, lv + 2 * start, rows * 2 * sizeof(int64_t))


cdef inline void side_reset(Side* s, Py_ssize_t expected) noexcept nogil:
    """Empty the side, placed so that `expected` levels appended best first fit (expected <= cap)."""
    s.n = 0
    s.off = (s.cap - expected) >> 1


cdef inline void _center(Side* s) noexcept nogil:
    """Split the free rows evenly between both ends."""
    cdef Py_ssize_t off = (s.cap - s.n) >> 1
    _move_rows(s.lv, off, s.off, s.n)
    s.off = off


cdef inline void side_insert(Side* s, Py_ssize_t i, int64_t price, int64_t amount) noexcept nogil:
    """Insert a level at index i (0 = best). The caller has made sure n < cap."""
    cdef bint front = i < s.n - i
    cdef int64_t* row
    if (front and s.off == 0) or (not front and s.off + s.n == s.cap):
        _center(s)
    if front and s.off > 0:
        _move_rows(s.lv, s.off - 1, s.off, i)
        s.off -= 1
    else:                               # room at the back: n < cap, and centred if it had none
        _move_rows(s.lv, s.off + i + 1, s.off + i, s.n - i)
    row = s.lv + 2 * (s.off + i)
    row[0] = price
    row[1] = amount
    s.n += 1


cdef inline void side_delete(Side* s, Py_ssize_t i) noexcept nogil:
    """Delete the level at index i (0 = best)."""
    if i < s.n - 1 - i:
        _move_rows(s.lv, s.off + 1, s.off, i)
        s.off += 1
    else:
        _move_rows(s.lv, s.off + i, s.off + i + 1, s.n - 1 - i)
    s.n -= 1


cdef void side_apply(Side* s, const Change* ch, Py_ssize_t count, int64_t* anomalies, SideTag side) noexcept nogil:
    """Apply converted changes in order (see docs/rules.md, "Changes"). Never fails: the
    caller has converted every value and reserved room for every possible insert."""
    cdef bint asks = SideTag is AsksTag
    cdef Py_ssize_t k, i
    cdef bint found
    cdef const Change* c
    for k in range(count):
        c = ch + k
        i = side_find(s, asks, c.price.mant, &found)
        if c.cp == 3:
            if found:
                side_delete(s, i)
            else:
                anomalies[0] += 1
        elif c.amount.mant == 0:
            anomalies[0] += 1
            if found:
                side_delete(s, i)
        elif found:
            side_rows(s)[2 * i + 1] = c.amount.mant
            if c.cp == 1:
                anomalies[0] += 1
        else:
            side_insert(s, i, c.price.mant, c.amount.mant)
            if c.cp == 0:
                anomalies[0] += 1


cdef inline void side_fill(Side* s, const Change* ch, Py_ssize_t count, int64_t* anomalies, SideTag side) noexcept nogil:
    """Apply a snapshot's converted levels to a side just emptied by side_reset(s, count): the
    same result as side_apply, faster for the exchange's snapshots, which list each price once,
    best first, none with a zero amount. Such a level would go after the last one, so it is
    written there, with no search and no move; from the first other level on, side_apply takes
    the rest in order (cp is 1 for every level of a snapshot)."""
    cdef bint asks = SideTag is AsksTag
    cdef int64_t* rows = side_rows(s)
    cdef Py_ssize_t k = 0, n = s.n
    cdef const Change* c
    while k < count:
        c = ch + k
        if c.amount.mant == 0 or (n and not _better(rows[2 * (n - 1)], c.price.mant, asks)):
            break
        rows[2 * n] = c.price.mant
        rows[2 * n + 1] = c.amount.mant
        n += 1
        k += 1
    s.n = n
    side_apply(s, ch + k, count - k, anomalies, side)


cdef int64_t side_max(const Side* s, int col) noexcept nogil:
    """Largest value of a column (0 price, 1 amount); 0 for an empty side."""
    cdef const int64_t* lv = side_rows(s)
    cdef int64_t m = 0
    cdef Py_ssize_t i
    for i in range(s.n):
        if lv[2 * i + col] > m:
            m = lv[2 * i + col]
    return m


cdef void side_rescale(Side* s, int col, int k) noexcept nogil:
    """Multiply a column by 10**k (overflow checked by the caller with side_max)."""
    cdef int64_t* lv = side_rows(s)
    cdef Py_ssize_t i
    cdef int64_t f = POW10[k]
    for i in range(s.n):
        lv[2 * i + col] *= f
