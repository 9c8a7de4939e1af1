"""The benchmark's in-process scenarios, no daemon child process: ``core``, the in-process half
of ``memory``, ``captures`` and ``stages`` (see :mod:`crossbook_bench.__main__`); and what the
daemon-run scenarios share with them: the sim venues, the book channels and the recording."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

import orjson

from crossbook.api.hub import DEFAULT_DEPTH, Hub
from crossbook.core import exact
from crossbook.core.engine import Engine
from crossbook.core.model import BookDelta, BookState
from crossbook.testing import captures
from crossbook_bench import floor, loadgen

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


def bench_memory_in_process() -> dict[str, Any]:
    """The in-process half of ``memory``: bytes per level of a venue book and of a consolidated
    book, bytes per idle subscriber in the hub."""
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
    }


BOOK_CHANNELS = ["book.BTC-USDT", "bbo.BTC-USDT"]


def _recording(rounds: int) -> loadgen.Recording | None:
    path = captures.captures_dir() / loadgen.CAPTURE
    return loadgen.load_recording(path, rounds=rounds) if path.exists() else None


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
    from crossbook.toolkit.handover import Connection
    from crossbook.toolkit.streaming import StreamingConnector

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
        assert isinstance(connector, StreamingConnector)
        handover = connector.handover  # what the connector's reader runs every frame through
        conn = Connection(connector.protocol.streams([symbol])[0])
        engine = Engine({"binance": [symbol]}, 10**18)
        hub = Hub(engine, 50, {"binance": "binance"})
        session = hub.open()
        hub.receive(session, orjson.dumps({"op": "subscribe", "id": 1, "channels": BOOK_CHANNELS}), 0)
        engine.ingest("binance", handover.opened(conn, False, "reconnect", 0, 0.0).events, 0)
        engine.ingest("binance", handover.snapshot(symbol, recording.snapshot.encode(), 0).events, 0)
        spent = dict.fromkeys(("parse_sync", "engine", "hub"), 0.0)
        clock = time.perf_counter
        for i, frame in enumerate(recording.frames):
            t0 = clock()
            events = handover.received(conn, frame, i, 0.0).events
            t1 = clock()
            changes = engine.ingest("binance", events, i)
            t2 = clock()
            hub.publish(changes, i)
            session.drain()
            t3 = clock()
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
