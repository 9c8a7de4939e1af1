# cython: language_level=3, cdivision=True, initializedcheck=False
"""The native twin of crossbook.core's levels and venue book: the same behaviour as the pure
modules (:mod:`crossbook.core.book`, :func:`crossbook.core.exact.levels`), which are the
reference, with prices and sizes held as fixed-point integers.

A value is a mantissa and the decimals it was given with: ``"65000.10"`` is 6500010 with 2. A
book holds its prices at one scale (the most decimals seen) and its sizes at another, so
comparing and summing are integer operations, and gives each value back with the decimals it came
with. A value that does not fit (more than 18 digits, more than 18 decimals, or a rescaled value
beyond 64 bits) sends that book to the exact path: from then on it is a pure book of ``Decimal``,
never rounded. Memory comes from ``PyMem_*``, so ``tracemalloc`` (the memory bench) counts it.
"""

from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport INT64_MAX, int64_t, uint8_t, uint16_t
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memmove

from decimal import Decimal

from crossbook.core import exact as _exact

cdef extern from *:
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL

DEF MAX_DECIMALS = 18

cdef int64_t P10[19]
P10[0] = 1
for _i in range(1, 19):
    P10[_i] = P10[_i - 1] * 10

cdef Py_ssize_t PLAIN_MAX = _exact.PLAIN_MAX
cdef object _ZERO = Decimal(0)
cdef object _Decimal = Decimal
cdef object _parse = _exact.parse
cdef object _BadNumber = _exact.BadNumber


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


# -- the venue book -------------------------------------------------------------------------------

DEF BID = 0
DEF ASK = 1


