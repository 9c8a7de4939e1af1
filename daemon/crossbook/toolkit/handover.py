"""A venue's connections and which of them serves each book (sans-I/O), planned reconnects included.

A venue closes its connections now and then (Binance after 24 h, Bitstamp when it asks), and a
connection may be given a maximum age. A planned reconnect opens a second connection beside the
old one; the new one builds its books privately and each symbol switches over the moment its new
book is live (subscribers see a diff, not a gap), while trades are taken from both and published
once. The old connection ends once it serves nothing, or at the latest after
``HANDOVER_TIMEOUT``.

:class:`Handover` holds that logic. The I/O layer (:mod:`crossbook.toolkit.streaming`) feeds it
what happened, with clock readings, and carries out the :class:`Step` it returns: events to
publish, frames to send, snapshots to fetch, connections to open or end.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from crossbook.core.model import BookSnapshot, BookState, Event, Trade
from crossbook.toolkit.sync import Action, BookSync, FetchSnapshot, Resubscribe
from crossbook.toolkit.venue import (
    PARSE_ERRORS,
    BookUpdate,
    ConnectionState,
    Reconnect,
    Rejected,
    RestSnapshots,
    Resync,
    Send,
    SnapshotSource,
    Stream,
    VenueProtocol,
)

HANDOVER_TIMEOUT = 60.0
"""A planned reconnect gives up waiting for the new connection's books after this long."""
RECENT_TRADES = 256
"""Trade ids remembered per symbol, with the connection that delivered each: while a planned
reconnect's two connections overlap, a trade both deliver is published once (they lag each other
by far fewer trades). A repeat on the same connection is not a duplicate (Kraken v1 trades have
only a timestamp for an id, which a trade at the same instant shares)."""
_numbers = itertools.count()


def _past(last: int | None, active: BookSync | None) -> bool:
    """Whether book id ``last`` is older than the live book ``active`` (unknown ids never are)."""
    return active is not None and active.live and active.last is not None and last is not None and last < active.last


def _older(snap: BookUpdate, successor: BookSync, active: BookSync | None) -> bool:
    """Whether a snapshot is older than the live book a successor would replace, with nothing
    buffered to show it: a request in flight when the successor subscribed (a rebase's, say) is
    answered to it too, and taking it would publish an older book until its first diff fails."""
    return not successor.buffer and _past(snap.last, active)


@dataclass(eq=False)
class Connection:
    """One WebSocket connection to the venue, from its opening to its end."""

    stream: Stream
    state: ConnectionState = field(default_factory=ConnectionState)
    syncs: dict[str, BookSync] = field(default_factory=dict)
    planned: str | None = None
    """Why a planned reconnect was started from this connection."""
    planned_at: float | None = None
    """When (monotonic seconds)."""
    stalled: bool = False
    """The venue went silent for longer than the idle timeout (its books resync as ``stale``)."""
    heard: float = 0.0
    """Monotonic time of the last frame (or of opening)."""
    done: bool = False
    """It serves no active book any more (handed over): end it."""
    number: int = field(default_factory=_numbers.__next__)
    """Tells connections apart in :attr:`Handover.recent_trades`."""
    bridged: set[str] = field(default_factory=set)
    """Symbols whose trades a planned successor has been seen to carry (a trade both delivered)."""


@dataclass(slots=True)
class Step:
    """What the I/O layer does after an input, in this order: count what is skipped and log the
    errors, publish the events (else, for a frame, say the venue was heard), open successors, end
    connections, ask for snapshots, send frames on the input's connection, and replace that
    connection if asked."""

    events: list[Event] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """What to log as an error (a subscription the venue refused)."""
    heard: bool = False
    """A frame was read that brought no events (a heartbeat, an ack)."""
    successors: list[Stream] = field(default_factory=list)
    """Streams to open a planned reconnect's new connection to (books built privately)."""
    close: list[Connection] = field(default_factory=list)
    """Connections handed over: end them."""
    fetch: list[str] = field(default_factory=list)
    """Symbols whose REST snapshot to request."""
    send: list[str] = field(default_factory=list)
    """Frames to send on the input's connection."""
    reconnect: str | None = None
    """Why the input's connection must be replaced (a resync the venue allows only that way)."""
    retry: str | None = None
    """For a connection that ended: the reason its stream is opened again with (``reconnect``,
    ``stale``), or None when it is not (handed over, or its successor owns the stream)."""


