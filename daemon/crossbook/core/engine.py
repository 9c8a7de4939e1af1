"""The sans-I/O core: venue books, their states, and consolidated books.

Connectors' events go in with an explicit ``now_ns``; what changed comes out as :class:`Changes`
for the hub to turn into subscriber messages. No sockets, no clocks, no metrics here.

A book's state is what its connector last said (``connecting``, ``syncing``, ``live``, ``down``),
except that a live book of a venue silent for more than ``stale_after`` is ``stale``. Only live
books are in the consolidated book; a book leaves it the moment it stops being live.

Subscribers are told in batches (:class:`Batch`). A batch never holds a book's departure from
``live`` and its return: before a book whose state subscribers have not been told yet enters
``live``, the engine has what is pending told (:attr:`Engine.tell`). The hub can then send a
venue's ``live`` status before the book messages that add it, and any other status after those
that remove it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from crossbook.core.book import BookView, L2Book
from crossbook.core.changes import Changes, StatusChange
from crossbook.core.consolidated import ConsolidatedBook
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Event, Trade, VenueStatus

__all__ = ["Batch", "Changes", "Engine", "StatusChange", "VenueBook"]


class VenueBook:
    __slots__ = ("book", "own", "resyncs", "state", "synced")

    def __init__(self) -> None:
        self.own: L2Book | None = L2Book()
        """The engine's copy of the book, which it applies deltas to; ``None`` while it reads the
        connector's live book instead (lent by its snapshot as a view)."""
        self.book: BookView = self.own
        """What readers read: ``own``, or the connector's book."""
        self.synced = BookState.CONNECTING
        """What the connector last said."""
        self.state = BookState.CONNECTING
        """Effective state (``synced``, or ``stale`` when a live book's venue went silent)."""
        self.resyncs = 0
        """Times the book went back to ``syncing`` with a reason (a resync)."""


