"""A :class:`~crossbook.toolkit.connector.Feed` for tests: events go through a real engine, and a test
can wait for a condition on the books without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anyio

from crossbook.core.book import BookView
from crossbook.core.engine import Engine
from crossbook.core.model import BookState, Event, VenueStatus


class EngineFeed:
    def __init__(self, venue: str, symbols: Sequence[str]) -> None:
        self.venue = venue
        self.symbols = tuple(symbols)
        self.engine = Engine({venue: self.symbols}, stale_after_ns=10**15)
        self.events: list[Event] = []
        self.skipped: list[str] = []
        self.heard_count = 0
        self._changed = anyio.Event()

    def now_ns(self) -> int:
        return time.time_ns()

    def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        changes = self.engine.ingest(self.venue, events, time.time_ns())
        self.skipped.extend(changes.skipped)
        self._notify()

    def heard(self) -> None:
        self.heard_count += 1
        self._notify()

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Until ``condition()`` holds, re-checked after everything the connector hands over
        (bound it with ``anyio.fail_after``)."""
        while not condition():
            await self._changed.wait()

    def book(self, symbol: str) -> BookView:
        return self.engine.book(symbol, self.venue)

    def state(self, symbol: str) -> BookState:
        return self.engine.state(symbol, self.venue)

    def statuses(self, symbol: str | None = None) -> list[VenueStatus]:
        return [e for e in self.events if isinstance(e, VenueStatus) and (symbol is None or e.symbol == symbol)]

    def resyncs(self, reason: str) -> int:
        return sum(1 for e in self.statuses() if e.state is BookState.SYNCING and e.reason == reason)
