"""The leader's side of the bus (sans-I/O): one venue's events numbered per book and encoded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crossbook.cluster import bus
from crossbook.core.book import BookView
from crossbook.core.model import BookSnapshot, BookState, Event, VenueStatus

Message = tuple[str, bytes]
"""(subject, payload)"""


class Leader:
    """Numbers one venue's events for the bus: ``seq`` grows by 1 per message of a book, from 1
    in each epoch ``ep`` (the lease's, see :mod:`~crossbook.cluster.lease`)."""

    def __init__(self, venue: str, symbols: Sequence[str], ep: int, node: str) -> None:
        self.venue = venue
        self.ep = ep
        self.node = node
        self.seqs = dict.fromkeys(symbols, 0)
        self.subjects = {s: bus.book_subject(venue, s) for s in symbols}

    def messages(self, events: Sequence[Event]) -> list[Message]:
        """The bus messages of one venue message's events (a venue-wide status: one per book).
        Events of symbols not configured are left out (the engine counts them as skipped)."""
        out: list[Message] = []
        seqs = self.seqs
        for event in events:
            if isinstance(event, VenueStatus) and event.symbol is None:
                for symbol in seqs:
                    one = VenueStatus(symbol, event.state, event.recv_ns, event.reason)
                    out.append(self._next(symbol, one))
            elif event.symbol in seqs:
                out.append(self._next(event.symbol, event))
        return out

    def start(self, ep: int, books: Mapping[str, tuple[BookState, BookView]], now_ns: int) -> list[Message]:
        """Epoch ``ep`` begins (this node won the venue's lease): each book's ``seq`` 1 is its
        whole state, the book if ``live``, else its status, so followers go on from it at once."""
        self.ep = ep
        out: list[Message] = []
        for symbol in self.seqs:
            self.seqs[symbol] = 0
            state, book = books[symbol]
            event: Event
            if state is BookState.LIVE:
                bids, asks = book.sides()
                event = BookSnapshot(symbol, list(bids), list(asks), now_ns)
            else:
                event = VenueStatus(symbol, state, now_ns, "leader_changed")
            out.append(self._next(symbol, event))
        return out

    def _next(self, symbol: str, event: Event) -> Message:
        seq = self.seqs[symbol] + 1
        self.seqs[symbol] = seq
        return self.subjects[symbol], bus.encode(self.ep, seq, event)

    def beat(self, heard: int | None) -> Message:
        return bus.beat_subject(self.venue), bus.encode_beat(self.ep, self.node, heard, self.seqs)

    def snapshot(self, symbol: str, state: BookState, book: BookView, heard: int | None, now_ns: int) -> bytes:
        """The reply to a snapshot request: the book as the last numbered message left it."""
        return bus.encode_snapshot(self.ep, self.seqs[symbol], state, book, heard, now_ns)
