# Frame parser: raw bytes of one websocket message -> a Parsed frame. Included by _core.pyx.
#
# One pass over the bytes, no Python object created. The result goes to a scratch area (the
# Parsed struct and its change arrays) and nothing in any book is touched here: the caller
# commits the frame only after the whole of it has been read and checked, which is what makes
# a frame atomic. Every function returns 0 or an error code; the error's place is kept in the
# Parsed struct and turned into a FrameError in one place (_errors.pxi).

cdef enum:
    MAX_DEPTH = 256         # deepest nesting of arrays/objects accepted in a skipped value
    MAX_PAIR = 64           # longest pair name, in bytes

ctypedef struct Change:
    Num price           # as read, or already at the book's scale (see to_scale); units at commit
    Num amount
    int cp              # 0, 1 or 3 (entries of a 431 are given cp 1)

ctypedef struct Parsed:
    uint64_t parses             # how many frames have been parsed into this area, ever
    const unsigned char* start
    const unsigned char* end
    const unsigned char* p
    # result
    int64_t type
    bint has_cs
    int64_t cs
    const unsigned char* pair   # points into the frame, or into psbuf/evbuf when escaped
    Py_ssize_t pair_len
    Py_ssize_t pair_pos         # byte offset in the frame of the pair's string (its opening quote)
    Change* changes[2]          # [0] asks (AO), [1] bids (BO)
    Py_ssize_t n[2]
    Py_ssize_t cap[2]
    int scale[2]                # the book's price and amount scales when the reader knows them, else -1
    Py_ssize_t unscaled         # values the reader could not write at those scales
    Py_ssize_t wide             # prices and amounts beyond int64 at 18 places (see mark_wide)
    # error place
    int err
    const char* detail
    Py_ssize_t err_pos
    int err_field
    int err_side                # -1, or 0/1 for AO/BO
    Py_ssize_t err_index
    # routing: the book of the pair (borrowed), when parse_frame was given a BookSet's index and
    # the exchange's layout gave the pair before the levels; NULL otherwise
    PyObject* book
    void* core                  # and its BookCore, when book is set (a BookCore*: defined after this file)
    const void* last_book       # the book of the last frame so routed (only compared: see index_route)
    # decoding buffers for escaped strings
    unsigned char psbuf[MAX_PAIR + 8]
    unsigned char evbuf[MAX_PAIR + 8]
    unsigned char keybuf[24]


cdef inline int _fail(Parsed* ps, int code, const unsigned char* at, const char* detail) noexcept nogil:
    if ps.err == E_OK:
        ps.err = code
        ps.err_pos = at - ps.start
        ps.detail = detail
    return code


cdef inline const unsigned char* _skip_ws(const unsigned char* p, const unsigned char* end) noexcept nogil:
    while p < end and p[0] <= b' ' and (p[0] == b' ' or p[0] == b'\n' or p[0] == b'\r' or p[0] == b'\t'):
        p += 1
    return p


cdef inline void _ws(Parsed* ps) noexcept nogil:
    ps.p = _skip_ws(ps.p, ps.end)


cdef inline int _expect(Parsed* ps, unsigned char c, const char* detail) noexcept nogil:
    _ws(ps)
    if ps.p >= ps.end:
        return _fail(ps, E_END, ps.p, detail)
    if ps.p[0] != c:
        return _fail(ps, E_SYNTAX, ps.p, detail)
    ps.p += 1
    return 0


cdef inline int _hex4(const unsigned char* p, unsigned int* out) noexcept nogil:
    cdef unsigned int v = 0, c
    cdef int i
    for i in range(4):
        c = p[i]
        if _is_digit(c):
            v = v * 16 + (c - 48)
        elif b'a' <= c <= b'f':
            v = v * 16 + (c - 87)
        elif b'A' <= c <= b'F':
            v = v * 16 + (c - 55)
        else:
            return -1
    out[0] = v
    return 0


cdef int _utf8_len(const unsigned char* p, const unsigned char* end) noexcept nogil:
    """Length of the valid UTF-8 sequence at p (whose first byte is >= 0x80), or 0."""
    cdef unsigned char c = p[0]
    cdef int n
    cdef unsigned char lo = 0x80, hi = 0xBF
    if 0xC2 <= c <= 0xDF:
        n = 2
    elif 0xE0 <= c <= 0xEF:
        n = 3
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
    elif 0xF0 <= c <= 0xF4:
        n = 4
        if c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
    else:
        return 0
    if end - p < n or not (lo <= p[1] <= hi):
        return 0
    if n >= 3 and not (0x80 <= p[2] <= 0xBF):
        return 0
    if n == 4 and not (0x80 <= p[3] <= 0xBF):
        return 0
    return n


cdef inline unsigned char* _put_utf8(unsigned char* o, unsigned int cp) noexcept nogil:
    if cp < 0x80:
        o[0] = cp
        return o + 1
    if cp < 0x800:
        o[0] = 0xC0 | (cp >> 6)
        o[1] = 0x80 | (cp & 0x3F)
        return o + 2
    if cp < 0x10000:
        o[0] = 0xE0 | (cp >> 12)
        o[1] = 0x80 | ((cp >> 6) & 0x3F)
        o[2] = 0x80 | (cp & 0x3F)
        return o + 3
    o[0] = 0xF0 | (cp >> 18)
    o[1] = 0x80 | ((cp >> 12) & 0x3F)
    o[2] = 0x80 | ((cp >> 6) & 0x3F)
    o[3] = 0x80 | (cp & 0x3F)
    return o + 4


cdef unsigned char PLAIN_BYTE[256]     # 1 for the bytes that stand for themselves in a string
for _b in range(256):
    PLAIN_BYTE[_b] = 0x20 <= _b < 0x80 and _b != 0x22 and _b != 0x5C


cdef inline uint64_t _not_plain8(uint64_t w) noexcept nogil:
    """The high bit of each of the eight bytes that is not plain ASCII inside a string: '"',
    '\\', a control character, or >= 0x80 (the usual bit tricks: a zero byte of w ^ c flags a
    byte equal to c). A borrow can flag a byte after a flagged one, never before: the lowest
    flag is exact."""
    cdef uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL
    cdef uint64_t quote = w ^ (ones * 0x22), slash = w ^ (ones * 0x5C)
    return (((quote - ones) & ~quote) | ((slash - ones) & ~slash) | (w - ones * 0x20) | w) & highs


cdef inline const unsigned char* _plain_run(const unsigned char* p, const unsigned char* end) noexcept nogil:
    """The first address from p on (or end) whose byte does not stand for itself in a string."""
    cdef uint64_t flags
    if OBENGINE_SWAR:
        while end - p >= 8:
            flags = _not_plain8(_load8(p))
            if flags:
                return p + (__builtin_ctzll(flags) >> 3)
            p += 8
    while p < end and PLAIN_BYTE[p[0]]:
        p += 1
    return p


