# A BookSet's routing table: pair name (UTF-8 bytes) -> its Book. Included by _core.pyx.
#
# Open addressing, kept at most half full. It is plain C, with no Python object touched, so that
# the frame reader can look the pair up as soon as it has read it (PS comes before the levels in
# the exchange's layout) and have the CPU fetch the book's hot memory while it reads the rest of
# the frame: with hundreds of books, and other processes sharing the caches, a book is seldom
# still cached when its next frame comes.

cdef enum:
    NAME_HEAD = 16                  # bytes of a pair's name kept in its slot: all of the exchange's

ctypedef struct PairSlot:
    uint64_t hash
    PyObject* book                  # borrowed (the BookSet's dict holds it); NULL: an empty slot
    const char* name                # the book's pair name (the buffer of its bytes object)
    Py_ssize_t name_len
    uint64_t head[2]                # its first NAME_HEAD bytes, zero past its end (see name_head),
                                    # compared here: no read of the bytes object, elsewhere in memory
    BookCore* core                  # the book's C state (inside the book, which never moves)
    PyObject* results               # the book's tuple of apply's results, by status (borrowed)
    PyObject* applied               # its (pair, Status.APPLIED): what apply returns most (borrowed)

ctypedef struct PairIndex:
    PairSlot* slots
    Py_ssize_t mask                 # number of slots - 1; -1 while there are none


cdef inline void name_head(const unsigned char* s, Py_ssize_t n, bint readable16, uint64_t* head) noexcept nogil:
    """head[0], head[1]: the first NAME_HEAD bytes of a pair name of n bytes at s, as two
    little-endian words, zero past its end. readable16: NAME_HEAD bytes can be read from s (the
    name is followed by more of its frame), so they are loaded in place; otherwise they are
    copied first. The same words either way. A frame may name a pair with no bytes (an error,
    found later): each mask is taken only for a word that holds some of the name, since a shift
    by 64 bits is undefined."""
    cdef unsigned char buf[NAME_HEAD]
    cdef Py_ssize_t k = min(n, <Py_ssize_t>NAME_HEAD)
    if not readable16:
        memset(buf, 0, NAME_HEAD)
        memcpy(buf, s, k)
        s = buf
    head[0] = (_load8(s) & (0xFFFFFFFFFFFFFFFFULL >> (8 * (8 - min(k, 8))))) if k > 0 else 0
    head[1] = (_load8(s + 8) & (0xFFFFFFFFFFFFFFFFULL >> (8 * (NAME_HEAD - k)))) if k > 8 else 0


cdef inline uint64_t pair_hash(const uint64_t* head, const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Hash of a pair name (n bytes at s, head its name_head): its head words multiplied and
    mixed, a few operations that depend on each other less than a byte-at-a-time hash's, so the
    lookup's load of the slot starts sooner; bytes past NAME_HEAD (none in the exchange's names)
    are folded in one at a time. The index takes the low bits: the last shift brings the
    products' high bits down to them."""
    cdef uint64_t h = (head[0] * 0x9E3779B97F4A7C15ULL) ^ (head[1] * 0xC2B2AE3D27D4EB4FULL) ^ <uint64_t>n
    cdef Py_ssize_t i
    for i in range(NAME_HEAD, n):
        h = (h ^ s[i]) * 1099511628211ULL
    h ^= h >> 32
    h *= 0xBF58476D1CE4E5B9ULL
    return h ^ (h >> 29)


cdef inline const PairSlot* index_find_head(const PairIndex* ix, const uint64_t* head, const unsigned char* name,
                                            Py_ssize_t n) noexcept nogil:
    """The slot of the pair name (n bytes, head its name_head), or NULL if it has none."""
    cdef uint64_t h
    cdef Py_ssize_t i
    cdef const PairSlot* slot
    if ix.slots == NULL:
        return NULL
    h = pair_hash(head, name, n)
    i = <Py_ssize_t>(h & <uint64_t>ix.mask)
    while ix.slots[i].book != NULL:
        slot = &ix.slots[i]
        if (slot.hash == h and slot.name_len == n and slot.head[0] == head[0] and slot.head[1] == head[1]
                and (n <= NAME_HEAD or memcmp(slot.name + NAME_HEAD, name + NAME_HEAD, n - NAME_HEAD) == 0)):
            return slot
        i = (i + 1) & ix.mask
    return NULL


