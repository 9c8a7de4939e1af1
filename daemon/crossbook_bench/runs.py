"""The benchmark's scenarios that run the daemon as a child process, as in production: ``ingest``,
``fanout``, ``latency``, ``e2e`` and ``stalled``, and ``memory`` (with the in-process half from
:mod:`crossbook_bench.inproc`); see :mod:`crossbook_bench.__main__`."""

from __future__ import annotations

import contextlib
import math
import re
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson

from crossbook.core.model import BookState
from crossbook_bench import loadgen
from crossbook_bench.inproc import BOOK_CHANNELS, VENUES, _recording, bench_memory_in_process
from crossbook_bench.versus import poll_interval, run_crossbook


def bench_memory(subscribers: int = 500) -> dict[str, Any]:
    return bench_memory_in_process() | {
        "daemon_rss_bytes_per_idle_websocket": _rss_per_idle_client(subscribers),
        "replay": bench_replay_rss(),
    }


HOUR = 3600.0


def bench_replay_rss(hours: float = 1.0) -> dict[str, Any]:
    """The daemon's RSS before and after replaying ``hours`` of the venue's time or more: the
    recorded Binance stream, each round spelled anew, as fast as the daemon reads it, with one
    subscriber of ``book`` and ``bbo``; and RSS just after each round (sampled once the daemon had
    counted the venue messages at ``daemon_rss_sampled_at``), to show whether it levels off."""
    once = _recording(1)
    if once is None:
        return {"skipped": f"capture {loadgen.CAPTURE} not present"}
    recording = _recording(math.ceil(hours * HOUR / once.seconds))
    assert recording is not None
    run = _run(run_crossbook, recording, 300.0, 1)
    keys = (
        "venue_hours",
        "messages",
        "daemon_rss_mib_before",
        "daemon_rss_mib_after",
        "daemon_peak_rss_mib",
        "daemon_rss_mib_by_round",
        "daemon_rss_sampled_at",
    )
    return {key: run[key] for key in keys} | {"book_ok": run["book_ok"]}


def _rss_per_idle_client(count: int) -> float:
    """The daemon's RSS growth per idle, subscribed WebSocket client (sim venues at 1 msg/s)."""
    with _sim_daemon(1, "max_connections_per_ip = 100000\n") as (proc, api, _):
        time.sleep(1)
        start = loadgen.rss_bytes(proc.pid)
        socks = [_stalled_client(api) for _ in range(count)]  # subscribed; idle at 1 msg/s
        time.sleep(2)
        grown = loadgen.rss_bytes(proc.pid) - start
        for sock in socks:
            sock.close()
        return grown / count


def _sim_daemon(rate: float, server_keys: str = "") -> contextlib.AbstractContextManager[Daemon]:
    """The daemon in a child process with three sim venues at ``rate`` msgs/s."""
    venues = "".join(f'[venues.{v}]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\nrate = {rate}\n' for v in VENUES)
    return _daemon(venues, server_keys)


Daemon = tuple[subprocess.Popen[str], int, int]
"""A daemon child process, its API port and its metrics port."""
MANY_CLIENTS = "max_connections_per_ip = 100000\nmax_connections = 100000\nping_interval = 3600\n"


@contextlib.contextmanager
def _daemon(venues: str, server_keys: str = "") -> Iterator[Daemon]:
    """The daemon in a child process with these ``[venues.*]`` tables."""
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "daemon.log").open("w+") as log:
        # A file, not a pipe nobody reads: a daemon logging warnings must never block on stderr.
        proc = loadgen.spawn_daemon(Path(tmp), venues, server_keys, stderr=log)
        try:
            api, metrics = loadgen.daemon_ports(proc)
            yield proc, api, metrics
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                log.seek(0)
                tail = log.read()[-2000:]
                raise RuntimeError(f"the daemon did not stop within 10 s of SIGTERM; its log ends:\n{tail}") from None


async def _live_and_in_sync(metrics: int) -> bool:
    state = await anyio.to_thread.run_sync(_metric, metrics, "crossbook_book_state")
    resyncs = await anyio.to_thread.run_sync(_metric, metrics, "crossbook_resyncs_total")
    return state == BookState.LIVE.value and resyncs == 0


