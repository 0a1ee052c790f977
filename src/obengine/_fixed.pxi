# Decimal text -> exact fixed point. Included by _core.pyx.
#
# A number is read as (mantissa, decimal places as written): value = mantissa * 10**-dec, so
# "1.50" is (150, 2) and "2150000" is (2150000, 0). The value's real decimal places (trailing
# zeros dropped: "1.50" has one) are worked out only where they matter, by normalize(): for an
# integer check and before a rescale. Nothing here ever goes through a float; every
# multiplication by a power of ten is checked against INT64_MAX first.

cdef enum:
    SCALE_LIMIT = 18          # 10**18 is the largest power of ten below 2**63
    WIDE_SCALE_LIMIT = 28     # the most decimal places a .NET decimal has (a wide book's scale limit)
    WIDE_DEC = 64             # Num.dec of a wide value (see mark_wide): more places than any scale

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
    int dec             # decimal places as written, 0..SCALE_LIMIT: value = mant * 10**-dec
    bint neg            # sign; never set for zero ("-0" is 0)


cdef inline bint _is_digit(unsigned char c) noexcept nogil:
    return <unsigned char>(c - 48) < 10


cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define OBENGINE_SWAR 1
    #else
    #define OBENGINE_SWAR 0
    #endif
    """
    bint OBENGINE_SWAR     # eight digits at a time (the byte-order trick needs little endian)


cdef inline uint64_t _load8(const unsigned char* p) noexcept nogil:
    cdef uint64_t w
    memcpy(&w, p, 8)
    return w


cdef inline uint64_t _eight_value(uint64_t w) noexcept nogil:
    """Value of eight ASCII digits loaded little endian (first digit most significant)."""
    w = ((w & 0x0F0F0F0F0F0F0F0FULL) * 2561) >> 8
    w = ((w & 0x00FF00FF00FF00FFULL) * 6553601) >> 16
    return ((w & 0x0000FFFF0000FFFFULL) * 42949672960001ULL) >> 32


cdef inline bint _mul_pow10(uint64_t* m, Py_ssize_t k) noexcept nogil:
    """m *= 10**k if the result fits int64; False (m untouched) if it does not."""
    if m[0] == 0:
        return True
    if k > SCALE_LIMIT or m[0] > <uint64_t>MAXMUL[k]:
        return False
    m[0] *= <uint64_t>POW10[k]
    return True


cdef inline void normalize(Num* n) noexcept nogil:
    """Drop trailing zeros of the fraction: (150, 2) -> (15, 1). Leaves n.dec at the value's
    real number of decimal places."""
    while n.dec > 0 and n.mant % 10 == 0:
        n.mant //= 10
        n.dec -= 1


cdef int _finish(uint64_t mant, Py_ssize_t dec, bint neg, Num* out) noexcept nogil:
    """value = mant * 10**-dec, mant <= INT64_MAX: store it as a Num or say why it cannot be."""
    out.neg = neg and mant != 0
    if mant == 0:
        out.mant = 0
        out.dec = 0
        return 0
    if dec < 0:
        if not _mul_pow10(&mant, -dec):
            return E_RANGE
        dec = 0
    out.mant = <int64_t>mant
    if dec > SCALE_LIMIT:
        if dec > SCALE_LIMIT + 19:      # 19 digits of zeros at most could be dropped
            return E_DECIMALS
        out.dec = <int>dec
        normalize(out)
        if out.dec > SCALE_LIMIT:
            return E_DECIMALS
        return 0
    out.dec = <int>dec
    return 0


cdef int _decimal_exact(const unsigned char* p, const unsigned char* end, Num* out) noexcept nogil:
    """The careful reading of a number already known to be well formed: zeros are held back
    until a non-zero digit needs them, so only significant digits count toward int64."""
    cdef uint64_t mant = 0
    cdef Py_ssize_t pend = 0, frac = 0, exp = 0
    cdef bint neg = False, eneg = False, in_frac = False
    cdef unsigned int d
    if p[0] == b'-':
        neg = True
        p += 1
    while p < end and (_is_digit(p[0]) or p[0] == b'.'):
        if p[0] == b'.':
            in_frac = True
            p += 1
            continue
        d = p[0] - 48
        frac += in_frac
        if d == 0:
            pend += 1
        else:
            if not _mul_pow10(&mant, pend + 1) or mant > <uint64_t>INT64_MAX - d:
                return E_RANGE
            mant += d
            pend = 0
        p += 1
    if p < end:                     # exponent
        p += 1
        if p[0] == b'+' or p[0] == b'-':
            eneg = p[0] == b'-'
            p += 1
        while p < end:
            if exp < 100000000:
                exp = exp * 10 + (p[0] - 48)
            p += 1
        if eneg:
            exp = -exp
    return _finish(mant, frac - pend - exp, neg, out)


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil


cdef inline int _leading_digits(uint64_t w) noexcept nogil:
    """How many of the eight bytes in w, from the first, are ASCII digits (0..8). After the xor
    with '0' a byte is a digit when it is below 10: adding 0x76 sets its high bit then, unless it
    had it already. A byte of 0x8A or more carries into the next, and a carry only reaches later
    bytes: the first flagged byte is exact."""
    cdef uint64_t d = w ^ 0x3030303030303030ULL
    cdef uint64_t bad = ((d + 0x7676767676767676ULL) | d) & 0x8080808080808080ULL
    if bad == 0:
        return 8
    return __builtin_ctzll(bad) >> 3


cdef inline int _leading_digits_nb(uint64_t w) noexcept nogil:
    """_leading_digits with no branch: a flag at bit 63 stands for the ninth byte, so that eight
    digits count to 8 as fewer do."""
    cdef uint64_t d = w ^ 0x3030303030303030ULL
    cdef uint64_t bad = ((d + 0x7676767676767676ULL) | d) & 0x8080808080808080ULL
    return (__builtin_ctzll((bad >> 7) | 0x8000000000000000ULL) + 1) >> 3


cdef inline const unsigned char* _digits(const unsigned char* q, const unsigned char* end,
                                        uint64_t* mant) noexcept nogil:
    """Append the digits at q to *mant (wrapping past 19 digits: the caller counts them)."""
    cdef uint64_t m = mant[0], w
    cdef unsigned int d
    cdef int k
    if OBENGINE_SWAR:
        while end - q >= 8 and _is_digit(q[0]):
            w = _load8(q)
            k = _leading_digits(w)
            if k == 8:
                m = m * 100000000 + _eight_value(w)
                q += 8
                continue
            if k:
                m = m * <uint64_t>POW10[k] + _eight_value(w << (8 * (8 - k)))
                q += k
            mant[0] = m
            return q
    while q < end:
        d = q[0] - 48
        if d >= 10:
            break
        m = m * 10 + d
        q += 1
    mant[0] = m
    return q


# Padded readers: the common shapes of a number read with plain eight-byte loads and no end-of-input
# checks. Their callers guarantee PAD readable bytes from where they start (a frame's own bytes
# when that many remain, else a zero-padded copy of its tail): a zero byte matches nothing a
# reader looks for, so a value cut by the end of the frame fails like any other mismatch.
cdef enum:
    PAD = 128       # bytes a padded reader may read, counted from where it starts (bound in _padded_level_any)


cdef inline const unsigned char* _padded_digits(const unsigned char* q, uint64_t* mant) noexcept nogil:
    """Append up to 16 digits at q to *mant (two loads); return the address after them. A digit
    there means the run is longer: the caller's check of what follows fails on it."""
    cdef uint64_t w = _load8(q)
    cdef int k = _leading_digits(w)
    if k < 8:
        if k:
            mant[0] = mant[0] * <uint64_t>POW10[k] + _eight_value(w << (64 - 8 * k))
        return q + k
    mant[0] = mant[0] * 100000000 + _eight_value(w)
    q += 8
    if not _is_digit(q[0]):                 # exactly eight (an amount's usual fraction)
        return q
    w = _load8(q)
    k = _leading_digits(w)
    if k:
        mant[0] = mant[0] * <uint64_t>POW10[k] + _eight_value(w << (64 - 8 * k))
    return q + k