class Engine:
    def __init__(
        self, venues: Mapping[str, Sequence[str]], stale_after_ns: int, *, watched: set[str] | None = None
    ) -> None:
        self.stale_after_ns = stale_after_ns
        self.books: dict[tuple[str, str], VenueBook] = {}
        self.consolidated: dict[str, ConsolidatedBook] = {}
        self.watched = watched
        """Symbols whose consolidated book is kept (see :meth:`watch`); ``None``: every symbol's."""
        self.venue_symbols: dict[str, tuple[str, ...]] = {}
        self.last_message_ns: dict[str, int | None] = {}
        self._stale: set[str] = set()
        self.untold: set[tuple[str, str]] = set()
        """Books (symbol, venue) whose state changed since subscribers were last told (cleared by
        :meth:`Batch.flush`)."""
        self.tell: Callable[[Changes, int], None] | None = None
        """Tells subscribers what is pending at once, with the changes given (stamped with the
        receive time given); set by the :class:`Batch` that tells them."""
        for venue, symbols in venues.items():
            self.add_venue(venue, symbols)

    def add_venue(self, venue: str, symbols: Sequence[str]) -> None:
        self.venue_symbols[venue] = tuple(symbols)
        self.last_message_ns[venue] = None
        for symbol in symbols:
            self.books[(symbol, venue)] = VenueBook()
            self.consolidated.setdefault(symbol, ConsolidatedBook())

    def configure(self, venues: Mapping[str, Sequence[str]]) -> Changes:
        """Make the venues and their symbols exactly these (a reload): books that go leave the
        consolidated book; new ones start ``connecting``; consolidated books no venue quotes go."""
        changes = Changes()
        for (symbol, venue), vb in list(self.books.items()):
            if symbol not in venues.get(venue, ()):
                self._leave(symbol, venue, vb, changes)
                del self.books[(symbol, venue)]
        for venue in [v for v in self.venue_symbols if v not in venues]:
            del self.venue_symbols[venue]
            del self.last_message_ns[venue]
            self._stale.discard(venue)
        for venue, symbols in venues.items():
            known = self.venue_symbols.get(venue)
            self.venue_symbols[venue] = tuple(symbols)
            self.last_message_ns.setdefault(venue, None)
            for symbol in symbols:
                if known is None or symbol not in known:
                    self.books[(symbol, venue)] = VenueBook()
                    self.consolidated.setdefault(symbol, ConsolidatedBook())
        quoted = {symbol for symbol, _ in self.books}
        for symbol in [s for s in self.consolidated if s not in quoted]:
            del self.consolidated[symbol]
            changes.books.discard((symbol, None))
            if self.watched is not None:
                self.watched.discard(symbol)
        return changes

    def watch(self, symbol: str) -> None:
        """Keep ``symbol``'s consolidated book from now on, built here from its live venue books.

        With ``watched`` given, a consolidated book nobody reads costs nothing: the hub watches a
        symbol when its first ``book`` or ``bbo`` channel opens. It is kept from then on, so
        subscribing and unsubscribing never makes the book be rebuilt again and again."""
        if self.watched is None or symbol in self.watched:
            return
        self.watched.add(symbol)
        for venue in self.venue_symbols:
            vb = self.books.get((symbol, venue))
            if vb is not None and vb.state is BookState.LIVE:
                self.consolidated[symbol].update(venue, *vb.book.sides())

    def _kept(self, symbol: str) -> bool:
        """Whether ``symbol``'s consolidated book is kept (``ingest`` inlines this on its hot path)."""
        return self.watched is None or symbol in self.watched

    @property
    def symbols(self) -> list[str]:
        return sorted(self.consolidated)

    def book(self, symbol: str, venue: str) -> BookView:
        return self.books[(symbol, venue)].book

    def state(self, symbol: str, venue: str) -> BookState:
        return self.books[(symbol, venue)].state

    def not_live(self) -> list[tuple[str, str, BookState]]:
        """(venue, symbol, state) of every book that is not live."""
        return [
            (venue, symbol, vb.state)
            for (symbol, venue), vb in sorted(self.books.items())
            if vb.state is not BookState.LIVE
        ]

    # -- ingest -------------------------------------------------------------------------------

    def ingest(self, venue: str, events: Iterable[Event], now_ns: int) -> Changes:
        """Apply one venue message's events; ``now_ns`` marks the venue as heard from."""
        changes = self.touch(venue, now_ns)
        books = self.books
        watched = self.watched
        for event in events:
            if isinstance(event, BookDelta):
                vb = books.get((event.symbol, venue))
                if vb is None:
                    changes.skipped.append(f"unknown symbol {event.symbol!r}")
                elif vb.synced is not BookState.LIVE:
                    changes.skipped.append(f"delta for {event.symbol} before its snapshot")
                else:
                    if vb.own is not None:
                        vb.own.apply(event.bids, event.asks)
                    changes.delta((event.symbol, venue), event.bids, event.asks)
                    changes.book_updates.append(event.symbol)
                    if vb.state is BookState.LIVE and (watched is None or event.symbol in watched):
                        self.consolidated[event.symbol].update(venue, event.bids, event.asks)
                        changes.delta((event.symbol, None), event.bids, event.asks)
            elif isinstance(event, Trade):
                if (event.symbol, venue) in books:
                    changes.trades.append((venue, event))
                else:
                    changes.skipped.append(f"unknown symbol {event.symbol!r}")
            elif isinstance(event, BookSnapshot):
                vb = books.get((event.symbol, venue))
                if vb is None:
                    changes.skipped.append(f"unknown symbol {event.symbol!r}")
                    continue
                in_consolidation = vb.state is BookState.LIVE
                if not in_consolidation:  # it enters (its venue was just heard: it is not stale)
                    changes = self._entering(event.symbol, venue, changes, event.recv_ns)
                if in_consolidation:
                    self._leave(event.symbol, venue, vb, changes)
                if event.book is None:
                    vb.book = vb.own = L2Book()
                    vb.own.replace(event.bids, event.asks)
                else:
                    vb.book, vb.own = event.book, None
                changes.whole((event.symbol, venue))
                changes.book_updates.append(event.symbol)
                if in_consolidation:
                    self._enter(event.symbol, venue, vb, changes)
                vb.synced = BookState.LIVE
                self._settle(event.symbol, venue, vb, None, event.recv_ns, changes)
            elif event.state is BookState.STALE:
                changes.skipped.append("a connector cannot declare a book stale; the engine does")
            else:
                symbols = self.venue_symbols[venue] if event.symbol is None else (event.symbol,)
                for symbol in symbols:
                    vb = books.get((symbol, venue))
                    if vb is None:
                        changes.skipped.append(f"unknown symbol {symbol!r}")
                        continue
                    if event.state is BookState.LIVE and vb.state is not BookState.LIVE:
                        changes = self._entering(symbol, venue, changes, event.recv_ns)
                    vb.synced = event.state
                    self._settle(symbol, venue, vb, event.reason, event.recv_ns, changes)
                    if event.state is not BookState.LIVE and (vb.own is None or vb.own):
                        changes.whole((symbol, venue))  # a lent book may be emptied already
                        vb.book = vb.own = L2Book()  # and is its connector's again
        return changes

    def touch(self, venue: str, now_ns: int) -> Changes:
        """The venue was heard from: a silent venue's live books come back."""
        changes = Changes()
        self.last_message_ns[venue] = now_ns
        if venue in self._stale:
            self._stale.discard(venue)
            for symbol in self.venue_symbols[venue]:
                vb = self.books[(symbol, venue)]
                if vb.synced is BookState.LIVE:
                    changes = self._entering(symbol, venue, changes, now_ns)
                self._settle(symbol, venue, vb, None, now_ns, changes)
        return changes

    def tick(self, now_ns: int) -> Changes:
        """Mark venues silent for longer than ``stale_after`` as stale."""
        changes = Changes()
        for venue, last in self.last_message_ns.items():
            if venue in self._stale or last is None or now_ns - last <= self.stale_after_ns:
                continue
            self._stale.add(venue)
            for symbol in self.venue_symbols[venue]:
                self._settle(symbol, venue, self.books[(symbol, venue)], "stale", now_ns, changes)
        return changes

    def venue_down(self, venue: str, reason: str, now_ns: int) -> Changes:
        """The venue's connector stopped (crashed or was stopped): all its books go down."""
        status = VenueStatus(None, BookState.DOWN, now_ns, reason)
        # Not hearing from the venue: leave ``stale`` first so ingest's touch brings no book back
        # to ``live`` (and into consolidation) on its way down.
        self._stale.discard(venue)
        changes = self.ingest(venue, (status,), now_ns)
        self.last_message_ns[venue] = None
        return changes

    # -- state bookkeeping --------------------------------------------------------------------

    def _settle(self, symbol: str, venue: str, vb: VenueBook, reason: str | None, ts: int, changes: Changes) -> None:
        """Recompute a book's effective state; enter or leave consolidation on a change."""
        stale = vb.synced is BookState.LIVE and venue in self._stale
        state = BookState.STALE if stale else vb.synced
        if state is vb.state:
            return
        if vb.state is BookState.LIVE:
            self._leave(symbol, venue, vb, changes)
        vb.state = state
        if state is BookState.LIVE:
            self._enter(symbol, venue, vb, changes)
        elif state is BookState.SYNCING and reason:
            vb.resyncs += 1
        changes.statuses.append(StatusChange(venue, symbol, state, reason, ts))
        self.untold.add((symbol, venue))

    def _entering(self, symbol: str, venue: str, changes: Changes, ts: int) -> Changes:
        """A book is about to enter ``live``: if its state changed since subscribers were last
        told, have them told now (with what ``changes`` holds so far), so that no update both
        removes a venue and adds it back. Returns the changes to go on with."""
        if self.tell is None or (symbol, venue) not in self.untold:
            return changes
        rest = Changes(book_updates=changes.book_updates, skipped=changes.skipped)
        changes.book_updates, changes.skipped = [], []
        self.tell(changes, ts)
        return rest

    def _enter(self, symbol: str, venue: str, vb: VenueBook, changes: Changes) -> None:
        if self._kept(symbol):
            self.consolidated[symbol].update(venue, *vb.book.sides())
            changes.whole((symbol, None))

    def _leave(self, symbol: str, venue: str, vb: VenueBook, changes: Changes) -> None:
        # Not from ``vb.book``: a lent book may already hold what made its connector resync.
        if vb.state is BookState.LIVE and self._kept(symbol):
            self.consolidated[symbol].drop(venue)
            changes.whole((symbol, None))


