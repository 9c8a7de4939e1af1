"""The toolkit's I/O layer: runs a :class:`~crossbook.toolkit.venue.VenueProtocol` as a connector.

A thin loop over :class:`~crossbook.toolkit.handover.Handover`, which decides everything: this
module opens WebSocket connections (and reopens them forever with capped exponential backoff and
full jitter), reads frames, sends what it is told, runs the timers (idle timeout for silent
stalls, application pings, maximum connection age, the handover deadline) on one replaceable
:class:`~crossbook.toolkit.clock.Clock`, and hands REST snapshot requests to the venue's
scheduler. A :class:`Tape` given to the connector sees every input the handover gets, as it
gets it (the daemon's recorder).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint_if_cancelled
from pydantic import Field
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from crossbook.toolkit import handover
from crossbook.toolkit.clock import SYSTEM_CLOCK, Clock
from crossbook.toolkit.connector import ConnectorConfig, Feed
from crossbook.toolkit.handover import Connection, Handover, Step
from crossbook.toolkit.rest import SnapshotScheduler
from crossbook.toolkit.retry import HEALTHY_AFTER, backoff
from crossbook.toolkit.sequence import SequenceRule
from crossbook.toolkit.sync import BookSync
from crossbook.toolkit.venue import RestSnapshots, SnapshotSource, Stream, VenueProtocol

log = logging.getLogger("crossbook.streaming")

CANCEL_CHECK_EVERY = 16
"""Frames read between explicit cancellation checkpoints (one costs ~1 µs; a frame ~100 µs)."""


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


class Tape(Protocol):
    """Sees a connector's inputs in the order they reach its :class:`Handover`, with the clock
    readings they are given with: what replaying them through a new handover needs. ``stream``
    is the connection's index in :attr:`StreamingConnector.streams`. Must not block or raise."""

    def opened(self, conn: Connection, stream: int, takeover: bool, reason: str, now_ns: int, mono: float) -> None: ...

    def received(self, conn: Connection, stream: int, frame: str | bytes, now_ns: int, mono: float) -> None: ...

    def closed(self, conn: Connection, stream: int, now_ns: int) -> None: ...

    def snapshot(self, symbol: str, body: bytes, now_ns: int) -> None: ...

    def timer(self, kind: str, conn: Connection, stream: int, now_ns: int, mono: float, reason: str) -> None:
        """A timer fired: ``idle`` (the watchdog asked), ``deadline`` (a handover's), ``plan``
        (the maximum connection age; ``reason`` is the plan's)."""


def deliver(venue: str, feed: Feed, step: Step) -> None:
    """What a step tells the feed: skips counted, errors logged, events published (else the
    venue heard)."""
    for reason in step.skipped:
        feed.skip(reason)
    for message in step.errors:
        log.error("venue %s: %s", venue, message)
    if step.events:
        feed.publish(step.events)
    elif step.heard:
        feed.heard()


class _Reconnect(Exception):
    """Leave this connection and open a new one (not planned: the books resync)."""


CONNECTION_ERRORS = (OSError, TimeoutError, WebSocketException, _Reconnect)


def _connection_error(exc: BaseException) -> BaseException | None:
    """The connection failure behind ``exc`` (unwrapping task groups), or ``None`` if it is not one."""
    if isinstance(exc, CONNECTION_ERRORS):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_connection_error(e) for e in exc.exceptions]
        if all(leaves):
            return leaves[0]
    return None