cdef extern from *:
    """
    /* A quoted number read with 16-byte vector instructions (SSE4.1), with no branch on its shape:
       x86-64 builds compile with -msse4.2 (setup.py), the baseline numpy's own x86-64 wheels
       require. OBENGINE_PORTABLE=1 builds without it (the eight-byte readers below then run).

       q: the number's first byte, 16 bytes readable. Takes "digits[.digits]" of at most 15 bytes
       followed by a '"' (the exchange's prices and amounts): sets *mant, *dec (places as written)
       and returns its length; returns 0, setting nothing, for anything else, which the general
       readers then take (or refuse). At most 15 bytes: at most 15 digits, so no overflow. */
    #if defined(__SSE4_1__) && !defined(OBENGINE_PORTABLE)
    #include <smmintrin.h>
    #define OBENGINE_SIMD 1
    /* ob_order[p][n]: the byte order (for pshufb) that takes n digits from the start of 16 bytes
       whose byte p is the '.' (p = 16: none), drops the '.', and puts the digits at the end after
       16 - n zeros (0x80 selects a zero). Filled on import by ob_init_order. */
    static unsigned char ob_order[17][16][16] __attribute__((aligned(16)));
    static void ob_init_order(void) {
        int p, n, j, k;
        for (p = 0; p <= 16; p++)
            for (n = 0; n < 16; n++)
                for (j = 0; j < 16; j++) {
                    k = j - (16 - n);               /* the digit at byte j: the k-th, or none */
                    ob_order[p][n][j] = k < 0 ? 0x80 : (unsigned char)(k < p ? k : k + 1);
                }
    }
    static inline int ob_simd_number(const unsigned char* q, uint64_t* mant, int* dec) {
        __m128i v = _mm_loadu_si128((const __m128i*)q);
        __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));       /* a digit's value; others >= 10 */
        unsigned quotes = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
        unsigned digits = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d));
        unsigned points = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')));
        unsigned len = (unsigned)__builtin_ctz(quotes | 0x10000u);    /* 16: no '"' in reach */
        unsigned inside = (1u << len) - 1;                  /* bit i: byte i is the number's */
        unsigned other = inside & ~digits;                  /* its bytes that are not digits */
        unsigned dot = (unsigned)__builtin_ctz(other | 0x10000u);     /* 16: none */
        unsigned has_dot = other != 0;
        unsigned n = len - has_dot;                         /* digits */
        unsigned bad = (len - 1 >= 15)                      /* empty, or longer than 15 bytes */
            | (other & (other - 1))                         /* two bytes not digits */
            | (other & ~(points & (inside >> 1) & ~1u))     /* one that is not a '.' between digits */
            | ((q[0] == '0') & (digits >> 1));              /* a leading zero: "0" then a digit */
        __m128i x, t;
        if (bad)
            return 0;
        /* the digits without the '.', right-aligned in 16 bytes after zeros, then joined: pairs
           (x10), fours (x100), eights (x10000), and the two eights */
        x = _mm_shuffle_epi8(d, _mm_load_si128((const __m128i*)ob_order[dot][n]));
        t = _mm_maddubs_epi16(x, _mm_setr_epi8(10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1));
        t = _mm_madd_epi16(t, _mm_setr_epi16(100, 1, 100, 1, 100, 1, 100, 1));
        t = _mm_packus_epi32(t, t);
        t = _mm_madd_epi16(t, _mm_setr_epi16(10000, 1, 10000, 1, 10000, 1, 10000, 1));
        *mant = (uint64_t)(uint32_t)_mm_cvtsi128_si32(t) * 100000000u + (uint32_t)_mm_extract_epi32(t, 1);
        *dec = has_dot ? (int)(len - 1 - dot) : 0;
        return (int)len;
    }
    /* 1 if this build needs SSE4.2 and the CPU lacks it (checked on import) */
    static int ob_simd_missing(void) { __builtin_cpu_init(); return !__builtin_cpu_supports("sse4.2"); }
    #else
    #define OBENGINE_SIMD 0
    static inline int ob_simd_number(const unsigned char* q, uint64_t* mant, int* dec) { return 0; }
    static int ob_simd_missing(void) { return 0; }
    static void ob_init_order(void) { }
    #endif
    """
    bint OBENGINE_SIMD      # numbers read by ob_simd_number (x86-64 builds)
    int ob_simd_number(const unsigned char* q, uint64_t* mant, int* dec) nogil
    int ob_simd_missing()
    void ob_init_order()


