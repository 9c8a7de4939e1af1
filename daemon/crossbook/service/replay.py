"""``crossbook replay FILES... [--speed 1|10|max] [--config PATH]``: a recording played back.

The recorded inputs go through the venues' own connectors (a new :class:`Handover` with the
protocol and book syncs, built by the plugin's factory from the recorded venue config), in the
recorded order, with the recorded clock readings, and the batches are told to subscribers where
the recording says they were (``flush``). The daemon's engine, hub and API server are the live
ones, so the API serves what it served live; the same files always give the same messages.
Time between batches is the recorded time divided by ``--speed`` (``max``: no waiting).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from pydantic import ValidationError

from crossbook.service.config import Config, ConfigError, RecordConfig, Venue, VenueConfig, load
from crossbook.service.plugins import PluginError, load_connectors
from crossbook.service.recording import RecordingError, RecordingReader, unpayload
from crossbook.toolkit.clock import SystemClock
from crossbook.toolkit.handover import Connection
from crossbook.toolkit.registry import ConnectorRegistry, RegistryError
from crossbook.toolkit.streaming import StreamingConnector, deliver

if TYPE_CHECKING:
    from crossbook.service.app import Daemon

log = logging.getLogger("crossbook.replay")

SHAPES = {"file": 6, "start": 4, "open": 8, "recv": 7, "close": 5, "snap": 5, "timer": 8, "down": 4, "tick": 2}
SHAPES |= {"flush": 1, "lost": 2}
"""Items in a record of each kind."""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    text = "replay recorded venue input and serve the API as it was served live"
    cmd = sub.add_parser("replay", help=text, description=text, parents=[common])
    cmd.add_argument("files", nargs="+", type=Path, metavar="FILES", help="recording files, in order")
    cmd.add_argument("--speed", type=speed, default=1.0, help="1 (as recorded), 10, ... or max (default: 1)")
    cmd.add_argument(
        "--config", metavar="PATH", help="config for [server], [consolidated] and plugins (venues: the recording's)"
    )


def speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'max'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("the speed must be above 0")
    return value


class ReplayClock(SystemClock):
    """The daemon's clock during a replay: the time of the record being replayed (its timers
    are anyio's, as live)."""

    def __init__(self) -> None:
        self.now_ns = 0
        self.mono = 0.0

    def time_ns(self) -> int:
        return self.now_ns

    def monotonic(self) -> float:
        return self.mono


def records(files: list[Path]) -> Iterator[tuple[Path, int, list[Any]]]:
    """Every record of the files, in order, with its file and number; the shape of each checked."""
    for path in files:
        reader = RecordingReader(path)
        for number, record in enumerate(reader.records(), 1):
            if len(record) != SHAPES[record[0]]:
                raise RecordingError(f"{path}: record {number}: a {record[0]!r} record has {SHAPES[record[0]]} items")
            yield path, number, record
        if reader.truncated:
            log.warning(
                "%s: its last %d bytes are a block cut short (the recording process was killed): replayed up to it",
                path,
                reader.truncated,
            )


def recorded_venues(files: list[Path], registry: ConnectorRegistry) -> dict[str, Venue]:
    """The venues the files name, resolved with the installed connectors (reads every file: a
    corrupt one is refused before anything is served)."""
    specs: dict[str, dict[str, Any]] = {}
    symbols: dict[str, dict[str, None]] = {}
    for _path, _number, record in records(files):
        named = record[5].items() if record[0] == "file" else [record[2:4]] if record[0] == "start" else ()
        for name, spec in named:
            specs.setdefault(name, spec)
            symbols.setdefault(name, {}).update(dict.fromkeys(spec["symbols"]))
    if not specs:
        raise RecordingError("the files record no venue")
    return {name: resolve(name, spec, registry, tuple(symbols[name])) for name, spec in specs.items()}


def resolve(name: str, spec: dict[str, Any], registry: ConnectorRegistry, symbols: tuple[str, ...]) -> Venue:
    connector = registry.get(spec["connector"])
    if connector is None:
        raise ConfigError(f"venue {name}: no installed plugin provides the connector {spec['connector']!r}")
    try:
        config = connector.config_model.model_validate(spec["config"])
    except ValidationError as exc:
        raise ConfigError(f"venue {name}: the recorded config does not validate: {exc}") from None
    return Venue(name, symbols, connector, config)