class Batch:
    """What changed since subscribers were last told (sans-I/O): the changes of venue messages
    read together, merged so that each channel gets one update for all of them.

    :meth:`add` each ingest's changes; the I/O layer calls :meth:`flush` once the connectors'
    readers wait for more. The engine flushes early, before a book enters ``live`` while
    subscribers have not been told of its last state change (see :attr:`Engine.tell`).
    """

    def __init__(self, engine: Engine, publish: Callable[[Changes, int], object]) -> None:
        self.engine = engine
        self.publish = publish
        """Tells subscribers: the changes and the receive time they are stamped with."""
        self.changes: Changes | None = None
        self.ts = 0
        """The receive time ``changes`` is stamped with where its ``since`` says nothing: of the
        venue message (or engine tick) that started the batch."""
        engine.tell = self._tell

    def add(self, changes: Changes, ts: int) -> bool:
        """Hold what one ingest changed (``ts``: its message's receive time). Returns whether it
        started a batch, which the caller then has flushed."""
        if not (changes.books or changes.trades or changes.statuses):
            return False
        if self.changes is None:
            self.changes, self.ts = changes, ts
            return True
        self.changes.merge(changes, ts, self.ts)
        return False

    def flush(self) -> None:
        """Tell subscribers what the batch holds, if anything."""
        self.engine.untold.clear()
        changes, self.changes = self.changes, None
        if changes is not None:
            self.publish(changes, self.ts)

    def _tell(self, changes: Changes, ts: int) -> None:
        self.add(changes, ts)
        self.flush()