if ob_simd_missing():
    raise ImportError("this build of obengine's core uses SSE4.2 (x86-64-v2), which this CPU lacks: "
                      "reinstall it with OBENGINE_PORTABLE=1 set")

ob_init_order()
_NUMBER_READER = "sse4.1" if OBENGINE_SIMD else "swar"     # which reader this build has (for tests)


cdef inline const unsigned char* _padded_decimal(const unsigned char* q, Num* out) noexcept nogil:
    """A number "digits[.digits]" at q (no sign: a '-' is not taken) with at most 19 digits and
    within int64, as the exchange writes prices and amounts: read it into out (decimal places as
    written) and return the address after its last digit, or NULL for any other text (the general
    reader, parse_decimal, takes those).

    On x86-64, ob_simd_number reads the exchange's numbers (up to 15 bytes, closed by a '"')
    with no branch on their shape: 380 pairs' prices and amounts come in every shape, which the
    CPU cannot guess from one to the next. Elsewhere, _padded_decimal_swar. Longer numbers, and
    anything else, go to _padded_decimal_long. Reads at most 34 bytes from q.
    """
    cdef uint64_t mant
    cdef int k, dec
    if OBENGINE_SIMD:
        k = ob_simd_number(q, &mant, &dec)
        if k == 0:
            return _padded_decimal_long(q, out)
        out.mant = <int64_t>mant
        out.dec = dec
        out.neg = False
        return q + k
    return _padded_decimal_swar(q, out)


