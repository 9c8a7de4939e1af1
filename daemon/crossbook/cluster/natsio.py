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

from crossbook.cluster import bus
from crossbook.cluster.follow import HEARD, Follower, Output, Skip
from crossbook.cluster.lead import Leader, Message
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
    """The ingest role's bus: every venue's books published, heartbeats, snapshot replies."""

    def __init__(self, nc: Client, engine: Engine, node: str, ep: int) -> None:
        self.nc = nc
        self.engine = engine
        self.node = node
        self.ep = ep
        self.leaders: dict[str, Leader] = {}
        self.outbox: deque[Message] = deque()
        self.wake = anyio.Event()
        self.dropped = 0

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
            self.send([leader.beat(self.engine.last_message_ns.get(v)) for v, leader in self.leaders.items()])

    async def lead(self, venue: str, symbols: Sequence[str], run: Callable[[Leader], Awaitable[None]]) -> None:
        """Publish ``venue``'s books while ``run(leader)`` runs its connector."""
        leader = self.leaders[venue] = Leader(venue, symbols, self.ep, self.node)

        async def reply(msg: Msg) -> None:
            symbol = bus.symbol_of(msg.subject)
            vb = self.engine.books.get((symbol, venue))
            if vb is None or symbol not in leader.seqs or not msg.reply:
                return
            now = time.time_ns()
            await msg.respond(leader.snapshot(symbol, vb.synced, vb.book, self.engine.last_message_ns.get(venue), now))

        sub = await self.nc.subscribe(bus.snap_subject(venue, "*"), cb=reply)
        try:
            await run(leader)
        finally:
            del self.leaders[venue]
            with anyio.CancelScope(shield=True), anyio.move_on_after(1), contextlib.suppress(NatsError):
                await sub.unsubscribe()  # the connection may be closed already


class LeadingFeed:
    """A connector's feed on the ingest role: what the connector publishes goes to the bus, then
    to the engine (the same call, so a snapshot reply always matches its ``seq``)."""

    def __init__(self, feed: Feed, leader: Leader, bus_: LeaderBus) -> None:
        self.feed = feed
        self.venue = feed.venue
        self.symbols = feed.symbols
        self.leader = leader
        self.bus = bus_
        self.now_ns = feed.now_ns
        self.heard = feed.heard
        self.skip = feed.skip

    def publish(self, events: Sequence[Event]) -> None:
        self.bus.send(self.leader.messages(events))
        self.feed.publish(events)

    def down(self, reason: str) -> None:
        """The connector stopped: every book of the venue is down, on the bus too."""
        self.bus.send(self.leader.messages([VenueStatus(None, BookState.DOWN, time.time_ns(), reason)]))


class FollowerBus:
    """The edge role's bus: each venue's books followed and handed to its feed."""

    def __init__(self) -> None:
        self.nc: Client | None = None
        self.followers: dict[str, tuple[Follower, Feed, anyio.Event]] = {}

    def lost(self, reason: str, subject: str | None) -> None:
        """Messages may have been lost (``subject``: on that subscription only)."""
        for venue, (follower, feed, wanted) in self.followers.items():
            if subject is None or subject in (bus.venue_books(venue), bus.beat_subject(venue)):
                _deliver(follower.lost(reason, time.time_ns()), feed)
                wanted.set()

    def back(self) -> None:
        for _follower, _feed, wanted in self.followers.values():
            wanted.set()

    async def follow(self, venue: str, symbols: Sequence[str], feed: Feed) -> None:
        """Rebuild ``venue``'s books from the bus into ``feed`` until cancelled."""
        nc = self.nc
        assert nc is not None
        follower = Follower(venue, symbols, int(SILENT_AFTER * 1e9))
        wanted = anyio.Event()
        self.followers[venue] = (follower, feed, wanted)

        def deliver(out: list[Output]) -> None:
            if _deliver(out, feed):
                wanted.set()

        async def book(msg: Msg) -> None:
            deliver(follower.message(bus.symbol_of(msg.subject), msg.data, time.time_ns()))

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
                        self.followers[venue] = (follower, feed, wanted)
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


def _deliver(out: list[Output], feed: Feed) -> bool:
    """Hand a follower's output to the feed; returns whether a book now waits for a snapshot."""
    events: list[Event] = []
    wants = False
    for item in out:
        if isinstance(item, Skip):
            feed.skip(item.reason)
        elif item is HEARD:
            feed.heard()
        else:
            event: Any = item
            events.append(event)
            wants = wants or (isinstance(event, VenueStatus) and event.state is BookState.SYNCING)
    if events:
        feed.publish(events)
    return wants
