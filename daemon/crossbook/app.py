"""The daemon: wires config, plugins, engine, hub, API server, metrics and connectors together.

One root task group owns everything. Services start with ``task_group.start`` so the daemon is
ready only once the API listens and every venue's connector has started; SIGTERM or SIGINT
closes clients with 1001, stops connectors and returns within the shutdown deadline.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus
from prometheus_client import start_http_server

from crossbook.config import Config, Venue
from crossbook.engine import Changes, Engine
from crossbook.hub import Hub
from crossbook.metrics import Metrics, VenueMetrics
from crossbook.model import BookState, Event
from crossbook.server import ApiServer
from crossbook.supervisor import supervise

log = logging.getLogger("crossbook")
SHUTDOWN_DEADLINE = 5.0
SKIP_LOG_EVERY = 1000


@dataclass(frozen=True)
class Addresses:
    api_port: int
    metrics_port: int


class VenueFeed:
    """A connector's :class:`~crossbook.connector.Feed`: events in, books and subscribers updated."""

    def __init__(self, daemon: Daemon, venue: Venue, vm: VenueMetrics) -> None:
        self.daemon = daemon
        self.venue = venue.name
        self.symbols = venue.symbols
        self.vm = vm
        self.skipped = 0

    def now_ns(self) -> int:
        return time.time_ns()

    def publish(self, events: Sequence[Event]) -> None:
        now = time.time_ns()
        vm = self.vm
        vm.messages.inc()
        recv_ns = now
        for event in events:
            venue_ns = getattr(event, "venue_ns", None)
            recv_ns = event.recv_ns
            if venue_ns is not None:
                vm.lag.observe(max(0, recv_ns - venue_ns) / 1e9)
        self.daemon.dispatch(self.daemon.engine.ingest(self.venue, events, now), recv_ns, self)

    def skip(self, reason: str) -> None:
        self.daemon.dispatch(Changes(skipped=[reason]), time.time_ns(), self)

    def heard(self) -> None:
        changes = Changes()
        now = time.time_ns()
        self.daemon.engine.touch(self.venue, now, changes)
        if changes.statuses:
            self.daemon.dispatch(changes, now, self)


class Daemon:
    def __init__(self, config: Config, venues: dict[str, Venue]) -> None:
        self.config = config
        self.settings = config.settings
        self.venues = venues
        self.metrics = Metrics()
        self.engine = Engine(
            {name: v.symbols for name, v in venues.items()},
            stale_after_ns=int(self.settings.consolidated.stale_after * 1e9),
        )
        self.hub = Hub(self.engine, self.settings.consolidated.depth, {n: v.spec.id for n, v in venues.items()})
        self.server = ApiServer(self.hub, self.engine, self.metrics)
        self.metrics.count_sent(lambda: self.hub.sent)
        self.feeds: dict[str, VenueFeed] = {}
        for name, venue in venues.items():
            vm = self.metrics.venue(name, venue.symbols, partial(self.engine.last_message_ns.get, name))
            for state in vm.state.values():
                state.set(BookState.CONNECTING.value)
            self.feeds[name] = VenueFeed(self, venue, vm)

    def dispatch(self, changes: Changes, recv_ns: int, feed: VenueFeed | None = None) -> None:
        """Account for what changed (``feed``: the venue whose message it was) and tell subscribers."""
        if feed is not None:
            self._account(feed, changes)
        for st in changes.statuses:
            self.feeds[st.venue].vm.state[st.symbol].set(st.state.value)
            if st.state is BookState.SYNCING and st.reason:
                self.metrics.resyncs.labels(st.venue, st.symbol, st.reason).inc()
            log.info(
                "venue %s %s: %s%s",
                st.venue,
                st.symbol,
                st.state.label,
                f" ({st.reason})" if st.reason else "",
            )
        touched = self.hub.publish(changes, recv_ns)
        if touched:
            self.server.wake(touched)
            self.metrics.latency.observe(max(0, time.time_ns() - recv_ns) / 1e9)

    @staticmethod
    def _account(feed: VenueFeed, changes: Changes) -> None:
        vm = feed.vm
        for symbol in changes.book_updates:
            vm.updates[symbol].inc()
        if changes.skipped:
            vm.skipped.inc(len(changes.skipped))
            before = feed.skipped
            feed.skipped += len(changes.skipped)
            if before // SKIP_LOG_EVERY != feed.skipped // SKIP_LOG_EVERY or before == 0:
                log.warning(
                    "venue %s: skipped %d event(s) so far; latest: %s",
                    feed.venue,
                    feed.skipped,
                    changes.skipped[-1],
                )

    def _venue_stopped(self, name: str, reason: str) -> None:
        self.feeds[name].vm.restarts.inc()
        now = time.time_ns()
        self.dispatch(self.engine.venue_down(name, reason, now), now)

    async def _watch_staleness(self) -> None:
        period = min(0.25, self.settings.consolidated.stale_after / 4)
        while True:
            await anyio.sleep(period)
            now = time.time_ns()
            self.dispatch(self.engine.tick(now), now)

    def _start_metrics(self) -> tuple[Any, int]:
        cfg = self.settings.metrics
        httpd, _thread = start_http_server(cfg.port, addr=cfg.host, registry=self.metrics.registry)
        port = httpd.server_port
        log.info("metrics on http://%s:%d/metrics", cfg.host, port)
        return httpd, port

    async def run(
        self, *, handle_signals: bool = True, task_status: TaskStatus[Addresses] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled, or until SIGTERM/SIGINT when ``handle_signals``."""
        log.info("config: %s; venues: %s", self.config.source, ", ".join(self.venues))
        httpd, metrics_port = self._start_metrics()
        try:
            async with anyio.create_task_group() as tg:
                api_port = await tg.start(self.server.serve, self.settings.server.host, self.settings.server.port)
                for name, venue in self.venues.items():
                    tg.start_soon(
                        supervise,
                        venue,
                        self.feeds[name],
                        partial(self._venue_stopped, name),
                        name=f"venue {name}",
                    )
                tg.start_soon(self._watch_staleness)
                task_status.started(Addresses(api_port, metrics_port))
                if not handle_signals:
                    await anyio.sleep_forever()
                await self._wait_for_signal()
                log.info("shutting down")
                tg.cancel_scope.deadline = anyio.current_time() + SHUTDOWN_DEADLINE
                tg.cancel_scope.cancel()
        finally:
            httpd.shutdown()
            httpd.server_close()
        log.info("stopped")

    @staticmethod
    async def _wait_for_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                return
