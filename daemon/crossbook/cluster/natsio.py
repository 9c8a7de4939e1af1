"""The NATS I/O of both roles, a thin layer over :mod:`~crossbook.cluster.lead` and
:mod:`~crossbook.cluster.follow` (nats-py's types stay in this module).

The leader publishes each venue book's events as they reach its engine, heartbeats, and answers
snapshot requests from its engine's books. A follower subscribes to a venue's books and
heartbeats, hands what the bus says to the venue's :class:`~crossbook.toolkit.connector.Feed` as
a connector would, and asks for snapshots while a book waits for one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import nats
from anyio.abc import TaskStatus
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import SlowConsumerError
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from crossbook.cluster import bus
from crossbook.cluster import lease as lease_
from crossbook.cluster.follow import HEARD, Follower, Output, Skip, TradesGap
from crossbook.cluster.lead import Leader, Message
from crossbook.cluster.lease import Lease
from crossbook.core.book import BookView
from crossbook.core.engine import Engine
from crossbook.core.model import BookState, Event, VenueStatus
from crossbook.toolkit.connector import Feed

log = logging.getLogger("crossbook.cluster")
MAX_OUTBOX = 200_000
"""Bus messages a leader holds while NATS takes no more; past it they are dropped (the followers
see the gap in the sequence and resync)."""
REQUEST_TIMEOUT = 1.0
RETRY_AFTER = 0.2
"""Seconds between snapshot requests for a book still waiting for one."""
SILENT_AFTER = 4 * bus.BEAT_INTERVAL
"""A leader not heard for this long leaves its books ``syncing``."""
SILENT_NS = int(SILENT_AFTER * 1e9)
LEASES = "crossbook-v1-leases"
"""The key-value bucket of the venues' leases: one key per venue, its leader's node name."""


async def connect(
    urls: Sequence[str],
    node: str,
    on_lost: Callable[[str, str | None], None],
    on_back: Callable[[], None],
    **options: Any,
) -> Client:
    """A NATS connection that reconnects forever; ``on_lost(reason, subject)`` when messages
    may have been lost (a disconnect, or a slow consumer's drop on ``subject``). ``options``:
    nats-py's authentication and TLS options."""

    said = [""]  # the last error logged: one retried every reconnect attempt is logged once

    async def error(exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            log.warning("NATS: slow consumer on %s: messages dropped", exc.subject)
            on_lost("bus_slow", exc.sub.subject)
        elif str(exc) != said[0]:
            said[0] = str(exc)
            log.warning("NATS: %s", exc)

    async def disconnected() -> None:
        log.warning("NATS: disconnected")
        on_lost("bus_disconnected", None)

    async def reconnected() -> None:
        log.info("NATS: reconnected")
        said[0] = ""
        on_back()

    nc = await nats.connect(
        list(urls),
        name=node,
        error_cb=error,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=2,
        ping_interval=5,
        max_outstanding_pings=2,
        **options,
    )
    log.info("NATS: connected to %s as %s", nc.connected_url.netloc if nc.connected_url else "?", node)
    return nc


class LeaderBus:
    """The ingest role's bus: each venue's books published while this node holds its lease
    (:mod:`~crossbook.cluster.lease`), heartbeats, snapshot replies. A standby runs the same
    connectors and books, silent on the bus."""

    def __init__(self, nc: Client, engine: Engine, node: str) -> None:
        self.nc = nc
        self.engine = engine
        self.node = node
        self.leaders: dict[str, tuple[Leader, Lease]] = {}
        self.outbox: deque[Message] = deque()
        self.wake = anyio.Event()
        self.dropped = 0
        self.kv: KeyValue | None = None

    def send(self, messages: list[Message]) -> None:
        if len(self.outbox) + len(messages) > MAX_OUTBOX:
            self.dropped += len(messages)
            if self.dropped == len(messages) or self.dropped % 10_000 < len(messages):
                log.warning("NATS takes no more: %d bus messages dropped so far", self.dropped)
            return
        self.outbox.extend(messages)
        self.wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish what is sent, and heartbeat, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._beat)
            task_status.started()
            outbox, publish = self.outbox, self.nc.publish
            while True:
                await self.wake.wait()
                self.wake = anyio.Event()
                while outbox:
                    subject, payload = outbox.popleft()
                    try:
                        await publish(subject, payload)
                    except NatsError as exc:
                        self.dropped += 1
                        log.debug("NATS publish failed: %s", exc)

    async def _beat(self) -> None:
        while True:
            await anyio.sleep(bus.BEAT_INTERVAL)
            now = time.monotonic()
            self.send(
                [
                    leader.beat(self.engine.last_message_ns.get(v))
                    for v, (leader, lease) in self.leaders.items()
                    if lease.holds(now)
                ]
            )

    async def lead(
        self, venue: str, symbols: Sequence[str], lease: Lease, run: Callable[[Leader, Lease], Awaitable[None]]
    ) -> None:
        """Run ``venue``'s connector (``run``), publishing its books while ``lease`` is held."""
        leader = Leader(venue, symbols, 0, self.node)
        self.leaders[venue] = (leader, lease)

        async def reply(msg: Msg) -> None:
            symbol = bus.symbol_of(msg.subject)
            vb = self.engine.books.get((symbol, venue))
            if vb is None or symbol not in leader.seqs or not msg.reply or not lease.holds(time.monotonic()):
                return
            now = time.time_ns()
            await msg.respond(leader.snapshot(symbol, vb.synced, vb.book, self.engine.last_message_ns.get(venue), now))

        sub = await self.nc.subscribe(bus.snap_subject(venue, "*"), cb=reply)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._hold, leader, lease)
                await run(leader, lease)
                tg.cancel_scope.cancel()
        finally:
            del self.leaders[venue]
            with anyio.CancelScope(shield=True), anyio.move_on_after(1), contextlib.suppress(NatsError):
                if lease.holds(time.monotonic()) and self.kv is not None:
                    await self.kv.delete(venue, last=lease.revision)  # a standby takes over at once
                await sub.unsubscribe()  # the connection may be closed already

    async def _bucket(self) -> KeyValue:
        if self.kv is None:
            config = KeyValueConfig(LEASES, history=1, ttl=lease_.TTL, storage=StorageType.FILE, replicas=1)
            self.kv = await self.nc.jetstream().create_key_value(config)
        return self.kv

    async def _hold(self, leader: Leader, lease: Lease) -> None:
        """Win and keep ``leader``'s venue lease; on each win, start a new epoch."""
        venue, said = leader.venue, ""
        while True:
            last, sent = lease.action(), time.monotonic()
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    kv = await self._bucket()
                    value = self.node.encode()
                    revision = await (kv.create(venue, value) if last is None else kv.update(venue, value, last=last))
            except KeyWrongLastSequenceError:
                if lease.holds(time.monotonic()):
                    log.warning("venue %s: lease lost, standing down (epoch %d)", venue, lease.epoch)
                lease.refused()
            except (NatsError, TimeoutError) as exc:
                self.kv = None
                if f"{exc!r}" != said:
                    said = f"{exc!r}"
                    log.warning("venue %s: lease bucket %s: %s", venue, LEASES, type(exc).__name__)
                lease.failed(time.monotonic())
            else:
                said = ""
                if lease.written(revision, sent, time.monotonic()):
                    books = {s: self._state(s, venue) for s in leader.seqs}
                    self.send(leader.start(lease.epoch, books, time.time_ns()))
                    log.info("venue %s: leading, epoch %d", venue, lease.epoch)
            await anyio.sleep(lease.wait())

    def _state(self, symbol: str, venue: str) -> tuple[BookState, BookView]:
        vb = self.engine.books[(symbol, venue)]
        return vb.synced, vb.book