cdef int _lone_surrogate(Parsed* ps, const unsigned char* at, const unsigned char* buf,
                         Py_ssize_t* n) noexcept nogil:
    """A lone surrogate escape while decoding a string into buf (see _string). In a key, or
    in event (evbuf), it only makes the value unusable (*n = -1): event is the pair only when PS
    is not a string, which parse_frame knows at the end of the payload."""
    if buf == ps.keybuf or buf == ps.evbuf:
        n[0] = -1
        return 0
    return _fail(ps, E_ESCAPE, at, "no lone surrogate in a pair name")


cdef int _string(Parsed* ps, const unsigned char** s, Py_ssize_t* n,
                 unsigned char* buf, Py_ssize_t cap) noexcept nogil:
    """Read the string whose opening quote is at ps.p; leave ps.p past the closing quote.

    Checks escapes, control characters and UTF-8. If s is not NULL, sets (*s, *n) to the
    string's value: a pointer into the frame when it has no escapes, else the value decoded
    into buf (cap bytes at most; a longer value sets *n = -1). A lone surrogate escape is valid
    JSON with no UTF-8 form: an error in a pair name, but for a key (buf is ps.keybuf) it only
    sets *n = -1, a key that matches no known key, so that it is skipped like any unknown key.
    """
    cdef const unsigned char* p = ps.p + 1
    cdef const unsigned char* end = ps.end
    cdef const unsigned char* begin = p
    cdef unsigned char c
    cdef bint escaped = False
    cdef int k
    cdef unsigned int u, u2
    cdef unsigned char* o
    while True:
        p = _plain_run(p, end)
        if p >= end:
            return _fail(ps, E_END, p, "a closing '\"'")
        c = p[0]
        if c == b'"':
            break
        if c == b'\\':
            escaped = True
            if p + 1 >= end:
                return _fail(ps, E_END, p, "an escape")
            c = p[1]
            if c == b'u':
                if end - p < 6 or _hex4(p + 2, &u) < 0:
                    return _fail(ps, E_ESCAPE, p, "\\u and four hex digits")
                p += 6
            elif c == b'"' or c == b'\\' or c == b'/' or c == b'b' or c == b'f' or c == b'n' or c == b'r' or c == b't':
                p += 2
            else:
                return _fail(ps, E_ESCAPE, p, "a valid escape")
        elif c < 0x20:
            return _fail(ps, E_CONTROL, p, NULL)
        elif c >= 0x80:
            k = _utf8_len(p, end)
            if k == 0:
                return _fail(ps, E_UTF8, p, NULL)
            p += k
        else:
            p += 1
    ps.p = p + 1
    if s == NULL:
        return 0
    if not escaped:
        s[0] = begin
        n[0] = p - begin
        return 0
    # decode the (already checked) escapes into buf
    end = p
    p = begin
    o = buf
    while p < end:
        if o - buf > cap - 4:
            n[0] = -1
            return 0
        c = p[0]
        if c != b'\\':
            o[0] = c
            o += 1
            p += 1
            continue
        c = p[1]
        if c == b'u':
            _hex4(p + 2, &u)
            p += 6
            if 0xD800 <= u <= 0xDBFF:
                if end - p >= 6 and p[0] == b'\\' and p[1] == b'u' and _hex4(p + 2, &u2) == 0 and 0xDC00 <= u2 <= 0xDFFF:
                    u = 0x10000 + ((u - 0xD800) << 10) + (u2 - 0xDC00)
                    p += 6
                else:
                    return _lone_surrogate(ps, p - 6, buf, n)
            elif 0xDC00 <= u <= 0xDFFF:
                return _lone_surrogate(ps, p - 6, buf, n)
            o = _put_utf8(o, u)
            continue
        if c == b'b':
            o[0] = 8
        elif c == b'f':
            o[0] = 12
        elif c == b'n':
            o[0] = 10
        elif c == b'r':
            o[0] = 13
        elif c == b't':
            o[0] = 9
        else:
            o[0] = c
        o += 1
        p += 2
    s[0] = buf
    n[0] = o - buf
    return 0


cdef int _skip(Parsed* ps, int depth) noexcept nogil:
    """Skip one JSON value of any type, checking its syntax."""
    cdef const unsigned char* stop
    cdef Num num
    cdef unsigned char c, close
    cdef int rc
    _ws(ps)
    if ps.p >= ps.end:
        return _fail(ps, E_END, ps.p, "a value")
    c = ps.p[0]
    if c == b'"':
        return _string(ps, NULL, NULL, NULL, 0)
    if c == b'{' or c == b'[':
        if depth >= MAX_DEPTH:
            return _fail(ps, E_DEPTH, ps.p, NULL)
        close = b'}' if c == b'{' else b']'
        ps.p += 1
        _ws(ps)
        if ps.p < ps.end and ps.p[0] == close:
            ps.p += 1
            return 0
        while True:
            if c == b'{':
                _ws(ps)
                if ps.p >= ps.end:
                    return _fail(ps, E_END, ps.p, "a key")
                if ps.p[0] != b'"':
                    return _fail(ps, E_SYNTAX, ps.p, "a key")
                rc = _string(ps, NULL, NULL, NULL, 0)
                if rc:
                    return rc
                rc = _expect(ps, b':', "':'")
                if rc:
                    return rc
            rc = _skip(ps, depth + 1)
            if rc:
                return rc
            _ws(ps)
            if ps.p >= ps.end:
                return _fail(ps, E_END, ps.p, "',' or a closing bracket")
            if ps.p[0] == b',':
                ps.p += 1
                continue
            if ps.p[0] == close:
                ps.p += 1
                return 0
            return _fail(ps, E_SYNTAX, ps.p, "',' or a closing bracket")
    if c == b'-' or _is_digit(c):
        rc = parse_decimal(ps.p, ps.end, &stop, &num)
        if rc == E_NUMBER:
            return _fail(ps, E_SYNTAX, stop, "a JSON number")
        ps.p = stop
        return 0
    if c == b't' and ps.end - ps.p >= 4 and memcmp(ps.p, b"true", 4) == 0:
        ps.p += 4
        return 0
    if c == b'f' and ps.end - ps.p >= 5 and memcmp(ps.p, b"false", 5) == 0:
        ps.p += 5
        return 0
    if c == b'n' and ps.end - ps.p >= 4 and memcmp(ps.p, b"null", 4) == 0:
        ps.p += 4
        return 0
    return _fail(ps, E_SYNTAX, ps.p, "a value")


