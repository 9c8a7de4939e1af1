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

One module, its source in parts: ``_levels.pxi`` (numbers and levels), ``_book.pxi`` (the venue
book), ``_consolidated.pxi`` (the venue registry and the consolidated book).
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


include "_levels.pxi"
include "_book.pxi"
include "_consolidated.pxi"
