"""Exact prices and sizes.

Values are :class:`decimal.Decimal`: in pure Python it parses and formats venue text faster than
a fixed-point integer would (~170 and ~240 ns, against ~450 and ~440 ns). Binary floats never
carry a value that came from or goes to the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded
from typing import TYPE_CHECKING, Any, TypeVar

from crossbook.core import native

ZERO = Decimal(0)

MAX_DIGITS = 36
MIN_EXPONENT = -24
MAX_EXPONENT = 24
"""What a venue may send: far beyond any real price or size, and small enough that sums of
thousands of levels stay well inside the exact context below."""

# Sums across venues must never round silently: trap anything inexact.
_EXACT = Context(prec=80, traps=[Inexact, Rounded, InvalidOperation])


class BadNumber(ValueError):
    """A price or size that is not a finite, non-negative plain decimal."""


PARSED_CACHE_SIZE = 65536
"""Texts remembered by :func:`parse`: a venue repeats its prices and many sizes (four texts in
five of a busy market's depth stream), so most texts are one dict lookup away (~25 ns instead of
~1 µs), and equal levels share one immutable object, which books then find by identity. The
cache is cleared when full, and an equal price parsed afresh is another object, so this is large
(an hour of one busy market's diffs has ~47,000 distinct texts; 65,536 entries take ~13 MB)."""
PLAIN_MAX = 25
"""Texts this short made of ASCII digits and at most one dot are within every limit below, so
they skip the full check: 25 digits at most, exponents between -24 and 24."""


K = TypeVar("K")
V = TypeVar("V")


class _Memo(dict[K, V]):
    """A bounded memo of ``compute``: a lookup that misses computes (``__missing__``), so a hit
    costs a plain subscript with no Python call; cleared when full."""

    __slots__ = ("compute", "size")

    def __init__(self, compute: Callable[[K], V], size: int) -> None:
        super().__init__()
        self.compute = compute
        self.size = size

    def __missing__(self, key: K) -> V:
        value = self.compute(key)
        if len(self) >= self.size:
            self.clear()
        self[key] = value
        return value


def _parse_text(text: Any) -> Decimal:
    plain = isinstance(text, str) and len(text) <= PLAIN_MAX and text.isascii() and text.replace(".", "", 1).isdigit()
    return Decimal(text) if plain else _checked(text)


class _TextMemo(_Memo[Any, Decimal]):
    """The parse memo: it remembers texts only. ``1``, ``1.0`` and ``True`` are equal keys, so a
    remembered int would answer for a bool, which is refused."""

    __slots__ = ()

    def __missing__(self, key: Any) -> Decimal:
        value = self.compute(key)
        if isinstance(key, str):
            if len(self) >= self.size:
                self.clear()
            self[key] = value
        return value


_parsed = _TextMemo(_parse_text, PARSED_CACHE_SIZE)


def parse(text: object) -> Decimal:
    """Parse a venue's price or size text exactly; reject NaN, infinities, negatives and
    values outside the range any market uses (``BadNumber`` is a ``ValueError``: a parser
    raising it makes the frame a counted skip)."""
    try:
        return _parsed[text]
    except TypeError:  # unhashable: not a number either
        raise BadNumber(f"not a decimal number: {text!r}") from None


def json_number(text: str) -> Decimal | str:
    """A JSON number as :func:`parse` reads its text, for ``json.loads(parse_float=json_number)``
    (a venue that sends numbers, not strings, whose digits matter): its Decimal, or the text itself
    when it is no price or size, so that only a field read as one fails. Not for ``parse_int`` when
    integers are ids or checksums: all different, they would churn the cache."""
    try:
        return _parsed[text]
    except BadNumber:
        return text


Level = tuple[Decimal, Decimal]
"""(price, size); a size of zero in a delta removes the level."""


class PureLevels(list[Level]):
    """A batch of levels, such as one message's side: ``(price, size)`` pairs; the pure twin of
    the native build's, which holds fixed-point integers (these methods are what both offer)."""

    def highest(self) -> Decimal | None:
        """The highest price, or None for no levels."""
        return max(self)[0] if self else None

    def lowest(self) -> Decimal | None:
        """The lowest price, or None for no levels."""
        return min(self)[0] if self else None

    def at_least(self, floor: Decimal) -> PureLevels:
        """The levels priced at ``floor`` or above, in order."""
        return PureLevels(level for level in self if level[0] >= floor)

    def at_most(self, ceiling: Decimal) -> PureLevels:
        """The levels priced at ``ceiling`` or below, in order."""
        return PureLevels(level for level in self if level[0] <= ceiling)

    def __add__(self, other: Iterable[Level]) -> PureLevels:  # type: ignore[override]
        return PureLevels([*self, *other])


def pure_as_levels(given: Iterable[Level]) -> PureLevels:
    """Levels as the pure twin holds them (a plugin may give a plain list of pairs)."""
    return given if isinstance(given, PureLevels) else PureLevels(given)


def pure_levels(raw: Iterable[Sequence[Any]]) -> PureLevels:
    """``[[price, size, ...], ...]`` (the shape most venues send) as exact levels, as
    :func:`parse` would read each text but without a call per text: this is the hot path of
    every depth message."""
    cache = _parsed
    try:
        return PureLevels([(cache[level[0]], cache[level[1]]) for level in raw])
    except TypeError:
        raise BadNumber(f"not a list of [price, size] levels: {str(raw)[:100]!r}") from None


def _checked(text: Any) -> Decimal:
    if type(text) is bool:
        raise BadNumber(f"not a decimal number: {text!r}")
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise BadNumber(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or (value.is_signed() and value != ZERO):
        raise BadNumber(f"not a finite non-negative number: {text!r}")
    # A zero's exponent counts too (0E-999999999 is ~1 GB of text formatted); it may be lower than
    # a nonzero's by MAX_DIGITS, the trailing zeros a plain text may have.
    low = MIN_EXPONENT if value else MIN_EXPONENT - MAX_DIGITS
    if not (low <= value.adjusted() <= MAX_EXPONENT and len(value.as_tuple().digits) <= MAX_DIGITS):
        raise BadNumber(f"out of range for a price or size: {text!r}")
    return value


def add(a: Decimal, b: Decimal) -> Decimal:
    """Exact sum; raises instead of rounding."""
    return _EXACT.add(a, b)


def sub(a: Decimal, b: Decimal) -> Decimal:
    """Exact difference; raises instead of rounding."""
    return _EXACT.subtract(a, b)


def _canonical(value: Decimal) -> str:
    if not value:
        return "0"
    out = format(value, "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return out


TEXT_CACHE_SIZE = 16384
"""Values :func:`text` remembers (~60 ns a hit against ~800 ns formatting). Equal values
(``1.0`` and ``1``) are one key and have one canonical text."""

_texts: _Memo[Decimal, str] = _Memo(_canonical, TEXT_CACHE_SIZE)
text: Callable[[Decimal], str] = _texts.__getitem__
"""Canonical plain decimal text: no exponent, no trailing zeros, ``"0"`` for zero (a bound dict
lookup: no Python call on a hit)."""


def clear_caches() -> None:
    """Forget the texts parsed and the values formatted, as a fresh daemon starts: a benchmark
    passing over one capture again would otherwise find every one of them. A connector's own
    memo is its own to clear."""
    _parsed.clear()
    _texts.clear()


NATIVE = native.load("crossbook.core._native")
"""The native extension, where it runs."""
if TYPE_CHECKING or NATIVE is None:
    Levels = PureLevels
    levels = pure_levels
    as_levels = pure_as_levels
else:  # this build's: the pure ones stay the reference
    Levels, levels, as_levels = NATIVE.Levels, NATIVE.levels, NATIVE.as_levels