cdef inline int _number(Parsed* ps, Num* out, bint price_or_amount) noexcept nogil:
    """Read a number given as a JSON number or as a string holding one, verbatim (no escapes).
    A price or an amount beyond int64 at 18 places that a .NET decimal holds is marked wide
    (see mark_wide); beyond that, and for other numbers beyond int64, it is an error."""
    cdef const unsigned char* at = ps.p
    cdef const unsigned char* stop
    cdef const unsigned char* text
    cdef bint quoted
    cdef int rc, places
    cdef ob_u128 mant
    if at >= ps.end:
        return _fail(ps, E_END, at, "a number")
    quoted = at[0] == b'"'
    text = at + quoted
    rc = parse_decimal(text, ps.end, &stop, out)
    if quoted:
        if stop >= ps.end or stop[0] != b'"':
            return _fail(ps, E_NUMBER if stop < ps.end else E_END, at, NULL)
        stop += 1
    if (rc == E_RANGE or rc == E_DECIMALS) and price_or_amount:
        rc = wide_decimal(text, ps.end, &mant, &places)
        if rc == 0:
            mark_wide(out, text - ps.start, text[0] == b'-')
            ps.wide += 1
    if rc:
        return _fail(ps, rc, at, NULL)
    ps.p = stop
    return 0


cdef inline uint32_t _load4(const unsigned char* p) noexcept nogil:
    cdef uint32_t w
    memcpy(&w, p, 4)
    return w