cdef inline const unsigned char* _padded_decimal_swar(const unsigned char* q, Num* out) noexcept nogil:
    """_padded_decimal in eight-byte words, for the CPUs ob_simd_number is not built for.

    The usual numbers, up to 7 integer and 8 fraction digits, take two loads made at once: the
    fraction is cut out of the loaded bytes rather than loaded again from where the integer part
    ends, and at most 15 digits need no overflow check. When all the digits fit in eight (most
    prices), the integer and fraction digits are joined in one word and converted once. A number
    below 1 ("0.xxx", most amounts) is converted with no branch on its number of places. Longer
    numbers go to _padded_decimal_long.
    Reads at most 34 bytes from q.
    """
    cdef uint64_t a = _load8(q), b = _load8(q + 8), f, ints = 0, mant
    cdef int k, kf
    if q[0] == b'0':                        # "0" or "0.xxx" (most amounts): no integer digits to read
        if q[1] == b'.':
            # Up to eight fraction digits, converted whatever their count, with no branch on it:
            # amounts below 1 have all counts, which the CPU cannot guess from one to the next.
            f = _load8(q + 2)
            kf = _leading_digits_nb(f)
            if kf == 0:                     # "0." is not a number
                return NULL
            if _is_digit(q[2 + kf]):        # more than eight places
                return _padded_decimal_long(q, out)
            out.mant = <int64_t>_eight_value(f << ((64 - 8 * kf) & 63))
            out.dec = kf
            out.neg = False
            return q + 2 + kf
        k = 1
        if _is_digit(q[1]):                 # a leading zero
            return NULL
    else:
        k = _leading_digits(a)
        if k == 0 or k == 8:                # no digit, or a long integer part
            return _padded_decimal_long(q, out)
        ints = a << (64 - 8 * k)            # the integer digits, last one in the top byte
    out.neg = False
    if ((a >> (8 * k)) & 0xFF) != b'.':     # byte k (k <= 7): an integer
        out.mant = <int64_t>_eight_value(ints)
        out.dec = 0
        return q + k
    f = ((a >> (8 * k)) >> 8) | (b << (56 - 8 * k))    # the eight bytes after the '.'
    kf = _leading_digits(f)
    if kf == 0:                             # "1." is not a number
        return NULL
    if k + kf <= 8:                         # all the digits in one word (most prices): one conversion
        mant = _eight_value((ints >> (8 * kf)) | (f << (64 - 8 * kf)))
    elif kf == 8:                           # eight fraction digits (an amount's usual)
        if _is_digit(q[k + 9]):
            return _padded_decimal_long(q, out)
        mant = _eight_value(f)
        if ints:
            mant += _eight_value(ints) * 100000000
    else:
        mant = _eight_value(ints) * <uint64_t>POW10[kf] + _eight_value(f << (64 - 8 * kf))
    out.mant = <int64_t>mant
    out.dec = kf
    return q + k + 1 + kf


