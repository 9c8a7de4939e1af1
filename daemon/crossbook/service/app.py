"""The daemon: wires config, plugins, engine, hub, API server, metrics and connectors together.

One root task group owns everything. Services start with ``task_group.start`` so the daemon is
ready only once the API listens and every venue's connector has started; SIGTERM or SIGINT
closes clients with 1001, stops connectors and returns within the shutdown deadline.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus
from prometheus_client import start_http_server

from crossbook.api.hub import Hub
from crossbook.core.engine import Batch, Changes, Engine
from crossbook.core.model import BookState, Event
from crossbook.service.cluster import RunVenue, run_role
from crossbook.service.config import Config, ConfigError, Venue
from crossbook.service.metrics import Metrics, VenueMetrics
from crossbook.service.notify import Notifier
from crossbook.service.plugins import PluginError
from crossbook.service.recorder import Recorder
from crossbook.service.server import ApiServer
from crossbook.service.supervisor import supervise
from crossbook.toolkit.clock import SYSTEM_CLOCK, Clock
from crossbook.toolkit.registry import RegistryError

log = logging.getLogger("crossbook")
SHUTDOWN_DEADLINE = 5.0
SKIP_LOG_EVERY = 1000
STATUS_EVERY = 5.0
"""Seconds between systemd STATUS= updates (watchdog pings come at least this often)."""


@dataclass(frozen=True)
class Addresses:
    api_port: int
    metrics_port: int


class VenueFeed:
    """A connector's :class:`~crossbook.toolkit.connector.Feed`: events in, books and subscribers updated."""

    def __init__(self, daemon: Daemon, venue: Venue, vm: VenueMetrics) -> None:
        self.daemon = daemon
        self.venue = venue.name
        self.symbols = venue.symbols
        self.vm = vm
        self.skipped = 0

    def now_ns(self) -> int:
        return self.daemon.clock.time_ns()

    def publish(self, events: Sequence[Event]) -> None:
        now = self.daemon.clock.time_ns()
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
        self.daemon.dispatch(Changes(skipped=[reason]), self.daemon.clock.time_ns(), self)

    def heard(self) -> None:
        self.vm.messages.inc()
        now = self.daemon.clock.time_ns()
        changes = self.daemon.engine.touch(self.venue, now)
        if changes.statuses:
            self.daemon.dispatch(changes, now, self)


Reloader = Callable[[], tuple[Config, dict[str, Venue]]]


