# Decimal text -> exact fixed point. Included by _core.pyx.
#
# A number is read as (mantissa, decimal places): value = mantissa * 10**-dec, with the
# fraction's trailing zeros dropped as they are read, so "1.50" is (15, 1) and "2150000" is
# (2150000, 0). Nothing here ever goes through a float; every multiplication by a power of ten is
# checked against INT64_MAX first.

cdef enum:
    SCALE_LIMIT = 18          # 10**18 is the largest power of ten below 2**63

cdef int64_t POW10[SCALE_LIMIT + 1]
cdef int64_t MAXMUL[SCALE_LIMIT + 1]      # MAXMUL[k] = INT64_MAX // 10**k: the largest m with m * 10**k <= INT64_MAX


cdef void _init_pow10() noexcept:
    cdef int k
    POW10[0] = 1
    for k in range(1, SCALE_LIMIT + 1):
        POW10[k] = POW10[k - 1] * 10
    for k in range(SCALE_LIMIT + 1):
        MAXMUL[k] = INT64_MAX // POW10[k]

_init_pow10()


ctypedef struct Num:
    int64_t mant        # magnitude, 0 <= mant <= INT64_MAX
    int dec             # decimal places, 0..SCALE_LIMIT
    bint neg            # sign; never set for zero ("-0" is 0)


cdef inline bint _is_digit(unsigned char c) noexcept nogil:
    return <unsigned char>(c - 48) < 10


cdef inline bint _mul_pow10(uint64_t* m, Py_ssize_t k) noexcept nogil:
    """m *= 10**k if the result fits int64; False (m untouched) if it does not."""
    if m[0] == 0:
        return True
    if k > SCALE_LIMIT or m[0] > <uint64_t>MAXMUL[k]:
        return False
    m[0] *= <uint64_t>POW10[k]
    return True


cdef int parse_decimal(const unsigned char* p, const unsigned char* end,
                       const unsigned char** stop, Num* out) noexcept nogil:
    """Read one JSON number (RFC 8259 grammar) starting at p.

    Sets *stop just past the number, also when the value does not fit, so a caller that only
    skips the number can ignore E_RANGE / E_DECIMALS. Returns 0, E_NUMBER (not a number),
    E_RANGE (magnitude beyond int64) or E_DECIMALS (more than SCALE_LIMIT decimal places).
    """
    cdef uint64_t mant = 0
    cdef Py_ssize_t pend = 0        # zeros read but not yet multiplied into mant
    cdef Py_ssize_t frac = 0        # digits after the point
    cdef Py_ssize_t exp = 0
    cdef bint neg = False, big = False, eneg = False
    cdef unsigned int d
    stop[0] = p
    if p < end and p[0] == b'-':
        neg = True
        p += 1
    if p >= end or not _is_digit(p[0]):
        return E_NUMBER
    if p[0] == b'0':
        p += 1
        if p < end and _is_digit(p[0]):
            stop[0] = p
            return E_NUMBER                 # leading zero
    else:
        while p < end and _is_digit(p[0]):
            d = p[0] - 48
            if d == 0:
                pend += 1
            elif not big:
                if _mul_pow10(&mant, pend + 1) and mant <= <uint64_t>INT64_MAX - d:
                    mant += d
                else:
                    big = True
                pend = 0
            p += 1
    if p < end and p[0] == b'.':
        p += 1
        if p >= end or not _is_digit(p[0]):
            stop[0] = p
            return E_NUMBER
        while p < end and _is_digit(p[0]):
            d = p[0] - 48
            frac += 1
            if d == 0:
                pend += 1
            elif not big:
                if _mul_pow10(&mant, pend + 1) and mant <= <uint64_t>INT64_MAX - d:
                    mant += d
                else:
                    big = True
                pend = 0
            p += 1
    if p < end and (p[0] == b'e' or p[0] == b'E'):
        p += 1
        if p < end and (p[0] == b'+' or p[0] == b'-'):
            eneg = p[0] == b'-'
            p += 1
        if p >= end or not _is_digit(p[0]):
            stop[0] = p
            return E_NUMBER
        while p < end and _is_digit(p[0]):
            if exp < 100000000:
                exp = exp * 10 + (p[0] - 48)
            p += 1
        if eneg:
            exp = -exp
    stop[0] = p
    if big:
        return E_RANGE
    out.neg = neg and mant != 0
    if mant == 0:
        out.mant = 0
        out.dec = 0
        return 0
    # value = mant * 10**(pend - frac + exp)
    exp = frac - pend - exp             # now: decimal places
    if exp < 0:
        if not _mul_pow10(&mant, -exp):
            return E_RANGE
        exp = 0
    elif exp > SCALE_LIMIT:
        return E_DECIMALS
    out.mant = <int64_t>mant
    out.dec = <int>exp
    return 0


cdef inline bint to_units(const Num* n, int scale, int64_t* units) noexcept nogil:
    """units = value * 10**scale (scale >= n.dec); False if it does not fit int64."""
    cdef int k = scale - n.dec
    if n.mant > MAXMUL[k]:
        return False
    units[0] = n.mant * POW10[k]
    return True
