# Included by _native.pyx (one extension module, its source in parts): the venue book.

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