cdef const unsigned char* _padded_decimal_long(const unsigned char* q, Num* out) noexcept nogil:
    """_padded_decimal for any number it takes (up to 19 digits), one run of digits after the
    other. Reads at most 34 bytes from q (see _padded_digits: 16 + 1 + 16, and the byte after)."""
    cdef uint64_t mant = 0
    cdef const unsigned char* r
    cdef Py_ssize_t ndigits, frac
    if q[0] == b'0':
        r = q + 1
        if _is_digit(r[0]):                 # a leading zero
            return NULL
    else:
        r = _padded_digits(q, &mant)
        if r == q:                          # no digit
            return NULL
    ndigits = r - q
    if r[0] == b'.':
        q = r + 1
        r = _padded_digits(q, &mant)
        frac = r - q
        if frac == 0 or frac > SCALE_LIMIT:
            return NULL
        ndigits += frac
    else:
        frac = 0
    if ndigits > 19 or mant > <uint64_t>INT64_MAX:
        return NULL
    out.mant = <int64_t>mant
    out.dec = <int>frac
    out.neg = False
    return r


cdef int parse_decimal(const unsigned char* p, const unsigned char* end,
                       const unsigned char** stop, Num* out) noexcept nogil:
    """Read one JSON number (RFC 8259 grammar) starting at p.

    Sets *stop just past the number, also when the value does not fit, so a caller that only
    skips the number can ignore E_RANGE / E_DECIMALS. Returns 0, E_NUMBER (not a number),
    E_RANGE (magnitude beyond int64) or E_DECIMALS (more than SCALE_LIMIT decimal places).
    The common case (up to 19 digits) is one plain pass: 19 digits cannot overflow uint64.
    """
    cdef const unsigned char* q = p
    cdef const unsigned char* digits
    cdef const unsigned char* frac_start
    cdef uint64_t mant = 0
    cdef Py_ssize_t ndigits, frac = 0, exp = 0
    cdef bint neg = False, eneg = False
    stop[0] = p
    if q < end and q[0] == b'-':
        neg = True
        q += 1
    digits = q
    if q >= end or not _is_digit(q[0]):
        return E_NUMBER
    if q[0] == b'0':
        q += 1
        if q < end and _is_digit(q[0]):
            stop[0] = q
            return E_NUMBER                 # leading zero
    else:
        q = _digits(q, end, &mant)
    ndigits = q - digits
    if q < end and q[0] == b'.':
        q += 1
        frac_start = q
        q = _digits(q, end, &mant)
        frac = q - frac_start
        if frac == 0:
            stop[0] = q
            return E_NUMBER
        ndigits += frac
    if q < end and (q[0] | 0x20) == b'e':
        q += 1
        if q < end and (q[0] == b'+' or q[0] == b'-'):
            eneg = q[0] == b'-'
            q += 1
        if q >= end or not _is_digit(q[0]):
            stop[0] = q
            return E_NUMBER
        while q < end and _is_digit(q[0]):
            if exp < 100000000:
                exp = exp * 10 + (q[0] - 48)
            q += 1
        if eneg:
            exp = -exp
    stop[0] = q
    if ndigits > 19 or mant > <uint64_t>INT64_MAX:
        return _decimal_exact(p, q, out)
    return _finish(mant, frac - exp, neg, out)