cdef inline Py_ssize_t _find(Lvl* a, Py_ssize_t n, int64_t price, bint desc, bint* found) noexcept:
    """Where ``price`` is in a side sorted ascending (bids) or descending (asks), or would go."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    cdef int64_t p
    while lo < hi:
        mid = (lo + hi) >> 1
        p = a[mid].price
        if p == price:
            found[0] = True
            return mid
        if (p < price) != desc:
            lo = mid + 1
        else:
            hi = mid
    found[0] = False
    return lo


cdef struct Entry:
    Lvl lv
    Py_ssize_t order


cdef int _cmp_entry(const void* a, const void* b) noexcept nogil:
    """By price, then in the order given."""
    cdef const Entry* x = <const Entry*>a
    cdef const Entry* y = <const Entry*>b
    if x.lv.price != y.lv.price:
        return (x.lv.price > y.lv.price) - (x.lv.price < y.lv.price)
    return (x.order > y.order) - (x.order < y.order)


cdef class Book:
    """A venue's L2 book for one symbol: the native twin of :class:`crossbook.core.book.PureL2Book`.

    Each side is an array best-last (bids ascending, asks descending), so the changes that come
    most, near the top, move the fewest entries."""

    def __cinit__(self):
        self.side[0] = self.side[1] = NULL
        self.n[0] = self.n[1] = 0
        self.cap[0] = self.cap[1] = 0
        self.ps = self.ss = 0
        self.exact = None

    def __dealloc__(self):
        PyMem_Free(self.side[0])
        PyMem_Free(self.side[1])

    # -- the exact path --------------------------------------------------------------------------

    cdef _to_exact(self):
        """Leave the native path: the same levels, as a pure book of ``Decimal``."""
        from crossbook.core.book import PureL2Book

        book = PureL2Book()
        book.replace(self._pairs(BID, self.n[BID]), self._pairs(ASK, self.n[ASK]))
        self.exact = book
        self.n[BID] = self.n[ASK] = 0

    cdef list _pairs(self, int s, Py_ssize_t count):
        """The best ``count`` levels of a side, best first, as given."""
        cdef Lvl* a = self.side[s]
        cdef Py_ssize_t i, top = self.n[s]
        cdef list out = []
        if count > top:
            count = top
        for i in range(top - 1, top - 1 - count, -1):
            out.append((_decimal(a[i].price // P10[self.ps - a[i].pd], a[i].pd),
                        _decimal(a[i].size // P10[self.ss - a[i].sd], a[i].sd)))
        return out

    # -- scales ----------------------------------------------------------------------------------

    cdef bint _rescale(self, int ps, int ss):
        """Hold prices with ``ps`` decimals and sizes with ``ss`` (never fewer than now); False
        if a value would not fit."""
        cdef int s
        cdef Py_ssize_t i
        cdef int64_t fp, fs, top
        if ps < self.ps:
            ps = self.ps
        if ss < self.ss:
            ss = self.ss
        if ps > MAX_DECIMALS or ss > MAX_DECIMALS:
            return False
        fp, fs = P10[ps - self.ps], P10[ss - self.ss]
        if fp == 1 and fs == 1:
            return True
        for s in range(2):
            top = 0
            if self.n[s]:
                top = self.side[s][self.n[s] - 1].price if s == BID else self.side[s][0].price
            if top > INT64_MAX // fp:
                return False
            for i in range(self.n[s]):
                if self.side[s][i].size > INT64_MAX // fs:
                    return False
        for s in range(2):
            for i in range(self.n[s]):
                self.side[s][i].price *= fp
                self.side[s][i].size *= fs
        self.ps, self.ss = ps, ss
        return True

    cdef bint _fit(self, Levels bids, Levels asks):
        """Rescale so that every level of both batches fits; False if one cannot."""
        cdef int ps = self.ps, ss = self.ss, k
        cdef Py_ssize_t i
        cdef Levels levels
        for levels in (bids, asks):
            for i in range(levels.n):
                if levels.lv[i].pd > ps:
                    ps = levels.lv[i].pd
                if levels.lv[i].sd > ss:
                    ss = levels.lv[i].sd
        if not self._rescale(ps, ss):
            return False
        for levels in (bids, asks):
            for i in range(levels.n):
                if levels.lv[i].price > INT64_MAX // P10[self.ps - levels.lv[i].pd]:
                    return False
                if levels.lv[i].size > INT64_MAX // P10[self.ss - levels.lv[i].sd]:
                    return False
        return True

    # -- changes ---------------------------------------------------------------------------------

    cdef int _grow(self, int s, Py_ssize_t need) except -1:
        cdef Lvl* grown
        cdef Py_ssize_t cap = self.cap[s]
        if need <= cap:
            return 0
        cap = cap * 2 if cap else 64
        while cap < need:
            cap *= 2
        grown = <Lvl*>PyMem_Realloc(self.side[s], cap * sizeof(Lvl))
        if grown == NULL:
            raise MemoryError()
        self.side[s] = grown
        self.cap[s] = cap
        return 0

    cdef int _set(self, int s, Lvl* level) except -1:
        """Apply one level (absolute size, zero removes) to a side; the batch's mantissas are
        raw, rescaled here."""
        cdef int64_t price = level.price * P10[self.ps - level.pd]
        cdef int64_t size = level.size * P10[self.ss - level.sd]
        cdef bint found
        cdef Py_ssize_t at = _find(self.side[s], self.n[s], price, s == ASK, &found)
        cdef Lvl* a
        if size:
            if found:
                a = &self.side[s][at]
                a.size = size
                a.sd = level.sd
                return 0
            self._grow(s, self.n[s] + 1)
            a = self.side[s]
            memmove(&a[at + 1], &a[at], (self.n[s] - at) * sizeof(Lvl))
            a[at].price = price
            a[at].pd = level.pd
            a[at].size = size
            a[at].sd = level.sd
            self.n[s] += 1
        elif found:
            a = self.side[s]
            memmove(&a[at], &a[at + 1], (self.n[s] - at - 1) * sizeof(Lvl))
            self.n[s] -= 1
        return 0

    def apply(self, bids, asks):
        """Apply absolute level sizes in order; size zero removes (an absent level is fine)."""
        cdef Levels b = as_levels(bids), a = as_levels(asks)
        cdef Py_ssize_t i
        if self.exact is None and (b.exact is not None or a.exact is not None or not self._fit(b, a)):
            self._to_exact()
        if self.exact is not None:
            self.exact.apply(b.pairs(), a.pairs())
            return
        for i in range(b.n):
            self._set(BID, &b.lv[i])
        for i in range(a.n):
            self._set(ASK, &a.lv[i])

    def replace(self, bids, asks):
        """Load a snapshot: the book becomes exactly these levels (zero sizes skipped)."""
        cdef Levels b = as_levels(bids), a = as_levels(asks)
        self.clear()
        if b.exact is not None or a.exact is not None or not self._fit(b, a):
            self._to_exact()
            self.exact.replace(b.pairs(), a.pairs())
            return
        self._load(BID, b)
        self._load(ASK, a)

    cdef int _load(self, int s, Levels levels) except -1:
        """A side from a snapshot's levels: sorted once, not inserted one by one. Of equal prices
        the first nonzero gives the price as given, the last nonzero the size (a dict's way)."""
        cdef Py_ssize_t i, j, k = 0, n = 0
        cdef Entry* tmp = <Entry*>PyMem_Malloc((levels.n + 1) * sizeof(Entry))
        cdef Lvl* a
        cdef Lvl swap
        if tmp == NULL:
            raise MemoryError()
        try:
            for i in range(levels.n):
                if levels.lv[i].size:
                    tmp[n].lv = levels.lv[i]
                    tmp[n].lv.price *= P10[self.ps - tmp[n].lv.pd]
                    tmp[n].lv.size *= P10[self.ss - tmp[n].lv.sd]
                    tmp[n].order = i
                    n += 1
            qsort(tmp, n, sizeof(Entry), _cmp_entry)
            self._grow(s, n)
            a = self.side[s]
            i = 0
            while i < n:
                j = i
                while j + 1 < n and tmp[j + 1].lv.price == tmp[i].lv.price:
                    j += 1
                a[k].price = tmp[i].lv.price
                a[k].pd = tmp[i].lv.pd
                a[k].size = tmp[j].lv.size
                a[k].sd = tmp[j].lv.sd
                k += 1
                i = j + 1
            if s == ASK:  # best last: descending
                for i in range(k // 2):
                    swap = a[i]
                    a[i] = a[k - 1 - i]
                    a[k - 1 - i] = swap
            self.n[s] = k
        finally:
            PyMem_Free(tmp)
        return 0

    def truncate(self, int depth):
        """Keep the best ``depth`` levels a side; returns the removed ones with size zero, as the
        pure book does (removed bids highest first, removed asks lowest first)."""
        if self.exact is not None:
            cut_bids, cut_asks = self.exact.truncate(depth)
            return as_levels(cut_bids), as_levels(cut_asks)
        cdef Levels cut_b = Levels.__new__(Levels), cut_a = Levels.__new__(Levels)
        cdef Py_ssize_t i, keep
        cdef Lvl* a
        cdef int s
        for s in range(2):
            keep = self.n[s] - depth
            if keep <= 0:
                continue
            a = self.side[s]
            if s == BID:
                for i in range(keep - 1, -1, -1):
                    cut_b.push(a[i].price // P10[self.ps - a[i].pd], a[i].pd, 0, 0)
            else:
                for i in range(keep - 1, -1, -1):
                    cut_a.push(a[i].price // P10[self.ps - a[i].pd], a[i].pd, 0, 0)
            memmove(&a[0], &a[keep], depth * sizeof(Lvl))
            self.n[s] = depth
        return cut_b, cut_a

    def clear(self):
        self.n[BID] = self.n[ASK] = 0
        self.ps = self.ss = 0
        self.exact = None

    # -- reading ---------------------------------------------------------------------------------

    cdef object _size(self, int s, object price):
        cdef int64_t m
        cdef int d
        cdef bint found
        cdef Py_ssize_t at
        cdef Lvl* lv
        if not of_decimal(price, &m, &d):
            return None
        if d > self.ps:
            if m % P10[d - self.ps]:
                return None
            m //= P10[d - self.ps]
        else:
            if m > INT64_MAX // P10[self.ps - d]:
                return None
            m *= P10[self.ps - d]
        at = _find(self.side[s], self.n[s], m, s == ASK, &found)
        if not found:
            return None
        lv = &self.side[s][at]
        return _decimal(lv.size // P10[self.ss - lv.sd], lv.sd)

    def bid_size(self, price):
        return self.exact.bid_size(price) if self.exact is not None else self._size(BID, price)

    def ask_size(self, price):
        return self.exact.ask_size(price) if self.exact is not None else self._size(ASK, price)

    def top_bids(self, Py_ssize_t n):
        if self.exact is not None:
            return self.exact.top_bids(n)
        return self._pairs(BID, n) if n > 0 else []

    def top_asks(self, Py_ssize_t n):
        if self.exact is not None:
            return self.exact.top_asks(n)
        return self._pairs(ASK, n) if n > 0 else []

    def digits(self, Py_ssize_t n, bint bids):
        if self.exact is not None:
            return self.exact.digits(n, bids)
        cdef int s = BID if bids else ASK
        cdef Lvl* a = self.side[s]
        cdef Py_ssize_t i, top = self.n[s], count = n if n < self.n[s] else self.n[s], at = 0
        if count <= 0:
            return ""
        cdef char* out = <char*>PyMem_Malloc(count * 40)  # two int64s: at most 19 digits each
        if out == NULL:
            raise MemoryError()
        try:
            for i in range(top - 1, top - 1 - count, -1):
                at = _digits(out, at, a[i].price // P10[self.ps - a[i].pd])
                at = _digits(out, at, a[i].size // P10[self.ss - a[i].sd])
            return out[:at].decode("ascii")
        finally:
            PyMem_Free(out)

    def bids(self):
        return self.exact.bids() if self.exact is not None else self._pairs(BID, self.n[BID])

    def asks(self):
        return self.exact.asks() if self.exact is not None else self._pairs(ASK, self.n[ASK])

    def best_bid(self):
        if self.exact is not None:
            return self.exact.best_bid()
        top = self._pairs(BID, 1)
        return top[0] if top else None

    def best_ask(self):
        if self.exact is not None:
            return self.exact.best_ask()
        top = self._pairs(ASK, 1)
        return top[0] if top else None

    def depths(self):
        """Levels on each side: (bids, asks)."""
        return self.exact.depths() if self.exact is not None else (self.n[BID], self.n[ASK])

    def sides(self):
        """Every level, (bids, asks) best first, as :class:`Levels` (for a consolidated book)."""
        if self.exact is not None:
            return as_levels(self.exact.bids()), as_levels(self.exact.asks())
        cdef Levels out
        cdef Lvl* a
        cdef int s
        cdef Py_ssize_t i
        found = []
        for s in range(2):
            out = Levels.__new__(Levels)
            a = self.side[s]
            for i in range(self.n[s] - 1, -1, -1):
                out.push(a[i].price // P10[self.ps - a[i].pd], a[i].pd, a[i].size // P10[self.ss - a[i].sd], a[i].sd)
            found.append(out)
        return found[0], found[1]

    def crossed(self):
        """True when the best bid is at or above the best ask: a venue book must never be."""
        if self.exact is not None:
            return self.exact.crossed()
        return bool(self.n[BID] and self.n[ASK] and self.side[BID][self.n[BID] - 1].price >= self.side[ASK][self.n[ASK] - 1].price)

    def __len__(self):
        return len(self.exact) if self.exact is not None else self.n[BID] + self.n[ASK]

    @property
    def native(self):
        """Whether the book is on the native path (not the exact one)."""
        return self.exact is None


# -- venues ---------------------------------------------------------------------------------------

import orjson as _orjson

cdef dict _venue_ids = {}
cdef list _venue_names = []
cdef list _venue_jsons = []


cdef uint16_t venue_id(object name) except? 65535:
    """A small number for a venue name (names are few and live as long as the process)."""
    got = _venue_ids.get(name)
    if got is not None:
        return <uint16_t>got
    if len(_venue_names) >= 65535:
        raise OverflowError("more than 65,534 venue names")
    number = len(_venue_names)
    _venue_ids[name] = number
    _venue_names.append(name)
    _venue_jsons.append(_orjson.dumps(name))
    return <uint16_t>number


cdef object venue_name(uint16_t venue):
    return _venue_names[venue]


cdef bytes venue_json(uint16_t venue):
    """The venue's name as a JSON string, as orjson writes it."""
    return _venue_jsons[venue]


# -- the consolidated book ------------------------------------------------------------------------


cdef inline Py_ssize_t _cfind(CLvl* a, Py_ssize_t n, int64_t price, bint desc, bint* found) noexcept:
    cdef Py_ssize_t lo = 0, hi = n, mid
    cdef int64_t p
    while lo < hi:
        mid = (lo + hi) >> 1
        p = a[mid].price
        if p == price:
            found[0] = True
            return mid
        if (p < price) != desc:
            lo = mid + 1
        else:
            hi = mid
    found[0] = False
    return lo


cdef inline bint _add(int64_t a, int64_t b, int64_t* out) noexcept:
    """``a + b`` of two non-negative values; False on overflow."""
    if a > INT64_MAX - b:
        return False
    out[0] = a + b
    return True


DEF OVERFLOW = 1


cdef class Consolidated:
    """The sum of the live venues' books with attribution: the native twin of
    :class:`crossbook.core.consolidated.PureConsolidatedBook`. Each side is an array best-last;
    a level quoted by one venue (most are) holds that venue and its size inline, one quoted by
    several holds their shares in name order. Every change to a level gives it a new version, as
    the pure book's, so a channel can tell what changed since it last looked."""

    def __cinit__(self):
        self.side[0] = self.side[1] = NULL
        self.n[0] = self.n[1] = 0
        self.cap[0] = self.cap[1] = 0
        self.ps = self.ss = 0
        self.version = 0
        self.exact = None

    def __dealloc__(self):
        cdef int s
        cdef Py_ssize_t i
        for s in range(2):
            for i in range(self.n[s]):
                PyMem_Free(self.side[s][i].shares)
            PyMem_Free(self.side[s])

    cdef int _grow(self, int s, Py_ssize_t need) except -1:
        cdef CLvl* grown
        cdef Py_ssize_t cap = self.cap[s]
        if need <= cap:
            return 0
        cap = cap * 2 if cap else 64
        while cap < need:
            cap *= 2
        grown = <CLvl*>PyMem_Realloc(self.side[s], cap * sizeof(CLvl))
        if grown == NULL:
            raise MemoryError()
        self.side[s] = grown
        self.cap[s] = cap
        return 0

    cdef bint _rescale(self, int ps, int ss):
        cdef int s
        cdef Py_ssize_t i, j
        cdef int64_t fp, fs, top
        cdef CLvl* lv
        if ps < self.ps:
            ps = self.ps
        if ss < self.ss:
            ss = self.ss
        if ps > MAX_DECIMALS or ss > MAX_DECIMALS:
            return False
        fp, fs = P10[ps - self.ps], P10[ss - self.ss]
        if fp == 1 and fs == 1:
            return True
        for s in range(2):
            if self.n[s]:
                top = self.side[s][self.n[s] - 1].price if s == BID else self.side[s][0].price
                if top > INT64_MAX // fp:
                    return False
            for i in range(self.n[s]):
                if self.side[s][i].total > INT64_MAX // fs:
                    return False
        for s in range(2):
            for i in range(self.n[s]):
                lv = &self.side[s][i]
                lv.price *= fp
                lv.total *= fs
                for j in range(lv.nshares):
                    lv.shares[j].size *= fs
        self.ps, self.ss = ps, ss
        return True

    cdef bint _fit(self, Levels bids, Levels asks):
        cdef int ps = self.ps, ss = self.ss
        cdef Py_ssize_t i
        cdef Levels levels
        for levels in (bids, asks):
            for i in range(levels.n):
                if levels.lv[i].pd > ps:
                    ps = levels.lv[i].pd
                if levels.lv[i].sd > ss:
                    ss = levels.lv[i].sd
        if not self._rescale(ps, ss):
            return False
        for levels in (bids, asks):
            for i in range(levels.n):
                if levels.lv[i].price > INT64_MAX // P10[self.ps - levels.lv[i].pd]:
                    return False
                if levels.lv[i].size > INT64_MAX // P10[self.ss - levels.lv[i].sd]:
                    return False
        return True

    cdef int _level(self, int s, uint16_t venue, Lvl* given) except -1:
        """One venue's absolute size at one price (zero removes its share): the pure book's
        ``_side`` for one level. Returns OVERFLOW (and changes nothing) if a total would not fit."""
        cdef int64_t price = given.price * P10[self.ps - given.pd]
        cdef int64_t size = given.size * P10[self.ss - given.sd]
        cdef bint found
        cdef Py_ssize_t at = _cfind(self.side[s], self.n[s], price, s == ASK, &found)
        cdef CLvl* lv
        cdef Py_ssize_t i, j
        cdef int64_t total
        cdef Share* grown
        if not found:
            if size:
                self._grow(s, self.n[s] + 1)
                lv = self.side[s]
                memmove(&lv[at + 1], &lv[at], (self.n[s] - at) * sizeof(CLvl))
                self.version += 1
                lv[at].price, lv[at].total, lv[at].version = price, size, self.version
                lv[at].shares, lv[at].venue, lv[at].nshares, lv[at].pd = NULL, venue, 0, given.pd
                self.n[s] += 1
            return 0
        lv = &self.side[s][at]
        if lv.shares == NULL and lv.venue == venue:  # the venue quotes it alone
            if not size:
                memmove(lv, lv + 1, (self.n[s] - at - 1) * sizeof(CLvl))
                self.n[s] -= 1
            elif lv.total != size:
                lv.total = size
                self.version += 1
                lv.version = self.version
            return 0
        if lv.shares == NULL:  # another venue's alone: two shares now
            if not size:
                return 0
            if not _add(lv.total, size, &total):
                return OVERFLOW
            lv.shares = <Share*>PyMem_Malloc(2 * sizeof(Share))
            if lv.shares == NULL:
                raise MemoryError()
            first = venue_name(lv.venue) < venue_name(venue)
            lv.shares[0 if first else 1].venue, lv.shares[0 if first else 1].size = lv.venue, lv.total
            lv.shares[1 if first else 0].venue, lv.shares[1 if first else 0].size = venue, size
            lv.nshares = 2
            lv.total = total
            self.version += 1
            lv.version = self.version
            return 0
        for i in range(lv.nshares):
            if lv.shares[i].venue != venue:
                continue
            if lv.shares[i].size == size:
                return 0
            if size:
                if not _add(lv.total - lv.shares[i].size, size, &total):
                    return OVERFLOW
                lv.total = total
                lv.shares[i].size = size
            else:
                lv.total -= lv.shares[i].size
                memmove(&lv.shares[i], &lv.shares[i + 1], (lv.nshares - i - 1) * sizeof(Share))
                lv.nshares -= 1
                if lv.nshares == 1:  # one venue's alone again
                    lv.venue, lv.total = lv.shares[0].venue, lv.shares[0].size
                    PyMem_Free(lv.shares)
                    lv.shares = NULL
                    lv.nshares = 0
            self.version += 1
            lv.version = self.version
            return 0
        if not size:
            return 0
        if not _add(lv.total, size, &total):
            return OVERFLOW
        grown = <Share*>PyMem_Realloc(lv.shares, (lv.nshares + 1) * sizeof(Share))
        if grown == NULL:
            raise MemoryError()
        lv.shares = grown
        name = venue_name(venue)
        i = 0
        while i < lv.nshares and venue_name(lv.shares[i].venue) < name:
            i += 1
        memmove(&lv.shares[i + 1], &lv.shares[i], (lv.nshares - i) * sizeof(Share))
        lv.shares[i].venue, lv.shares[i].size = venue, size
        lv.nshares += 1
        lv.total = total
        self.version += 1
        lv.version = self.version
        return 0

    cdef Py_ssize_t _side(self, int s, uint16_t venue, Levels levels) except -2:
        """A venue's levels on one side; the index of a level whose total would not fit, or -1."""
        cdef Py_ssize_t i
        for i in range(levels.n):
            if self._level(s, venue, &levels.lv[i]) == OVERFLOW:
                return i
        return -1

    cdef _to_exact(self):
        """Leave the native path: the same shares, as a pure book of ``Decimal``."""
        from crossbook.core.consolidated import PureConsolidatedBook

        book = PureConsolidatedBook()
        given: dict[object, tuple[list, list]] = {}
        versions = ([], [])
        cdef int s
        cdef Py_ssize_t i, j
        cdef CLvl* lv
        for s in range(2):
            for i in range(self.n[s]):
                lv = &self.side[s][i]
                price = _decimal(lv.price // P10[self.ps - lv.pd], lv.pd)
                versions[s].append((price, lv.version))
                if lv.shares == NULL:
                    given.setdefault(venue_name(lv.venue), ([], []))[s].append((price, _decimal(lv.total, self.ss)))
                for j in range(lv.nshares):
                    name = venue_name(lv.shares[j].venue)
                    given.setdefault(name, ([], []))[s].append((price, _decimal(lv.shares[j].size, self.ss)))
                PyMem_Free(lv.shares)
            self.n[s] = 0
        for name, (bids, asks) in given.items():
            book.update(name, bids, asks)
        # The same versions: a channel that looked before sees only what changes from here on.
        for levels, mine in ((book._bid_levels, versions[BID]), (book._ask_levels, versions[ASK])):
            for price, version in mine:
                levels[price].version = version
        book._version = self.version
        self.exact = book

    def update(self, venue, bids, asks):
        """Set a venue's absolute sizes at these prices; zero removes its share."""
        cdef Levels b = as_levels(bids), a = as_levels(asks)
        cdef uint16_t v = venue_id(venue)
        cdef Py_ssize_t stop
        if self.exact is None and (b.exact is not None or a.exact is not None or not self._fit(b, a)):
            self._to_exact()
        if self.exact is not None:
            self.exact.update(venue, b.pairs(), a.pairs())
            return
        stop = self._side(BID, v, b)
        if stop >= 0:
            self._to_exact()
            self.exact.update(venue, b.pairs()[stop:], a.pairs())
            return
        stop = self._side(ASK, v, a)
        if stop >= 0:
            self._to_exact()
            self.exact.update(venue, [], a.pairs()[stop:])

    def drop(self, venue):
        """Take out every level of a venue (it left)."""
        if self.exact is not None:
            self.exact.drop(venue)
            return
        cdef uint16_t v = venue_id(venue)
        cdef int s
        cdef Py_ssize_t i, j
        cdef CLvl* lv
        cdef Lvl gone
        for s in range(2):
            i = self.n[s] - 1
            while i >= 0:
                lv = &self.side[s][i]
                quoted = lv.shares == NULL and lv.venue == v
                for j in range(lv.nshares):
                    if lv.shares[j].venue == v:
                        quoted = True
                if quoted:
                    gone.price, gone.pd, gone.size, gone.sd = lv.price, self.ps, 0, 0
                    self._level(s, v, &gone)  # removing never overflows
                i -= 1

    cdef object _view(self, int s, Py_ssize_t count, bint agg):
        """The best ``count`` levels of a side, best first: as (price, AggLevel) when ``agg``,
        else as (price, total, {venue: size})."""
        from crossbook.core.consolidated import AggLevel

        cdef Py_ssize_t i, j, top = self.n[s]
        cdef CLvl* lv
        out = []
        if count > top:
            count = top
        for i in range(top - 1, top - 1 - count, -1):
            lv = &self.side[s][i]
            price = _decimal(lv.price // P10[self.ps - lv.pd], lv.pd)
            total = _decimal(lv.total, self.ss)
            if lv.shares == NULL:
                shares = ((venue_name(lv.venue), total),)
            else:
                shares = tuple((venue_name(lv.shares[j].venue), _decimal(lv.shares[j].size, self.ss)) for j in range(lv.nshares))
            if agg:
                out.append((price, AggLevel(total, shares[0][0], lv.version) if lv.shares == NULL else AggLevel(total, None, lv.version, shares)))
            else:
                out.append((price, total, dict(shares)))
        return out

    def top_bids(self, Py_ssize_t n):
        return self.exact.top_bids(n) if self.exact is not None else (self._view(BID, n, False) if n > 0 else [])

    def top_asks(self, Py_ssize_t n):
        return self.exact.top_asks(n) if self.exact is not None else (self._view(ASK, n, False) if n > 0 else [])

    def view_bids(self, Py_ssize_t n):
        return self.exact.view_bids(n) if self.exact is not None else (self._view(BID, n, True) if n > 0 else [])

    def view_asks(self, Py_ssize_t n):
        return self.exact.view_asks(n) if self.exact is not None else (self._view(ASK, n, True) if n > 0 else [])

    def bbo(self):
        from crossbook.core.consolidated import BBO

        if self.exact is not None:
            return self.exact.bbo()
        sides = []
        cdef int s
        for s in range(2):
            top = self._view(s, 1, False)
            sides.append((top[0][0], top[0][1], tuple(top[0][2])) if top else None)
        return BBO(sides[0], sides[1])

    def venues(self):
        """Venues that have at least one level in the book."""
        if self.exact is not None:
            return self.exact.venues()
        cdef int s
        cdef Py_ssize_t i, j
        cdef CLvl* lv
        out = set()
        for s in range(2):
            for i in range(self.n[s]):
                lv = &self.side[s][i]
                if lv.shares == NULL:
                    out.add(venue_name(lv.venue))
                for j in range(lv.nshares):
                    out.add(venue_name(lv.shares[j].venue))
        return out

    def __len__(self):
        return len(self.exact) if self.exact is not None else self.n[BID] + self.n[ASK]

    @property
    def native(self):
        """Whether the book is on the native path (not the exact one)."""
        return self.exact is None