def bench_ingest(rounds: int, subscribers: int = 1, frames: int = 30_000) -> dict[str, Any]:
    """The recorded Binance depth frames pushed by a fake venue as fast as the daemon reads them,
    through parser, sync, venue book, consolidation and encoded deltas for ``subscribers``
    (``frames`` generated ones when the recording is absent)."""
    recording = _recording(rounds)
    if recording is None:
        return {"source": "generated"} | bench_ingest_generated("binance", frames)

    return {"source": loadgen.CAPTURE} | _run(run_crossbook, recording, 300.0, subscribers)


GENERATED = {
    "binance": ("BTC-USDT", 'rest_url = "{rest}"\n'),
    "kraken": ("BTC-USD", "depth = 100\n"),
    "okx": ("BTC-USDT", 'rest_url = "{rest}"\n'),
}
"""Connectors ``ingest`` can feed generated frames: (symbol, venue keys besides ``ws_url``).
Kraken's and OKX's captures are a few hundred frames whose sequence ids and checksums cannot be
repeated; Binance's frames are generated only when its recording is absent."""


WHOLE_BOOK = 100
"""Levels a side of the generated books, at most (Kraken's subscribed depth)."""


def bench_ingest_generated(connector: str, frames: int, levels_per_frame: int = 20) -> dict[str, Any]:
    """``frames`` generated frames of the connector's real format (sequence ids, checksums), made
    by its test kit's fake venue and pushed as fast as the daemon reads them."""
    return _run(_generated_run, connector, frames, levels_per_frame)


async def _generated_run(connector: str, frames: int, levels_per_frame: int) -> dict[str, Any]:
    from crossbook.testing.fakevenue import FakeVenue
    from crossbook.testing.market import FakeMarket
    from crossbook_binance.fake import BinanceDialect
    from crossbook_kraken.fake import KrakenDialect
    from crossbook_okx.fake import OkxDialect

    dialects = {"binance": BinanceDialect, "kraken": KrakenDialect, "okx": OkxDialect}
    symbol, keys = GENERATED[connector]
    market = FakeMarket([symbol], seed=5, levels=WHOLE_BOOK - 10)  # changes reach 5 levels beyond
    fake = FakeVenue(dialects[connector](market), market)
    async with fake.running():
        table = (
            f'[venues.{connector}]\nconnector = "{connector}"\nsymbols = ["{symbol}"]\ntrades = false\n'
            f'ws_url = "{fake.ws_url}"\nidle_timeout = 600\n' + keys.format(rest=fake.rest_url)
        ) + f"[consolidated]\ndepth = {WHOLE_BOOK}\n"  # the API then serves the whole book to check
        with _daemon(table) as (proc, api, metrics):
            subs = await loadgen.subscribers(api, 1, [f"book.{symbol}", f"bbo.{symbol}"], batch=True)
            with anyio.fail_after(30):
                while True:  # another process: nothing to await but its metrics
                    if await _live_and_in_sync(metrics):
                        break
                    await anyio.sleep(0.05)
            conn = next(c for c in fake.connections if symbol in c.symbols)
            assert conn.ws is not None
            # Seconds of work for large --frames: in a thread, so the fake venue still answers pings
            # (and the idle timeout above outlasts the silence).
            encoded = await anyio.to_thread.run_sync(
                loadgen.encode_changes, fake, conn, symbol, frames, levels_per_frame
            )
            level_updates = sum(_frame_levels(frame) for frame in encoded)
            before = await anyio.to_thread.run_sync(_metric, metrics, "crossbook_venue_messages_total")
            skipped = await anyio.to_thread.run_sync(_metric, metrics, "crossbook_skipped_events_total")
            started = t0, cpu0 = time.perf_counter(), loadgen.cpu_seconds(proc.pid)
            for frame in encoded:
                await conn.ws.send(frame)
            await conn.ws.send(loadgen.SENTINEL.decode())  # unreadable: counted as the one skip
            with anyio.fail_after(300):
                while True:
                    body = await anyio.to_thread.run_sync(loadgen.scrape, metrics)
                    t1, cpu1 = time.perf_counter(), loadgen.cpu_seconds(proc.pid)
                    if loadgen.metric_value(body, "crossbook_skipped_events_total") > skipped:
                        break
                    count = loadgen.metric_value(body, "crossbook_venue_messages_total") - before
                    await anyio.sleep(poll_interval(started, t1, count, len(encoded)))
            in_sync = await _live_and_in_sync(metrics)
            book = await loadgen.api_book(api, symbol, WHOLE_BOOK)
            loadgen.close(subs)
    truth = market.books[symbol]
    return {
        "messages": len(encoded),
        "level_updates": level_updates,
        "seconds": t1 - t0,
        "level_updates_per_s": level_updates / (t1 - t0),
        "messages_per_s": len(encoded) / (t1 - t0),
        "cpu_us_per_message": (cpu1 - cpu0) / len(encoded) * 1e6,
        "daemon_cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "book_live_without_resync": in_sync,
        "book_ok": book == (truth.bids(), truth.asks()),
    }