# Wide values: prices and amounts that int64 at 18 places cannot hold, up to what the exchange's
# .NET decimal holds (m * 10**-s with m < 2**96 and s <= 28). They are rare (meme-coin books), so
# the reader only checks them and marks where their text is; a book that must hold one turns wide
# and reads them again, into Python ints, with wide_decimal (_core.pyx, Book._commit_wide).
cdef extern from *:
    """
    typedef unsigned __int128 ob_u128;
    """
    ctypedef unsigned long long ob_u128     # 128 bits in C (gcc and clang); never converted by Cython


cdef inline bint _times10_wide(ob_u128* m, Py_ssize_t k) noexcept nogil:
    """m *= 10**k if the result is below 2**96; False if it is not."""
    cdef Py_ssize_t i
    if m[0] == 0:
        return True
    for i in range(k):                      # at most 29 rounds before 2**96 is passed
        m[0] *= 10
        if m[0] >> 96:
            return False
    return True


cdef int wide_decimal(const unsigned char* p, const unsigned char* end, ob_u128* mant,
                      int* places) noexcept nogil:
    """The value of the well-formed JSON number at p as mant * 10**-places, places as small as
    it can be: 0 if a .NET decimal holds it (mant < 2**96, places <= 28), else E_WIDE_RANGE or
    E_WIDE_DECIMALS. Zeros are held back until a non-zero digit needs them, as in _decimal_exact.
    Stops at the first byte that is not part of the number (end may be past it)."""
    cdef ob_u128 m = 0
    cdef Py_ssize_t pend = 0, frac = 0, exp = 0, dec
    cdef bint eneg = False, in_frac = False
    cdef unsigned int d
    if p < end and p[0] == b'-':
        p += 1
    while p < end and (_is_digit(p[0]) or p[0] == b'.'):
        if p[0] == b'.':
            in_frac = True
            p += 1
            continue
        d = p[0] - 48
        frac += in_frac
        if d == 0:
            pend += 1
        else:
            if not _times10_wide(&m, pend + 1):
                return E_WIDE_RANGE
            m += d
            if m >> 96:
                return E_WIDE_RANGE
            pend = 0
        p += 1
    if p < end and (p[0] | 0x20) == b'e':
        p += 1
        if p < end and (p[0] == b'+' or p[0] == b'-'):
            eneg = p[0] == b'-'
            p += 1
        while p < end and _is_digit(p[0]):
            if exp < 100000000:
                exp = exp * 10 + (p[0] - 48)
            p += 1
        if eneg:
            exp = -exp
    dec = frac - pend - exp
    if dec < 0:
        if not _times10_wide(&m, -dec):
            return E_WIDE_RANGE
        dec = 0
    if m == 0:
        dec = 0
    if dec > WIDE_SCALE_LIMIT:
        return E_WIDE_DECIMALS
    mant[0] = m
    places[0] = <int>dec
    return 0


cdef inline void mark_wide(Num* n, Py_ssize_t text_at, bint neg) noexcept nogil:
    """Make n stand for the wide value whose text starts text_at bytes into the frame: its
    mantissa is that offset and its decimal places WIDE_DEC, which no scale reaches, so that
    to_scale refuses it and the book commits the frame wide."""
    n.mant = text_at
    n.dec = WIDE_DEC
    n.neg = neg


cdef inline bint integral(Num* n) noexcept nogil:
    """True if the number is an integer (normalizes n)."""
    if n.dec:
        normalize(n)
    return n.dec == 0


cdef inline bint to_scale(Num* n, int scale) noexcept nogil:
    """Write n with scale decimal places: the same value, (15, 1) -> (1500, 3) at scale 3, so that
    its mantissa is its units at that scale. False, n unchanged, if it has more decimal places
    (always, for scale -1) or the units do not fit int64."""
    cdef int k = scale - n.dec
    if k < 0 or n.mant > MAXMUL[k]:
        return False
    n.mant *= POW10[k]
    n.dec = scale
    return True
