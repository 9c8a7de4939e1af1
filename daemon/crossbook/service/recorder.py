"""``[record]``: every venue input, as received, to zstd files that ``crossbook replay`` reads.

The event loop only encodes records (a few µs a frame) into the current block; a block goes to a
writer thread when it is large or ``flush_interval`` old. The thread compresses it and writes it
with one ``write()``, rotating files by size and age (format: :mod:`crossbook.service.recording`).
Recording never blocks the daemon nor stops it: a write error is logged and counted, and a block
the writer has no room for is dropped, counted and marked in the file (``lost``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import orjson
from prometheus_client import CollectorRegistry, Counter

from crossbook.service import recording
from crossbook.service.config import RecordConfig, Venue
from crossbook.toolkit.connector import Connector
from crossbook.toolkit.handover import Connection
from crossbook.toolkit.streaming import StreamingConnector

log = logging.getLogger("crossbook.record")

BLOCK_BYTES = 1 << 20
"""Records (uncompressed) in a block before it goes to the writer, whatever its age."""
QUEUED_BLOCKS = 16
"""Blocks waiting for the writer at most (16 MiB); more are dropped."""


def spec(venue: Venue) -> dict[str, Any]:
    """A venue as a recording names it: connector, symbols, its config (secrets masked)."""
    return {"connector": venue.spec.id, "symbols": list(venue.symbols), "config": venue.config.model_dump(mode="json")}


class Recorder:
    """The daemon's recording: one per daemon, fed from the event loop."""

    def __init__(self, config: RecordConfig, venues: Mapping[str, Venue], registry: CollectorRegistry) -> None:
        assert config.dir is not None
        self.config = config
        self.dir: Path = config.dir
        self.venues = {name: spec(v) for name, v in venues.items()}
        """What each new file's header says (a reload changes it)."""
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
        self.lines: list[bytes] = []
        self.size = 0
        self.count = 0
        """Records added."""
        self.pending = False
        """Inputs were recorded since the last ``flush`` record."""
        self.lost = 0
        """Records dropped and not yet marked in the file (the writer thread adds too)."""
        self.lost_lock = threading.Lock()
        self.errors = Counter(
            "crossbook_record_errors_total",
            "Recording blocks lost: write (a write error) or behind (the writer had no room)",
            ["reason"],
            registry=registry,
        )
        self.written = Counter("crossbook_record_bytes_total", "Compressed bytes recorded", registry=registry)
        self.queue: queue.Queue[tuple[bytes, int] | None] = queue.Queue(QUEUED_BLOCKS)
        self.writer = Writer(self)
        self.thread = threading.Thread(target=self.writer.run, name="crossbook-record", daemon=True)
        self.thread.start()
        log.info("recording venue inputs to %s", self.dir)

    # -- records ------------------------------------------------------------------------------

    def add(self, record: list[Any]) -> None:
        self.count += 1
        self.pending = True
        line = orjson.dumps(record) + b"\n"
        self.lines.append(line)
        self.size += len(line)
        if self.size >= BLOCK_BYTES:
            self.hand_off()

    def hand_off(self) -> None:
        """Give the current block to the writer (dropped, counted and marked if it has no room)."""
        if not self.lines:
            return
        with self.lost_lock:
            lost, self.lost = self.lost, 0
        if lost:
            self.lines.insert(0, orjson.dumps(["lost", lost]) + b"\n")
        lines, self.lines, self.size = self.lines, [], 0
        try:
            self.queue.put_nowait((b"".join(lines), len(lines)))
        except queue.Full:
            self.count_lost(len(lines))
            self.errors.labels("behind").inc()
            log.warning("recording: the writer fell behind; %d records dropped", len(lines))

    def count_lost(self, records: int) -> None:
        with self.lost_lock:
            self.lost += records

    def recorded(self, venue: Venue) -> Venue:
        """The venue, its connector recorded from each time it is built (start-up, restarts)."""
        factory = venue.spec.factory

        def build(name: str, symbols: tuple[str, ...], config: Any) -> Connector:
            connector = factory(name, symbols, config)
            self.attach(venue, connector)
            return connector

        return replace(venue, spec=replace(venue.spec, factory=build))

    def attach(self, venue: Venue, connector: Connector) -> None:
        """A venue's connector was built: record its inputs from now on."""
        name = venue.name
        if not isinstance(connector, StreamingConnector):
            log.warning("venue %s: connector %r is not recorded (it reads no venue feed)", name, venue.spec.id)
            return
        self.venues[name] = spec(venue)
        self.add(["start", time.time_ns(), name, self.venues[name]])
        connector.tape = VenueTape(self, name)

    def flush(self) -> None:
        """Subscribers are told: the inputs since the last flush were read together."""
        if self.pending:
            self.add(["flush"])
            self.pending = False

    def tick(self, now_ns: int) -> None:
        self.add(["tick", now_ns])

    def down(self, venue: str, reason: str, now_ns: int) -> None:
        self.add(["down", now_ns, venue, reason])

    # -- lifetime -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Hand blocks to the writer every ``flush_interval``."""
        while True:
            await anyio.sleep(self.config.flush_interval)
            self.hand_off()

    async def stop(self) -> None:
        """Write what is left and stop the writer (waiting at most 5 s for it)."""
        with anyio.CancelScope(shield=True):
            self.hand_off()
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                # a hung disk: the writer is a daemon thread, and dies with the process
                log.error("recording: the writer is stuck; %d blocks not written", self.queue.qsize())
                return
            await anyio.to_thread.run_sync(self.thread.join, 5.0)


