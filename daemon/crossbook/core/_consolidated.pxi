# Included by _native.pyx (one extension module, its source in parts): the venue registry and the consolidated book.

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
