"""A follower's side of the bus (sans-I/O): one venue's books rebuilt from their streams.

It turns bus messages into the events a venue connector gives the engine, so an edge's engine,
hub and API work as they do on a single process. A book follows one epoch's stream message by
message (``seq`` + 1 each). A gap, a message from a newer leader, a lost connection, a slow
consumer's drop or a silent leader puts it in ``syncing``; it then waits for a snapshot reply,
buffering what arrives, and goes on from the reply's ``seq``; trades the cut stream may have
carried are not recovered, so a :class:`TradesGap` says they may be missing. A new epoch's first message (``seq``
1) holds the book's whole state (a leader that takes over sends it): the book goes on from it at
once. Messages of an older epoch than one seen since the leader was last silent are fenced off
(counted, never applied).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from crossbook.cluster import bus
from crossbook.core.model import BookSnapshot, BookState, Event, Trade, VenueStatus

RECENT_TRADES = 4096
"""Trade ids a book remembers: a new leader whose venue feed ran behind the old one's sends again
trades the old one had sent; those are dropped (the handover's rule, by trade id per symbol)."""
MAX_BUFFERED = 100_000
"""Messages a book waiting for its snapshot holds; past it they are dropped (and the snapshot
request repeated: a reply then lines up with what arrives next)."""


@dataclass(frozen=True, slots=True)
class Skip:
    """An unusable bus message: count and log it."""

    reason: str


@dataclass(frozen=True, slots=True)
class TradesGap:
    """Output: the book's stream was cut (a resync, a new leader): trades may have been lost."""

    symbol: str
    ts: int


HEARD = object()
"""Output: the venue was heard from (the leader's heartbeat says so)."""

Output = Event | Skip | TradesGap | object


def _whole(event: Event) -> bool:
    """Whether ``event`` says all there is of a book: the book itself, or a state without one."""
    return isinstance(event, BookSnapshot) or (isinstance(event, VenueStatus) and event.state is not BookState.LIVE)


class _Book:
    __slots__ = ("buffer", "ep", "recent", "seen", "seq", "suspect")

    def __init__(self) -> None:
        self.ep = -1
        self.seq = 0
        """The last message applied, of epoch ``ep``."""
        self.buffer: list[bus.Sequenced] | None = []
        """What arrived while waiting for a snapshot; ``None`` while following the stream."""
        self.suspect = 0
        """A heartbeat said the stream is at least here; the next one confirms a lost tail."""
        self.recent: deque[str] = deque()
        self.seen: set[str] = set()
        """The last ``RECENT_TRADES`` trade ids passed on, in order and as a set."""

    def fresh(self, event: Event) -> bool:
        """Whether ``event`` is to be passed on: not a trade already passed on."""
        if not isinstance(event, Trade):
            return True
        if event.trade_id in self.seen:
            return False
        self.seen.add(event.trade_id)
        self.recent.append(event.trade_id)
        if len(self.recent) > RECENT_TRADES:
            self.seen.discard(self.recent.popleft())
        return True


class Follower:
    def __init__(self, venue: str, symbols: Sequence[str], silent_after_ns: int) -> None:
        self.venue = venue
        self.books = {s: _Book() for s in symbols}
        self.silent_after_ns = silent_after_ns
        self.ep = -1
        """The newest epoch seen: older ones are fenced."""
        self.last_ns: int | None = None
        """When the current leader was last heard on the bus."""
        self.heard: int | None = None
        self.fenced = 0
        self.resyncs = 0
        self.sent_ns = 0
        """The leader's receive time (``ts``) of the last book message read."""

    def waiting(self) -> list[str]:
        """Symbols whose book waits for a snapshot reply."""
        return [s for s, b in self.books.items() if b.buffer is not None]

    def _epoch(self, ep: int, now_ns: int) -> bool:
        """Whether a message of epoch ``ep`` is to be read (a newer one: a new leader)."""
        if ep < self.ep:
            self.fenced += 1
            return False
        self.ep = ep
        self.last_ns = now_ns
        return True

    def _resync(self, symbol: str, book: _Book, reason: str, now_ns: int, out: list[Output]) -> None:
        book.suspect = 0
        if book.buffer is None:
            book.buffer = []
            self.resyncs += 1
            out.append(VenueStatus(symbol, BookState.SYNCING, now_ns, reason))
            if book.ep >= 0:
                out.append(TradesGap(symbol, now_ns))

    def message(self, symbol: str, payload: bytes, now_ns: int) -> list[Output]:
        """A message of ``symbol``'s book stream."""
        book = self.books.get(symbol)
        if book is None:
            return [Skip(f"message for unconfigured symbol {symbol!r}")]
        try:
            msg = bus.decode(symbol, payload)
        except bus.BusError as exc:
            return [Skip(f"{symbol}: {exc}")]
        self.sent_ns = msg.event.recv_ns
        if not self._epoch(msg.ep, now_ns):
            return []
        out: list[Output] = []
        if msg.seq == 1 and msg.ep != book.ep and _whole(msg.event):
            if book.buffer is None and book.ep >= 0:
                out.append(TradesGap(symbol, now_ns))  # cut from the old leader's stream here
            book.ep, book.seq, book.buffer, book.suspect = msg.ep, 1, None, 0
            out.append(msg.event)  # a new epoch starts with the book's whole state: no snapshot needed
            return out
        if book.buffer is None:
            if msg.ep == book.ep and msg.seq <= book.seq:
                return []  # a duplicate
            if msg.ep == book.ep and msg.seq == book.seq + 1:
                book.seq = msg.seq
                return [msg.event] if book.fresh(msg.event) else []
            self._resync(symbol, book, "bus_gap" if msg.ep == book.ep else "leader_changed", now_ns, out)
        assert book.buffer is not None
        if len(book.buffer) >= MAX_BUFFERED:
            book.buffer.clear()
        book.buffer.append(msg)
        return out

    def snapshot(self, symbol: str, payload: bytes, now_ns: int) -> list[Output]:
        """The reply to a snapshot request for ``symbol``: the book goes on from its ``seq``."""
        book = self.books[symbol]
        try:
            snap = bus.decode_snapshot(payload)
        except bus.BusError as exc:
            return [Skip(f"{symbol} snapshot: {exc}")]
        if book.buffer is None or not self._epoch(snap.ep, now_ns):
            return []  # not waiting, or from a fenced leader
        buffered, book.buffer = book.buffer, None
        book.ep, book.seq = snap.ep, snap.seq
        out: list[Output] = []
        if snap.state is BookState.LIVE:
            out.append(BookSnapshot(symbol, snap.bids, snap.asks, snap.ts))
        else:
            out.append(VenueStatus(symbol, snap.state, snap.ts))
        for msg in buffered:
            if msg.ep != snap.ep or msg.seq <= snap.seq:
                continue
            if msg.seq != book.seq + 1:
                self._resync(symbol, book, "bus_gap", now_ns, out)
                return out
            book.seq = msg.seq
            if book.fresh(msg.event):
                out.append(msg.event)
        return out

    def beat(self, payload: bytes, now_ns: int) -> list[Output]:
        """The leader's heartbeat: the venue heard from, and a lost tail of a stream seen."""
        try:
            beat = bus.decode_beat(payload)
        except bus.BusError as exc:
            return [Skip(f"heartbeat: {exc}")]
        if not self._epoch(beat.ep, now_ns):
            return []
        out: list[Output] = []
        if beat.heard is not None and (self.heard is None or beat.heard > self.heard):
            self.heard = beat.heard
            out.append(HEARD)
        for symbol, book in self.books.items():
            if book.buffer is not None:
                continue
            if book.ep != beat.ep:
                self._resync(symbol, book, "leader_changed", now_ns, out)
                continue
            at = beat.seqs.get(symbol, 0)
            # Books' streams and heartbeats may be read out of order: a tail is lost only if a
            # heartbeat's claim is still unmet at the next one.
            if book.suspect and book.seq < book.suspect:
                self._resync(symbol, book, "bus_gap", now_ns, out)
            else:
                book.suspect = at if at > book.seq else 0
        return out

    def lost(self, reason: str, now_ns: int, symbols: Sequence[str] | None = None) -> list[Output]:
        """The bus lost messages or the connection (``symbols``: of these books only)."""
        out: list[Output] = []
        for symbol in self.books if symbols is None else symbols:
            if symbol in self.books:
                self._resync(symbol, self.books[symbol], reason, now_ns, out)
        return out

    def tick(self, now_ns: int) -> list[Output]:
        """A leader silent for ``silent_after_ns`` leaves every book ``syncing``."""
        if self.last_ns is None or now_ns - self.last_ns <= self.silent_after_ns:
            return []
        self.last_ns = None
        self.ep = -1  # whoever leads next is followed, even at a lower epoch (a NATS store wiped)
        return self.lost("bus_silent", now_ns)
