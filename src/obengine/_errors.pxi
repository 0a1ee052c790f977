# Error codes -> FrameError, in one place. Included by _core.pyx.

cdef dict _MESSAGES = {
    E_END: "the frame ends early",
    E_SYNTAX: "invalid JSON",
    E_DEPTH: "JSON nested deeper than 256 levels",
    E_UTF8: "invalid UTF-8 in a string",
    E_CONTROL: "unescaped control character in a string",
    E_ESCAPE: "invalid escape in a string",
    E_NOT_FRAME: "not a [type, payload] frame",
    E_NOT_BOOK_FRAME: "a 431/432 frame must be [type, object]",
    E_NUMBER: "not a number",
    E_RANGE: "value does not fit int64",
    E_DECIMALS: "more than 18 decimal places",
    E_NOT_INT: "not an integer",
    E_CP: "unknown CP (expected 0, 1 or 3)",
    E_DUPLICATE: "duplicate key",
    E_TYPE: "wrong JSON type",
    E_MISSING: "missing",
    E_NO_PAIR: "no pair: PS and event are both missing or null",
    E_PAIR_LENGTH: "pair name must be 1 to 64 bytes",
    E_PRICE: "price must be > 0",
    E_AMOUNT: "amount must be >= 0",
    E_WRONG_PAIR: "frame is for another pair",
    E_WIDE_RANGE: "value beyond what a .NET decimal holds (more than 2**96 - 1 units of its last digit)",
    E_WIDE_DECIMALS: "more than 28 decimal places",
}

cdef tuple _FIELDS = ("", "type", "payload", "CS", "PS", "event", "AO", "BO", "P", "A", "CP", "")


cdef object _field_name(int field, int side, Py_ssize_t index):
    if side >= 0:
        name = f"{'AO' if side == 0 else 'BO'}[{index}]"
        if field == F_P or field == F_A or field == F_CP:
            name += "." + _FIELDS[field]
        return name
    return _FIELDS[field] if 0 <= field < len(_FIELDS) else ""


cdef object _frame_error(const Parsed* ps, str pair, str extra=None):
    """Build the FrameError for the error recorded in ps. Everything is read from ps before the
    first allocation (see "Atomicity" in _core.pyx: an allocation may let another apply run)."""
    cdef int code = ps.err
    cdef Py_ssize_t pos = ps.err_pos
    cdef Py_ssize_t size = ps.end - ps.start
    cdef const char* detail = ps.detail
    cdef int field_id = ps.err_field, side = ps.err_side
    cdef Py_ssize_t index = ps.err_index
    cdef bint has_cs = ps.has_cs
    cdef int64_t cs_value = ps.cs
    cdef const char* pair_at = <const char*>ps.pair
    cdef Py_ssize_t pair_len = ps.pair_len
    cdef const char* start = <const char*>ps.start
    near_bytes = start[pos:min(pos + 24, size)] if 0 <= pos < size else None
    if pair is None and pair_at != NULL:
        pair = pair_at[:pair_len].decode("utf-8", "replace")
    field = _field_name(field_id, side, index)
    reason = _MESSAGES.get(code, "invalid frame")
    if detail != NULL and code in (E_SYNTAX, E_END, E_TYPE, E_ESCAPE, E_NOT_FRAME):
        reason += f": expected {detail.decode('ascii')}"
    if extra:
        reason += f" ({extra})"
    if field:
        reason = f"{field}: {reason}"
    if near_bytes is not None:
        reason += f", near {near_bytes.decode('utf-8', 'replace')!r}"
    return _FrameError(reason, pair=pair, cs=cs_value if has_cs else None, offset=pos)
