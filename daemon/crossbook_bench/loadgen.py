"""Load for benchmarks: a fake Binance venue pushing real-format depth frames, and cheap subscribers.

The venue serves the recorded Binance spot BTCUSDT depth stream (``CAPTURE`` in
``shared/captures``) over the real wire protocol: the combined-stream WebSocket, REST
``/api/v3/depth`` (the recorded snapshot) and ``/api/v3/exchangeInfo`` (which cryptofeed reads
for its symbol map). The capture has ~3,450 diffs after its snapshot, too few to time a fast
consumer, so ``rounds`` repeats them, each repeat led by one diff that puts the book back exactly
to the snapshot (it zeroes the levels the previous round added), then the recorded diffs with
their update ids shifted to stay contiguous. Frames go out as fast as the client reads, or paced.

Subscribers are raw sockets (no WebSocket library): they count messages with ``bytes.count``, so
a thousand of them cost the measuring process little; probes also parse frames to time them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlencode, urlparse

import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from crossbook.core.model import Level
from crossbook.testing.captures import read_hftbacktest
from crossbook.testing.fakevenue import FakeConnection, FakeVenue

CAPTURE = "binance/binance_spot_btcusdt_depth100ms_20240808.hftbacktest.gz"
SYMBOL = "BTC-USDT"
VENUE_SYMBOL = "BTCUSDT"
SNAPSHOT_LIMIT = 5000
"""The benchmarks' Binance ``snapshot_limit``: above the recorded snapshot's 1,000 levels a side, so
the daemon takes that snapshot as the whole book, as cryptofeed and ``crossbook_bench.floor`` do, and
never asks for another (the recording has one). A replay runs many times faster than the venue
did, so a REST round trip covers seconds of its market: with the default limit, a rebase would
often come too late and resync, and a resync flatters throughput (updates buffered meanwhile go
into the book at once)."""
STREAM = "btcusdt@depth@100ms"
"""The stream both clients subscribe to (crossbook's default ``update_speed``, cryptofeed's ``depth_interval``)."""
EXCHANGE_INFO = orjson.dumps(
    {
        "timezone": "UTC",
        "symbols": [
            {
                "symbol": VENUE_SYMBOL,
                "status": "TRADING",
                "baseAsset": "BTC",
                "quoteAsset": "USDT",
                "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01000000"}],
            }
        ],
    }
).decode()
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
SENTINEL = b"end of recording"
"""Sent to the daemon after the recording: it cannot parse it and counts it in
``crossbook_skipped_events_total``, which tells that every frame before it was processed (its
message counter counts publishes: diffs buffered while a book syncs are published at once)."""


@dataclass(frozen=True)
class Recording:
    """The frames a venue serves and the book a consumer must end on."""

    snapshot: str
    """The recorded REST ``/api/v3/depth`` body."""
    frames: list[bytes]
    level_updates: int
    bids: dict[str, str]
    """The book after the last frame: price text -> size text."""
    asks: dict[str, str]
    seconds: float
    """The venue's time the frames stand for: the recording's span (first to last diff's event
    time) once a round."""
    round_frames: list[int]
    """How many frames have been served when each round ends."""

    @property
    def best_bid(self) -> Decimal:
        return max(map(Decimal, self.bids))

    @property
    def best_ask(self) -> Decimal:
        return min(map(Decimal, self.asks))


def load_recording(path: Path, limit: int | None = None, rounds: int = 1) -> Recording:
    """The recorded diffs that follow the snapshot (the first one straddles its ``lastUpdateId``),
    the first ``limit`` of them, repeated ``rounds`` times, each round's numbers spelled anew
    (:func:`respelled`)."""
    snapshot: str | None = None
    diffs: list[dict[str, Any]] = []
    for rec in read_hftbacktest(path):
        if rec.kind == "http":
            snapshot = rec.data
        elif "@depth" in rec.data[:40]:  # a diff recorded before the snapshot may still straddle it
            data = orjson.loads(rec.data)["data"]
            if data["s"] == VENUE_SYMBOL:
                diffs.append(data)
    if snapshot is None:
        raise ValueError(f"{path}: no REST snapshot")
    snap = orjson.loads(snapshot)
    diffs = [d for d in diffs if d["u"] > snap["lastUpdateId"]]
    if not diffs:
        raise ValueError(f"{path}: no depth diffs after the snapshot")
    if not diffs[0]["U"] <= snap["lastUpdateId"] + 1:
        raise ValueError(f"{path}: a gap between the snapshot and the first diff")
    diffs = diffs[:limit]
    start_bids: dict[str, str] = dict(snap["bids"])
    start_asks: dict[str, str] = dict(snap["asks"])
    bids, asks = dict(start_bids), dict(start_asks)
    for diff in diffs:
        for side, changes in ((bids, diff["b"]), (asks, diff["a"])):
            for price, size in changes:
                if Decimal(size):
                    side[price] = size
                else:
                    side.pop(price, None)
    reset = {
        "b": [[p, "0.00000000"] for p in bids if p not in start_bids] + snap["bids"],
        "a": [[p, "0.00000000"] for p in asks if p not in start_asks] + snap["asks"],
    }
    frames = [_frame(d) for d in diffs]
    round_frames = [len(frames)]
    levels = sum(len(d["b"]) + len(d["a"]) for d in diffs)
    last = diffs[-1]["u"]
    for r in range(1, rounds):
        last += 1
        head = {"e": "depthUpdate", "E": diffs[-1]["E"], "s": VENUE_SYMBOL, "U": last, "u": last}
        frames.append(_frame(head | {"b": respelled(reset["b"], r), "a": respelled(reset["a"], r)}))
        shift = last + 1 - diffs[0]["U"]
        frames.extend(
            _frame(d | {"U": d["U"] + shift, "u": d["u"] + shift, "b": respelled(d["b"], r), "a": respelled(d["a"], r)})
            for d in diffs
        )
        last = diffs[-1]["u"] + shift
        levels += len(reset["b"]) + len(reset["a"]) + sum(len(d["b"]) + len(d["a"]) for d in diffs)
        round_frames.append(len(frames))
    span = (diffs[-1]["E"] - diffs[0]["E"]) / 1000
    return Recording(snapshot, frames, levels, bids, asks, span * rounds, round_frames)


def respelled(levels: list[list[str]], round_: int) -> list[list[str]]:
    """The same ``[price, size]`` levels with each plain decimal spelled anew for a repeated round
    (up to 3 leading zeros and 5 trailing ones: 24 spellings, the same value, each within the
    parse cache's fast path): a round then misses the daemon's parse cache as the recording's
    first pass does, as a live stream does (~1 text in 5), instead of finding every text it parsed
    in the round before. A spelling comes back after 24 rounds, by when the cache (65,536 texts,
    ~47,000 new a round) has been emptied many times. Other texts (an exponent) are kept as they are."""
    variant = round_ % 24
    lead, trail = "0" * (variant % 4), "0" * (variant // 4)

    def spell(text: str) -> str:
        if not text.replace(".", "", 1).isdigit():
            return text
        return lead + text + (trail if "." in text else "")

    return [[spell(p), spell(s)] for p, s in levels]


def encode_changes(fake: FakeVenue, conn: FakeConnection, symbol: str, count: int, n: int) -> list[str]:
    """``count`` changes of ``n`` levels to the fake's market, as its venue sends them to ``conn``
    (sequence ids, checksums): made before any is sent, so the load generator's own work is not
    what a benchmark times."""
    dialect, market = fake.dialect, fake.market
    out: list[str] = []
    for _ in range(count):
        bids, asks = market.change(symbol, n)
        out += dialect.encode(conn, symbol, dialect.advance(symbol, bids, asks))
    return out


async def api_book(port: int, symbol: str, depth: int) -> tuple[list[Level], list[Level]]:
    """The daemon's consolidated ``book`` snapshot of ``depth`` levels: (bids, asks) best first."""
    async with connect(f"ws://127.0.0.1:{port}/v1/stream", max_size=None) as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "channels": [f"book.{symbol}"], "depth": depth}))
        while (msg := orjson.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "snapshot":
            pass
    bids, asks = ([(Decimal(p), Decimal(s)) for p, s, _ in msg[side]] for side in ("bids", "asks"))
    return bids, asks


def daemon_venue(port: int) -> str:
    """The ``[venues.binance]`` table of a daemon fed by a :class:`FakeBinance` on ``port``."""
    return (
        f'[venues.binance]\nconnector = "binance"\nsymbols = ["{SYMBOL}"]\ntrades = false\n'
        f'ws_url = "ws://127.0.0.1:{port}"\nrest_url = "http://127.0.0.1:{port}"\nsnapshot_limit = {SNAPSHOT_LIMIT}\n'
    )


def _frame(data: dict[str, Any]) -> bytes:
    return orjson.dumps({"stream": STREAM, "data": data})


def spawn_daemon(tmp: Path, venues: str, server_keys: str = "", *, stderr: int | IO[str]) -> subprocess.Popen[str]:
    """The daemon in a child process on a config in ``tmp`` with these ``[venues.*]`` tables (and
    ``[server]`` keys); the OS picks both its ports: :func:`daemon_ports` finds them."""
    config = tmp / "crossbook.toml"
    config.write_text(f"[server]\nport = 0\n{server_keys}[metrics]\nport = 0\n" + venues)
    return subprocess.Popen(
        [sys.executable, "-m", "crossbook", "-q", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        env=child_env() | {"CROSSBOOK_SERVER__PORT": "0", "CROSSBOOK_METRICS__PORT": "0"},
    )


def child_env() -> dict[str, str]:
    """The environment for a child that talks to loopback servers (never through a proxy)."""
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def daemon_ports(proc: subprocess.Popen[str]) -> tuple[int, int]:
    """The API and metrics ports of a daemon started by :func:`spawn_daemon`.

    ``-q`` hides the info logs that name them, so ask the OS which ports the child listens on
    and tell them apart by which one serves ``/metrics``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        ports = sorted(int(m.group(1)) for m in re.finditer(rf":(\d+)\s.*pid={proc.pid},", out))
        if len(ports) >= 2:
            for port in ports:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    return next(p for p in ports if p != port), port
                except OSError:
                    continue
        time.sleep(0.1)
    raise RuntimeError("daemon did not start")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process."""
    found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) * 1024 if found else 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


@dataclass
class FakeBinance:
    """One consumer's venue: serves the recording once, to the first connection for ``STREAM``,
    and the recorded snapshot to every REST request (so a crossbook consumer takes it as the whole
    book: ``SNAPSHOT_LIMIT``; with a smaller limit it would ask again and again)."""

    recording: Recording
    rate: float | None = None
    """Frames per second, or ``None``: as fast as the client reads."""
    alone: bool = False
    """Paced, each frame alone: never sent at once after the one before to catch up with the pace,
    but at least half an interval after it (so the venue catches up at up to twice its rate), and
    the waits timed by a thread's ``time.sleep``, not by the event loop's timers, which fire up to
    a millisecond late (epoll's resolution): at 1,000 frames/s those leave the venue behind its
    pace for good, or, catching up, send ~1 frame in 5 at once after the one before."""
    pid: int | None = None
    """The consumer's process, whose CPU time is read when serving starts."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the bench is ready to time: until then the stream and the snapshot are held."""
    started: tuple[float, float] | None = None
    """(monotonic time, consumer CPU seconds) when serving started."""
    sentinel: bytes | None = None
    """A frame to send after the recording (see ``SENTINEL``)."""
    connections: int = 0
    sent: int = 0
    bunched: int = 0
    """Paced: frames followed at once by the next, the venue being behind its pace (so the client
    may read the two together); none with ``alone``."""
    requests: list[str] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        """Serve on an ephemeral 127.0.0.1 port (yielded); no compression, as Binance."""
        async with serve(
            self._stream, "127.0.0.1", 0, process_request=self._rest, compression=None, write_limit=2**20
        ) as server:
            yield server.sockets[0].getsockname()[1]

    async def _rest(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlparse(request.path)
        self.requests.append(url.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/v3/exchangeInfo":
            return _response(200, EXCHANGE_INFO)
        if url.path == "/api/v3/depth" and params.get("symbol") == VENUE_SYMBOL:
            await self.ready.wait()
            return _response(200, self.recording.snapshot)
        return _response(400, '{"code":-1121,"msg":"Invalid symbol."}')

    async def _stream(self, ws: ServerConnection) -> None:
        self.connections += 1
        assert ws.request is not None
        if self.connections > 1 or STREAM not in unquote(ws.request.path):
            await ws.wait_closed()  # counted: a reconnect or a wrong subscription fails the run
            return
        await self.ready.wait()
        self.started = (time.monotonic(), cpu_seconds(self.pid) if self.pid else 0.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with contextlib.suppress(ConnectionClosed):
            for frame in self.recording.frames:
                await ws.send(frame, text=True)
                self.sent += 1
                if self.rate is not None:
                    delay = start + self.sent / self.rate - loop.time()
                    if self.alone:
                        delay = max(delay, 0.5 / self.rate)
                        await loop.run_in_executor(None, time.sleep, delay)
                    elif delay > 0:
                        await asyncio.sleep(delay)
                    else:
                        self.bunched += 1
                elif self.sent & 31 == 0:
                    await asyncio.sleep(0)  # let the REST snapshot through while the client keeps reading
            if self.sentinel is not None:
                await ws.send(self.sentinel, text=True)
            await ws.wait_closed()


def _response(status: int, body: str) -> Response:
    data = body.encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status, HTTPStatus(status).phrase, headers, data)


def scrape(port: int) -> str:
    """The daemon's metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body: bytes = resp.read()
    return body.decode()


def metric_value(body: str, name: str) -> float:
    """A metric summed over its labels."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body, flags=re.M))


class Subscriber(asyncio.Protocol):
    """A raw-socket API client: handshake, one subscribe request, then count what arrives.

    A probe also parses frames and records, for each ``delta``, receive time minus its ``ts``
    (the daemon's local receive of the venue frame behind it).
    """

    def __init__(self, request: bytes, probe: bool, query: str) -> None:
        self.request = request
        self.probe = probe
        self.query = query
        self.messages = 0
        self.bytes = 0
        """Bytes received after the handshake (frame headers included)."""
        self.latencies_ns: list[int] = []
        self.upgraded = False
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.subscribed = asyncio.Event()
        """Set when the subscribe request was acknowledged."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert hasattr(transport, "write")  # uvloop's transports are no asyncio.Transport subclass
        self.transport = transport  # type: ignore[assignment]
        transport.write(
            b"GET /v1/stream%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % self.query.encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            head, sep, data = (self.buffer + data).partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            self.buffer = b""
            self.upgraded = True
            assert self.transport is not None
            self.transport.write(_client_frame(self.request))
        self.bytes += len(data)
        if not self.subscribed.is_set() and b'"type":"ack"' in data:
            self.subscribed.set()
        self.messages += data.count(b'"seq":')
        if self.probe:
            self._time(data, time.time_ns())

    def _time(self, data: bytes, now: int) -> None:
        buf = self.buffer + data
        while len(buf) >= 2:
            length, start = buf[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + length:
                break
            if buf[0] & 0x0F == 1:
                msg = orjson.loads(buf[start : start + length])
                for m in msg if isinstance(msg, list) else (msg,):
                    if m.get("type") == "delta":
                        self.latencies_ns.append(now - m["ts"])
            buf = buf[start + length :]
        self.buffer = buf


def _client_frame(payload: bytes) -> bytes:
    """A masked text frame (mask key zero, so the payload goes as is)."""
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


async def subscribers(
    port: int,
    count: int,
    channels: list[str],
    *,
    batch: bool,
    probes: int = 0,
    depth: int = 20,
    linger_ms: int | None = None,
) -> list[Subscriber]:
    """``count`` raw clients, each subscribed (acknowledged) on return; the first ``probes`` of them
    time deltas. ``linger_ms``: each asks the daemon to hold its messages that long."""
    loop = asyncio.get_running_loop()
    request = orjson.dumps({"op": "subscribe", "id": 1, "channels": channels, "depth": depth})
    out = []
    params = ({"batch": 1} if batch else {}) | ({} if linger_ms is None else {"linger_ms": linger_ms})
    query = f"?{urlencode(params)}" if params else ""
    for i in range(count):
        sub = Subscriber(request, i < probes, query)
        await loop.create_connection(lambda sub=sub: sub, "127.0.0.1", port)  # type: ignore[misc]
        out.append(sub)
    async with asyncio.timeout(30):
        for sub in out:
            await sub.subscribed.wait()
    return out


def close(subs: list[Subscriber]) -> None:
    for sub in subs:
        if sub.transport is not None:
            sub.transport.close()


def percentiles(values_ns: list[int]) -> dict[str, float]:
    """p50/p99/max in µs (zeros when nothing was measured)."""
    lat = sorted(values_ns) or [0]
    return {
        "latency_p50_us": lat[len(lat) // 2] / 1e3,
        "latency_p99_us": lat[int(len(lat) * 0.99)] / 1e3,
        "latency_max_us": lat[-1] / 1e3,
        "latency_samples": len(values_ns),
    }
