# The native core's C-level declarations, for the API's native module to reach into.

from libc.stdint cimport int64_t, uint8_t, uint16_t


cdef struct Lvl:
    int64_t price   # mantissa: the price times 10**(owner's price scale)
    int64_t size    # mantissa: the size times 10**(owner's size scale)
    uint8_t pd      # decimals of the price as it was given (kept to give it back as given)
    uint8_t sd      # decimals of the size as it was given


cdef class Levels:
    cdef Lvl* lv
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef object exact
    cdef int push(self, int64_t price, int pd, int64_t size, int sd) except -1
    cpdef list pairs(self)


cdef class Book:
    cdef Lvl* side[2]
    cdef Py_ssize_t n[2]
    cdef Py_ssize_t cap[2]
    cdef int ps
    cdef int ss
    cdef object exact
    cdef _to_exact(self)
    cdef list _pairs(self, int s, Py_ssize_t count)
    cdef bint _rescale(self, int ps, int ss)
    cdef bint _fit(self, Levels bids, Levels asks)
    cdef int _grow(self, int s, Py_ssize_t need) except -1
    cdef int _set(self, int s, Lvl* level) except -1
    cdef int _load(self, int s, Levels levels) except -1
    cdef object _size(self, int s, object price)


cdef struct Share:
    int64_t size
    uint16_t venue


cdef struct CLvl:
    int64_t price
    int64_t total
    int64_t version
    Share* shares      # NULL when one venue quotes the level alone: ``venue`` with ``total``
    uint16_t venue
    uint16_t nshares
    uint8_t pd


cdef class Consolidated:
    cdef CLvl* side[2]
    cdef Py_ssize_t n[2]
    cdef Py_ssize_t cap[2]
    cdef int ps
    cdef int ss
    cdef int64_t version
    cdef object exact
    cdef int _grow(self, int s, Py_ssize_t need) except -1
    cdef bint _fit(self, Levels bids, Levels asks)
    cdef bint _rescale(self, int ps, int ss)
    cdef Py_ssize_t _side(self, int s, uint16_t venue, Levels levels) except -2
    cdef int _level(self, int s, uint16_t venue, Lvl* given) except -1
    cdef _to_exact(self)
    cdef object _view(self, int s, Py_ssize_t count, bint agg)


cdef uint16_t venue_id(object name) except? 65535
cdef object venue_name(uint16_t venue)
cdef bytes venue_json(uint16_t venue)
cdef bint of_decimal(object value, int64_t* m, int* d) except -1