class VenueTape:
    """One venue's :class:`~crossbook.toolkit.streaming.Tape`: its inputs as records."""

    def __init__(self, recorder: Recorder, venue: str) -> None:
        self.add = recorder.add
        self.venue = venue

    def opened(self, conn: Connection, stream: int, takeover: bool, reason: str, now_ns: int, mono: float) -> None:
        self.add(["open", now_ns, mono, self.venue, conn.number, stream, takeover, reason])

    def received(self, conn: Connection, stream: int, frame: str | bytes, now_ns: int, mono: float) -> None:
        self.add(["recv", now_ns, mono, self.venue, conn.number, stream, recording.payload(frame)])

    def closed(self, conn: Connection, stream: int, now_ns: int) -> None:
        self.add(["close", now_ns, self.venue, conn.number, stream])

    def snapshot(self, symbol: str, body: bytes, now_ns: int) -> None:
        self.add(["snap", now_ns, self.venue, symbol, recording.payload(body)])

    def timer(self, kind: str, conn: Connection, stream: int, now_ns: int, mono: float, reason: str) -> None:
        self.add(["timer", now_ns, mono, self.venue, conn.number, stream, kind, reason])


class Writer:
    """The writer thread: compresses blocks and writes each with one ``write()``, rotating files."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.config = recorder.config
        self.compressor = recording.compressor()
        self.file: Any = None
        self.path: Path | None = None
        self.opened_at = 0.0
        self.bytes = 0
        self.index = 0
        self.failing = False

    def run(self) -> None:
        while (item := self.recorder.queue.get()) is not None:
            self.write(*item)
        self._close()

    def write(self, lines: bytes, count: int) -> None:
        data = recording.block([lines], self.compressor)
        try:
            self._rotate(len(data))
            self._write(data)
        except OSError as exc:
            self.recorder.count_lost(count)
            self.recorder.errors.labels("write").inc()
            if not self.failing:
                log.error("recording: cannot write %s: %s; recording resumes when it can", self.path, exc)
            self.failing = True
            self._close()
            return
        if self.failing:
            log.warning("recording: writing again, to %s", self.path)
            self.failing = False
        self.recorder.written.inc(len(data))

    def _rotate(self, size: int) -> None:
        config = self.config
        if self.file is not None and (
            self.bytes + size > config.max_file_bytes or time.monotonic() - self.opened_at >= config.max_file_seconds
        ):
            self._close()
        if self.file is None:
            self._open()

    def _open(self) -> None:
        recorder = self.recorder
        recorder.dir.mkdir(parents=True, exist_ok=True)
        self.index += 1
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e9))
        self.path = recorder.dir / f"crossbook-{stamp}-{os.getpid()}-{self.index:04d}{recording.SUFFIX}"
        self.file = open(self.path, "xb", buffering=0)  # noqa: SIM115 (open for the file's lifetime)
        self.opened_at, self.bytes = time.monotonic(), 0
        header = ["file", recording.VERSION, recorder.run_id, self.index, now, dict(recorder.venues)]
        self._write(recording.block([orjson.dumps(header) + b"\n"], self.compressor))
        log.info("recording to %s", self.path)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.file.write(view) :]
        self.bytes += len(data)

    def _close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError as exc:
                log.error("recording: closing %s: %s", self.path, exc)
            self.file = None
