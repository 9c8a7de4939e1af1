"""Benchmark: ``python -m crossbook_bench.bench [--only SCENARIO ...] [--seconds S]``.

Bounded scenarios, all on this machine (loopback only), printed as a table and as JSON:

1. ``core``: pre-generated sim deltas for 3 venues pushed through the engine (venue books and
   consolidation) and the hub (diffing and encoding for subscribed sessions, no sockets).
2. ``ingest``: the recorded Binance spot depth stream (``shared/captures``, ``--rounds`` times
   over) pushed by a fake Binance (WebSocket + REST) as fast as the daemon, a child process,
   reads it, with one batched subscriber of ``book``/``bbo``: level updates/s and CPU per frame
   through parser, sync, venue book, consolidation and encoded deltas; the book must end live
   and equal to the replayed one. Then the same for Kraken v2 and OKX on ``--frames`` frames of
   ~20 levels that their test kits' fake venues generate (sequence ids, Kraken's checksums), the
   book ending equal to the fake market's (Binance's too, when its recording is absent).
3. ``fanout``: the fake venue at ``--venue-rate`` frames/s (by default more than the daemon takes,
   so the figures are its capacity); venue frames/s taken and messages/s delivered to 1, 100 and
   1,000 batched subscribers of ``book.BTC-USDT`` and ``bbo.BTC-USDT``. Frames read together make
   one update per channel, so a saturated daemon sends fewer, later states: its fan-out capacity
   is ``client_messages_per_cpu_second`` of a run it keeps up with (``latency_1k``).
4. ``latency``: 100 subscribers, the venue at ``--latency-rate`` (and at 1,000) frames/s: venue
   frame received by the daemon -> subscriber received, p50/p99/max, timed by 5 probes.
5. ``e2e``: the daemon with 3 sim venues at ``--rate`` messages/s each and ``--subscribers``
   websockets clients: delivered messages/s, latency, peak RSS. ``stalled``: the same beside
   ``--stalled`` subscribers that never read.
6. ``memory``: bytes per level of a venue book and of a consolidated book, bytes per idle
   subscriber in the hub, the daemon's RSS per idle WebSocket subscriber, and its RSS after an
   hour of the venue's time (the ``ingest`` recording replayed, ~11 rounds) and after each round.
7. ``captures``: every built-in connector's parser and book syncs on its real captures.
8. ``versus``: crossbook against cryptofeed on the same stream (:mod:`crossbook_bench.versus`).
9. ``stages``: the ``ingest`` frames in this process, no sockets: µs per frame in parse + book
   sync, in the engine (venue and consolidated books), and in the hub (views, diffs, encoding
   for one session of ``book`` and ``bbo``): where a frame's time goes, without I/O. Beside them,
   the same work inlined in one loop (:mod:`crossbook_bench.floor`): what the structure costs.
10. ``writes``: the floor under ``fanout`` and ``latency``: CPU per bare ``send()`` of a batched
    update's bytes to each of 100 loopback sockets that another process drains, 1,000 rounds a
    second (as ``latency_1k``'s frames come), and what it bounds on one core with nothing else
    to do: messages per CPU-second at 1 and 2 messages a write, the messages a write must carry
    for 1M a second, and the median subscriber's wait for the writes up to its own.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import random
import re
import selectors
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import orjson

from crossbook import __version__, compiled
from crossbook.api.hub import DEFAULT_DEPTH, Hub
from crossbook.core import exact
from crossbook.core.engine import Engine
from crossbook.core.model import BookDelta, BookState
from crossbook.service.server import linger_seconds
from crossbook.testing import captures
from crossbook_bench import floor, loadgen
from crossbook_bench.versus import bench_versus, poll_interval, positive, run_crossbook

VENUES = ("sim-a", "sim-b", "sim-c")


def bench_core(seconds: float, subscribers: int) -> dict[str, Any]:
    from crossbook_sim.market import SimBook, shared_mid, stable_hash

    engine = Engine({v: ["BTC-USDT"] for v in VENUES}, stale_after_ns=10**15)
    hub = Hub(engine, 50, {v: "sim" for v in VENUES})
    books = {
        v: SimBook(v, "BTC-USDT", levels=200, tick=None, rng=random.Random(stable_hash(v)), mid=shared_mid("BTC-USDT"))
        for v in VENUES
    }
    t = time.time_ns()
    for venue, book in books.items():
        engine.ingest(venue, [book.snapshot(t)], t)
    sessions = [hub.open() for _ in range(subscribers)]
    for s in sessions:
        hub.receive(s, b'{"op":"subscribe","id":1,"channels":["book.BTC-USDT","bbo.BTC-USDT"],"depth":20}', t)
    deltas: list[tuple[str, BookDelta]] = []
    for i in range(20_000):
        t += 1_000_000
        venue = VENUES[i % 3]
        deltas.append((venue, books[venue].step(t)))
    levels = messages = sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for venue, delta in deltas:
            changes = engine.ingest(venue, (delta,), delta.recv_ns)
            for s in hub.publish(changes, delta.recv_ns):
                sent += len(s.drain())
            levels += len(delta.bids) + len(delta.asks)
            messages += 1
            if messages % 1000 == 0 and time.perf_counter() >= deadline:
                break
        # replaying the same deltas again is still valid: absolute sizes, removals of absent levels ok
    elapsed = time.perf_counter() - start
    return {
        "level_updates_per_s": levels / elapsed,
        "venue_messages_per_s": messages / elapsed,
        "client_messages_per_s": sent / elapsed,
        "subscribers": subscribers,
    }


def bench_memory(subscribers: int = 500) -> dict[str, Any]:
    import tracemalloc

    from crossbook.core.book import L2Book
    from crossbook.core.consolidated import ConsolidatedBook

    n = 50_000
    texts = [(f"{60000 + i / 100:.2f}", f"{(i % 997) / 1000 + 0.001:.8f}") for i in range(n)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    # A book owns its Decimals: count them, equal texts sharing one as the parse cache has them,
    # but not the cache itself (bounded and shared by every book).
    shared: dict[str, Decimal] = {}
    levels = [(shared.setdefault(p, Decimal(p)), shared.setdefault(q, Decimal(q))) for p, q in texts]
    book = L2Book()
    book.apply(levels, [])
    del levels, shared
    per_level = (tracemalloc.get_traced_memory()[0] - before) / n
    before = tracemalloc.get_traced_memory()[0]
    consolidated = ConsolidatedBook()  # shares the venue books' Decimals
    consolidated.update("venue-a", book.bids(), [])
    per_consolidated = (tracemalloc.get_traced_memory()[0] - before) / n
    engine = Engine({v: ["BTC-USDT"] for v in VENUES}, stale_after_ns=10**15)
    hub = Hub(engine, 50, {v: "sim" for v in VENUES})
    before = tracemalloc.get_traced_memory()[0]
    sessions = [hub.open() for _ in range(1000)]
    for session in sessions:
        hub.receive(session, b'{"op":"subscribe","id":1,"channels":["book.BTC-USDT","bbo.BTC-USDT"]}', 0)
        session.drain()
    per_session = (tracemalloc.get_traced_memory()[0] - before) / len(sessions)
    tracemalloc.stop()
    del book, consolidated
    return {
        "venue_book_bytes_per_level": per_level,
        "consolidated_bytes_per_level": per_consolidated,
        "hub_bytes_per_idle_subscriber": per_session,
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


BOOK_CHANNELS = ["book.BTC-USDT", "bbo.BTC-USDT"]


def _recording(rounds: int) -> loadgen.Recording | None:
    path = captures.captures_dir() / loadgen.CAPTURE
    return loadgen.load_recording(path, rounds=rounds) if path.exists() else None


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


CAPTURES: list[tuple[str, str, str, list[str] | None]] = [
    # (connector, capture file, reader, symbols; None: from the capture's header).
    # OKX is replayed with in-stream snapshots (its 2022 capture has them) and Bybit's linear
    # connection only: see CAPTURE_OPTIONS.
    ("binance", "binance/binance_spot_btcusdt_depth100ms_20240808.hftbacktest.gz", "hftbacktest", ["BTC-USDT"]),
    (
        "binance-futures",
        "binance_futures/binance_usdm_btcusdt_depth0ms_20240808.hftbacktest.gz",
        "hftbacktest",
        ["BTC-USDT-PERP"],
    ),
    ("coinbase", "coinbase/coinbase_advanced_l2_btc_eth_20260809.cryptofeed.jsonl.gz", "cryptofeed", None),
    ("bitstamp", "bitstamp/bitstamp_diff_order_book_10pairs_20220105.cryptofeed.jsonl.gz", "cryptofeed", None),
    ("kraken", "kraken/kraken_v2_minagbp_d25_20260816.depthcharge.ndjson", "depthcharge", ["MINA-GBP"]),
    (
        "okx",
        "okx/okx_books_3inst_20220513.cryptofeed.jsonl.gz",
        "cryptofeed",
        ["BTC-USD-220527", "UNI-USD-PERP", "BTC-USDT"],
    ),
    (
        "bybit",
        "bybit/bybit_v5_orderbook200_linear_spot_20260809.cryptofeed.jsonl.gz",
        "cryptofeed",
        ["BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP", "DOGE-USDT-PERP"],
    ),
]
CAPTURE_OPTIONS: dict[str, tuple[dict[str, Any], str | None]] = {
    # connector: (config keys, the recorded connection to replay)
    "kraken": ({"depth": 25}, None),
    "okx": ({"snapshot": "stream"}, None),
    "bybit": ({"category": "linear"}, "BYBIT.ws.2"),
}


def bench_captures(rounds: int = 3) -> dict[str, Any]:
    """Level updates/s through each connector's parse + book sync on real captures (best of rounds,
    each starting with the parse caches empty)."""
    import gzip

    from crossbook.service.plugins import load_connectors
    from crossbook.testing.replay import Replay
    from crossbook.toolkit.venue import BookUpdate

    registry = load_connectors()
    base = captures.captures_dir()
    out: dict[str, Any] = {}
    for connector_id, relative, reader, symbols in CAPTURES:
        path = base / relative
        spec = registry.get(connector_id)
        if spec is None or not path.exists():
            continue
        if symbols is None:
            with gzip.open(path, "rt") as fh:
                symbols = list(orjson.loads(fh.readline())["config"]["l2_book"])
        readers = {
            "hftbacktest": captures.read_hftbacktest,
            "cryptofeed": captures.read_cryptofeed,
            "depthcharge": captures.read_depthcharge,
        }
        keys, conn = CAPTURE_OPTIONS.get(connector_id, ({}, None))
        records = [r for r in readers[reader](path) if conn is None or r.conn == conn]
        records.sort(key=lambda r: r.ts_ns)
        best = 0.0
        for _ in range(rounds):
            exact.clear_caches()  # each pass parses as the first did
            connector = spec.factory(connector_id, tuple(symbols), spec.config_model(**keys))
            rp = Replay(connector.protocol, connector.make_sync, symbols)  # type: ignore[attr-defined]
            for sync in rp.syncs.values():
                sync.snapshot_limit = None  # a capture has one snapshot: taken as the whole book
            levels = 0
            started = time.perf_counter()
            for rec in records:
                if rec.kind == "recv":
                    for o in rp.frame(rec.data, rec.ts_ns):
                        if isinstance(o, BookUpdate):
                            levels += len(o.bids) + len(o.asks)
                elif rec.kind == "http" and (symbol := _snapshot_symbol(rec.url, symbols)) is not None:
                    rp.snapshot(symbol, rec.data, rec.ts_ns)
            best = max(best, levels / (time.perf_counter() - started))
        out[connector_id] = {"level_updates_per_s": best, "capture": relative}
    return out


def bench_stages(rounds: int = 3) -> dict[str, Any]:
    """µs per recorded Binance frame in each sans-I/O stage (best of ``rounds`` passes, each
    starting with the parse caches empty, as the floor's)."""
    from crossbook.service.plugins import load_connectors
    from crossbook.testing.replay import Replay

    recording = _recording(1)
    if recording is None:
        return {"skipped": f"capture {loadgen.CAPTURE} not present"}
    spec = load_connectors().get("binance")
    assert spec is not None
    symbol = "BTC-USDT"
    best: dict[str, float] = {}
    for _ in range(rounds):
        exact.clear_caches()  # each pass parses as the first did
        connector = spec.factory(
            "binance", (symbol,), spec.config_model.model_validate({"snapshot_limit": loadgen.SNAPSHOT_LIMIT})
        )
        replay = Replay(connector.protocol, connector.make_sync, [symbol])  # type: ignore[attr-defined]
        engine = Engine({"binance": [symbol]}, 10**18)
        hub = Hub(engine, 50, {"binance": "binance"})
        session = hub.open()
        hub.receive(session, orjson.dumps({"op": "subscribe", "id": 1, "channels": BOOK_CHANNELS}), 0)
        replay.snapshot(symbol, recording.snapshot, 0)
        spent = dict.fromkeys(("parse_sync", "engine", "hub"), 0.0)
        clock = time.perf_counter
        for i, frame in enumerate(recording.frames):
            t0 = clock()
            replay.frame(frame, i)
            t1 = clock()
            changes = engine.ingest("binance", replay.events, i)
            t2 = clock()
            hub.publish(changes, i)
            session.drain()
            t3 = clock()
            replay.events.clear()
            spent["parse_sync"] += t1 - t0
            spent["engine"] += t2 - t1
            spent["hub"] += t3 - t2
        assert engine.state(symbol, "binance") is BookState.LIVE
        exact.clear_caches()
        spent["floor"], top = floor.replay(recording.snapshot, recording.frames, "binance", DEFAULT_DEPTH)
        book = engine.consolidated[symbol]
        sides = (book.top_bids(DEFAULT_DEPTH), book.top_asks(DEFAULT_DEPTH))
        assert top == [[[p, s] for p, s, _ in side] for side in sides], "the floor did other work"
        for stage, seconds in spent.items():
            per_frame = seconds / len(recording.frames) * 1e6
            best[stage] = min(best.get(stage, per_frame), per_frame)
    floor_us = best.pop("floor")
    total = sum(best.values())
    return {f"{stage}_us_per_frame": us for stage, us in best.items()} | {
        "total_us_per_frame": total,
        "level_updates_per_s": recording.level_updates / len(recording.frames) / total * 1e6,
        "frames": len(recording.frames),
        "floor_us_per_frame": floor_us,
        "floor_level_updates_per_s": recording.level_updates / len(recording.frames) / floor_us * 1e6,
        "total_over_floor": total / floor_us,
    }


def _snapshot_symbol(url: str | None, symbols: list[str]) -> str | None:
    """Which symbol a recorded REST snapshot is for (a bare snapshot line: the only symbol)."""
    if url is None:
        return symbols[0]
    if "depth" not in url and "order_book" not in url:
        return None
    compact = url.replace("-", "").replace("_", "").lower()
    return next((s for s in symbols if s.replace("-", "").lower() in compact), None)


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


WRITE_BYTES = 720
"""What the daemon writes to a batched subscriber of ``book`` (depth 20) and ``bbo`` for one
recorded Binance frame, about: ``client_bytes_per_message`` of ``latency_1k`` (~360), twice."""


WRITES_CONNECT_SECONDS = 10.0
"""How long ``writes`` waits for its reader process's connections: a reader that failed must not
hang the bench."""


def bench_writes(
    seconds: float, subscribers: int = 100, rate: float = 1000.0, payload: int = WRITE_BYTES
) -> dict[str, Any]:
    """CPU per ``send()`` of ``payload`` bytes to each of ``subscribers`` loopback sockets in turn,
    ``rate`` times a second (as updates come: the reader, another process, then waits for each),
    for ``seconds``. One write per subscriber per update is the least fan-out does; on loopback
    its cost includes the kernel's delivery to the reader, as the daemon's does."""
    rounds = max(1, round(seconds * rate))
    receiving, sending = multiprocessing.Pipe(duplex=False)
    conns: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0), backlog=subscribers) as server:
        reader = multiprocessing.get_context("fork").Process(
            target=_drain, args=(server.getsockname()[1], subscribers, sending), daemon=True
        )
        reader.start()
        sending.close()  # the reader's is then the only sending end: its exit is seen
        try:
            server.settimeout(WRITES_CONNECT_SECONDS)
            try:
                for _ in range(subscribers):  # one at a time: a timeout leaves those accepted in conns
                    conns.append(server.accept()[0])
            except TimeoutError:
                raise RuntimeError(f"the reader connected {len(conns)} of {subscribers} sockets") from None
            data = b"x" * payload
            for conn in conns:
                conn.setblocking(True)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio and uvloop do
            cpu = 0.0
            tick = time.perf_counter()
            for _ in range(rounds):
                cpu0 = time.process_time()
                for conn in conns:
                    conn.sendall(data)
                cpu += time.process_time() - cpu0
                tick += 1 / rate
                time.sleep(max(0.0, tick - time.perf_counter()))  # pacing, as a venue's frames come
        finally:
            for conn in conns:
                conn.close()
            try:
                received = receiving.recv() if receiving.poll(60) else -1
            except EOFError:  # the reader died
                received = -1
            reader.join(10)
            if reader.is_alive():
                reader.terminate()
    us = cpu / (rounds * subscribers) * 1e6
    return {
        "subscribers": subscribers,
        "payload_bytes": payload,
        "writes": rounds * subscribers,
        "all_bytes_read": received == rounds * subscribers * payload,
        "cpu_us_per_write": us,
        "messages_per_cpu_second_1_a_write": 1e6 / us,
        "messages_per_cpu_second_2_a_write": 2e6 / us,
        "messages_a_write_for_1M_per_s": us,  # 1M a second leaves 1 µs a message
        "median_subscriber_wait_us": (subscribers + 1) / 2 * us,
    }


