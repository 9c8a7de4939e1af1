"""A venue's L2 order book for one symbol (sans-I/O), and the read-only view others get of it."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from crossbook.core import exact
from crossbook.core.exact import ZERO, Level, Levels, PureLevels

__all__ = ["BookView", "L2Book", "Level", "Levels", "PureL2Book"]


class BookView(Protocol):
    """What a reader of a book may do: read it, never change it. A connector's book sync lends
    its live book to the engine as one of these (:attr:`crossbook.core.model.BookSnapshot.book`),
    and a checksum reads the book through one."""

    def top_bids(self, n: int) -> list[Level]:
        """The best ``n`` bids, best first."""

    def top_asks(self, n: int) -> list[Level]:
        """The best ``n`` asks, best first."""

    def bids(self) -> list[Level]: ...

    def asks(self) -> list[Level]: ...

    def bid_size(self, price: Decimal) -> Decimal | None: ...

    def ask_size(self, price: Decimal) -> Decimal | None: ...

    def best_bid(self) -> Level | None: ...

    def best_ask(self) -> Level | None: ...

    def depths(self) -> tuple[int, int]:
        """Levels on each side: (bids, asks)."""

    def sides(self) -> tuple[Levels, Levels]:
        """Every level, (bids, asks) best first, as levels (what a consolidated book takes)."""

    def crossed(self) -> bool: ...

    def digits(self, n: int, bids: bool) -> str:
        """The best ``n`` levels of a side, best first, each price then size as the digits it was
        sent with: '.' removed, leading zeros stripped, all run together (what a venue's CRC
        checksum may read)."""

    def __len__(self) -> int: ...


class PureL2Book:
    """Price levels of one venue and symbol: the pure twin (the native build's ``Book`` is
    proven to behave the same).

    Each side is a dict of sizes plus its prices in ascending order, kept with ``bisect``: a size
    change is one dict store, only a new or removed price moves the list. Measured ~1.5x faster
    than a ``SortedDict`` and lighter per level. Bids are read from the end of their list, so
    both sides come out best first.
    """

    __slots__ = ("_ask_prices", "_ask_sizes", "_bid_prices", "_bid_sizes")

    def __init__(self) -> None:
        self._bid_sizes: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []
        self._ask_sizes: dict[Decimal, Decimal] = {}
        self._ask_prices: list[Decimal] = []

    def clear(self) -> None:
        self._bid_sizes.clear()
        self._bid_prices.clear()
        self._ask_sizes.clear()
        self._ask_prices.clear()

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Load a snapshot: the book becomes exactly these levels (zero sizes skipped)."""
        self._bid_sizes = {p: s for p, s in bids if s}
        self._bid_prices = sorted(self._bid_sizes)
        self._ask_sizes = {p: s for p, s in asks if s}
        self._ask_prices = sorted(self._ask_sizes)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Apply absolute level sizes in order; size zero removes (an absent level is fine)."""
        _apply(self._bid_sizes, self._bid_prices, bids)
        _apply(self._ask_sizes, self._ask_prices, asks)

    def truncate(self, depth: int) -> tuple[PureLevels, PureLevels]:
        """Keep the best ``depth`` levels a side; returns the removed ones with size zero."""
        keep = len(self._bid_prices) - depth
        cut_bids = PureLevels([(p, ZERO) for p in reversed(self._bid_prices[:keep])] if keep > 0 else [])
        cut_asks = PureLevels([(p, ZERO) for p in self._ask_prices[depth:]])
        for price, _ in cut_bids:
            del self._bid_sizes[price]
        for price, _ in cut_asks:
            del self._ask_sizes[price]
        if keep > 0:
            del self._bid_prices[:keep]
        del self._ask_prices[depth:]
        return cut_bids, cut_asks

    def bid_size(self, price: Decimal) -> Decimal | None:
        return self._bid_sizes.get(price)

    def ask_size(self, price: Decimal) -> Decimal | None:
        return self._ask_sizes.get(price)

    def top_bids(self, n: int) -> list[Level]:
        sizes = self._bid_sizes
        return [(p, sizes[p]) for p in self._bid_prices[: -n - 1 : -1]] if n > 0 else []

    def top_asks(self, n: int) -> list[Level]:
        sizes = self._ask_sizes
        return [(p, sizes[p]) for p in self._ask_prices[:n]]

    def bids(self) -> list[Level]:
        return self.top_bids(len(self._bid_prices))

    def asks(self) -> list[Level]:
        return self.top_asks(len(self._ask_prices))

    def best_bid(self) -> Level | None:
        if not self._bid_prices:
            return None
        price = self._bid_prices[-1]
        return price, self._bid_sizes[price]

    def best_ask(self) -> Level | None:
        if not self._ask_prices:
            return None
        price = self._ask_prices[0]
        return price, self._ask_sizes[price]

    def depths(self) -> tuple[int, int]:
        """Levels on each side: (bids, asks)."""
        return len(self._bid_prices), len(self._ask_prices)

    def sides(self) -> tuple[Levels, Levels]:
        """Every level, (bids, asks) best first, as levels (what a consolidated book takes)."""
        return PureLevels(self.bids()), PureLevels(self.asks())

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask: a venue book must never be."""
        return bool(self._bid_prices and self._ask_prices and self._bid_prices[-1] >= self._ask_prices[0])

    def digits(self, n: int, bids: bool) -> str:
        return "".join([_digits(p) + _digits(q) for p, q in (self.top_bids(n) if bids else self.top_asks(n))])

    def __len__(self) -> int:
        return len(self._bid_prices) + len(self._ask_prices)


_DIGITS: dict[int, tuple[Decimal, str]] = {}
DIGITS_SIZE = 8192
"""Digit texts remembered by the identity of their Decimal (kept alive here, so its id is not
reused): formatting is ~4x a lookup, and books hold the parse cache's shared objects. Not by
value: ``5.1`` and ``5.10`` are equal but have different digits. A checksum of 10 levels a side
reads 40 numbers, so this holds the working set of ~200 books, ~2.4 MB when full."""


def _digits(value: Decimal) -> str:
    hit = _DIGITS.get(id(value))
    if hit is not None:
        return hit[1]
    text = format(value, "f").replace(".", "").lstrip("0")
    if len(_DIGITS) >= DIGITS_SIZE:
        _DIGITS.clear()
    _DIGITS[id(value)] = (value, text)
    return text


def _apply(sizes: dict[Decimal, Decimal], prices: list[Decimal], levels: Iterable[Level]) -> None:
    for price, size in levels:
        if size:
            if price not in sizes:
                insort(prices, price)
            sizes[price] = size
        elif sizes.pop(price, None) is not None:
            del prices[bisect_left(prices, price)]


L2Book = PureL2Book
if exact.NATIVE is not None and not TYPE_CHECKING:
    L2Book = exact.NATIVE.Book