class LeadingFeed:
    """A connector's feed on the ingest role: what the connector publishes goes to the bus while
    this node leads the venue, then to the engine (the same call, so a snapshot reply always
    matches its ``seq``)."""

    def __init__(self, feed: Feed, leader: Leader, lease: Lease, bus_: LeaderBus) -> None:
        self.feed = feed
        self.venue = feed.venue
        self.symbols = feed.symbols
        self.leader = leader
        self.lease = lease
        self.bus = bus_
        self.now_ns = feed.now_ns
        self.heard = feed.heard
        self.skip = feed.skip

    def publish(self, events: Sequence[Event]) -> None:
        if self.lease.holds(time.monotonic()):
            self.bus.send(self.leader.messages(events))
        self.feed.publish(events)

    def down(self, reason: str) -> None:
        """The connector stopped: every book of the venue is down, on the bus too."""
        if self.lease.holds(time.monotonic()):
            self.bus.send(self.leader.messages([VenueStatus(None, BookState.DOWN, time.time_ns(), reason)]))


class FollowerBus:
    """The edge role's bus: each venue's books followed and handed to its feed."""

    def __init__(self) -> None:
        self.nc: Client | None = None
        self.followers: dict[str, tuple[Follower, Callable[[list[Output]], None], anyio.Event]] = {}

    def lost(self, reason: str, subject: str | None) -> None:
        """Messages may have been lost (``subject``: on that subscription only)."""
        for venue, (follower, deliver, wanted) in self.followers.items():
            if subject is None or subject in (bus.venue_books(venue), bus.beat_subject(venue)):
                deliver(follower.lost(reason, time.time_ns()))
                wanted.set()

    def back(self) -> None:
        for _follower, _deliver, wanted in self.followers.values():
            wanted.set()

    async def follow(
        self, follower: Follower, feed: Feed, lag: Callable[[float], None], gap: Callable[[str, int], None]
    ) -> None:
        """Rebuild ``follower``'s venue's books from the bus into ``feed`` until cancelled;
        ``lag(seconds)`` for each book message: the leader's receive of the venue message to now;
        ``gap(symbol, ts)`` when the book's trades may have been lost."""
        nc = self.nc
        assert nc is not None
        venue = follower.venue
        wanted = anyio.Event()

        def deliver(out: list[Output]) -> None:
            if _deliver(out, feed, gap):
                wanted.set()

        self.followers[venue] = (follower, deliver, wanted)

        async def book(msg: Msg) -> None:
            now = time.time_ns()
            out = follower.message(bus.symbol_of(msg.subject), msg.data, now)
            lag((now - follower.sent_ns) / 1e9)
            deliver(out)

        async def beat(msg: Msg) -> None:
            deliver(follower.beat(msg.data, time.time_ns()))

        subs = [
            await nc.subscribe(bus.venue_books(venue), cb=book),
            await nc.subscribe(bus.beat_subject(venue), cb=beat),
        ]
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._tick, follower, deliver)
                while True:
                    waiting = follower.waiting()
                    if not waiting:
                        await wanted.wait()
                        wanted = anyio.Event()
                        self.followers[venue] = (follower, deliver, wanted)
                        continue
                    for symbol in waiting:
                        await self._request(nc, venue, symbol, follower, deliver)
                    if follower.waiting():
                        await anyio.sleep(RETRY_AFTER)
        finally:
            del self.followers[venue]
            with anyio.CancelScope(shield=True), anyio.move_on_after(1), contextlib.suppress(NatsError):
                for sub in subs:
                    await sub.unsubscribe()  # the connection may be closed already

    @staticmethod
    async def _request(
        nc: Client, venue: str, symbol: str, follower: Follower, deliver: Callable[[list[Output]], None]
    ) -> None:
        try:
            reply = await nc.request(bus.snap_subject(venue, symbol), b"", timeout=REQUEST_TIMEOUT)
        except (NatsError, TimeoutError) as exc:
            log.debug("snapshot of %s %s: %s", venue, symbol, type(exc).__name__)
            return
        deliver(follower.snapshot(symbol, reply.data, time.time_ns()))

    @staticmethod
    async def _tick(follower: Follower, deliver: Callable[[list[Output]], None]) -> None:
        while True:
            await anyio.sleep(bus.BEAT_INTERVAL)
            deliver(follower.tick(time.time_ns()))


def _deliver(out: list[Output], feed: Feed, gap: Callable[[str, int], None]) -> bool:
    """Hand a follower's output to the feed (a trades gap in its place among the events);
    returns whether a book now waits for a snapshot."""
    events: list[Event] = []
    wants = False
    for item in out:
        if isinstance(item, Skip):
            feed.skip(item.reason)
        elif isinstance(item, TradesGap):
            if events:
                feed.publish(events)
                events = []
            gap(item.symbol, item.ts)
        elif item is HEARD:
            feed.heard()
        else:
            event: Any = item
            events.append(event)
            wants = wants or (isinstance(event, VenueStatus) and event.state is BookState.SYNCING)
    if events:
        feed.publish(events)
    return wants