def _drain(port: int, count: int, report: Any) -> None:
    """The reading side of :func:`bench_writes`: ``count`` connections, read until each closes;
    reports the bytes read."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    with selectors.DefaultSelector() as selector:
        for conn in conns:
            selector.register(conn, selectors.EVENT_READ)
        total = 0
        while selector.get_map():
            for key, _ in selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                chunk = sock.recv(1 << 20)
                total += len(chunk)
                if not chunk:
                    selector.unregister(sock)
                    sock.close()
    report.send(total)


SCENARIOS = [
    "core",
    "ingest",
    "fanout",
    "latency",
    "e2e",
    "stalled",
    "memory",
    "captures",
    "stages",
    "versus",
    "writes",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossbook_bench.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per scenario")
    parser.add_argument("--subscribers", type=int, default=10, help="core, e2e: API subscribers")
    parser.add_argument("--rate", type=float, default=1000.0, help="e2e: messages/s of each of the 3 sim venues")
    parser.add_argument("--venue-rate", type=float, default=10_000.0, help="fanout: Binance frames/s of the fake venue")
    parser.add_argument("--latency-rate", type=float, default=10_000.0, help="latency: frames/s of the fake venue")
    parser.add_argument("--rounds", type=int, default=20, help="ingest, versus: times the recorded diffs are served")
    parser.add_argument(
        "--frames",
        type=int,
        default=30_000,
        help="ingest: generated frames (Kraken, OKX; Binance without its recording)",
    )
    parser.add_argument(
        "--linger-ms", type=_linger_ms, default=10, help="latency: also at 1,000 frames/s, subscribers held this long"
    )
    parser.add_argument("--pairs", type=positive, default=3, help="versus: runs of each side, in turn")
    parser.add_argument("--only", choices=SCENARIOS, action="append", help="run these scenarios (repeatable)")
    parser.add_argument("--stalled", type=int, default=100, help="stalled: subscribers that never read")
    args = parser.parse_args(argv)
    only = set(args.only or SCENARIOS)
    results: dict[str, dict[str, Any]] = {"build": {"version": __version__, "compiled": compiled()}}
    if "core" in only:
        results["core"] = bench_core(args.seconds, args.subscribers)
    if "ingest" in only:
        results["ingest"] = {"binance": bench_ingest(args.rounds, 1, args.frames)}
        for connector in ("kraken", "okx"):
            results["ingest"][connector] = bench_ingest_generated(connector, args.frames)
    if "fanout" in only:
        results["fanout"] = bench_fanout(args.seconds, [1, 100, 1000], args.venue_rate)
    if "latency" in only:
        results["latency"] = bench_latency(args.seconds, 100, args.latency_rate)
        results["latency_1k"] = bench_latency(args.seconds, 100, 1000.0)
        results["latency_1k_linger"] = bench_latency(args.seconds, 100, 1000.0, linger_ms=args.linger_ms)
    if "e2e" in only:
        results["e2e"] = bench_e2e(args.seconds, args.subscribers, args.rate)
    if "memory" in only:
        results["memory"] = bench_memory()
    if "captures" in only:
        results["captures"] = bench_captures()
    if "stalled" in only:
        results["stalled"] = bench_e2e(args.seconds, args.subscribers, args.rate, args.stalled)
    if "stages" in only:
        results["stages"] = bench_stages()
    if "versus" in only:
        results["versus"] = bench_versus(rounds=args.rounds, pairs=args.pairs)
    if "writes" in only:
        results["writes"] = bench_writes(args.seconds)
    for scenario, figures in results.items():
        _table(scenario, figures)
    print(orjson.dumps(results).decode())
    return 0


def _linger_ms(text: str) -> int:
    """An argparse type: what a stream URL's ``linger_ms`` takes (the server's own check)."""
    try:
        seconds = linger_seconds(urlencode({"linger_ms": text}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert seconds is not None
    return round(seconds * 1000)


def _table(name: str, figures: dict[str, Any], indent: str = "") -> None:
    print(f"{indent}[{name}]")
    for key, value in figures.items():
        if isinstance(value, dict):
            _table(key, value, indent + "  ")
        elif isinstance(value, float):
            print(f"{indent}  {key:<36} {value:>14,.1f}")
        else:
            print(f"{indent}  {key:<36} {value!s:>14}")


if __name__ == "__main__":
    raise SystemExit(main())