class Daemon:
    def __init__(
        self, config: Config, venues: dict[str, Venue], reloader: Reloader | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.clock = clock
        """What venue input is stamped with (``crossbook replay`` drives it with recorded times)."""
        self.recorder: Recorder | None = None
        """Records venue input while the daemon runs with ``[record]`` on."""
        self.reloader = reloader
        """Loads and validates the config again on SIGHUP (``None``: reload is refused)."""
        self.notifier = Notifier()
        self.venue_scopes: dict[str, anyio.CancelScope] = {}
        self.config = config
        self.settings = config.settings
        self.venues = venues
        self.metrics = Metrics()
        self.engine = Engine(
            {name: v.symbols for name, v in venues.items()},
            stale_after_ns=int(self.settings.consolidated.stale_after * 1e9),
            watched=set(),  # the hub watches a symbol's consolidated book once someone subscribes
        )
        self.hub = Hub(self.engine, self.settings.consolidated.depth, {n: v.spec.id for n, v in venues.items()})
        self.server = ApiServer(self.hub, self.engine, self.metrics, self.settings.server)
        role = self.settings.cluster.role
        self.server.streams = role != "ingest"  # an ingest serves health and metrics only
        self.server.reuse_port = role == "edge"  # several edges on one API port
        self.run_connector: RunVenue = supervise
        """Keeps a venue's books coming: its connector (``all``), or as the cluster role has it."""
        self.metrics.export_hub(lambda: self.hub.stats)
        self.feeds: dict[str, VenueFeed] = {}
        self.batch = Batch(self.engine, self._publish)
        """What changed since subscribers were last told: flushed once the connectors' readers
        wait for more (and before the hub handles a request, see :attr:`Hub.publish_held`). Under
        load every venue message already received is in the books first, and each channel gets one
        update for all of them instead of one each, which keeps the daemon up with its venues
        where per-message fan-out would fall behind."""
        self.hub.publish_held = self.flush
        for venue in venues.values():
            self._add_feed(venue)

    def _add_feed(self, venue: Venue) -> None:
        vm = self.metrics.venue(venue.name, venue.symbols, partial(self.engine.last_message_ns.get, venue.name))
        for state in vm.state.values():
            state.set(BookState.CONNECTING.value)
        self.feeds[venue.name] = VenueFeed(self, venue, vm)

    def dispatch(self, changes: Changes, recv_ns: int, feed: VenueFeed | None = None) -> None:
        """Account for what changed (``feed``: the venue whose message it was); subscribers are told
        when the batch is flushed."""
        if feed is not None:
            self._account(feed, changes)
        if self.batch.add(changes, recv_ns):
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Tell subscribers what the batch holds (the venue input since the last flush was read
        together: the recorder marks it)."""
        if self.recorder is not None and self.batch.changes is not None:
            self.recorder.flush()
        self.batch.flush()

    def trades_gap(self, venue: str, symbol: str, ts: int) -> None:
        """Tell ``trades.<symbol>`` that ``venue``'s trades may be missing after what was sent."""
        self.flush()
        touched = self.hub.trades_gap(venue, symbol, ts)
        if touched:
            self.server.wake(touched)

    def _publish(self, changes: Changes, recv_ns: int) -> None:
        """Tell subscribers what a batch changed, and the metrics and the log its state changes."""
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
        try:
            touched = self.hub.publish(changes, recv_ns)
        except Exception:  # a bug: subscribers must not be left half told
            log.exception("publishing an update failed; every subscriber gets its channels' state afresh")
            touched = self.hub.conflate_all(time.time_ns())
        if touched:
            self.server.wake(touched)
            earliest = min(recv_ns, *changes.since.values()) if changes.since else recv_ns
            self.metrics.latency.observe(max(0, time.time_ns() - earliest) / 1e9)

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
        now = self.clock.time_ns()
        if self.recorder is not None:
            self.recorder.down(name, reason, now)
        self.dispatch(self.engine.venue_down(name, reason, now), now)

    async def _watch_staleness(self) -> None:
        period = min(0.25, self.settings.consolidated.stale_after / 4)
        while True:
            await anyio.sleep(period)
            now = self.clock.time_ns()
            changes = self.engine.tick(now)
            if self.recorder is not None and changes.statuses:
                self.recorder.tick(now)
            self.dispatch(changes, now)

    def _start_metrics(self) -> tuple[Any, int]:
        cfg = self.settings.metrics
        httpd, _thread = start_http_server(cfg.port, addr=cfg.host, registry=self.metrics.registry)
        port = httpd.server_port
        log.info("metrics on http://%s:%d/metrics", cfg.host, port)
        return httpd, port

    def status_line(self) -> str:
        live = sum(vb.state is BookState.LIVE for vb in self.engine.books.values())
        return f"{live}/{len(self.engine.books)} books live, {len(self.hub.subscribers)} clients"

    async def run(
        self, *, handle_signals: bool = True, task_status: TaskStatus[Addresses] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled, or until SIGTERM/SIGINT when ``handle_signals`` (SIGHUP reloads)."""
        log.info("config: %s; venues: %s", self.config.source, ", ".join(self.venues))
        httpd, metrics_port = self._start_metrics()
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if handle_signals else ()
        try:
            # Signals are received from before READY=1, so a reload right after it is never fatal.
            with anyio.open_signal_receiver(*signals) as received:
                await self._serve(received, metrics_port, handle_signals, task_status)
        finally:
            if self.recorder is not None:
                await self.recorder.stop()  # after the connectors: their last inputs are recorded
            httpd.shutdown()
            httpd.server_close()
            self.notifier.close()
        log.info("stopped")

    async def _serve(
        self, signals: AsyncIterator[int], metrics_port: int, handle_signals: bool, task_status: TaskStatus[Addresses]
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.settings.cluster.role != "all":
                role_args = (self.settings.cluster, self.engine, self.metrics.registry, self.trades_gap)
                self.run_connector = await tg.start(run_role, *role_args)
            api_port = await tg.start(self.server.serve, self.settings.server.host, self.settings.server.port)
            if self.settings.record.dir is not None:
                self.recorder = Recorder(self.settings.record, self.venues, self.metrics.registry)
                tg.start_soon(self.recorder.run)
            for venue in self.venues.values():
                await tg.start(self._run_venue, venue)
            tg.start_soon(self._watch_staleness)
            tg.start_soon(self._tell_systemd)
            task_status.started(Addresses(api_port, metrics_port))
            self.notifier.ready(self.status_line())
            if not handle_signals:
                await anyio.sleep_forever()
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                if signum != signal.SIGHUP:
                    break
                self.reload()
            log.info("shutting down")
            self.notifier.stopping()
            tg.cancel_scope.deadline = anyio.current_time() + SHUTDOWN_DEADLINE
            tg.cancel_scope.cancel()

    async def _run_venue(self, venue: Venue, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """One venue's supervised connector, in a scope a reload can cancel."""
        with anyio.CancelScope() as scope:
            self.venue_scopes[venue.name] = scope
            task_status.started()
            if self.recorder is not None:
                venue = self.recorder.recorded(venue)
            await self.run_connector(venue, self.feeds[venue.name], partial(self._venue_stopped, venue.name))

    async def _tell_systemd(self) -> None:
        """Watchdog pings from the event loop itself (a blocked loop misses them) and status."""
        interval = min(self.notifier.watchdog_interval or STATUS_EVERY, STATUS_EVERY)
        while self.notifier.enabled:
            await anyio.sleep(interval)
            if self.notifier.watchdog_interval:
                self.notifier.watchdog()
            self.notifier.status(self.status_line())

    def reload(self) -> bool:
        """Apply a re-read config: venues and symbols added, removed or changed, limits changed,
        without a restart. Subscribers of unchanged channels stay; those of removed channels get
        an ``unsubscribed`` message. An invalid config is refused and the running one stays."""
        self.notifier.reloading()
        try:
            if self.reloader is None:
                raise ConfigError("this daemon was started without a config to reload")
            config, venues = self.reloader()
        except (ConfigError, PluginError, RegistryError) as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            self.notifier.ready(self.status_line())
            return False
        old, new = self.settings, config.settings
        if old.metrics != new.metrics:
            log.warning("reload: [metrics] changes take effect only after a restart")
        for key in ("host", "port", "cert_file", "key_file", "handshake_timeout", "ping_interval", "compression"):
            if getattr(old.server, key) != getattr(new.server, key):
                log.warning("reload: server.%s changes take effect only after a restart", key)
        self.server.configure(new.server)
        removed = self.venues.keys() - venues.keys()
        changed = {n for n in venues.keys() & self.venues.keys() if venues[n] != self.venues[n]}
        added = venues.keys() - self.venues.keys()
        now = time.time_ns()
        for name in removed | changed:
            self.venue_scopes.pop(name).cancel()
            self.dispatch(self.engine.venue_down(name, "reload", now), now)
        for name in removed:
            for symbol in self.venues[name].symbols:
                self.metrics.book_state.remove(name, symbol)
        changes = self.engine.configure({n: v.symbols for n, v in venues.items()})
        self.engine.stale_after_ns = int(new.consolidated.stale_after * 1e9)
        self.hub.max_depth = new.consolidated.depth
        self.hub.default_depth = min(self.hub.default_depth, new.consolidated.depth)
        self.hub.venue_connectors = {n: v.spec.id for n, v in venues.items()}
        self.server.wake(self.hub.prune())
        self.dispatch(changes, now)
        self.config, self.settings, self.venues = config, new, venues
        for name in added | changed:
            self._add_feed(venues[name])
            self._tg.start_soon(self._run_venue, venues[name])
        log.info(
            "reloaded %s: %d venues added, %d removed, %d changed",
            config.source,
            len(added),
            len(removed),
            len(changed),
        )
        self.notifier.ready(self.status_line())
        return True
