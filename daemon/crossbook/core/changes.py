"""What an ingest or a tick changed (sans-I/O): the books touched, with the levels deltas set,
the trades and the status changes, for the hub to turn into subscriber messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from crossbook.core.book import Level
from crossbook.core.exact import as_levels
from crossbook.core.model import BookState, Trade


@dataclass(slots=True)
class StatusChange:
    venue: str
    symbol: str
    state: BookState
    reason: str | None
    ts: int


@dataclass(slots=True)
class Changes:
    """What one ingest or tick changed. ``books`` holds (symbol, venue) for venue books and
    (symbol, None) for consolidated books."""

    books: set[tuple[str, str | None]] = field(default_factory=set)
    trades: list[tuple[str, Trade]] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)
    book_updates: list[str] = field(default_factory=list)
    """Symbols of book events applied (one entry per event), for metrics."""
    skipped: list[str] = field(default_factory=list)
    """Why events were skipped (unknown symbol, delta before snapshot); counted and logged."""
    deltas: dict[tuple[str, str | None], list[tuple[list[Level], list[Level]]]] = field(default_factory=dict)
    """For a book changed by deltas only: the (bids, asks) they set, so a view of the top levels
    can tell (:meth:`reach`) that it is untouched. A book in ``books`` without an entry here may
    have changed anywhere."""
    since: dict[tuple[str, str | None], int] = field(default_factory=dict)
    """For a book that an ingest merged in (:meth:`merge`) changed earlier than the time these
    changes are stamped with, or first: the earliest receive time of a message that changed it, so
    each channel's update is stamped with its own book's earliest message."""

    def whole(self, key: tuple[str, str | None]) -> None:
        """The book ``key`` may have changed anywhere (snapshot, venue in or out)."""
        self.books.add(key)
        self.deltas.pop(key, None)

    def delta(self, key: tuple[str, str | None], bids: list[Level], asks: list[Level]) -> None:
        """The book ``key`` changed at these levels only."""
        deltas = self.deltas.get(key)
        if deltas is None:
            if key in self.books:
                return  # already changed anywhere
            self.books.add(key)
            self.deltas[key] = [(bids, asks)]
        else:
            deltas.append((bids, asks))

    def merge(self, later: Changes, later_ns: int, own_ns: int) -> None:
        """Add what a later ingest, of a message received at ``later_ns``, changed, so that messages
        read together go out as one update per channel (``own_ns``: the receive time these changes
        are stamped with where ``since`` says nothing). ``book_updates`` and ``skipped`` are not
        merged: they are counted as they come."""
        since = self.since
        for key in later.books:
            if key not in self.books or later_ns < since.get(key, own_ns):
                since[key] = later_ns
            deltas = later.deltas.get(key)
            if deltas is None:
                self.whole(key)
            else:
                for bids, asks in deltas:
                    self.delta(key, bids, asks)
        self.trades += later.trades
        self.statuses += later.statuses

    def reach(self, key: tuple[str, str | None]) -> tuple[Decimal | None, Decimal | None] | None:
        """(highest bid price, lowest ask price) the deltas to ``key`` set, or None if the book may
        have changed anywhere. Worked out only for a book someone watches."""
        deltas = self.deltas.get(key)
        if deltas is None:
            return None
        high = low = None
        for bids, asks in deltas:
            if bids:
                top = as_levels(bids).highest()
                if high is None or (top is not None and top > high):
                    high = top
            if asks:
                bottom = as_levels(asks).lowest()
                if low is None or (bottom is not None and bottom < low):
                    low = bottom
        return high, low
