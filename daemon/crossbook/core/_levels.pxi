# Included by _native.pyx (one extension module, its source in parts): numbers and levels.

# -- numbers --------------------------------------------------------------------------------------

cdef inline bint _plain(const char* s, Py_ssize_t n, int64_t* m, int* d) noexcept:
    """A plain decimal text (digits, at most one dot, a digit at least) that fits: its mantissa
    and decimals. What does not fit or is not plain goes through ``exact.parse``."""
    cdef Py_ssize_t i
    cdef int64_t v = 0
    cdef int dec = -1
    cdef bint digit = False
    cdef unsigned char c
    if n == 0 or n > PLAIN_MAX:
        return False
    for i in range(n):
        c = <unsigned char>s[i]
        if c == 46:
            if dec >= 0:
                return False
            dec = 0
            continue
        if c < 48 or c > 57:
            return False
        if v > (INT64_MAX - (c - 48)) // 10:
            return False
        v = v * 10 + (c - 48)
        digit = True
        if dec >= 0:
            dec += 1
    if not digit:
        return False
    if dec < 0:
        dec = 0
    if dec > MAX_DECIMALS:
        return False
    m[0] = v
    d[0] = dec
    return True


cdef bint of_decimal(object value, int64_t* m, int* d) except -1:
    """A ``Decimal``'s mantissa and decimals, if it is finite, not negative and fits."""
    if not value.is_finite() or value.is_signed():
        return False
    sign, digits, exponent = value.as_tuple()
    cdef int64_t v = 0
    cdef int e = exponent
    for digit in digits:
        if v > (INT64_MAX - digit) // 10:
            return False
        v = v * 10 + digit
    if e > 0:
        if e > MAX_DECIMALS or v > INT64_MAX // P10[e]:
            return False
        v *= P10[e]
        e = 0
    if -e > MAX_DECIMALS:
        return False
    m[0] = v
    d[0] = -e
    return True


cdef inline Py_ssize_t _digits(char* out, Py_ssize_t at, int64_t m) noexcept:
    """Write a mantissa's digits (none for zero, as leading zeros are stripped); returns the end."""
    cdef char tmp[20]
    cdef int k = 0
    while m:
        tmp[k] = <char>(48 + m % 10)
        m //= 10
        k += 1
    while k:
        k -= 1
        out[at] = tmp[k]
        at += 1
    return at


cdef object _decimal(int64_t m, int d):
    """The ``Decimal`` of a mantissa with ``d`` decimals (its exponent is ``-d``, as given)."""
    text = str(m)
    if d:
        if len(text) <= d:
            text = "0" * (d + 1 - len(text)) + text
        text = text[: len(text) - d] + "." + text[len(text) - d :]
    return _Decimal(text)


cdef bint _value(object item, int64_t* m, int* d) except -1:
    """Read one price or size as ``exact.parse`` reads it (raising what it raises): its mantissa
    and decimals, or False when it is valid but does not fit."""
    cdef const char* s
    cdef Py_ssize_t n
    if PyUnicode_Check(item) and item.isascii():
        s = PyUnicode_AsUTF8AndSize(item, &n)
        if _plain(s, n, m, d):
            return True
    elif type(item) is _Decimal:
        if of_decimal(item, m, d):
            return True
        return False
    return of_decimal(_parse(item), m, d)


# -- levels ---------------------------------------------------------------------------------------

cdef class Levels:
    """A batch of levels (one message's side, say): ``(price, size)`` pairs read as ``Decimal``.

    Held as mantissas with their decimals; ``exact`` holds the ``Decimal`` pairs instead when one
    of them does not fit. Iterating gives the pairs as ``exact.parse`` would have made them."""

    def __cinit__(self):
        self.lv = NULL
        self.n = 0
        self.cap = 0
        self.exact = None

    def __dealloc__(self):
        PyMem_Free(self.lv)

    cdef int push(self, int64_t price, int pd, int64_t size, int sd) except -1:
        cdef Lvl* grown
        if self.n == self.cap:
            self.cap = self.cap * 2 if self.cap else 16
            grown = <Lvl*>PyMem_Realloc(self.lv, self.cap * sizeof(Lvl))
            if grown == NULL:
                raise MemoryError()
            self.lv = grown
        self.lv[self.n].price = price
        self.lv[self.n].size = size
        self.lv[self.n].pd = <uint8_t>pd
        self.lv[self.n].sd = <uint8_t>sd
        self.n += 1
        return 0

    def __len__(self):
        return len(self.exact) if self.exact is not None else self.n

    def __bool__(self):
        return bool(self.exact) if self.exact is not None else self.n > 0

    def __iter__(self):
        return iter(self.pairs())

    def __getitem__(self, index):
        return self.pairs()[index]

    def __eq__(self, other):
        try:
            return self.pairs() == list(other)
        except TypeError:
            return NotImplemented

    def __repr__(self):
        return f"Levels({self.pairs()!r})"

    def __add__(self, other):
        return _concat(self, as_levels(other))

    def __radd__(self, other):
        return _concat(as_levels(other), self)

    cpdef list pairs(self):
        """The levels as ``(Decimal, Decimal)`` pairs."""
        if self.exact is not None:
            return list(self.exact)
        cdef Py_ssize_t i
        return [(_decimal(self.lv[i].price, self.lv[i].pd), _decimal(self.lv[i].size, self.lv[i].sd)) for i in range(self.n)]

    def highest(self):
        """The highest price, or None for no levels."""
        return _extreme(self, True)

    def lowest(self):
        """The lowest price, or None for no levels."""
        return _extreme(self, False)

    def at_least(self, floor):
        """The levels priced at ``floor`` or above, in order."""
        return _bounded(self, floor, True)

    def at_most(self, ceiling):
        """The levels priced at ``ceiling`` or below, in order."""
        return _bounded(self, ceiling, False)


