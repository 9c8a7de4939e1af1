"""The toolkit's I/O half: runs a :class:`~crossbook.toolkit.venue.VenueProtocol` as a connector.

It owns the WebSocket sessions (subscribe, protocol or application pings, idle timeout for
silent stalls), the REST snapshot scheduler, reconnects forever with capped exponential backoff
and full jitter, and planned reconnects: when the venue announces a disconnect (or a connection
reaches the venue's maximum age) a second connection is opened and builds its books privately;
each symbol switches over the moment its new book is live (subscribers see a diff, not a gap)
and the old connection closes once it serves nothing.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
from anyio import CancelScope
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint_if_cancelled
from pydantic import Field
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from crossbook.core.model import BookSnapshot, BookState, Event, Trade
from crossbook.toolkit.connector import ConnectorConfig, Feed
from crossbook.toolkit.rest import SnapshotScheduler
from crossbook.toolkit.retry import HEALTHY_AFTER, backoff
from crossbook.toolkit.sequence import SequenceRule
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

log = logging.getLogger("crossbook.streaming")

HANDOVER_TIMEOUT = 60.0
"""A planned reconnect gives up waiting for the new connection's books after this long."""
CANCEL_CHECK_EVERY = 16
"""Frames read between explicit cancellation checkpoints (one costs ~1 µs; a frame ~100 µs)."""
RECENT_TRADES = 256
"""Trade ids remembered per symbol, with the connection that delivered each: while a planned
reconnect's two connections overlap, a trade both deliver is published once (they lag each other
by far fewer trades). A repeat on the same connection is not a duplicate (Kraken v1 trades have
only a timestamp for an id, which a trade at the same instant shares)."""
_session_numbers = itertools.count()


class StreamingConfig(ConnectorConfig):
    """Keys every streaming connector has; connectors subclass it and set their defaults."""

    ws_url: str
    rest_url: str | None = None
    idle_timeout: float | None = Field(None, gt=0)
    """Seconds without any frame before a connection counts as stalled (default: the venue's)."""
    snapshot_weight_per_minute: float = Field(600.0, gt=0)
    """REST request weight the venue may spend per minute on snapshots."""
    rest_timeout: float = Field(10.0, gt=0)
    """Seconds a REST snapshot request may take before it is retried."""


class _Reconnect(Exception):
    """Leave this connection and open a new one (not planned: the books resync)."""


CONNECTION_ERRORS = (OSError, TimeoutError, WebSocketException, _Reconnect)


def _past(last: int | None, active: BookSync | None) -> bool:
    """Whether book id ``last`` is older than the live book ``active`` (unknown ids never are)."""
    return active is not None and active.live and active.last is not None and last is not None and last < active.last


def _older(snap: BookUpdate, successor: BookSync, active: BookSync | None) -> bool:
    """Whether a snapshot is older than the live book a successor would replace, with nothing
    buffered to show it: a request in flight when the successor subscribed (a rebase's, say) is
    answered to it too, and taking it would publish an older book until its first diff fails."""
    return not successor.buffer and _past(snap.last, active)


def _connection_error(exc: BaseException) -> BaseException | None:
    """The connection failure behind ``exc`` (unwrapping task groups), or ``None`` if it is not one."""
    if isinstance(exc, CONNECTION_ERRORS):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_connection_error(e) for e in exc.exceptions]
        if all(leaves):
            return leaves[0]
    return None


@dataclass(eq=False)
class _Session:
    stream: Stream
    state: ConnectionState = field(default_factory=ConnectionState)
    syncs: dict[str, BookSync] = field(default_factory=dict)
    ws: ClientConnection | None = None
    planned: str | None = None
    """Why a planned reconnect was started from this session."""
    stalled: bool = False
    """The venue went silent for longer than the idle timeout (its books resync as ``stale``)."""
    heard: float = 0.0
    """Monotonic time of the last frame (or of subscribing)."""
    done: anyio.Event = field(default_factory=anyio.Event)
    """Set when this session serves no active book any more (handed over)."""
    number: int = field(default_factory=_session_numbers.__next__)
    """Tells connections apart in :attr:`StreamingConnector.recent_trades`."""
    bridged: set[str] = field(default_factory=set)
    """Symbols whose trades a planned successor has been seen to carry (a trade both delivered)."""