# Pieces of the exchange's layout as they appear on the wire (a level's keys, a book frame's
# header), each compared with one 32- or 64-bit load. They are compile-time constants (immediates
# in the code, not globals the compiler must reload).
cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define OB_W4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))
    #define OB_W8(a, b, c, d, e, f, g, h) (((uint64_t)OB_W4(a, b, c, d) << 32) | OB_W4(e, f, g, h))
    #else
    #define OB_W4(a, b, c, d) ((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))
    #define OB_W8(a, b, c, d, e, f, g, h) ((uint64_t)OB_W4(a, b, c, d) | ((uint64_t)OB_W4(e, f, g, h) << 32))
    #endif
    #define OB_KEY4_A OB_W4('"', 'A', '"', ':')
    #define OB_KEY4_P OB_W4('"', 'P', '"', ':')
    #define OB_KEY4_CP OB_W4('"', 'C', 'P', '"')
    #define OB_LEVEL8_CP OB_W8('{', '"', 'C', 'P', '"', ':', 0, ',')
    #define OB_LEVEL8_CP_MASK OB_W8(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF)
    #define OB_SEP8_P OB_W8('"', ',', '"', 'P', '"', ':', '"', 0)
    #define OB_SEP8_A OB_W8('"', ',', '"', 'A', '"', ':', '"', 0)
    #define OB_SEP8_MASK OB_W8(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0)
    #define OB_HEAD8 OB_W8('[', '4', '3', 0, ',', '{', '"', 'C')
    #define OB_HEAD8_MASK OB_W8(0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0xFF, 0xFF)
    #define OB_HEAD4_CS OB_W4('C', 'S', '"', ':')
    #define OB_TRAIL8_A OB_W8(',', '"', 'c', 'h', 'a', 'n', 'n', 'e')
    #define OB_TRAIL8_B OB_W8('l', '"', ':', '"', 'o', 'b', 'd', 'i')
    #define OB_TRAIL8_C OB_W8('f', 'f', '"', ',', '"', 'e', 'v', 'e')
    #define OB_TRAIL8_D OB_W8('e', 'v', 'e', 'n', 't', '"', ':', '"')
    #define OB_TRAIL8_E OB_W8('"', ',', '"', 't', 'y', 'p', 'e', '"')
    #define OB_TRAIL8_F OB_W8('e', '"', ':', '4', '3', 0, '}', ']')
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define OB_TRAIL8_F_DIGIT 16
    #else
    #define OB_TRAIL8_F_DIGIT 40
    #endif
    """
    const uint32_t KEY4_A "OB_KEY4_A"
    const uint32_t KEY4_P "OB_KEY4_P"
    const uint32_t KEY4_CP "OB_KEY4_CP"
    const uint64_t LEVEL8_CP "OB_LEVEL8_CP"         # {"CP":?,  (? the digit)
    const uint64_t LEVEL8_CP_MASK "OB_LEVEL8_CP_MASK"
    const uint64_t SEP8_P "OB_SEP8_P"               # ","P":"   (from the first number's closing quote)
    const uint64_t SEP8_A "OB_SEP8_A"               # ","A":"
    const uint64_t SEP8_MASK "OB_SEP8_MASK"
    const uint64_t HEAD8 "OB_HEAD8"                 # [43?,{"C   (? the last digit of the type)
    const uint64_t HEAD8_MASK "OB_HEAD8_MASK"
    const uint32_t HEAD4_CS "OB_HEAD4_CS"           # CS":      (from the header's 8th byte)
    const uint64_t TRAIL8_A "OB_TRAIL8_A"           # ,"channe   (the trailer: see _exchange_trailer)
    const uint64_t TRAIL8_B "OB_TRAIL8_B"           # l":"obdi
    const uint64_t TRAIL8_C "OB_TRAIL8_C"           # ff","eve
    const uint64_t TRAIL8_D "OB_TRAIL8_D"           # event":"  (overlaps C by three bytes)
    const uint64_t TRAIL8_E "OB_TRAIL8_E"           # ","type"  (after the pair)
    const uint64_t TRAIL8_F "OB_TRAIL8_F"           # e":43?}]  (? the type's last digit)
    const int TRAIL8_F_DIGIT "OB_TRAIL8_F_DIGIT"    # its bit offset


cdef inline int _key2(const unsigned char* s) noexcept nogil:
    if s[0] == b'C':
        if s[1] == b'P':
            return K_CP
        if s[1] == b'S':
            return K_CS
    elif s[1] == b'O':
        if s[0] == b'A':
            return K_AO
        if s[0] == b'B':
            return K_BO
    elif s[0] == b'P' and s[1] == b'S':
        return K_PS
    return K_UNKNOWN


cdef inline int _key(Parsed* ps, int* key) noexcept nogil:
    """Read an object key at ps.p and the ':' after it; *key gets its K_ bit (K_UNKNOWN if none)."""
    cdef const unsigned char* s
    cdef Py_ssize_t n
    cdef int rc
    if ps.p >= ps.end:
        return _fail(ps, E_END, ps.p, "a key")
    if ps.p[0] != b'"':
        return _fail(ps, E_SYNTAX, ps.p, "a key")
    rc = _string(ps, &s, &n, ps.keybuf, 20)
    if rc:
        return rc
    key[0] = K_UNKNOWN
    if n == 1:
        if s[0] == b'P':
            key[0] = K_P
        elif s[0] == b'A':
            key[0] = K_A
    elif n == 2:
        key[0] = _key2(s)
    elif n == 5 and memcmp(s, b"event", 5) == 0:
        key[0] = K_EVENT
    return _expect(ps, b':', "':' after a key")


cdef inline int _key_field(int key) noexcept nogil:
    if key == K_CS:
        return F_CS
    if key == K_PS:
        return F_PS
    if key == K_EVENT:
        return F_EVENT
    if key == K_AO:
        return F_AO
    if key == K_BO:
        return F_BO
    if key == K_P:
        return F_P
    if key == K_A:
        return F_A
    return F_CP


cdef inline int _value_end(Parsed* ps, bint* more, const char* detail) noexcept nogil:
    """After a value inside an object: ',' (more) or '}' (done)."""
    _ws(ps)
    if ps.p >= ps.end:
        return _fail(ps, E_END, ps.p, detail)
    if ps.p[0] == b',':
        ps.p += 1
        more[0] = True
        return 0
    if ps.p[0] == b'}':
        ps.p += 1
        more[0] = False
        return 0
    return _fail(ps, E_SYNTAX, ps.p, detail)


cdef int _grow_changes(Parsed* ps, int side) noexcept nogil:
    cdef Py_ssize_t cap = ps.cap[side] * 2 if ps.cap[side] else 256
    cdef Change* c = <Change*>realloc(ps.changes[side], cap * sizeof(Change))
    if c == NULL:
        return -1
    ps.changes[side] = c
    ps.cap[side] = cap
    return 0


cdef int _level(Parsed* ps, Change* ch, bint diff) noexcept nogil:
    """Read one level object {"P":..,"A":..[,"CP":..]} into ch, in any layout JSON allows, and
    say precisely what is wrong when it is not valid. Levels in the exchange's own layout are read
    by _padded_level first; this is the general way."""
    cdef int key, rc, seen = 0
    cdef bint more = True
    cdef Num num
    cdef const unsigned char* level_at = ps.p      # its '{': where an error in the level is placed
    cdef const unsigned char* at = level_at
    ch.cp = 1
    if at >= ps.end or at[0] != b'{':
        ps.err_field = F_LEVEL
        return _fail(ps, E_END if at >= ps.end else E_TYPE, at, "a level object")
    ps.p += 1
    _ws(ps)
    if ps.p < ps.end and ps.p[0] == b'}':
        ps.p += 1
        more = False
    while more:
        _ws(ps)
        ps.err_field = F_LEVEL
        rc = _key(ps, &key)
        if rc:
            return rc
        if key & seen:
            ps.err_field = _key_field(key)
            return _fail(ps, E_DUPLICATE, ps.p, NULL)
        _ws(ps)
        if key == K_P or key == K_A or (key == K_CP and diff):
            ps.err_field = _key_field(key)
            at = ps.p
            rc = _number(ps, &num, key != K_CP)
            if rc:
                return rc
            if key == K_P:
                ch.price = num
            elif key == K_A:
                ch.amount = num
            elif not integral(&num):
                return _fail(ps, E_NOT_INT, at, NULL)
            elif num.neg or not (num.mant == 0 or num.mant == 1 or num.mant == 3):
                return _fail(ps, E_CP, at, NULL)
            else:
                ch.cp = <int>num.mant
            seen |= key
        else:                           # unknown keys, and CP in a 431: skipped
            ps.err_field = F_LEVEL
            rc = _skip(ps, 4)           # inside frame array, payload, level array, level object
            if rc:
                return rc
        ps.err_field = F_LEVEL
        rc = _value_end(ps, &more, "',' or '}' in a level")
        if rc:
            return rc
    at = level_at
    if not (seen & K_P):
        ps.err_field = F_P
        return _fail(ps, E_MISSING, at, NULL)
    if diff and not (seen & K_CP):
        ps.err_field = F_CP
        return _fail(ps, E_MISSING, at, NULL)
    if not (seen & K_A):
        if ch.cp != 3:
            ps.err_field = F_A
            return _fail(ps, E_MISSING, at, NULL)
        ch.amount.mant = 0
        ch.amount.dec = 0
        ch.amount.neg = False
    if ch.price.neg or ch.price.mant == 0:
        ps.err_field = F_P
        return _fail(ps, E_PRICE, at, NULL)
    if ch.amount.neg:
        ps.err_field = F_A
        return _fail(ps, E_AMOUNT, at, NULL)
    return 0


cdef int settle_decimals(Parsed* ps, int scale, bint amounts) noexcept nogil:
    """For the commit's conversion: the most real decimal places among the frame's prices (or
    amounts) if that is more than scale, else at most scale ("1.50" has one real decimal place).

    The count comes from a value written with the most places whose last digit is not a zero
    (the exchange strips trailing zeros, so the first such value settles it). A value met before
    it that ends in a zero is shortened by one place on the way, which leaves it the same value;
    if none has such a digit, all of them are shortened and the next count down is tried."""
    cdef int side, top = 0
    cdef Py_ssize_t k
    cdef Num* n
    for side in range(2):
        for k in range(ps.n[side]):
            n = &ps.changes[side][k].amount if amounts else &ps.changes[side][k].price
            if n.dec > top:
                top = n.dec
    while top > scale:
        for side in range(2):
            for k in range(ps.n[side]):
                n = &ps.changes[side][k].amount if amounts else &ps.changes[side][k].price
                if n.dec == top:
                    if n.mant % 10:
                        return top
                    n.mant //= 10           # a trailing zero ("0.0", too, which stays 0)
                    n.dec -= 1
        top -= 1
    return top


cdef inline const unsigned char* _padded_level(const unsigned char* p, Change* ch, bint diff) noexcept nogil:
    """A level as the exchange writes it, in its order: {"CP":d,"P":"price","A":"amount"} in a
    432, {"A":"amount","P":"price"} in a 431 (#392 and captured frames), read as a fixed sequence
    of pieces, each one compare. Other orders go to _padded_level_any. Takes and returns what that
    does (p at the '{', PAD readable bytes) and reads less: at most 74 bytes, as the first number
    starts at byte 13 and ends by byte 33 (19 digits and a '.'), the second starts by byte 40,
    and a number's reader reads 34.

    Each number has its own inlined reader: the CPU then learns the branches of each apart, and
    a pair's prices keep one shape while its amounts take many. One reader in a loop over both
    ran 4% more instructions and 1.5-3.5% slower (w1, w2)."""
    cdef const unsigned char* q = p + 1
    cdef unsigned int d
    cdef Num* first
    cdef Num* second
    if diff:
        if (_load8(p) & LEVEL8_CP_MASK) != LEVEL8_CP:
            return _padded_level_any(p, ch, diff)
        d = p[6] - 48
        if d > 3 or d == 2:
            return NULL
        ch.cp = d
        q = p + 8
        if _load4(q) != KEY4_P or q[4] != b'"':
            return _padded_level_any(p, ch, diff)
        first = &ch.price
        second = &ch.amount
    else:
        ch.cp = 1
        if _load4(q) != KEY4_A or q[4] != b'"':
            return _padded_level_any(p, ch, diff)
        first = &ch.amount
        second = &ch.price
    q = _padded_decimal(q + 5, first)
    if q == NULL:
        return NULL
    if (_load8(q) & SEP8_MASK) != (SEP8_A if diff else SEP8_P):
        return _padded_level_any(p, ch, diff)
    q = _padded_decimal(q + 7, second)
    if q == NULL:
        return NULL
    if q[0] != b'"' or q[1] != b'}' or ch.price.mant == 0:
        return NULL
    return q + 2


cdef const unsigned char* _padded_level_any(const unsigned char* p, Change* ch, bint diff) noexcept nogil:
    """A level as the exchange writes it: compact, "A" and "P" as quoted unsigned decimals and, in a
    432, "CP" as one digit, in any order. p is at the '{' with PAD readable bytes (see _fixed.pxi).
    Returns the address past the '}' with ch filled, or NULL for anything else (an error
    included): _level then reads the same bytes the general way and says what is wrong. Accepts
    exactly a subset of what _level accepts, with the same result.

    Reads at most 1 + 41 + 41 + 7 bytes: '{', two number members (key, quote, a number read by
    _padded_decimal, quote, ','), a CP member; a key seen twice is refused before its value.
    """
    cdef uint32_t w
    cdef int key, seen = 0
    cdef unsigned int d
    cdef Num* num
    ch.cp = 1
    p += 1                                  # past '{'
    while True:
        w = _load4(p)
        if w == KEY4_A:
            key = K_A
            num = &ch.amount
        elif w == KEY4_P:
            key = K_P
            num = &ch.price
        elif w == KEY4_CP and p[4] == b':' and diff:
            key = K_CP
        else:
            return NULL
        if key & seen:
            return NULL
        seen |= key
        if key == K_CP:
            d = p[5] - 48
            if d > 3 or d == 2:
                return NULL
            ch.cp = d
            p += 6
        else:
            if p[4] != b'"':
                return NULL
            p = _padded_decimal(p + 5, num)
            if p == NULL or p[0] != b'"':
                return NULL
            p += 1
        if p[0] == b',':
            p += 1
            continue
        if p[0] != b'}':
            return NULL
        break
    if seen != (K_P | K_A | (K_CP if diff else 0)):
        return NULL
    if ch.price.mant == 0:
        return NULL
    return p + 1


cdef extern from *:
    """
    /* n bytes (a constant multiple of 16) from s to d, and n zeros to d + n, in 16-byte vector
       moves: written out, as the compiler makes a constant-size memcpy or memset of PAD bytes a
       rep movs / rep stos, whose start-up costs more than the copy. */
    typedef unsigned char ob_v16 __attribute__((vector_size(16)));
    static inline void ob_pad_copy(unsigned char* d, const unsigned char* s, int n) {
        ob_v16 v, zero = {0};
        int i;
        for (i = 0; i < n; i += 16) {
            memcpy(&v, s + i, 16);
            memcpy(d + i, &v, 16);
            memcpy(d + n + i, &zero, 16);
        }
    }
    """
    void ob_pad_copy(unsigned char* d, const unsigned char* s, int n) nogil


cdef inline void _copy_tail(unsigned char* tail, const unsigned char* start, const unsigned char* end) noexcept nogil:
    """tail (2 * PAD bytes): the frame's last PAD bytes (all of it if it is shorter) ending at
    tail + PAD, then PAD zeros. A frame's last levels are read from here on every frame."""
    if end - start >= PAD:
        ob_pad_copy(tail, end - PAD, PAD)
    else:
        memcpy(tail + PAD - (end - start), start, end - start)
        memset(tail + PAD, 0, PAD)


cdef inline const unsigned char* _padded_src(const unsigned char* p, const unsigned char* start,
                                             const unsigned char* end, unsigned char* tail,
                                             bint* tail_ready) noexcept nogil:
    """Where a padded reader reads the frame's bytes from p (PAD readable bytes): p itself while
    that many remain, else the same place in tail, the frame's last bytes then zeros, copied by
    _copy_tail on first need (*tail_ready says it is done)."""
    if end - p >= PAD:
        return p
    if not tail_ready[0]:
        _copy_tail(tail, start, end)
        tail_ready[0] = True
    return tail + (PAD - (end - p))


cdef int _levels(Parsed* ps, int side, bint diff) noexcept nogil:
    """Read the AO/BO array into ps.changes[side]."""
    cdef int rc
    cdef Py_ssize_t i = 0
    cdef const unsigned char* p
    cdef const unsigned char* q
    cdef const unsigned char* src
    cdef Change* ch
    cdef unsigned char tail[2 * PAD]        # see _padded_src
    cdef bint tail_ready = False
    cdef const unsigned char* end = ps.end
    cdef const unsigned char* start = ps.start
    cdef Py_ssize_t room
    cdef int price_scale = ps.scale[0], amount_scale = ps.scale[1]
    cdef Py_ssize_t unscaled = 0
    ps.err_side = side
    _ws(ps)
    if ps.p >= ps.end:
        return _fail(ps, E_END, ps.p, "an array of levels")
    if ps.p[0] != b'[':
        ps.err_field = F_AO + side
        ps.err_side = -1
        return _fail(ps, E_TYPE, ps.p, "an array of levels")
    ps.p += 1
    _ws(ps)
    if ps.p < ps.end and ps.p[0] == b']':
        ps.p += 1
        ps.err_side = -1
        return 0
    p = ps.p
    # The scratch area's fields in locals: the compiler cannot keep them in registers itself, as
    # every store into a Change might, for all it knows, change them.
    ch = ps.changes[side]
    room = ps.cap[side]
    while True:
        if i == room:
            if _grow_changes(ps, side) < 0:
                return _fail(ps, E_RANGE, p, "memory for the frame's levels")
            ch = ps.changes[side] + i
            room = ps.cap[side]
        q = NULL
        if p < end and p[0] == b'{':
            src = _padded_src(p, start, end, tail, &tail_ready)
            q = _padded_level(src, ch, diff)
        if q != NULL:
            p += q - src
        else:
            ps.p = _skip_ws(p, end)
            ps.err_index = i
            rc = _level(ps, ch, diff)
            if rc:
                return rc
            p = ps.p
        # at the book's scales while it is in cache: the commit then has nothing to convert
        unscaled += not (to_scale(&ch.price, price_scale) and to_scale(&ch.amount, amount_scale))
        i += 1
        ch += 1
        if p < end and p[0] == b',':
            p += 1
            continue
        p = _skip_ws(p, end)
        if p < end and p[0] == b',':
            p = _skip_ws(p + 1, end)
            continue
        if p < end and p[0] == b']':
            break
        ps.n[side] = i
        return _fail(ps, E_END if p >= end else E_SYNTAX, p, "',' or ']' after a level")
    ps.p = p + 1
    ps.n[side] = i
    ps.unscaled += unscaled
    ps.err_side = -1
    ps.err_field = F_NONE
    return 0


cdef int _pair_value(Parsed* ps, const unsigned char** s, Py_ssize_t* n,
                     unsigned char* buf, int field) noexcept nogil:
    """PS / event: a string (sets *s, *n) or null (leaves *s NULL)."""
    ps.err_field = field
    if ps.p < ps.end and ps.p[0] == b'"':
        return _string(ps, s, n, buf, MAX_PAIR + 4)
    if ps.end - ps.p >= 4 and memcmp(ps.p, b"null", 4) == 0:
        ps.p += 4
        s[0] = NULL
        return 0
    return _fail(ps, E_TYPE, ps.p, "a string or null")


cdef inline void _name_pair(Parsed* ps, const unsigned char* s, Py_ssize_t n,
                            const unsigned char* at) noexcept nogil:
    """The pair as far as the general reading has read it (PS, else event), so that an error
    later in the frame names it; a name of the wrong length names nothing."""
    if 0 < n <= MAX_PAIR:
        ps.pair = s
        ps.pair_len = n
        ps.pair_pos = at - ps.start


cdef inline const unsigned char* _lit(const unsigned char* p, const unsigned char* end,
                                     const char* text, Py_ssize_t n) noexcept nogil:
    """The address past text (n bytes) if the frame has it at p, else NULL (also for p NULL)."""
    if p == NULL or end - p < n or memcmp(p, text, n) != 0:
        return NULL
    return p + n


cdef inline const unsigned char* _plain_string(const unsigned char* p, const unsigned char* end,
                                              const unsigned char** s, Py_ssize_t* n) noexcept nogil:
    """A string of plain bytes at p (see PLAIN_BYTE): set (*s, *n) to its value, which is its
    bytes, and return the address past it. NULL for anything else (also for p NULL)."""
    cdef const unsigned char* begin
    if p == NULL or p >= end or p[0] != b'"':
        return NULL
    begin = p + 1
    p = _plain_run(begin, end)
    if p >= end or p[0] != b'"':
        return NULL
    s[0] = begin
    n[0] = p - begin
    return p + 1


cdef inline const unsigned char* _plain_pair(const unsigned char* p, const unsigned char* end,
                                            const unsigned char** s, Py_ssize_t* n) noexcept nogil:
    """PS / event in the exchange's layout: a plain string, or null (leaves *s NULL)."""
    if p != NULL and end - p >= 4 and memcmp(p, b"null", 4) == 0:
        return p + 4
    return _plain_string(p, end, s, n)


# The kind of frame whose levels _layout_levels reads, as a type (a tag whose value is never
# read), so that Cython writes one copy of it per kind, diff a constant in each: gcc kept one, the
# kind a flag tested on every level. The same device as SideTag (_side.pxi).
ctypedef char ChangesTag            # a 432: {"CP":d,"P":..,"A":..}
ctypedef short SnapshotTag          # a 431: {"A":..,"P":..}
ctypedef fused LevelTag:
    ChangesTag
    SnapshotTag


cdef const unsigned char* _layout_levels(Parsed* ps, int side, const unsigned char* p, unsigned char* tail,
                                         bint* tail_ready, LevelTag kind) noexcept nogil:
    """The AO/BO array at p in the exchange's layout (compact, each level read by _padded_level)
    into ps.changes[side], the values at ps.scale where they fit (see to_scale); the address past
    its ']', or NULL for anything else, which parse_frame then reads the general way. tail is
    the frame's padded tail (see _padded_src).

    Only the exchange's layout, so nothing here places an error: the loop keeps what it needs
    in registers."""
    cdef bint diff = LevelTag is ChangesTag
    cdef const unsigned char* end = ps.end
    cdef const unsigned char* src
    cdef const unsigned char* q
    cdef Change* ch = ps.changes[side]
    cdef Change* room = ch + ps.cap[side]      # past the last Change there is room for
    cdef Py_ssize_t i
    cdef int price_scale = ps.scale[0], amount_scale = ps.scale[1]
    if p == NULL or end - p < 2 or p[0] != b'[':
        return NULL
    p += 1
    if p[0] == b']':
        ps.n[side] = 0
        return p + 1
    while True:
        if ch == room:
            i = ch - ps.changes[side]
            if _grow_changes(ps, side) < 0:
                return NULL
            ch = ps.changes[side] + i
            room = ps.changes[side] + ps.cap[side]
        src = _padded_src(p, ps.start, end, tail, tail_ready)
        if src[0] != b'{':                  # _padded_level takes it as read
            return NULL
        q = _padded_level(src, ch, diff)
        if q == NULL:
            return NULL
        p += q - src
        # at the book's scales while it is in cache: the commit then has nothing to convert
        if not (to_scale(&ch.price, price_scale) and to_scale(&ch.amount, amount_scale)):
            ps.unscaled += 1
        ch += 1
        if p < end and p[0] == b',':
            p += 1
            continue
        break
    if p >= end or p[0] != b']':
        return NULL
    ps.n[side] = ch - ps.changes[side]
    return p + 1


cdef inline bint _exchange_trailer(const unsigned char* q, const unsigned char* end, const unsigned char* pair,
                                  Py_ssize_t n, const uint64_t* head, unsigned char digit) noexcept nogil:
    """The frame ends at q with the trailer the exchange writes after BO, its event the pair of
    PS (pair, n bytes, a plain string, head its name_head) and its type the frame's (43 and
    digit):

        ,"channel":"obdiff","event":"<pair>","type":43<digit>}]

    compared in a few loads. Such a trailer is one the general reading accepts, adding nothing
    to what the frame says (event names the pair PS names). False for any other (NULL pair
    included): _layout_frame then reads it piece by piece."""
    cdef const unsigned char* t
    cdef uint64_t event[2]
    if pair == NULL or end - q != 43 + n:
        return False
    if (_load8(q) != TRAIL8_A or _load8(q + 8) != TRAIL8_B or _load8(q + 16) != TRAIL8_C
            or _load8(q + 21) != TRAIL8_D):
        return False
    name_head(q + 29, n, n >= 2, event)         # the event and the 14 bytes after it: 16 when n >= 2
    if (event[0] != head[0] or event[1] != head[1]
            or (n > NAME_HEAD and memcmp(q + 29 + NAME_HEAD, pair + NAME_HEAD, n - NAME_HEAD) != 0)):
        return False
    t = q + 29 + n                              # ","type":43x}]  (14 bytes)
    return _load8(t) == TRAIL8_E and _load8(t + 6) == (TRAIL8_F | (<uint64_t>digit << TRAIL8_F_DIGIT))


cdef int _layout_frame(Parsed* ps, const void* index) noexcept nogil:
    """Read a book frame laid out as the exchange writes it, straight through:

        [43x,{"CS":int,"PS":"pair"|null,"AO":[levels],"BO":[levels],"channel":"..","event":"pair"|null,"type":int}]

    compact, plain strings, CS written as an integer. Returns 0 with ps filled exactly as the
    general reading would fill it, or 1 for any other frame, valid or not: parse_frame then reads
    it again the general way, which also names what is wrong. Accepts a subset of what the
    general reading accepts, with the same result. Given a BookSet's PairIndex, it looks the pair
    up as soon as it has read PS and sets ps.book and ps.scale (see index_route).
    """
    cdef const unsigned char* end = ps.end
    cdef const unsigned char* q
    cdef const unsigned char* ps_s = NULL
    cdef uint64_t ps_head[2]                # the name_head of PS, when ps_s is set
    cdef const unsigned char* ev_s = NULL
    cdef const unsigned char* ch_s
    cdef Py_ssize_t ps_n = 0, ev_n = 0, ch_n
    cdef const unsigned char* digits
    cdef uint64_t cs = 0
    cdef bint diff, cs_neg
    cdef const PairSlot* slot
    cdef int side
    cdef unsigned char tail[2 * PAD]        # see _padded_src
    cdef bint tail_ready = False
    # the header [43x,{"CS": then CS, up to 16 digits, whose reader needs 18 readable bytes
    if end - ps.start < 64:
        return 1
    q = ps.start
    if (_load8(q) & HEAD8_MASK) != HEAD8 or _load4(q + 7) != HEAD4_CS or not (q[3] == b'1' or q[3] == b'2'):
        return 1
    diff = q[3] == b'2'
    cs_neg = q[11] == b'-'
    digits = q + 11 + cs_neg
    q = _padded_digits(digits, &cs)
    if q == digits or q[0] != b',' or (digits[0] == b'0' and q - digits > 1):     # no digit, or a leading zero
        return 1
    q = _plain_pair(_lit(q, end, b',"PS":', 6), end, &ps_s, &ps_n)
    if ps_s != NULL:        # loaded in place: a frame that goes on to its levels has NAME_HEAD bytes there
        name_head(ps_s, ps_n, end - ps_s >= NAME_HEAD, ps_head)
    if index != NULL and ps_s != NULL:
        slot = index_route(index, ps_head, ps_s, ps_n, ps.last_book)    # its memory comes into cache as we read on
        if slot != NULL:
            ps.last_book = slot.book
            ps.book = slot.book
            ps.core = slot.core
            ps.scale[0] = slot.core.scale[0]
            ps.scale[1] = slot.core.scale[1]
    for side in range(2):               # one call site per value of diff: each copy has it constant
        q = _lit(q, end, b',"BO":' if side else b',"AO":', 6)
        if diff:
            q = _layout_levels(ps, side, q, tail, &tail_ready, <ChangesTag>0)
        else:
            q = _layout_levels(ps, side, q, tail, &tail_ready, <SnapshotTag>0)
        if q == NULL:
            return 1
    if not _exchange_trailer(q, end, ps_s, ps_n, ps_head, ps.start[3]):
        q = _plain_string(_lit(q, end, b',"channel":', 11), end, &ch_s, &ch_n)
        q = _plain_pair(_lit(q, end, b',"event":', 9), end, &ev_s, &ev_n)
        q = _lit(q, end, b',"type":', 8)
        if q == NULL or q >= end or not (b'1' <= q[0] <= b'9'):
            return 1
        q += 1
        while q < end and _is_digit(q[0]):
            q += 1
        if _lit(q, end, b'}]', 2) != end:
            return 1
    if ps_s == NULL:
        ps_s = ev_s
        ps_n = ev_n
    if ps_s == NULL or ps_n == 0 or ps_n > MAX_PAIR:
        return 1
    ps.type = 432 if diff else 431
    ps.cs = -<int64_t>cs if cs_neg else <int64_t>cs
    ps.has_cs = True
    ps.pair = ps_s
    ps.pair_len = ps_n
    ps.pair_pos = ps_s - 1 - ps.start       # a plain string's value starts after its quote
    ps.p = end
    return 0


cdef inline void _begin(Parsed* ps, const unsigned char* buf, Py_ssize_t size, const int* scale) noexcept nogil:
    ps.start = buf
    ps.p = buf
    ps.end = buf + size
    ps.err = E_OK
    ps.detail = NULL
    ps.err_field = F_NONE
    ps.err_side = -1
    ps.err_index = 0
    ps.has_cs = False
    ps.pair = NULL
    ps.pair_len = 0
    ps.pair_pos = 0
    ps.n[0] = 0
    ps.n[1] = 0
    ps.unscaled = 0
    ps.wide = 0
    ps.type = 0
    ps.book = NULL
    ps.core = NULL
    if scale != NULL:
        ps.scale[0] = scale[0]
        ps.scale[1] = scale[1]
    else:
        ps.scale[0] = -1
        ps.scale[1] = -1


cdef extern from *:
    void __builtin_prefetch(const void*) nogil


cdef enum:
    PREFETCH_BYTES = 1024   # how much of a frame _prefetch_frame asks for: 16 cache lines


cdef inline void _prefetch_frame(const unsigned char* buf, Py_ssize_t size) noexcept nogil:
    """Ask the CPU to fetch the frame's cache lines (its first PREFETCH_BYTES) all at once. A
    feed's frames are seldom still cached when they are applied (a stream of 40,000 frames of
    380 pairs is 22 MB), and the reader needs each line in turn: asked for together, their
    fetches overlap instead of following one another. That is a typical 432 whole (500-700
    bytes); the CPU's own prefetcher streams the rest of a bigger frame (asking for 4 KB up front
    made 100-level snapshots about 2% slower). A hint changes nothing."""
    cdef Py_ssize_t at
    for at in range(64, min(size, PREFETCH_BYTES), 64):
        __builtin_prefetch(buf + at)


cdef int parse_frame(Parsed* ps, const unsigned char* buf, Py_ssize_t size, const void* index,
                     const int* scale) noexcept nogil:
    """Parse one frame into ps. On success ps.type tells what it is: 431/432 with the payload
    read (cs, pair, changes), or any other integer for frames that are not book frames. Given a
    BookSet's PairIndex, ps.book may be set to the pair's book (see _layout_frame). Given the
    book's scales (or the routed book's), the values are written at them (see to_scale)."""
    cdef Num num
    cdef int rc, key, seen = 0
    cdef bint more = True, diff
    cdef const unsigned char* ps_s = NULL
    cdef const unsigned char* ev_s = NULL
    cdef Py_ssize_t ps_n = 0, ev_n = 0
    cdef const unsigned char* payload_at
    cdef const unsigned char* value_at
    cdef const unsigned char* ps_at = NULL
    cdef const unsigned char* ev_at = NULL
    ps.parses += 1
    _prefetch_frame(buf, size)
    _begin(ps, buf, size, scale)
    if _layout_frame(ps, index) == 0:           # the exchange's layout; any other frame, valid or not:
        return 0
    _begin(ps, buf, size, scale)        # read the general way, which also names what is wrong

    _ws(ps)
    if ps.p >= ps.end or ps.p[0] != b'[':
        return _fail(ps, E_NOT_FRAME if ps.p < ps.end else E_END, ps.p, "'['")
    ps.p += 1
    _ws(ps)
    ps.err_field = F_TYPE
    if ps.p >= ps.end or not (ps.p[0] == b'-' or _is_digit(ps.p[0])):
        return _fail(ps, E_NOT_FRAME if ps.p < ps.end else E_END, ps.p, "an integer frame type")
    rc = _number(ps, &num, False)
    if rc:
        return rc
    if not integral(&num):
        return _fail(ps, E_NOT_FRAME, ps.start, "an integer frame type")
    ps.type = -num.mant if num.neg else num.mant
    ps.err_field = F_NONE
    _ws(ps)
    if ps.type != 431 and ps.type != 432:
        # Not a book frame: check the rest is valid JSON, read nothing.
        if ps.p < ps.end and ps.p[0] == b',':
            while True:
                ps.p += 1
                rc = _skip(ps, 1)
                if rc:
                    return rc
                _ws(ps)
                if ps.p < ps.end and ps.p[0] == b',':
                    continue
                break
        rc = _expect(ps, b']', "',' or ']'")
        if rc:
            return rc
        _ws(ps)
        if ps.p != ps.end:
            return _fail(ps, E_SYNTAX, ps.p, "the end of the frame")
        return 0

    diff = ps.type == 432
    rc = _expect(ps, b',', "',' and the payload")
    if rc:
        return rc
    _ws(ps)
    payload_at = ps.p
    if ps.p >= ps.end:
        return _fail(ps, E_END, ps.p, "the payload object")
    if ps.p[0] != b'{':
        ps.err_field = F_PAYLOAD
        return _fail(ps, E_NOT_BOOK_FRAME, ps.p, NULL)
    ps.p += 1
    _ws(ps)
    if ps.p < ps.end and ps.p[0] == b'}':
        ps.p += 1
        more = False
    while more:
        _ws(ps)
        ps.err_field = F_PAYLOAD
        rc = _key(ps, &key)
        if rc:
            return rc
        if key & seen:
            ps.err_field = _key_field(key)
            return _fail(ps, E_DUPLICATE, ps.p, NULL)
        seen |= key
        _ws(ps)
        if key == K_CS:
            ps.err_field = F_CS
            value_at = ps.p
            rc = _number(ps, &num, False)
            if rc == 0:
                if not integral(&num):
                    rc = _fail(ps, E_NOT_INT, value_at, NULL)
                else:
                    ps.cs = -num.mant if num.neg else num.mant
                    ps.has_cs = True
        elif key == K_PS:
            ps_at = ps.p
            rc = _pair_value(ps, &ps_s, &ps_n, ps.psbuf, F_PS)
            if rc == 0 and ps_s != NULL:
                _name_pair(ps, ps_s, ps_n, ps_at)
        elif key == K_EVENT:
            ev_at = ps.p
            rc = _pair_value(ps, &ev_s, &ev_n, ps.evbuf, F_EVENT)
            if rc == 0 and ev_s != NULL and ps_s == NULL:
                _name_pair(ps, ev_s, ev_n, ev_at)
        elif key == K_AO:
            rc = _levels(ps, 0, diff)
        elif key == K_BO:
            rc = _levels(ps, 1, diff)
        else:
            rc = _skip(ps, 2)       # inside the frame array and the payload
        if rc:
            return rc
        ps.err_field = F_PAYLOAD
        rc = _value_end(ps, &more, "',' or '}' in the payload")
        if rc:
            return rc
    rc = _expect(ps, b']', "']' after the payload")
    if rc:
        return rc
    _ws(ps)
    if ps.p != ps.end:
        return _fail(ps, E_SYNTAX, ps.p, "the end of the frame")
    # The pair: PS, else event, whichever is a string (n < 0: one too long to decode, or for
    # event one with a lone surrogate, see _lone_surrogate; never usable as a pair name).
    if ps_s != NULL or ps_n < 0:
        ps.pair = ps_s
        ps.pair_len = ps_n
        ps.pair_pos = ps_at - ps.start
        ps.err_field = F_PS
    elif ev_s != NULL or ev_n < 0:
        ps.err_field = F_EVENT
        if ev_n < 0:
            # unusable (see _lone_surrogate), and the pair: read it again as a pair name (into
            # psbuf, unused without PS), which says what is wrong with it and where
            ps.p = ev_at
            rc = _string(ps, &ev_s, &ev_n, ps.psbuf, MAX_PAIR + 4)
            if rc:
                return rc
        ps.pair = ev_s
        ps.pair_len = ev_n
        ps.pair_pos = ev_at - ps.start
    else:
        ps.err_field = F_NONE
        return _fail(ps, E_NO_PAIR, payload_at, NULL)
    if ps.pair_len <= 0 or ps.pair_len > MAX_PAIR:
        ps.pair = NULL
        return _fail(ps, E_PAIR_LENGTH, payload_at, NULL)
    if not ps.has_cs:
        ps.err_field = F_CS
        return _fail(ps, E_MISSING, payload_at, NULL)
    ps.err_field = F_NONE
    return 0