cdef inline const PairSlot* index_find(const PairIndex* ix, const unsigned char* name, Py_ssize_t n) noexcept nogil:
    """The slot of the pair name (n bytes), or NULL if it has none."""
    cdef uint64_t head[2]
    name_head(name, n, False, head)
    return index_find_head(ix, head, name, n)


cdef const PairSlot* index_route(const void* index, const uint64_t* head, const unsigned char* name,
                                 Py_ssize_t n, const void* last) noexcept nogil:
    """For the frame reader: the slot of the pair name (head its name_head) or NULL, and a hint to the CPU
    to fetch what applying the frame will read: the book object's first lines (its header and
    BookCore), the result apply returns, and the rows of both sides that side_find reads: the
    first and last TOP levels, where most changes land, and the rows its bisection reads first
    (the quarter, half and three-quarter points). With hundreds of books each of those reads
    would otherwise wait for memory in turn, while these fetches overlap (and the frame is read
    meanwhile). A fixed handful of lines, not the whole side: fetching every row cost a loop of
    about 200 instructions a frame and was no faster. The rows are not asked for when the book
    is last, the book the frame before went to: a feed of one pair keeps its book in cache. A
    hint changes nothing."""
    cdef const PairSlot* slot = index_find_head(<const PairIndex*>index, head, name, n)
    cdef const Side* s
    cdef const char* rows
    cdef Py_ssize_t row = 2 * <Py_ssize_t>sizeof(int64_t)      # bytes
    cdef Py_ssize_t at, size, top
    cdef int side
    if slot == NULL:
        return NULL
    __builtin_prefetch(<const char*>slot.book)
    __builtin_prefetch(<const char*>slot.book + 64)
    __builtin_prefetch(<const char*>slot.book + 128)
    __builtin_prefetch(<const char*>slot.results)
    __builtin_prefetch(<const char*>slot.applied)
    if slot.book == last:
        return slot
    for side in range(2):
        s = &slot.core.sides[side]
        rows = <const char*>side_rows(s)
        size = s.n * row
        if size == 0:
            continue
        top = min(size, TOP * row)                  # the first and the last TOP rows: up to 3 lines each
        __builtin_prefetch(rows)
        __builtin_prefetch(rows + (top >> 1))
        __builtin_prefetch(rows + top - 1)
        __builtin_prefetch(rows + size - top)
        __builtin_prefetch(rows + size - (top >> 1))
        __builtin_prefetch(rows + size - 1)
        at = (s.n >> 2) * row                       # a quarter of the side, whole rows
        __builtin_prefetch(rows + at)
        __builtin_prefetch(rows + 2 * at)
        __builtin_prefetch(rows + 3 * at)
    return slot


cdef inline void _index_put(PairIndex* ix, const PairSlot* entry) noexcept nogil:
    cdef Py_ssize_t i = <Py_ssize_t>(entry.hash & <uint64_t>ix.mask)
    while ix.slots[i].book != NULL:
        i = (i + 1) & ix.mask
    ix.slots[i] = entry[0]


cdef int index_add(PairIndex* ix, PairSlot* entry, Py_ssize_t count) except -1:
    """Add entry (its head and hash are filled in here), the index then holding count entries. Raises
    MemoryError, leaving the index unchanged, if it cannot grow."""
    cdef Py_ssize_t size, i
    cdef PairSlot* old = ix.slots
    cdef Py_ssize_t old_size = ix.mask + 1
    name_head(<const unsigned char*>entry.name, entry.name_len, False, entry.head)
    entry.hash = pair_hash(entry.head, <const unsigned char*>entry.name, entry.name_len)
    if 2 * count > old_size:
        size = 16
        while size < 4 * count:
            size *= 2
        ix.slots = <PairSlot*>PyMem_Calloc(size, sizeof(PairSlot))
        if ix.slots == NULL:
            ix.slots = old
            raise MemoryError()
        ix.mask = size - 1
        for i in range(old_size):
            if old[i].book != NULL:
                _index_put(ix, &old[i])
        PyMem_Free(old)
    _index_put(ix, entry)
    return 0
