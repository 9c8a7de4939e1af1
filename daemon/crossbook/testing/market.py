"""A generated market for fake venues: a book per symbol that moves by random level changes.

The fake venue encodes each change in its wire format; the market's books are the truth a
connector's books must equal.
"""

from __future__ import annotations

import random
from decimal import Decimal

from crossbook.core.book import PureL2Book
from crossbook.core.model import Level


class FakeMarket:
    """One pure book per symbol (``books``: the truth, whichever build is under test), ``levels``
    a side around ``mid`` (in ticks of 0.01), moved by random level changes from a seeded
    generator: the same seed, the same market."""

    def __init__(self, symbols: list[str], *, seed: int = 1, levels: int = 30, mid: int = 100_000) -> None:
        self.rng = random.Random(seed)
        self.books = {s: PureL2Book() for s in symbols}
        self.mid = mid
        """Mid price in ticks of 0.01."""
        self.levels = levels
        for book in self.books.values():
            book.replace(
                [(self._price(mid - i), self._size()) for i in range(1, levels + 1)],
                [(self._price(mid + i), self._size()) for i in range(1, levels + 1)],
            )

    @staticmethod
    def _price(ticks: int) -> Decimal:
        return Decimal(ticks).scaleb(-2)

    def _size(self) -> Decimal:
        return Decimal(self.rng.randint(1, 10**6)).scaleb(-4)

    def change(self, symbol: str, n: int = 3) -> tuple[list[Level], list[Level]]:
        """Apply ``n`` random level changes (set or remove, never crossing) and return them."""
        bids: list[Level] = []
        asks: list[Level] = []
        for _ in range(n):
            is_bid = self.rng.random() < 0.5
            offset = self.rng.randint(1, self.levels + 5)
            price = self._price(self.mid - offset if is_bid else self.mid + offset)
            size = Decimal(0) if self.rng.random() < 0.25 else self._size()
            (bids if is_bid else asks).append((price, size))
        self.books[symbol].apply(bids, asks)
        return bids, asks
