# cython: language_level=3, cdivision=True, initializedcheck=False
"""The native twin of :mod:`crossbook.api.views`: a book channel's view of one side, diffed against
the native books directly and encoded straight to the bytes the pure twin's ``orjson`` writes.

A view that meets a book on the exact path becomes a pure view for good (rare, and always right).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport INT64_MAX, int64_t
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcpy

from crossbook.core._native cimport CLvl, Book, Consolidated, Lvl, of_decimal, venue_json

DEF BID = 0
DEF ASK = 1

cdef int64_t P10[19]
P10[0] = 1
for _i in range(1, 19):
    P10[_i] = P10[_i - 1] * 10

EMPTY = b"[]"


# -- writing JSON ---------------------------------------------------------------------------------

cdef struct Out:
    char* data
    Py_ssize_t n
    Py_ssize_t cap


cdef int _room(Out* out, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = out.cap
    cdef char* grown
    if out.n + more <= cap:
        return 0
    cap = cap * 2 if cap else 1024
    while cap < out.n + more:
        cap *= 2
    grown = <char*>PyMem_Realloc(out.data, cap)
    if grown == NULL:
        raise MemoryError()
    out.data = grown
    out.cap = cap
    return 0


cdef inline int _put(Out* out, const char* text, Py_ssize_t n) except -1:
    _room(out, n)
    memcpy(out.data + out.n, text, n)
    out.n += n
    return 0


cdef int _number(Out* out, int64_t value, int scale) except -1:
    """A value with ``scale`` decimals as canonical text in quotes: no exponent, no trailing
    zeros, ``"0"`` for zero (what ``exact.text`` gives)."""
    cdef char digits[24]
    cdef int n = 0, i, point
    cdef int64_t v = value
    _room(out, 48)
    out.data[out.n] = 34
    out.n += 1
    if v == 0:
        out.data[out.n] = 48
        out.data[out.n + 1] = 34
        out.n += 2
        return 0
    while scale > 0 and v % 10 == 0:  # trailing zeros of the fraction go
        v //= 10
        scale -= 1
    while v:
        digits[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    if n <= scale:  # 0.000ddd
        out.data[out.n] = 48
        out.data[out.n + 1] = 46
        out.n += 2
        for i in range(scale - n):
            out.data[out.n] = 48
            out.n += 1
        point = -1
    else:
        point = n - scale
    for i in range(n - 1, -1, -1):
        if n - 1 - i == point and point > 0:
            out.data[out.n] = 46
            out.n += 1
        out.data[out.n] = digits[i]
        out.n += 1
    out.data[out.n] = 34
    out.n += 1
    return 0


cdef int _venue(Out* out, CLvl* lv, int ss, bint open_) except -1:
    """A consolidated level's attribution: ``{"venue":"size",...}`` in name order."""
    cdef bytes name
    cdef int j
    _put(out, b"{", 1)
    if lv.shares == NULL:
        name = venue_json(lv.venue)
        _put(out, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
        _put(out, b":", 1)
        _number(out, lv.total, ss)
    else:
        for j in range(lv.nshares):
            if j:
                _put(out, b",", 1)
            name = venue_json(lv.shares[j].venue)
            _put(out, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
            _put(out, b":", 1)
            _number(out, lv.shares[j].size, ss)
    _put(out, b"}", 1)
    return 0


cdef bytes _done(Out* out):
    try:
        return PyBytes_FromStringAndSize(out.data, out.n)
    finally:
        PyMem_Free(out.data)


cdef int _level(Out* out, int64_t price, int ps, CLvl* clv, Lvl* lv, int ss) except -1:
    """One level as the API writes it: ``["price","size"]`` from a venue book's ``lv``, or
    ``["price","size",{venue: size}]`` from a consolidated book's ``clv`` (the other is NULL)."""
    _put(out, b"[", 1)
    _number(out, price, ps)
    _put(out, b",", 1)
    if clv != NULL:
        _number(out, clv.total, ss)
        _put(out, b",", 1)
        _venue(out, clv, ss, True)
    else:
        _number(out, lv.size, ss)
    _put(out, b"]", 1)
    return 0


# -- the view -------------------------------------------------------------------------------------

cdef class SideView:
    """What a book channel last sent of one side of its book: the native twin of
    :class:`crossbook.api.views.PureSideView`. Prices best first with the scale they were read
    at, beside each a consolidated level's version or a venue level's size."""

    cdef int64_t* price
    cdef int64_t* mark
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef int ps
    cdef int ss
    cdef object pure

    def __cinit__(self):
        self.price = self.mark = NULL
        self.n = self.cap = 0
        self.ps = self.ss = 0
        self.pure = None

    def __dealloc__(self):
        PyMem_Free(self.price)
        PyMem_Free(self.mark)

    cdef int _reserve(self, Py_ssize_t need) except -1:
        cdef int64_t* p
        cdef int64_t* m
        if need <= self.cap:
            return 0
        p = <int64_t*>PyMem_Realloc(self.price, need * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self.price = p
        m = <int64_t*>PyMem_Realloc(self.mark, need * sizeof(int64_t))
        if m == NULL:
            raise MemoryError()
        self.mark = m
        self.cap = need
        return 0

    cdef bint _scale_to(self, int ps, int ss, bint sizes):
        """Hold the view's prices (and sizes) at a book's scales, which never shrink; False if the
        book is another one than the view was read from."""
        cdef Py_ssize_t i
        if ps < self.ps or (sizes and ss < self.ss):
            return False
        if ps > self.ps:
            for i in range(self.n):
                self.price[i] *= P10[ps - self.ps]
            self.ps = ps
        if sizes and ss > self.ss:
            for i in range(self.n):
                self.mark[i] *= P10[ss - self.ss]
            self.ss = ss
        return True

    cdef object _to_pure(self, bint consolidated):
        """Become a pure view, for good: the same prices and marks, as ``Decimal``."""
        from decimal import Decimal

        from crossbook.api.views import PureSideView

        view = PureSideView()
        cdef Py_ssize_t i
        for i in range(self.n):
            price = Decimal(self.price[i]).scaleb(-self.ps)
            view.levels[price] = self.mark[i] if consolidated else Decimal(self.mark[i]).scaleb(-self.ss)
        self.pure = view
        self.n = 0
        return view

    def diff_consolidated(self, book, Py_ssize_t depth, bint bids):
        """Bring the view to the book's top ``depth`` levels of one side; returns what changed,
        encoded (``[]`` when nothing did)."""
        if self.pure is None and (type(book) is not Consolidated or (<Consolidated>book).exact is not None
                                  or not self._scale_to((<Consolidated>book).ps, 0, False)):
            self._to_pure(True)
        if self.pure is not None:
            return self.pure.diff_consolidated(book, depth, bids)
        return self._diff(None, <Consolidated>book, depth, bids)

    def diff_venue(self, book, Py_ssize_t depth, bint bids):
        """As :meth:`diff_consolidated`, for a venue's own book."""
        if self.pure is None and (type(book) is not Book or (<Book>book).exact is not None
                                  or not self._scale_to((<Book>book).ps, (<Book>book).ss, True)):
            self._to_pure(False)
        if self.pure is not None:
            return self.pure.diff_venue(book, depth, bids)
        return self._diff(<Book>book, None, depth, bids)

    cdef bytes _diff(self, Book b, Consolidated c, Py_ssize_t depth, bint bids):
        """The diff of either book (the other is None): a level is marked by its version in a
        consolidated book, by its size in a venue's."""
        cdef bint agg = c is not None
        cdef int s = BID if bids else ASK
        cdef Py_ssize_t top = c.n[s] if agg else b.n[s]
        cdef Py_ssize_t count = depth if depth < top else top
        cdef int ps = c.ps if agg else b.ps
        cdef int ss = c.ss if agg else b.ss
        cdef CLvl* clv = NULL
        cdef Lvl* lv = NULL
        cdef Py_ssize_t j = 0, k, old_n = self.n
        cdef int64_t p, mark
        cdef int64_t* old_price = self.price
        cdef int64_t* old_mark = self.mark
        cdef Out out
        out.data, out.n, out.cap = NULL, 0, 0
        cdef char* gone = <char*>PyMem_Malloc(old_n + 1)  # old entries not among the new top
        cdef int64_t* new_price = <int64_t*>PyMem_Malloc((count + 1) * sizeof(int64_t))
        cdef int64_t* new_mark = <int64_t*>PyMem_Malloc((count + 1) * sizeof(int64_t))
        if gone == NULL or new_price == NULL or new_mark == NULL:
            PyMem_Free(gone)
            PyMem_Free(new_price)
            PyMem_Free(new_mark)
            raise MemoryError()
        try:
            _put(&out, b"[", 1)
            for k in range(old_n):
                gone[k] = 1
            for k in range(count):
                if agg:
                    clv = &c.side[s][top - 1 - k]
                    p, mark = clv.price, clv.version
                else:
                    lv = &b.side[s][top - 1 - k]
                    p, mark = lv.price, lv.size
                new_price[k], new_mark[k] = p, mark
                while j < old_n and ((old_price[j] > p) if bids else (old_price[j] < p)):
                    j += 1
                if j < old_n and old_price[j] == p:
                    gone[j] = 0
                    j += 1
                    if old_mark[j - 1] == mark:
                        continue
                if out.n > 1:
                    _put(&out, b",", 1)
                _level(&out, p, ps, clv, lv, ss)
            for k in range(old_n):
                if gone[k]:
                    if out.n > 1:
                        _put(&out, b",", 1)
                    _put(&out, b"[", 1)
                    _number(&out, old_price[k], ps)
                    if agg:
                        _put(&out, b',"0",{}]', 8)
                    else:
                        _put(&out, b',"0"]', 5)
            _put(&out, b"]", 1)
            PyMem_Free(self.price)
            PyMem_Free(self.mark)
            self.price, self.mark, self.n, self.cap = new_price, new_mark, count, count + 1
            new_price = new_mark = NULL
            return EMPTY if out.n == 2 else PyBytes_FromStringAndSize(out.data, out.n)
        finally:
            PyMem_Free(out.data)
            PyMem_Free(gone)
            PyMem_Free(new_price)
            PyMem_Free(new_mark)

    def may_change(self, Py_ssize_t depth, reach, bint bids):
        """Whether changes that reach no better than ``reach`` can change a view of ``depth``
        levels: not if they all lie below it."""
        if self.pure is not None:
            return self.pure.may_change(depth, reach, bids)
        if reach is None:
            return False
        if self.n < depth:
            return True
        cdef int64_t m, worst = self.price[self.n - 1]
        cdef int d
        if not of_decimal(reach, &m, &d):
            return True  # beyond what the view holds: look
        # Compare reach (m, d) with worst (at the view's scale): both to the finer scale.
        if d > self.ps:
            if worst > INT64_MAX // P10[d - self.ps]:
                return True
            worst *= P10[d - self.ps]
        elif d < self.ps:
            if m > INT64_MAX // P10[self.ps - d]:
                return True
            m *= P10[self.ps - d]
        return m >= worst if bids else m <= worst


def encode_consolidated(book, Py_ssize_t depth, bint bids):
    """A consolidated side's top ``depth`` levels, encoded (a snapshot's side)."""
    if type(book) is not Consolidated or (<Consolidated>book).exact is not None:
        from crossbook.api.views import pure_encode_consolidated

        return pure_encode_consolidated(book, depth, bids)
    return _encode(None, <Consolidated>book, depth, bids)


def encode_venue(book, Py_ssize_t depth, bint bids):
    """A venue book side's top ``depth`` levels, encoded (a snapshot's side)."""
    if type(book) is not Book or (<Book>book).exact is not None:
        from crossbook.api.views import pure_encode_venue

        return pure_encode_venue(book, depth, bids)
    return _encode(<Book>book, None, depth, bids)


cdef bytes _encode(Book b, Consolidated c, Py_ssize_t depth, bint bids):
    """Either book's top ``depth`` levels of a side (the other book is None), encoded."""
    cdef bint agg = c is not None
    cdef int s = BID if bids else ASK
    cdef Py_ssize_t top = c.n[s] if agg else b.n[s]
    cdef Py_ssize_t count = depth if depth < top else top, k
    cdef int ps = c.ps if agg else b.ps
    cdef int ss = c.ss if agg else b.ss
    cdef Out out
    out.data, out.n, out.cap = NULL, 0, 0
    try:
        _put(&out, b"[", 1)
        for k in range(count):
            if k:
                _put(&out, b",", 1)
            if agg:
                _level(&out, c.side[s][top - 1 - k].price, ps, &c.side[s][top - 1 - k], NULL, ss)
            else:
                _level(&out, b.side[s][top - 1 - k].price, ps, NULL, &b.side[s][top - 1 - k], ss)
        _put(&out, b"]", 1)
        return PyBytes_FromStringAndSize(out.data, out.n)
    finally:
        PyMem_Free(out.data)


cdef int _bbo_side(Out* out, Consolidated c, int s) except -1:
    """One side's best level as ``["price","size",["venue",...]]``, or ``null``."""
    cdef CLvl* lv
    cdef bytes name
    cdef int j
    if c.n[s] == 0:
        _put(out, b"null", 4)
        return 0
    lv = &c.side[s][c.n[s] - 1]
    _put(out, b"[", 1)
    _number(out, lv.price, c.ps)
    _put(out, b",", 1)
    _number(out, lv.total, c.ss)
    _put(out, b",[", 2)
    if lv.shares == NULL:
        name = venue_json(lv.venue)
        _put(out, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
    else:
        for j in range(lv.nshares):
            if j:
                _put(out, b",", 1)
            name = venue_json(lv.shares[j].venue)
            _put(out, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
    _put(out, b"]]", 2)
    return 0


def encode_bbo(book):
    """A consolidated book's best bid and offer as a ``bbo`` message's fields after ``ts``."""
    if type(book) is not Consolidated or (<Consolidated>book).exact is not None:
        from crossbook.api.views import pure_encode_bbo

        return pure_encode_bbo(book)
    cdef Consolidated c = <Consolidated>book
    cdef bint both = c.n[BID] > 0 and c.n[ASK] > 0
    cdef int64_t bid = c.side[BID][c.n[BID] - 1].price if both else 0
    cdef int64_t ask = c.side[ASK][c.n[ASK] - 1].price if both else 0
    cdef Out out
    out.data, out.n, out.cap = NULL, 0, 0
    try:
        _put(&out, b'"bid":', 6)
        _bbo_side(&out, c, BID)
        _put(&out, b',"ask":', 7)
        _bbo_side(&out, c, ASK)
        if both and bid > ask:
            _put(&out, b',"crossed":true,"locked":false}', 31)
        elif both and bid == ask:
            _put(&out, b',"crossed":false,"locked":true}', 31)
        else:
            _put(&out, b',"crossed":false,"locked":false}', 32)
        return PyBytes_FromStringAndSize(out.data, out.n)
    finally:
        PyMem_Free(out.data)