class StreamingConnector:
    """A connector made of a venue protocol and the toolkit: WebSocket connections, book syncs,
    planned reconnects, REST snapshots. Build one with :meth:`build`."""

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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.venue = venue
        self.symbols = tuple(symbols)
        self.protocol = protocol
        self.make_sync = make_sync
        self.weight_per_minute = weight_per_minute
        self.rest_timeout = rest_timeout
        self.max_connection_age = max_connection_age
        self.rng = rng or random.Random()
        self.clock = clock
        self.handover = Handover(protocol, make_sync, idle_timeout=idle_timeout or protocol.idle_timeout)
        self.streams = self.protocol.streams(self.symbols)
        """The connections to keep open (what :meth:`run` opens)."""
        self.tape: Tape | None = None
        """Sees every input (recording); set before :meth:`run`."""
        self.sockets: dict[Connection, tuple[ClientConnection, anyio.Event]] = {}
        """Each open connection's WebSocket, and the event that ends it (handed over)."""
        self.feed: Feed
        self.scheduler: SnapshotScheduler
        """REST venues only."""
        self._tg: TaskGroup

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
        (``idle_timeout``, ``snapshot_weight_per_minute``, ``rest_timeout``) taken from its config.

        Each symbol's book sync uses ``rule`` and the protocol's snapshot source; ``sync_options``
        are :class:`~crossbook.toolkit.sync.BookSync`'s ``depth``, ``snapshot_limit``,
        ``checksum`` and ``check_crossed``. ``max_connection_age`` (seconds) replaces each
        connection that old by a planned reconnect, with no gap: for a venue that cannot detect a
        lost message, a periodic resync."""
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
            self._tg = tg
            if self.protocol.snapshot_source is SnapshotSource.REST:
                self.scheduler = SnapshotScheduler(
                    self.venue,
                    cast(RestSnapshots, self.protocol).snapshot_request,
                    self._snapshot_arrived,
                    weight_per_minute=self.weight_per_minute,
                    timeout=self.rest_timeout,
                    clock=self.clock,
                )
                tg.start_soon(self.scheduler.run)
            for stream in self.streams:
                tg.start_soon(self._keep, stream, False)

    # -- connections --------------------------------------------------------------------------

    async def _keep(self, stream: Stream, takeover: bool) -> None:
        """Keep one stream connected until the handover says it is no longer to be reopened. A
        successor whose connection failed stays one (``takeover``): it still builds its books
        privately while the old connection serves them live."""
        attempt = 0
        reason = "reconnect"
        clock = self.clock
        while True:
            conn = Connection(stream)
            started = clock.monotonic()
            try:
                await self._connection(conn, takeover, reason)
            except BaseException as exc:
                error = _connection_error(exc)
                if error is None:
                    raise
                self._lost(conn, error)
            finally:
                self.sockets.pop(conn, None)
                now = clock.time_ns()
                if self.tape is not None:
                    self.tape.closed(conn, self._index(conn), now)
                ended = self.handover.closed(conn, now)
                self._apply(ended)
            if ended.retry is None:
                return
            reason = ended.retry
            if clock.monotonic() - started > HEALTHY_AFTER:
                attempt = 0
            delay = backoff(attempt, self.rng)
            attempt += 1
            await clock.sleep(delay)

    def _lost(self, conn: Connection, error: BaseException) -> None:
        if conn.done:
            return  # a planned reconnect's old connection, closing after its handover
        url = conn.stream.url
        if conn.planned:
            log.warning("venue %s: connection to %s lost while handing over: %r", self.venue, url, error)
        else:
            how = "silent too long" if conn.stalled else "lost"
            log.warning("venue %s: connection to %s %s: %r", self.venue, url, how, error)

    async def _connection(self, conn: Connection, takeover: bool, reason: str) -> None:
        clock = self.clock
        async with connect(
            conn.stream.url,
            open_timeout=10,
            ping_interval=self.protocol.ping_interval,
            ping_timeout=self.handover.idle_timeout,
            close_timeout=2,
            max_size=2**24,
        ) as ws:
            ended = anyio.Event()
            self.sockets[conn] = (ws, ended)
            now, mono = clock.time_ns(), clock.monotonic()
            if self.tape is not None:
                self.tape.opened(conn, self._index(conn), takeover, reason, now, mono)
            await self._execute(conn, self.handover.opened(conn, takeover, reason, now, mono))
            async with anyio.create_task_group() as timers:
                timers.start_soon(self._watchdog, conn)
                timers.start_soon(self._until, ended, timers.cancel_scope)
                if self.protocol.app_ping() is not None and self.protocol.ping_interval:
                    timers.start_soon(self._app_pings, ws)
                if self.max_connection_age:
                    timers.start_soon(self._age_limit, conn)
                await self._read(conn, ws)
                timers.cancel_scope.cancel()

    async def _read(self, conn: Connection, ws: ClientConnection) -> None:
        received, clock, tape = self.handover.received, self.clock, self.tape
        index = self._index(conn)
        frames = 0
        while not conn.done:
            frames += 1
            if not frames % CANCEL_CHECK_EVERY:
                # recv() does not suspend while frames are queued, and under load they always are:
                # without a checkpoint a shutdown or reload would wait for the venue to pause.
                # Before recv(), so a cancellation never drops a frame already received.
                await checkpoint_if_cancelled()
            frame = await ws.recv()
            now, mono = clock.time_ns(), clock.monotonic()
            if tape is not None:
                tape.received(conn, index, frame, now, mono)
            await self._execute(conn, received(conn, frame, now, mono))

    def _index(self, conn: Connection) -> int:
        return next(i for i, stream in enumerate(self.streams) if stream is conn.stream)

    def _apply(self, step: Step) -> None:
        """What a step says that needs no waiting. A frame's events are published before anything
        is awaited: a cancellation (shutdown, handover) can then never drop what the frame said,
        which another connection's copy, now a duplicate, would not bring back."""
        deliver(self.venue, self.feed, step)
        for stream in step.successors:
            self._tg.start_soon(self._keep, stream, True)
        for conn in step.close:
            socket = self.sockets.get(conn)
            if socket is not None:
                socket[1].set()
        for symbol in step.fetch:
            self.scheduler.request(symbol)

    async def _execute(self, conn: Connection, step: Step) -> None:
        """Carry out a step of ``conn``: what needs no waiting, then its frames to send."""
        self._apply(step)
        if step.successors:
            log.info("venue %s: planned reconnect (%s)", self.venue, conn.planned)
            self._tg.start_soon(self._handover_deadline, conn)
        socket = self.sockets.get(conn)
        if socket is not None:
            for frame in step.send:
                await socket[0].send(frame)
        if step.reconnect is not None:
            raise _Reconnect(step.reconnect)

    def _snapshot_arrived(self, symbol: str, body: bytes, recv_ns: int) -> None:
        if self.tape is not None:
            self.tape.snapshot(symbol, body, recv_ns)
        self._apply(self.handover.snapshot(symbol, body, recv_ns))

    # -- timers -------------------------------------------------------------------------------

    async def _handover_deadline(self, conn: Connection) -> None:
        await self.clock.sleep(handover.HANDOVER_TIMEOUT)
        mono = self._timer("deadline", conn)
        self._apply(self.handover.deadline(conn, mono))

    @staticmethod
    async def _until(ended: anyio.Event, scope: anyio.CancelScope) -> None:
        """End the connection as soon as it is handed over, not at its next frame (a trades-only
        stream may stay quiet for long)."""
        await ended.wait()
        scope.cancel()

    async def _watchdog(self, conn: Connection) -> None:
        """Fail a silent connection: one timer per connection, not a deadline per frame."""
        clock = self.clock
        while (wait := self.handover.idle(conn, self._timer("idle", conn))) is not None:
            await clock.sleep(wait)
        raise TimeoutError(f"no frame for {clock.monotonic() - conn.heard:.1f} s")

    async def _age_limit(self, conn: Connection) -> None:
        assert self.max_connection_age is not None
        await self.clock.sleep(self.max_connection_age)
        reason = "maximum connection age"
        await self._execute(conn, self.handover.plan(conn, reason, self._timer("plan", conn, reason)))

    def _timer(self, kind: str, conn: Connection, reason: str = "") -> float:
        """The monotonic time a timer fired at (the tape is told)."""
        mono = self.clock.monotonic()
        if self.tape is not None:
            self.tape.timer(kind, conn, self._index(conn), self.clock.time_ns(), mono, reason)
        return mono

    async def _app_pings(self, ws: ClientConnection) -> None:
        frame = self.protocol.app_ping()
        interval = self.protocol.ping_interval
        if frame is None or not interval:
            return
        while True:
            await self.clock.sleep(interval)
            await ws.send(frame)