cdef inline int _cmp(int64_t a, int ad, int64_t b, int bd) noexcept:
    """Compare two values given with (possibly) different decimals (both fit once rescaled,
    or the larger-scaled one is compared by division)."""
    cdef int64_t x, y
    if ad == bd:
        x, y = a, b
    elif ad < bd:
        if a > INT64_MAX // P10[bd - ad]:
            return 1
        x, y = a * P10[bd - ad], b
    else:
        if b > INT64_MAX // P10[ad - bd]:
            return -1
        x, y = a, b * P10[ad - bd]
    return (x > y) - (x < y)


cdef object _extreme(Levels levels, bint high):
    if levels.exact is not None:
        if not levels.exact:
            return None
        return (max if high else min)(p for p, _ in levels.exact)
    if levels.n == 0:
        return None
    cdef Py_ssize_t i, best = 0
    cdef int c
    for i in range(1, levels.n):
        c = _cmp(levels.lv[i].price, levels.lv[i].pd, levels.lv[best].price, levels.lv[best].pd)
        if (c > 0) if high else (c < 0):
            best = i
    # The first of equal prices, as max() and min() of the pure levels give.
    return _decimal(levels.lv[best].price, levels.lv[best].pd)


cdef Levels _bounded(Levels levels, object bound, bint at_least):
    cdef Levels out = Levels.__new__(Levels)
    if levels.exact is not None:
        out.exact = [lv for lv in levels.exact if (lv[0] >= bound if at_least else lv[0] <= bound)]
        return out
    cdef int64_t m
    cdef int d, c
    cdef Py_ssize_t i
    if not of_decimal(bound, &m, &d):
        out.exact = [lv for lv in levels.pairs() if (lv[0] >= bound if at_least else lv[0] <= bound)]
        return out
    for i in range(levels.n):
        c = _cmp(levels.lv[i].price, levels.lv[i].pd, m, d)
        if (c >= 0) if at_least else (c <= 0):
            out.push(levels.lv[i].price, levels.lv[i].pd, levels.lv[i].size, levels.lv[i].sd)
    return out


cdef Levels _concat(Levels a, Levels b):
    cdef Levels out = Levels.__new__(Levels)
    cdef Py_ssize_t i
    if a.exact is not None or b.exact is not None:
        out.exact = a.pairs() + b.pairs()
        return out
    for i in range(a.n):
        out.push(a.lv[i].price, a.lv[i].pd, a.lv[i].size, a.lv[i].sd)
    for i in range(b.n):
        out.push(b.lv[i].price, b.lv[i].pd, b.lv[i].size, b.lv[i].sd)
    return out


def levels(raw):
    """``[[price, size, ...], ...]`` (the shape most venues send) as :class:`Levels`, each text
    read as ``exact.parse`` reads it (what it refuses raises its ``BadNumber``)."""
    cdef Levels out = Levels.__new__(Levels)
    cdef int64_t pm, sm
    cdef int pd, sd
    cdef list pairs = None
    try:
        for level in raw:  # read in the pure twin's order, so a bad level raises what it raises
            price = level[0]
            if pairs is None:
                if _value(price, &pm, &pd):
                    size = level[1]
                    if _value(size, &sm, &sd):
                        out.push(pm, pd, sm, sd)
                        continue
                pairs = out.pairs()
            parsed = _parse(price)
            pairs.append((parsed, _parse(level[1])))
    except TypeError:
        raise _BadNumber(f"not a list of [price, size] levels: {str(raw)[:100]!r}") from None
    if pairs is not None:
        out.exact = pairs
    return out


cpdef Levels as_levels(object given):
    """Levels as :class:`Levels`: (``Decimal``, ``Decimal``) pairs, say, from a plugin."""
    if type(given) is Levels:
        return <Levels>given
    cdef Levels out = Levels.__new__(Levels)
    cdef int64_t pm, sm
    cdef int pd, sd
    cdef list pairs = list(given)
    for price, size in pairs:
        if type(price) is _Decimal and type(size) is _Decimal and of_decimal(price, &pm, &pd) and of_decimal(size, &sm, &sd):
            out.push(pm, pd, sm, sd)
        else:
            out.exact = pairs
            out.n = 0
            return out
    return out
