"""A venue's L2 order book for one symbol (sans-I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from itertools import islice

from sortedcontainers import SortedDict

from crossbook.model import Level


class L2Book:
    """Price levels of one venue and symbol, kept sorted.

    Bids are keyed by negated price so both sides iterate best first. Negation is
    ``copy_negate()``: unary minus would round to the context's 28 digits.
    """

    __slots__ = ("_asks", "_bids")

    def __init__(self) -> None:
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Load a snapshot: the book becomes exactly these levels (zero sizes skipped)."""
        self._bids = SortedDict({p.copy_negate(): s for p, s in bids if s})
        self._asks = SortedDict({p: s for p, s in asks if s})

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Apply absolute level sizes in order; size zero removes (an absent level is fine)."""
        side = self._bids
        for price, size in bids:
            if size:
                side[price.copy_negate()] = size
            else:
                side.pop(price.copy_negate(), None)
        side = self._asks
        for price, size in asks:
            if size:
                side[price] = size
            else:
                side.pop(price, None)

    def truncate(self, depth: int) -> tuple[list[Level], list[Level]]:
        """Keep the best ``depth`` levels a side; returns the removed ones with size zero."""
        zero = Decimal(0)
        cut_bids = [(p.copy_negate(), zero) for p in self._bids.keys()[depth:]]
        cut_asks = [(p, zero) for p in self._asks.keys()[depth:]]
        for price, _ in cut_bids:
            del self._bids[price.copy_negate()]
        for price, _ in cut_asks:
            del self._asks[price]
        return cut_bids, cut_asks

    def bid_size(self, price: Decimal) -> Decimal | None:
        size: Decimal | None = self._bids.get(price.copy_negate())
        return size

    def ask_size(self, price: Decimal) -> Decimal | None:
        size: Decimal | None = self._asks.get(price)
        return size

    def top_bids(self, n: int) -> list[Level]:
        return [(p.copy_negate(), s) for p, s in islice(self._bids.items(), n)]

    def top_asks(self, n: int) -> list[Level]:
        return list(islice(self._asks.items(), n))

    def bids(self) -> list[Level]:
        return self.top_bids(len(self._bids))

    def asks(self) -> list[Level]:
        return self.top_asks(len(self._asks))

    def best_bid(self) -> Level | None:
        if not self._bids:
            return None
        p, s = self._bids.peekitem(0)
        return p.copy_negate(), s

    def best_ask(self) -> Level | None:
        if not self._asks:
            return None
        level: Level = self._asks.peekitem(0)
        return level

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask: a venue book must never be."""
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)