class Replayer:
    """Feeds the records into a daemon built with a :class:`ReplayClock`."""

    def __init__(self, daemon: Daemon, clock: ReplayClock, registry: ConnectorRegistry) -> None:
        self.daemon = daemon
        self.clock = clock
        self.registry = registry
        self.connectors: dict[str, StreamingConnector] = {}
        self.conns: dict[tuple[str, str, int], Connection] = {}
        """Open connections by (run, venue, number)."""
        self.run = ""
        self.inputs = self.batches = 0

    async def play(self, files: list[Path], speed: float | None) -> None:
        """Replay the files; the batches paced by their recorded times over ``speed``."""
        origin: tuple[int, float] | None = None
        pace = True
        for path, number, record in records(files):
            kind = record[0]
            if kind == "flush":
                self.daemon.flush()
                self.batches += 1
                pace = True
                continue
            if kind == "file":
                self.run = record[2]
                continue
            if kind == "lost":
                log.warning("%s: %d records were lost here while recording: books may differ", path, record[1])
                continue
            if pace:
                pace = False
                if speed is None:
                    await anyio.lowlevel.checkpoint()
                elif origin is None:
                    origin = (record[1], time.monotonic())
                else:
                    await anyio.sleep(max(0.0, origin[1] + (record[1] - origin[0]) / 1e9 / speed - time.monotonic()))
            self.clock.now_ns = record[1]
            try:
                self._input(record)
            except (IndexError, KeyError, TypeError, ValueError, RecordingError) as exc:
                raise RecordingError(f"{path}: record {number} ({kind}): {exc}") from None
            self.inputs += 1
        self.daemon.flush()

    def _input(self, record: list[Any]) -> None:
        kind = record[0]
        if kind == "tick":
            self.daemon.dispatch(self.daemon.engine.tick(record[1]), record[1])
            return
        if kind == "down":
            _, now, venue, reason = record
            self.daemon.dispatch(self.daemon.engine.venue_down(venue, reason, now), now)
            return
        if kind == "start":
            self._start(record[2], record[3])
            return
        venue = record[3] if kind in ("open", "recv", "timer") else record[2]
        connector = self.connectors.get(venue) or self._start(venue, None)
        handover, feed = connector.handover, self.daemon.feeds[venue]
        if kind == "snap":
            _, now, _, symbol, body = record
            data = unpayload(body)
            deliver(venue, feed, handover.snapshot(symbol, data.encode() if isinstance(data, str) else data, now))
            return
        if kind == "close":
            _, now, _, number, stream = record
            conn = self.conns.pop((self.run, venue, number), None) or Connection(connector.streams[stream])
            deliver(venue, feed, handover.closed(conn, now))
            return
        _, now, mono, _, number, stream, *rest = record
        self.clock.mono = mono
        key = (self.run, venue, number)
        if kind == "open":
            conn = self.conns[key] = Connection(connector.streams[stream])
            deliver(venue, feed, handover.opened(conn, bool(rest[0]), str(rest[1]), now, mono))
            return
        conn = self.conns.get(key) or self._unknown(key, connector, stream, now, mono)
        if kind == "recv":
            deliver(venue, feed, handover.received(conn, unpayload(rest[0]), now, mono))
        elif rest[0] == "idle":
            handover.idle(conn, mono)
        elif rest[0] == "deadline":
            deliver(venue, feed, handover.deadline(conn, mono))
        elif rest[0] == "plan":
            deliver(venue, feed, handover.plan(conn, str(rest[1]), mono))
        else:
            raise RecordingError(f"unknown timer {rest[0]!r}")

    def _start(self, venue: str, spec: dict[str, Any] | None) -> StreamingConnector:
        """A new connector for ``venue``, as recorded (``spec``) or as first named."""
        if spec is None:
            log.warning("venue %s: the files start while it was running: its books wait for a resync", venue)
        configured = self.daemon.venues.get(venue)
        if configured is None:
            raise RecordingError(f"input for venue {venue!r}, which no file header names")
        if spec is not None:
            configured = resolve(venue, spec, self.registry, tuple(spec["symbols"]))
        connector = configured.spec.factory(venue, configured.symbols, configured.config)
        if not isinstance(connector, StreamingConnector):
            raise RecordingError(f"venue {venue}: connector {configured.spec.id!r} has no recordable input")
        for key in [k for k in self.conns if k[1] == venue]:
            del self.conns[key]
        self.connectors[venue] = connector
        return connector

    def _unknown(
        self, key: tuple[str, str, int], connector: StreamingConnector, stream: int, now: int, mono: float
    ) -> Connection:
        """A connection opened before the files start: opened now, as it was."""
        conn = self.conns[key] = Connection(connector.streams[stream])
        deliver(key[1], self.daemon.feeds[key[1]], connector.handover.opened(conn, False, "reconnect", now, mono))
        return conn


def prepare(files: list[Path], path: str | None) -> tuple[Daemon, Replayer]:
    """A daemon on the recorded venues, configured by ``path`` otherwise, and its replayer."""
    from crossbook.service.app import Daemon  # the daemon's modules, only for this command

    config = load(path)
    registry = load_connectors(config.settings.plugins, config.settings.disabled_plugins)
    venues = recorded_venues(files, registry)
    configs = {name: VenueConfig(connector=v.spec.id, symbols=list(v.symbols)) for name, v in venues.items()}
    settings = config.settings.model_copy(update={"venues": configs, "record": RecordConfig()})
    clock = ReplayClock()
    daemon = Daemon(Config(settings, config.source), venues, clock=clock)
    return daemon, Replayer(daemon, clock, registry)


async def serve(
    daemon: Daemon,
    replayer: Replayer,
    files: list[Path],
    speed: float | None,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API, replay the files, then keep serving the last books until cancelled."""
    server = daemon.settings.server
    async with anyio.create_task_group() as tg:
        port = await tg.start(daemon.server.serve, server.host, server.port)
        task_status.started(port)
        started = time.monotonic()
        await replayer.play(files, speed)
        log.info(
            "replay done: %d inputs in %d batches in %.1f s; serving the last books until stopped",
            replayer.inputs,
            replayer.batches,
            time.monotonic() - started,
        )
        await anyio.sleep_forever()


def main(args: argparse.Namespace) -> int:
    files: list[Path] = args.files
    try:
        daemon, replayer = prepare(files, args.config)
    except (ConfigError, PluginError, RegistryError, RecordingError) as exc:
        print(f"crossbook: {exc}", file=sys.stderr)
        return 1
    failed: list[str] = []

    async def run() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:

                async def replay() -> None:
                    try:
                        await serve(daemon, replayer, files, args.speed)
                    except RecordingError as exc:
                        failed.append(str(exc))
                    except OSError as exc:
                        failed.append(f"cannot start: {exc}")
                    tg.cancel_scope.cancel()

                tg.start_soon(replay)
                async for _ in signals:
                    break
                tg.cancel_scope.cancel()

    anyio.run(run)
    if failed:
        print(f"crossbook: {failed[0]}", file=sys.stderr)
        return 1
    return 0
