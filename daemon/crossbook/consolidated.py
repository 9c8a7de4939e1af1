"""Consolidated cross-venue book for one symbol (sans-I/O).

Each price level holds the size of every live venue quoting it, so depth carries per-venue
attribution and the best bid/offer names the venues at the best price. The engine decides which
venues are live; this class only adds and removes their levels, exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice

from sortedcontainers import SortedDict

from crossbook import exact
from crossbook.model import Level


class AggLevel:
    """One consolidated price level: total size and each venue's share.

    ``version`` changes with every change to the level (it is unique in its book), so a reader can
    tell whether a level changed without copying its attribution.
    """

    __slots__ = ("total", "venues", "version")

    def __init__(self) -> None:
        self.total = exact.ZERO
        self.venues: dict[str, Decimal] = {}
        self.version = 0


ConsolidatedLevel = tuple[Decimal, Decimal, dict[str, Decimal]]
"""(price, total size, {venue: size})"""


@dataclass(frozen=True, slots=True)
class BBO:
    """Consolidated best bid and offer; each side is (price, total size, venues at that price)."""

    bid: tuple[Decimal, Decimal, tuple[str, ...]] | None
    ask: tuple[Decimal, Decimal, tuple[str, ...]] | None

    @property
    def crossed(self) -> bool:
        return self.bid is not None and self.ask is not None and self.bid[0] > self.ask[0]

    @property
    def locked(self) -> bool:
        return self.bid is not None and self.ask is not None and self.bid[0] == self.ask[0]


class ConsolidatedBook:
    """Sum of the live venues' books with attribution; bids keyed by negated price (``copy_negate()``,
    which is exact where unary minus rounds to the context's precision)."""

    __slots__ = ("_asks", "_bids", "_version")

    def __init__(self) -> None:
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()
        self._version = 0

    def _set(self, side: SortedDict, key: Decimal, venue: str, size: Decimal) -> None:
        level: AggLevel | None = side.get(key)
        if level is None:
            if not size:
                return
            level = side[key] = AggLevel()
        old = level.venues.get(venue)
        if old == size or (old is None and not size):
            return  # no change (the same size, perhaps written with other trailing zeros)
        self._version += 1
        level.version = self._version
        if size:
            level.venues[venue] = size
            level.total = exact.add(level.total, size) if old is None else exact.add(exact.sub(level.total, old), size)
        elif old is not None:
            del level.venues[venue]
            if level.venues:
                level.total = exact.sub(level.total, old)
            else:
                del side[key]

    def update(self, venue: str, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set a venue's absolute sizes at these prices; zero removes its share."""
        for price, size in bids:
            self._set(self._bids, price.copy_negate(), venue, size)
        for price, size in asks:
            self._set(self._asks, price, venue, size)

    def remove(self, venue: str, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Take out every listed level of a venue (the venue's whole book when it leaves)."""
        zero = exact.ZERO
        self.update(venue, ((p, zero) for p, _ in bids), ((p, zero) for p, _ in asks))

    def top_bids(self, n: int) -> list[ConsolidatedLevel]:
        return [(k.copy_negate(), lv.total, lv.venues) for k, lv in islice(self._bids.items(), n)]

    def top_asks(self, n: int) -> list[ConsolidatedLevel]:
        return [(k, lv.total, lv.venues) for k, lv in islice(self._asks.items(), n)]

    def view_bids(self, n: int) -> list[tuple[Decimal, AggLevel]]:
        """The best ``n`` bid levels themselves (live objects: read them before the book changes)."""
        return [(k.copy_negate(), lv) for k, lv in islice(self._bids.items(), n)]

    def view_asks(self, n: int) -> list[tuple[Decimal, AggLevel]]:
        return list(islice(self._asks.items(), n))

    def bbo(self) -> BBO:
        bid = ask = None
        if self._bids:
            k, lv = self._bids.peekitem(0)
            bid = (k.copy_negate(), lv.total, tuple(sorted(lv.venues)))
        if self._asks:
            k, lv = self._asks.peekitem(0)
            ask = (k, lv.total, tuple(sorted(lv.venues)))
        return BBO(bid, ask)

    def venues(self) -> set[str]:
        """Venues that have at least one level in the book."""
        out: set[str] = set()
        for side in (self._bids, self._asks):
            for level in side.values():
                out.update(level.venues)
        return out

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)