def _frame_levels(frame: str) -> int:
    """Levels a Binance, Kraken v2 or OKX book frame carries."""
    data = orjson.loads(frame)["data"]
    if isinstance(data, list):  # Kraken, OKX
        return len(data[0]["bids"]) + len(data[0]["asks"])
    return len(data["b"]) + len(data["a"])


def bench_fanout(seconds: float, counts: list[int], rate: float, batch: bool = True) -> dict[str, Any]:
    """Messages/s delivered to 1, 100, 1000 subscribers of ``book`` and ``bbo`` (venue at ``rate``)."""
    return {f"{n}_subscribers": _paced(seconds, n, rate, batch, 0) for n in counts}


def bench_latency(
    seconds: float, subscribers: int, rate: float, batch: bool = True, linger_ms: int | None = None
) -> dict[str, Any]:
    """Venue frame received by the daemon -> subscriber received, at a steady ``rate``; with
    ``linger_ms``, each subscriber has the daemon hold its messages that long."""
    return _paced(seconds, subscribers, rate, batch, 5, linger_ms)


def _paced(
    seconds: float, subscribers: int, rate: float, batch: bool, probes: int, linger_ms: int | None = None
) -> dict[str, Any]:
    warmup = 1.0
    per_round = 3450  # the recorded diffs after the capture's snapshot
    recording = _recording(max(1, round((seconds + warmup + 2) * rate / per_round)))
    if recording is None:
        return {"skipped": f"capture {loadgen.CAPTURE} not present"}
    return _run(_paced_run, recording, seconds, warmup, subscribers, rate, batch, probes, linger_ms)


async def _paced_run(
    recording: loadgen.Recording,
    seconds: float,
    warmup: float,
    subscribers: int,
    rate: float,
    batch: bool,
    probes: int,
    linger_ms: int | None,
) -> dict[str, Any]:
    venue = loadgen.FakeBinance(recording, rate=rate)
    async with venue.serving() as port:
        with _daemon(loadgen.daemon_venue(port), MANY_CLIENTS) as (proc, api, metrics):
            subs = await loadgen.subscribers(
                api, subscribers, BOOK_CHANNELS, batch=batch, probes=probes, linger_ms=linger_ms
            )
            venue.ready.set()
            await anyio.sleep(warmup)
            for sub in subs:
                sub.latencies_ns.clear()
            msgs0 = await anyio.to_thread.run_sync(_metric, metrics, "crossbook_venue_messages_total")
            got0, cpu0, t0 = sum(s.messages for s in subs), loadgen.cpu_seconds(proc.pid), time.perf_counter()
            bytes0 = sum(s.bytes for s in subs)
            await anyio.sleep(seconds)
            got1, cpu1, t1 = sum(s.messages for s in subs), loadgen.cpu_seconds(proc.pid), time.perf_counter()
            bytes1 = sum(s.bytes for s in subs)
            msgs1 = await anyio.to_thread.run_sync(_metric, metrics, "crossbook_venue_messages_total")
            ok = await _live_and_in_sync(metrics)
            loadgen.close(subs)
            stopping = time.monotonic()
            proc.terminate()  # while this loop still serves the venue and the subscribers' closes
            await anyio.to_thread.run_sync(proc.wait, 30)
            stop_seconds = time.monotonic() - stopping
    cpu_share = (cpu1 - cpu0) / (t1 - t0)
    figures = {
        "venue_messages_per_s": (msgs1 - msgs0) / (t1 - t0),
        "client_messages_per_s": (got1 - got0) / (t1 - t0),
        "daemon_cpu_share": cpu_share,
        # Messages delivered per second of the daemon's CPU: below saturation, what one core would
        # deliver with this many messages per write (an estimate, not a measured rate).
        "client_messages_per_cpu_second": (got1 - got0) / max(cpu1 - cpu0, 1e-9),
        "client_bytes_per_message": (bytes1 - bytes0) / max(got1 - got0, 1),
        "subscribers": subscribers,
        "batched": batch,
        "linger_ms": linger_ms,
        "book_live_without_resync": ok,
        "daemon_stop_seconds": stop_seconds,
    }
    if probes:
        figures |= loadgen.percentiles([x for s in subs[:probes] for x in s.latencies_ns])
    return figures


