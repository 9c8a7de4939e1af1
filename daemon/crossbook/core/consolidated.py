"""Consolidated cross-venue book for one symbol (sans-I/O).

Each price level holds the size of every live venue quoting it, so depth carries per-venue
attribution and the best bid/offer names the venues at the best price. The engine decides which
venues are live; this class only adds and removes their levels, exactly.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from crossbook.core import exact
from crossbook.core.model import Level

__all__ = ["BBO", "AggLevel", "Attribution", "ConsolidatedBook", "ConsolidatedLevel", "PureConsolidatedBook"]

Attribution = tuple[tuple[str, Decimal], ...]
"""((venue, size), ...) sorted by venue."""


class AggLevel:
    """One consolidated price level: total size and each venue's share.

    Most levels are quoted by one venue alone: ``solo`` names it and ``total`` is its own size
    object, so updating such a level builds nothing. Several venues: ``solo`` is None and
    ``shares`` is an immutable tuple, replaced on change (a tuple costs a third of a dict).
    ``version`` changes with every change to the level (it is unique in its book), so a reader
    can tell whether a level changed without comparing its attribution.
    """

    __slots__ = ("shares", "solo", "total", "version")

    def __init__(self, total: Decimal, solo: str | None, version: int, shares: Attribution = ()) -> None:
        self.total = total
        self.solo = solo
        self.version = version
        self.shares = shares

    @property
    def venues(self) -> Attribution:
        """Each venue's share, sorted by venue."""
        return ((self.solo, self.total),) if self.solo is not None else self.shares


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


class PureConsolidatedBook:
    """Sum of the live venues' books with attribution: the pure twin (the native build's
    ``Consolidated`` is proven to behave the same). Each side is a dict of levels plus its prices
    in ascending order (bids are read from the end), as in :class:`~crossbook.core.book.PureL2Book`."""

    __slots__ = ("_ask_levels", "_ask_prices", "_bid_levels", "_bid_prices", "_version")

    def __init__(self) -> None:
        self._bid_levels: dict[Decimal, AggLevel] = {}
        self._bid_prices: list[Decimal] = []
        self._ask_levels: dict[Decimal, AggLevel] = {}
        self._ask_prices: list[Decimal] = []
        self._version = 0

    def update(self, venue: str, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set a venue's absolute sizes at these prices; zero removes its share."""
        self._side(self._bid_levels, self._bid_prices, venue, bids)
        self._side(self._ask_levels, self._ask_prices, venue, asks)

    def drop(self, venue: str) -> None:
        """Take out every level of a venue (it left): found here, so it needs no copy of its book."""
        zero = exact.ZERO
        for levels, prices in ((self._bid_levels, self._bid_prices), (self._ask_levels, self._ask_prices)):
            quoted = [
                (p, zero) for p, lv in levels.items() if lv.solo == venue or any(v == venue for v, _ in lv.shares)
            ]
            self._side(levels, prices, venue, quoted)

    def _side(
        self, levels: dict[Decimal, AggLevel], prices: list[Decimal], venue: str, changes: Iterable[Level]
    ) -> None:
        """The hot loop: a level the venue has alone (most of them) is handled inline."""
        version = self._version
        for price, size in changes:
            level = levels.get(price)
            if level is None:
                if size:
                    version += 1
                    levels[price] = AggLevel(size, venue, version)
                    insort(prices, price)
            elif level.solo == venue:
                if not size:
                    del levels[price]
                    del prices[bisect_left(prices, price)]
                elif level.total != size:  # equal: the same size, perhaps with other trailing zeros
                    level.total = size
                    version += 1
                    level.version = version
            elif _share(level, venue, size):
                version += 1
                level.version = version
        self._version = version

    def top_bids(self, n: int) -> list[ConsolidatedLevel]:
        return [(p, lv.total, dict(lv.venues)) for p, lv in self.view_bids(n)]

    def top_asks(self, n: int) -> list[ConsolidatedLevel]:
        return [(p, lv.total, dict(lv.venues)) for p, lv in self.view_asks(n)]

    def view_bids(self, n: int) -> list[tuple[Decimal, AggLevel]]:
        """The best ``n`` bid levels themselves (live objects: read them before the book changes)."""
        levels = self._bid_levels
        return [(p, levels[p]) for p in self._bid_prices[: -n - 1 : -1]] if n > 0 else []

    def view_asks(self, n: int) -> list[tuple[Decimal, AggLevel]]:
        levels = self._ask_levels
        return [(p, levels[p]) for p in self._ask_prices[:n]]

    def bbo(self) -> BBO:
        bid = ask = None
        if self._bid_prices:
            price = self._bid_prices[-1]
            lv = self._bid_levels[price]
            bid = (price, lv.total, _names(lv))
        if self._ask_prices:
            price = self._ask_prices[0]
            lv = self._ask_levels[price]
            ask = (price, lv.total, _names(lv))
        return BBO(bid, ask)

    def venues(self) -> set[str]:
        """Venues that have at least one level in the book."""
        out: set[str] = set()
        for levels in (self._bid_levels, self._ask_levels):
            for level in levels.values():
                out.update(v for v, _ in level.venues)
        return out

    def __len__(self) -> int:
        return len(self._bid_prices) + len(self._ask_prices)


def _names(level: AggLevel) -> tuple[str, ...]:
    """The venues quoting a level."""
    return (level.solo,) if level.solo is not None else tuple(v for v, _ in level.shares)


def _share(level: AggLevel, venue: str, size: Decimal) -> bool:
    """Set one venue's share of a level it does not quote alone; False if nothing changed."""
    venues = level.venues
    for i, (name, share) in enumerate(venues):
        if name == venue:
            if share == size:
                return False
            if size:
                _set(
                    level,
                    (*venues[:i], (venue, size), *venues[i + 1 :]),
                    exact.add(exact.sub(level.total, share), size),
                )
            else:
                rest = venues[:i] + venues[i + 1 :]
                _set(level, rest, rest[0][1] if len(rest) == 1 else exact.sub(level.total, share))
            return True
    if not size:
        return False
    _set(level, tuple(sorted((*venues, (venue, size)))), exact.add(level.total, size))
    return True


def _set(level: AggLevel, shares: Attribution, total: Decimal) -> None:
    """Give a level these shares (one venue's alone is kept as ``solo``)."""
    level.total = total
    if len(shares) == 1:
        level.solo, level.shares = shares[0][0], ()
    else:
        level.solo, level.shares = None, shares


ConsolidatedBook = PureConsolidatedBook
if exact.NATIVE is not None and not TYPE_CHECKING:
    ConsolidatedBook = exact.NATIVE.Consolidated
