# One side of a book: a sorted array of levels, best first. Included by _core.pyx.
#
# Levels are rows of two int64 (price_units, amount_units) in one contiguous block, so a side
# is viewed by numpy as a (k, 2) array without copying. With the exchange's 100-level window,
# a binary search plus a short memmove beats any linked structure.
#
# sgn is +1 for asks (ascending: a lower price is better) and -1 for bids (descending). Prices
# are in [1, INT64_MAX], so (q - price) never overflows and (q - price) * sgn < 0 reads
# "q is better than price" on both sides without a branch.

cdef enum:
    TOP = 8         # levels side_find scans without branching before it bisects the rest


cdef inline Py_ssize_t side_find(const int64_t* lv, Py_ssize_t n, int64_t price, int64_t sgn,
                                 bint* found) noexcept nogil:
    """Index of price in the side, or where it would be inserted; *found says which.

    A branch-free lower bound: the loop runs log2(n) times whatever the data, and the step is
    taken by arithmetic, not by a jump the CPU would have to guess (levels hit by a feed are
    close to random, so a guessed branch misses half the time).
    """
    cdef Py_ssize_t base = 0, half, length = n, j
    if n == 0 or (lv[2 * (n - 1)] - price) * sgn < 0:     # worse than the worst: append
        found[0] = False
        return n
    if n > TOP:
        # Most changes land near the top: count the better levels among the first TOP.
        for j in range(TOP):
            base += (lv[2 * j] - price) * sgn < 0
        if base < TOP:
            found[0] = lv[2 * base] == price
            return base
        length = n - TOP
    while length > 1:
        half = length >> 1
        base += half * ((lv[2 * (base + half - 1)] - price) * sgn < 0)
        length -= half
    base += (lv[2 * base] - price) * sgn < 0
    found[0] = lv[2 * base] == price
    return base


cdef inline void side_insert(int64_t* lv, Py_ssize_t n, Py_ssize_t i, int64_t price,
                             int64_t amount) noexcept nogil:
    """Insert a level at i (capacity for n + 1 rows is the caller's promise)."""
    if i < n:
        memmove(lv + 2 * (i + 1), lv + 2 * i, (n - i) * 2 * sizeof(int64_t))
    lv[2 * i] = price
    lv[2 * i + 1] = amount


cdef inline void side_delete(int64_t* lv, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    if i < n - 1:
        memmove(lv + 2 * i, lv + 2 * (i + 1), (n - i - 1) * 2 * sizeof(int64_t))


cdef Py_ssize_t side_apply(int64_t* lv, Py_ssize_t* n, const Change* ch, Py_ssize_t count,
                           int64_t sgn, int64_t* anomalies) noexcept nogil:
    """Apply converted changes in order (see docs/rules.md, "Changes"). Never fails: the
    caller has converted every value and reserved room for every possible insert."""
    cdef Py_ssize_t k, i, size = n[0]
    cdef bint found
    cdef const Change* c
    for k in range(count):
        c = ch + k
        i = side_find(lv, size, c.price.mant, sgn, &found)
        if c.cp == 3:
            if found:
                side_delete(lv, size, i)
                size -= 1
            else:
                anomalies[0] += 1
        elif c.amount.mant == 0:
            anomalies[0] += 1
            if found:
                side_delete(lv, size, i)
                size -= 1
        elif found:
            lv[2 * i + 1] = c.amount.mant
            if c.cp == 1:
                anomalies[0] += 1
        else:
            side_insert(lv, size, i, c.price.mant, c.amount.mant)
            size += 1
            if c.cp == 0:
                anomalies[0] += 1
    n[0] = size


cdef int64_t side_max(const int64_t* lv, Py_ssize_t n, int col) noexcept nogil:
    """Largest value of a column (0 price, 1 amount); 0 for an empty side."""
    cdef int64_t m = 0
    cdef Py_ssize_t i
    for i in range(n):
        if lv[2 * i + col] > m:
            m = lv[2 * i + col]
    return m


cdef void side_rescale(int64_t* lv, Py_ssize_t n, int col, int k) noexcept nogil:
    """Multiply a column by 10**k (overflow checked by the caller with side_max)."""
    cdef Py_ssize_t i
    cdef int64_t f = POW10[k]
    for i in range(n):
        lv[2 * i + col] *= f