def _run(func: Any, *args: Any) -> dict[str, Any]:
    """Run a scenario's client side on uvloop when it is installed (it measures, so it must keep up)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return dict(anyio.run(func, *args))
    return dict(anyio.run(func, *args, backend_options={"use_uvloop": True}))


def _metric(port: int, name: str) -> float:
    return loadgen.metric_value(loadgen.scrape(port), name)


def bench_e2e(seconds: float, subscribers: int, rate: float, stalled: int = 0) -> dict[str, Any]:
    with _sim_daemon(rate) as (proc, api, metrics):
        figures: dict[str, Any] = anyio.run(_clients, api, metrics, seconds, subscribers, stalled)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak_kib = re.search(r"VmHWM:\s+(\d+)", status)
        figures["daemon_peak_rss_mib"] = int(peak_kib.group(1)) / 1024 if peak_kib else float("nan")
        return figures


def _stalled_client(api: int) -> socket.socket:
    """A subscriber that completes the handshake and subscribes, then never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.connect(("127.0.0.1", api))
    sock.sendall(
        b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.recv(4096)
    request = b'{"op":"subscribe","id":1,"channels":["book.BTC-USDT","bbo.BTC-USDT"],"depth":20}'
    sock.sendall(bytes([0x81, 0x80 | len(request)]) + b"\0\0\0\0" + request)
    return sock


async def _clients(api: int, metrics: int, seconds: float, subscribers: int, stalled: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    stalled_socks = [await anyio.to_thread.run_sync(_stalled_client, api) for _ in range(stalled)]

    latencies: list[int] = []
    received = [0]

    async def client() -> None:
        async with connect(f"ws://127.0.0.1:{api}/v1/stream", max_size=None) as ws:
            await ws.send('{"op":"subscribe","id":1,"channels":["book.BTC-USDT","bbo.BTC-USDT"],"depth":20}')
            while True:
                data = await ws.recv()
                now = time.time_ns()
                received[0] += 1
                if received[0] % 7 == 0:
                    msg = orjson.loads(data)
                    if msg.get("type") == "delta":
                        latencies.append(now - msg["ts"])

    async with anyio.create_task_group() as tg:
        for _ in range(subscribers):
            tg.start_soon(client)
        await anyio.sleep(1.0)  # warm up: subscriptions and snapshots
        latencies.clear()
        msgs0, recv0, t0 = _metric(metrics, "crossbook_venue_messages_total"), received[0], time.perf_counter()
        await anyio.sleep(seconds)
        msgs1, recv1, t1 = _metric(metrics, "crossbook_venue_messages_total"), received[0], time.perf_counter()
        tg.cancel_scope.cancel()
    lat = sorted(latencies) or [0]
    return {
        "venue_messages_per_s": (msgs1 - msgs0) / (t1 - t0),
        "client_messages_per_s": (recv1 - recv0) / (t1 - t0),
        "latency_p50_us": lat[len(lat) // 2] / 1e3,
        "latency_p99_us": lat[int(len(lat) * 0.99)] / 1e3,
        "latency_max_us": lat[-1] / 1e3,
        "latency_mean_us": statistics.fmean(lat) / 1e3,
        "subscribers": subscribers,
        "stalled_subscribers": len(stalled_socks),
    } | _close(stalled_socks)


def _close(socks: list[socket.socket]) -> dict[str, Any]:
    for sock in socks:
        sock.close()
    return {}
