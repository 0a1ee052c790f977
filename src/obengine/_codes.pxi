# Error codes and field names shared by the parser and the book. Included by _core.pyx.

# Error codes (0 is success). Messages live in _errors.pxi.
cdef enum:
    E_OK = 0
    E_END               # the frame ends too early
    E_SYNTAX            # invalid JSON; ps.detail says what was expected
    E_DEPTH
    E_UTF8
    E_CONTROL           # unescaped control character in a string
    E_ESCAPE
    E_NOT_FRAME         # not a [type, ...] array
    E_NOT_BOOK_FRAME    # a 431/432 that is not exactly [type, object]
    E_NUMBER            # not a number
    E_RANGE             # does not fit int64
    E_DECIMALS          # more than SCALE_LIMIT decimal places
    E_NOT_INT
    E_CP
    E_DUPLICATE
    E_TYPE              # a known key with a value of the wrong JSON type
    E_MISSING
    E_NO_PAIR
    E_PAIR_LENGTH
    E_PRICE
    E_AMOUNT
    E_WRONG_PAIR        # raised by Book, not the parser
    E_WIDE_RANGE        # a price or amount beyond .NET decimal: m >= 2**96
    E_WIDE_DECIMALS     # a price or amount with more than WIDE_SCALE_LIMIT decimal places

# Fields, for error locations.
cdef enum:
    F_NONE = 0
    F_TYPE
    F_PAYLOAD
    F_CS
    F_PS
    F_EVENT
    F_AO
    F_BO
    F_P
    F_A
    F_CP
    F_LEVEL

# Known-key bits, for duplicate detection.
cdef enum:
    K_CS = 1
    K_PS = 2
    K_EVENT = 4
    K_AO = 8
    K_BO = 16
    K_P = 32
    K_A = 64
    K_CP = 128
    K_UNKNOWN = 0