class StreamingConnector:
    def __init__(
        self,
        venue: str,
        symbols: Sequence[str],
        protocol: VenueProtocol,
        make_sync: Callable[[str], BookSync],
        *,
        weight_per_minute: float = 600.0,
        idle_timeout: float | None = None,
        max_connection_age: float | None = None,
        rest_timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.rest_timeout = rest_timeout
        self.venue = venue
        self.symbols = tuple(symbols)
        self.protocol = protocol
        self.make_sync = make_sync
        self.weight_per_minute = weight_per_minute
        self.idle_timeout = idle_timeout or protocol.idle_timeout
        self.max_connection_age = max_connection_age
        self.rng = rng or random.Random()
        self.active: dict[str, BookSync] = {}
        self.building: set[BookSync] = set()
        """A planned reconnect's new books, built privately until they take over (never again after)."""
        self.waiting: dict[str, list[BookSync]] = {}
        self.sessions: set[_Session] = set()
        self.recent_trades: dict[str, OrderedDict[str, list[int]]] = {}
        self.feed: Feed
        self.scheduler: SnapshotScheduler
        self.rest: RestSnapshots
        """REST venues only."""

    @classmethod
    def build(
        cls,
        venue: str,
        symbols: Sequence[str],
        config: StreamingConfig,
        protocol: VenueProtocol,
        rule: SequenceRule,
        *,
        max_connection_age: float | None = None,
        **sync_options: Any,
    ) -> StreamingConnector:
        """A connector for a venue protocol with the keys every streaming connector has
        (``idle_timeout``, ``snapshot_weight_per_minute``, ``rest_timeout``) taken from its config;
        each symbol's book sync uses ``rule`` and the protocol's snapshot source (``sync_options``:
        ``depth``, ``snapshot_limit``, ``checksum``, ``check_crossed`` of
        :class:`~crossbook.toolkit.sync.BookSync`)."""
        source = protocol.snapshot_source
        return cls(
            venue,
            symbols,
            protocol,
            lambda symbol: BookSync(symbol, rule, source, **sync_options),
            weight_per_minute=config.snapshot_weight_per_minute,
            idle_timeout=config.idle_timeout,
            max_connection_age=max_connection_age,
            rest_timeout=config.rest_timeout,
        )

    async def run(self, feed: Feed) -> None:
        self.feed = feed
        async with anyio.create_task_group() as tg:
            if self.protocol.snapshot_source is SnapshotSource.REST:
                self.rest = cast(RestSnapshots, self.protocol)
                self.scheduler = SnapshotScheduler(
                    self.venue,
                    self.rest.snapshot_request,
                    self._snapshot_arrived,
                    weight_per_minute=self.weight_per_minute,
                    timeout=self.rest_timeout,
                )
                tg.start_soon(self.scheduler.run)
            for stream in self.protocol.streams(self.symbols):
                tg.start_soon(self._keep, stream, tg, False)

    # -- connections --------------------------------------------------------------------------

    async def _keep(self, stream: Stream, tg: TaskGroup, takeover: bool) -> None:
        """Keep one stream connected forever (or until a planned reconnect replaces it)."""
        attempt = 0
        reason = "reconnect"
        while True:
            session = _Session(stream)
            started = time.monotonic()
            try:
                await self._session(session, tg, takeover, reason)
                return  # handed over to its successor
            except BaseException as exc:
                error = _connection_error(exc)
                if error is None:
                    raise
                if session.done.is_set():
                    return  # a planned reconnect's old connection, closing after its handover
                if session.planned:
                    # Its successor owns the stream (and takes the books over once live): reopened,
                    # one of the two connections would serve nothing for good.
                    log.warning("venue %s: connection to %s lost while handing over: %r", self.venue, stream.url, error)
                    return
                reason = "stale" if session.stalled else "reconnect"
                log.warning(
                    "venue %s: connection to %s %s: %r",
                    self.venue,
                    stream.url,
                    "silent too long" if session.stalled else "lost",
                    error,
                )
            finally:
                self.sessions.discard(session)
                self._abandon(session)
            # ``takeover`` stays: a successor whose connection failed still builds its books
            # privately while the old connection serves them live (it takes them over directly
            # only where they are not live).
            if time.monotonic() - started > HEALTHY_AFTER:
                attempt = 0
            delay = backoff(attempt, self.rng)
            attempt += 1
            await anyio.sleep(delay)

    async def _session(self, session: _Session, tg: TaskGroup, takeover: bool, reason: str) -> None:
        stream = session.stream
        async with connect(
            stream.url,
            open_timeout=10,
            ping_interval=self.protocol.ping_interval,
            ping_timeout=self.idle_timeout,
            close_timeout=2,
            max_size=2**24,
        ) as ws:
            session.ws = ws
            self.sessions.add(session)
            for frame in stream.subscribe:
                await ws.send(frame)
            events: list[Event] = []
            actions: list[Action] = []
            now = time.time_ns()
            for symbol in stream.symbols if stream.books else ():
                sync = session.syncs[symbol] = self.make_sync(symbol)
                current = self.active.get(symbol)
                if not takeover or current is None or current.state is not BookState.LIVE:
                    self.active[symbol] = sync
                    sync.start(now, events, actions, reason if current else None)
                else:
                    self.building.add(sync)
                    sync.start(now, [], actions)
            self._retire()  # an old connection whose books were not live hands them over here
            self._publish(events)
            await self._act(session, actions)
            session.heard = time.monotonic()
            async with anyio.create_task_group() as inner:
                inner.start_soon(self._watchdog, session)
                inner.start_soon(self._handed_over, session, inner.cancel_scope)
                if self.protocol.app_ping() is not None and self.protocol.ping_interval:
                    inner.start_soon(self._app_pings, ws)
                if self.max_connection_age:
                    inner.start_soon(self._age_limit, session, tg)
                await self._read(session, ws, tg)
                inner.cancel_scope.cancel()

    async def _read(self, session: _Session, ws: ClientConnection, tg: TaskGroup) -> None:
        parse = self.protocol.parse
        monotonic = time.monotonic
        frames = 0
        while not session.done.is_set():
            frames += 1
            if not frames % CANCEL_CHECK_EVERY:
                # recv() does not suspend while frames are queued, and under load they always are:
                # without a checkpoint a shutdown or reload would wait for the venue to pause.
                # Before recv(), so a cancellation never drops a frame already received.
                await checkpoint_if_cancelled()
            frame = await ws.recv()
            session.heard = monotonic()
            recv_ns = time.time_ns()
            try:
                outputs = parse(session.state, frame, recv_ns)
            except PARSE_ERRORS as exc:
                self.feed.skip(f"unreadable frame ({type(exc).__name__}: {exc}): {str(frame)[:200]!r}")
                continue
            events: list[Event] = []
            actions: list[Action] = []
            replies: list[str] = []
            for out in outputs:
                if isinstance(out, BookUpdate):
                    self._update(session, out, events, actions)
                elif isinstance(out, Trade):
                    if self._first_time(out, session):
                        events.append(out)
                elif isinstance(out, Send):
                    replies.append(out.frame)
                elif isinstance(out, Resync):
                    for symbol in (out.symbol,) if out.symbol else tuple(session.syncs):
                        sync = session.syncs.get(symbol)
                        if sync is None or sync.state is BookState.DOWN:
                            continue
                        if self.active.get(symbol) is sync:
                            sync.fail(out.reason, recv_ns, events, actions)
                        elif sync in self.building:  # privately; a book taken over from is left alone
                            sync.fail(out.reason, recv_ns, [], actions)
                elif isinstance(out, Reconnect):
                    self._plan(session, tg, out.reason)
                elif isinstance(out, Rejected):
                    log.error("venue %s: subscription rejected: %s", self.venue, out.message)
                    for symbol in (out.symbol,) if out.symbol else tuple(session.syncs):
                        sync = session.syncs.get(symbol)
                        if sync is not None and self.active.get(symbol) is sync:
                            sync.stop(recv_ns, events, BookState.DOWN, "rejected")
                        elif sync is not None and sync in self.building:  # never to take over
                            self._forget(sync)
                            sync.stop(recv_ns, [], BookState.DOWN, "rejected")
            # A frame's events are published before anything is awaited: a cancellation (shutdown,
            # handover) can then never drop what the frame said, which another connection's copy,
            # now a duplicate, would not bring back.
            if events:
                self._publish(events)
            else:
                self.feed.heard()
            for reply in replies:
                await ws.send(reply)
            if actions:
                await self._act(session, actions)

    def _update(self, session: _Session, upd: BookUpdate, events: list[Event], actions: list[Action]) -> None:
        sync = session.syncs.get(upd.symbol)
        if sync is None:
            self.feed.skip(f"update for a symbol not subscribed on this connection: {upd.symbol!r}")
            return
        active = self.active.get(upd.symbol)
        if active is sync:
            sync.on_update(upd, events, actions)
            return
        if sync in self.building and active is not None and sync.state is not BookState.DOWN:
            # A successor building its book (or keeping it: one that went live from a REST
            # snapshot while the old book was resyncing was not taken over then) takes over once
            # live, whatever the old book's state. A book taken over from is not building: it
            # never takes itself back.
            sync.on_update(upd, [], actions)
            if sync.live and not self._behind(sync, active):
                self._take_over(sync, upd.recv_ns, events)

    def _first_time(self, trade: Trade, session: _Session) -> bool:
        """Trades are taken from every connection that carries them, so none is lost when a
        planned reconnect switches connections; one another connection delivered is dropped."""
        recent = self.recent_trades.get(trade.symbol)
        if recent is None:
            recent = self.recent_trades[trade.symbol] = OrderedDict()
        deliverers = recent.get(trade.trade_id)
        if deliverers is None:
            recent[trade.trade_id] = [session.number]
            if len(recent) > RECENT_TRADES:
                recent.popitem(last=False)
            return True
        if deliverers[0] == session.number:
            return True  # a repeat on the connection that delivered it: another trade (Kraken v1 ids are times)
        if session.number not in deliverers:
            deliverers.append(session.number)
            self._bridged(trade.symbol, deliverers)
        return False

    def _bridged(self, symbol: str, deliverers: list[int]) -> None:
        """These connections all delivered one trade of ``symbol``. If they include a planned
        reconnect's old connection without books and its successor, the successor carries that
        symbol's trades from there on; the old one ends once that holds for all its symbols (a
        trades-only connection has no book takeover to end it)."""
        for old in self.sessions:
            if not old.planned or old.syncs or old.number not in deliverers:
                continue
            if any(new.stream is old.stream and new is not old and new.number in deliverers for new in self.sessions):
                old.bridged.add(symbol)
                if old.bridged.issuperset(old.stream.symbols):
                    old.done.set()

    def _behind(self, successor: BookSync, active: BookSync | None) -> bool:
        """Whether a live successor's book is older than the live book it would replace (its
        connection lags the old one): taken over now, subscribers would see the book step back. It
        takes over once its own updates have caught up. Only a REST venue's ids (the venue's own
        book ids, as its snapshots carry them) compare across connections."""
        return self.protocol.snapshot_source is SnapshotSource.REST and _past(successor.last, active)

    def _take_over(self, sync: BookSync, recv_ns: int, events: list[Event]) -> None:
        """A planned successor's book is live: it replaces the old one, subscribers see a diff."""
        self.building.discard(sync)
        old = self.active.get(sync.symbol)
        if old is not None:
            self._forget(old)  # a snapshot it waited for (a rebase) would be wasted on it
        self.active[sync.symbol] = sync
        book = sync.book
        events.append(BookSnapshot(sync.symbol, book.bids(), book.asks(), recv_ns, book=book))
        self._retire()

    def _retire(self) -> None:
        """End a planned reconnect's old connections that serve no book any more."""
        for session in list(self.sessions):
            # A connection without books waits for a trade its successor delivers too (_bridged).
            if session.planned and session.syncs and not any(self.active.get(s) is b for s, b in session.syncs.items()):
                session.done.set()

    def _forget(self, sync: BookSync) -> None:
        """Drop a sync from the books being built and from the snapshot queue: its connection is
        gone, or its book will never take over."""
        self.building.discard(sync)
        waiting = self.waiting.get(sync.symbol)
        if waiting and sync in waiting:
            waiting.remove(sync)

    async def _act(self, session: _Session, actions: list[Action]) -> None:
        resubscribe: list[Resubscribe] = []
        for action in actions:
            if isinstance(action, FetchSnapshot):
                self._want_snapshot(action.sync)
            else:
                resubscribe.append(action)
        if not resubscribe:
            return
        # One call for every symbol to resync: a connection-wide gap costs a few messages, not
        # two per symbol (venues limit client messages a second).
        frames = self.protocol.resubscribe(list(dict.fromkeys(a.sync.symbol for a in resubscribe)))
        if frames is None:
            first = resubscribe[0]
            raise _Reconnect(f"{first.sync.symbol}: {first.reason}; the venue needs a new connection")
        assert session.ws is not None
        for frame in frames:
            await session.ws.send(frame)

    def _want_snapshot(self, sync: BookSync) -> None:
        waiting = self.waiting.setdefault(sync.symbol, [])
        if sync not in waiting:
            waiting.append(sync)
        self.scheduler.request(sync.symbol)

    def _snapshot_arrived(self, symbol: str, body: bytes, recv_ns: int) -> None:
        try:
            snap = self.rest.parse_snapshot(symbol, body, recv_ns)
        except PARSE_ERRORS as exc:
            self.feed.skip(f"unreadable snapshot of {symbol} ({type(exc).__name__}: {exc})")
            self.scheduler.request(symbol)
            return
        events: list[Event] = []
        actions: list[Action] = []
        for sync in self.waiting.pop(symbol, []):
            active = self.active.get(symbol)
            if active is sync:
                sync.on_snapshot(snap, events, actions)
            elif _older(snap, sync, active):
                self._want_snapshot(sync)
            else:
                sync.on_snapshot(snap, [], actions)
                if sync.live and sync in self.building and not self._behind(sync, active):
                    self._take_over(sync, recv_ns, events)
        self._publish(events)
        for action in actions:  # a REST venue's sync only ever asks for snapshots
            if isinstance(action, FetchSnapshot):
                self._want_snapshot(action.sync)

    def _abandon(self, session: _Session) -> None:
        """The session's connection is gone: its active books stop being maintained."""
        events: list[Event] = []
        now = time.time_ns()
        for symbol, sync in session.syncs.items():
            self._forget(sync)
            if self.active.get(symbol) is sync and sync.state is not BookState.DOWN:
                refused = self._refused_successor(session, symbol) if session.planned else None
                if refused is None:
                    sync.stop(now, events, BookState.CONNECTING, "reconnect")
                else:  # the successor's subscription was refused: no connection will bring it back
                    sync.stop(now, events, BookState.DOWN, "rejected")
                    self.active[symbol] = refused
        self._publish(events)

    def _refused_successor(self, session: _Session, symbol: str) -> BookSync | None:
        """The sync of ``symbol`` that the venue refused on a newer open connection (a planned
        reconnect's successor), if any; an older connection's refusal is history."""
        for other in self.sessions:
            sync = other.syncs.get(symbol)
            if other.number > session.number and sync is not None and sync.state is BookState.DOWN:
                return sync
        return None

    def _publish(self, events: list[Event]) -> None:
        if events:
            self.feed.publish(events)

    # -- timers -------------------------------------------------------------------------------

    def _plan(self, session: _Session, tg: TaskGroup, reason: str) -> None:
        if session.planned:
            return
        session.planned = reason
        log.info("venue %s: planned reconnect (%s)", self.venue, reason)
        tg.start_soon(self._keep, session.stream, tg, True)
        tg.start_soon(self._handover_deadline, session)

    @staticmethod
    async def _handover_deadline(session: _Session) -> None:
        await anyio.sleep(HANDOVER_TIMEOUT)
        session.done.set()

    @staticmethod
    async def _handed_over(session: _Session, scope: CancelScope) -> None:
        """End the connection as soon as it is handed over, not at its next frame (a trades-only
        stream may stay quiet for long)."""
        await session.done.wait()
        scope.cancel()

    async def _watchdog(self, session: _Session) -> None:
        """Fail a silent connection: one timer per connection, not a deadline per frame."""
        timeout = self.idle_timeout
        while True:
            silent = time.monotonic() - session.heard
            if silent >= timeout:
                session.stalled = True
                raise TimeoutError(f"no frame for {silent:.1f} s")
            await anyio.sleep(timeout - silent)

    async def _age_limit(self, session: _Session, tg: TaskGroup) -> None:
        assert self.max_connection_age is not None
        await anyio.sleep(self.max_connection_age)
        self._plan(session, tg, "maximum connection age")

    async def _app_pings(self, ws: ClientConnection) -> None:
        frame = self.protocol.app_ping()
        interval = self.protocol.ping_interval
        if frame is None or not interval:
            return
        while True:
            await anyio.sleep(interval)
            await ws.send(frame)