class Handover:
    """Every connection of one venue and the book sync serving each symbol."""

    def __init__(self, protocol: VenueProtocol, make_sync: Callable[[str], BookSync], *, idle_timeout: float) -> None:
        self.protocol = protocol
        self.make_sync = make_sync
        self.idle_timeout = idle_timeout
        self.active: dict[str, BookSync] = {}
        """The sync whose book subscribers see, per symbol."""
        self.building: set[BookSync] = set()
        """A planned reconnect's new books, built privately until they take over (never again after)."""
        self.waiting: dict[str, list[BookSync]] = {}
        """Syncs waiting for a REST snapshot, per symbol."""
        self.connections: set[Connection] = set()
        """The open connections."""
        self.recent_trades: dict[str, OrderedDict[str, list[int]]] = {}

    # -- connections --------------------------------------------------------------------------

    def opened(self, conn: Connection, takeover: bool, reason: str, now_ns: int, mono: float) -> Step:
        """``conn`` is connected: subscribe, and start a sync per symbol. A planned reconnect's
        successor (``takeover``) builds books privately where the current one is live."""
        step = Step(send=list(conn.stream.subscribe))
        self.connections.add(conn)
        conn.heard = mono
        actions: list[Action] = []
        for symbol in conn.stream.symbols if conn.stream.books else ():
            sync = conn.syncs[symbol] = self.make_sync(symbol)
            current = self.active.get(symbol)
            if not takeover or current is None or current.state is not BookState.LIVE:
                self.active[symbol] = sync
                sync.start(now_ns, step.events, actions, reason if current else None)
            else:
                self.building.add(sync)
                sync.start(now_ns, [], actions)
        self._retire(step)  # an old connection whose books were not live hands them over here
        self._act(actions, step)
        return step

    def closed(self, conn: Connection, now_ns: int) -> Step:
        """``conn`` is gone (handed over, failed, or cancelled): its active books stop being
        maintained; ``Step.retry`` says whether and why its stream is opened again."""
        step = Step()
        self.connections.discard(conn)
        for symbol, sync in conn.syncs.items():
            self._forget(sync)
            if self.active.get(symbol) is sync and sync.state is not BookState.DOWN:
                refused = self._refused_successor(conn, symbol) if conn.planned else None
                if refused is None:
                    sync.stop(now_ns, step.events, BookState.CONNECTING, "reconnect")
                else:  # the successor's subscription was refused: no connection will bring it back
                    sync.stop(now_ns, step.events, BookState.DOWN, "rejected")
                    self.active[symbol] = refused
        if not conn.done and not conn.planned:
            # A planned reconnect's old connection is not reopened: its successor owns the stream
            # (and takes the books over once live); two connections would serve it, one nothing.
            step.retry = "stale" if conn.stalled else "reconnect"
        return step

    def plan(self, conn: Connection, reason: str, mono: float) -> Step:
        """Replace ``conn`` with no gap: open a successor beside it (the venue asked, or the
        connection reached its maximum age)."""
        step = Step()
        self._plan(conn, reason, mono, step)
        return step

    def _plan(self, conn: Connection, reason: str, mono: float, step: Step) -> None:
        if conn.planned:
            return
        conn.planned, conn.planned_at = reason, mono
        step.successors.append(conn.stream)

    def deadline(self, conn: Connection, mono: float) -> Step:
        """A planned reconnect's old connection ends ``HANDOVER_TIMEOUT`` after it was planned,
        whether or not its books were taken over."""
        step = Step()
        if conn.planned_at is not None and mono - conn.planned_at >= HANDOVER_TIMEOUT and not conn.done:
            conn.done = True
            step.close.append(conn)
        return step

    def idle(self, conn: Connection, mono: float) -> float | None:
        """Seconds until ``conn`` counts as stalled if nothing comes, or None once it does: a
        silent connection is replaced and its books resync as ``stale``."""
        silent = mono - conn.heard
        if silent >= self.idle_timeout:
            conn.stalled = True
            return None
        return self.idle_timeout - silent

    # -- input --------------------------------------------------------------------------------

    def received(self, conn: Connection, frame: str | bytes, now_ns: int, mono: float) -> Step:
        """One frame from ``conn``, received at ``now_ns``."""
        conn.heard = mono
        step = Step()
        try:
            outputs = self.protocol.parse(conn.state, frame, now_ns)
        except PARSE_ERRORS as exc:
            step.skipped.append(f"unreadable frame ({type(exc).__name__}: {exc}): {str(frame)[:200]!r}")
            return step
        events = step.events
        actions: list[Action] = []
        for out in outputs:
            if isinstance(out, BookUpdate):
                self._update(conn, out, actions, step)
            elif isinstance(out, Trade):
                if self._first_time(out, conn, step):
                    events.append(out)
            elif isinstance(out, Send):
                step.send.append(out.frame)
            elif isinstance(out, Resync):
                for symbol in (out.symbol,) if out.symbol else tuple(conn.syncs):
                    sync = conn.syncs.get(symbol)
                    if sync is None or sync.state is BookState.DOWN:
                        continue
                    if self.active.get(symbol) is sync:
                        sync.fail(out.reason, now_ns, events, actions)
                    elif sync in self.building:  # privately; a book taken over from is left alone
                        sync.fail(out.reason, now_ns, [], actions)
            elif isinstance(out, Reconnect):
                self._plan(conn, out.reason, mono, step)
            elif isinstance(out, Rejected):
                step.errors.append(f"subscription rejected: {out.message}")
                for symbol in (out.symbol,) if out.symbol else tuple(conn.syncs):
                    sync = conn.syncs.get(symbol)
                    if sync is not None and self.active.get(symbol) is sync:
                        sync.stop(now_ns, events, BookState.DOWN, "rejected")
                    elif sync is not None and sync in self.building:  # never to take over
                        self._forget(sync)
                        sync.stop(now_ns, [], BookState.DOWN, "rejected")
        step.heard = not events
        self._act(actions, step)
        return step

    def snapshot(self, symbol: str, body: bytes, now_ns: int) -> Step:
        """A REST snapshot of ``symbol`` arrived: every sync waiting for one aligns on it."""
        step = Step()
        try:
            snap = cast(RestSnapshots, self.protocol).parse_snapshot(symbol, body, now_ns)
        except PARSE_ERRORS as exc:
            step.skipped.append(f"unreadable snapshot of {symbol} ({type(exc).__name__}: {exc})")
            step.fetch.append(symbol)
            return step
        actions: list[Action] = []
        for sync in self.waiting.pop(symbol, []):
            active = self.active.get(symbol)
            if active is sync:
                sync.on_snapshot(snap, step.events, actions)
            elif _older(snap, sync, active):
                self._want_snapshot(sync, step)
            else:
                sync.on_snapshot(snap, [], actions)
                if sync.live and sync in self.building and not self._behind(sync, active):
                    self._take_over(sync, now_ns, step)
        self._act(actions, step)  # a REST venue's sync only ever asks for snapshots
        return step

    def _update(self, conn: Connection, upd: BookUpdate, actions: list[Action], step: Step) -> None:
        sync = conn.syncs.get(upd.symbol)
        if sync is None:
            step.skipped.append(f"update for a symbol not subscribed on this connection: {upd.symbol!r}")
            return
        active = self.active.get(upd.symbol)
        if active is sync:
            sync.on_update(upd, step.events, actions)
            return
        if sync in self.building and active is not None and sync.state is not BookState.DOWN:
            # A successor building its book (or keeping it: one that went live from a REST
            # snapshot while the old book was resyncing was not taken over then) takes over once
            # live, whatever the old book's state. A book taken over from is not building: it
            # never takes itself back.
            sync.on_update(upd, [], actions)
            if sync.live and not self._behind(sync, active):
                self._take_over(sync, upd.recv_ns, step)

    def _act(self, actions: list[Action], step: Step) -> None:
        resubscribe: list[Resubscribe] = []
        for action in actions:
            if isinstance(action, FetchSnapshot):
                self._want_snapshot(action.sync, step)
            else:
                resubscribe.append(action)
        if not resubscribe:
            return
        # One call for every symbol to resync: a connection-wide gap costs a few messages, not
        # two per symbol (venues limit client messages a second).
        frames = self.protocol.resubscribe(list(dict.fromkeys(a.sync.symbol for a in resubscribe)))
        if frames is None:
            first = resubscribe[0]
            step.reconnect = f"{first.sync.symbol}: {first.reason}; the venue needs a new connection"
        else:
            step.send += frames

    def _want_snapshot(self, sync: BookSync, step: Step) -> None:
        waiting = self.waiting.setdefault(sync.symbol, [])
        if sync not in waiting:
            waiting.append(sync)
        step.fetch.append(sync.symbol)

    # -- trades -------------------------------------------------------------------------------

    def _first_time(self, trade: Trade, conn: Connection, step: Step) -> bool:
        """Trades are taken from every connection that carries them, so none is lost when a
        planned reconnect switches connections; one another connection delivered is dropped."""
        recent = self.recent_trades.get(trade.symbol)
        if recent is None:
            recent = self.recent_trades[trade.symbol] = OrderedDict()
        deliverers = recent.get(trade.trade_id)
        if deliverers is None:
            recent[trade.trade_id] = [conn.number]
            if len(recent) > RECENT_TRADES:
                recent.popitem(last=False)
            return True
        if deliverers[0] == conn.number:
            return True  # a repeat on the connection that delivered it: another trade (Kraken v1 ids are times)
        if conn.number not in deliverers:
            deliverers.append(conn.number)
            self._bridged(trade.symbol, deliverers, step)
        return False

    def _bridged(self, symbol: str, deliverers: list[int], step: Step) -> None:
        """These connections all delivered one trade of ``symbol``. If they include a planned
        reconnect's old connection without books and its successor, the successor carries that
        symbol's trades from there on; the old one ends once that holds for all its symbols (a
        trades-only connection has no book takeover to end it)."""
        for old in self.connections:
            if not old.planned or old.syncs or old.number not in deliverers:
                continue
            if any(
                new.stream is old.stream and new is not old and new.number in deliverers for new in self.connections
            ):
                old.bridged.add(symbol)
                if old.bridged.issuperset(old.stream.symbols):
                    self._end(old, step)

    # -- books --------------------------------------------------------------------------------

    def _behind(self, successor: BookSync, active: BookSync | None) -> bool:
        """Whether a live successor's book is older than the live book it would replace (its
        connection lags the old one): taken over now, subscribers would see the book step back. It
        takes over once its own updates have caught up. Only a REST venue's ids (the venue's own
        book ids, as its snapshots carry them) compare across connections."""
        return self.protocol.snapshot_source is SnapshotSource.REST and _past(successor.last, active)

    def _take_over(self, sync: BookSync, recv_ns: int, step: Step) -> None:
        """A planned successor's book is live: it replaces the old one, subscribers see a diff."""
        self.building.discard(sync)
        old = self.active.get(sync.symbol)
        if old is not None:
            self._forget(old)  # a snapshot it waited for (a rebase) would be wasted on it
        self.active[sync.symbol] = sync
        book = sync.book
        step.events.append(BookSnapshot(sync.symbol, book.bids(), book.asks(), recv_ns, book=book))
        self._retire(step)

    def _retire(self, step: Step) -> None:
        """End a planned reconnect's old connections that serve no book any more."""
        for conn in list(self.connections):
            # A connection without books waits for a trade its successor delivers too (_bridged).
            if conn.planned and conn.syncs and not any(self.active.get(s) is b for s, b in conn.syncs.items()):
                self._end(conn, step)

    @staticmethod
    def _end(conn: Connection, step: Step) -> None:
        if not conn.done:
            conn.done = True
            step.close.append(conn)

    def _forget(self, sync: BookSync) -> None:
        """Drop a sync from the books being built and from the snapshot queue: its connection is
        gone, or its book will never take over."""
        self.building.discard(sync)
        waiting = self.waiting.get(sync.symbol)
        if waiting and sync in waiting:
            waiting.remove(sync)

    def _refused_successor(self, conn: Connection, symbol: str) -> BookSync | None:
        """The sync of ``symbol`` that the venue refused on a newer open connection (a planned
        reconnect's successor), if any; an older connection's refusal is history."""
        for other in self.connections:
            sync = other.syncs.get(symbol)
            if other.number > conn.number and sync is not None and sync.state is BookState.DOWN:
                return sync
        return None
