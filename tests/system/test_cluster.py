"""The cluster roles over a real nats-server (JetStream, loopback, a random port, its own store):
an ingest and two edges in this process, the venues played by the test through the scripted
connector. Edges equal the ingest; NATS restarts and ingest restarts leave the edges' books
``syncing``, then ``live`` and equal again."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

import scripted_plugin
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Side, Trade
from crossbook.service.app import Addresses, Daemon
from crossbook.service.config import load
from crossbook.service.plugins import load_connectors
from support import NatsServer, nats_server_binary

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

VENUES = """
plugins = ["scripted_plugin"]
[consolidated]
depth = 10
stale_after = 60
[server]
host = "127.0.0.1"
port = {port}
[metrics]
host = "127.0.0.1"
port = 0
[cluster]
role = "{role}"
node = "{role}-{n}"
nats_url = ["{url}"]
{auth}
[venues.alpha]
connector = "scripted"
symbols = ["BTC-USDT", "ETH-USDT"]
[venues.beta]
connector = "scripted"
symbols = ["BTC-USDT"]
"""
BOOKS = [("BTC-USDT", "alpha"), ("ETH-USDT", "alpha"), ("BTC-USDT", "beta")]


@contextlib.asynccontextmanager
async def node(
    tmp_path: Path, role: str, n: int, url: str, port: int = 0, auth: str = ""
) -> AsyncIterator[tuple[Daemon, Addresses]]:
    path = tmp_path / f"{role}-{n}.toml"
    path.write_text(VENUES.format(role=role, n=n, url=url, port=port, auth=auth))
    config = load(path, environ={})
    daemon = Daemon(config, config.venues(load_connectors(config.settings.plugins)))
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(lambda task_status: daemon.run(handle_signals=False, task_status=task_status))
        yield daemon, addresses
        tg.cancel_scope.cancel()


def state(daemon: Daemon) -> dict[Any, Any]:
    """Every venue book (state, levels) and every consolidated book, as the daemon holds them."""
    out: dict[Any, Any] = {}
    for symbol, venue in BOOKS:
        vb = daemon.engine.books[(symbol, venue)]
        out[(symbol, venue)] = (vb.state, vb.book.bids(), vb.book.asks())
    for symbol in ("BTC-USDT", "ETH-USDT"):
        daemon.engine.watch(symbol)
        book = daemon.engine.consolidated[symbol]
        out[symbol] = (book.top_bids(100), book.top_asks(100))
    return out


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)  # books change in other daemons' callbacks: poll briefly


def play(feeds: dict[str, Any], round_: int) -> None:
    """One round of the venues: snapshots first time, then deltas and trades."""
    for venue, symbols in (("alpha", ("BTC-USDT", "ETH-USDT")), ("beta", ("BTC-USDT",))):
        feed = feeds[venue]
        for symbol in symbols:
            now = feed.now_ns()
            if round_ == 0:
                bids = [(D(f"{100 - i}.5"), D(i + 1)) for i in range(5)]
                asks = [(D(f"{101 + i}.25"), D(i + 2)) for i in range(5)]
                feed.publish([BookSnapshot(symbol, bids, asks, now)])
            else:
                price = D(f"{100 - round_ % 7}.5")
                feed.publish([BookDelta(symbol, [(price, D(round_ % 3))], [(D("101.25"), D(round_))], now)])
                feed.publish([Trade(symbol, D("101.25"), D("0.1"), Side.BUY, f"{venue}{round_}", now)])


def live_and_equal(ingest: Daemon, *edges: Daemon) -> Callable[[], bool]:
    def check() -> bool:
        truth = state(ingest)
        return all(truth[b][0] is BookState.LIVE for b in BOOKS) and all(state(e) == truth for e in edges)

    return check


def all_states(daemon: Daemon, wanted: BookState) -> Callable[[], bool]:
    return lambda: all(daemon.engine.books[b].state is wanted for b in BOOKS)


async def ingest_feeds() -> dict[str, Any]:
    return {v: await scripted_plugin.feed(v) for v in ("alpha", "beta")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_edges_equal_the_ingest_and_serve_the_api_on_one_port(tmp_path: Path, nats_server: NatsServer) -> None:
    url, port = nats_server.url, free_port()
    async with (
        node(tmp_path, "ingest", 1, url) as (ingest, ingest_at),
        node(tmp_path, "edge", 1, url, port) as (edge1, _),
        node(tmp_path, "edge", 2, url, port) as (edge2, _),
    ):
        feeds = await ingest_feeds()
        for round_ in range(60):
            play(feeds, round_)
            if round_ in (0, 20, 59):
                await until(live_and_equal(ingest, edge1, edge2))
        assert state(edge1)["BTC-USDT"][0], "the consolidated book has levels"
        async with httpx.AsyncClient() as http:
            refused = await http.get(f"http://127.0.0.1:{ingest_at.api_port}/v1/stream")
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
        assert refused.status_code == 404, "an ingest serves no API clients"
        assert ready.status_code == 200
        async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "channels": ["status", "book.BTC-USDT"]}).decode())
            messages = [orjson.loads(await ws.recv()) for _ in range(5)]
        statuses = [m for m in messages if m["type"] == "status"]
        book = next(m for m in messages if m["type"] == "snapshot")
        assert {(m["venue"], m["symbol"], m["state"]) for m in statuses} == {(v, s, "live") for s, v in BOOKS}
        assert messages.index(book) > max(messages.index(m) for m in statuses)
        truth = ingest.engine.consolidated["BTC-USDT"]
        assert [D(level[0]) for level in book["bids"]] == [lv[0] for lv in truth.top_bids(10)]


async def test_a_nats_restart_leaves_edges_syncing_then_live_and_equal(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    async with node(tmp_path, "ingest", 1, url) as (ingest, _), node(tmp_path, "edge", 1, url) as (edge, _):
        feeds = await ingest_feeds()
        play(feeds, 0)
        await until(live_and_equal(ingest, edge))
        nats_server.stop()
        await until(all_states(edge, BookState.SYNCING))
        for round_ in range(1, 10):
            play(feeds, round_)  # the edge misses these
        nats_server.start()
        await until(live_and_equal(ingest, edge), within=20)
        for round_ in range(10, 20):
            play(feeds, round_)
        await until(live_and_equal(ingest, edge))
        resyncs = edge.metrics.registry.get_sample_value(
            "crossbook_resyncs_total", {"venue": "alpha", "symbol": "BTC-USDT", "reason": "bus_disconnected"}
        )
        assert resyncs == 1


async def test_an_ingest_restart_leaves_edges_syncing_then_live(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    async with node(tmp_path, "edge", 1, url) as (edge, edge_at):
        async with node(tmp_path, "ingest", 1, url) as (ingest, _):
            play(await ingest_feeds(), 0)
            await until(live_and_equal(ingest, edge))
        await until(all_states(edge, BookState.SYNCING))
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{edge_at.api_port}/readyz")).status_code == 503
        async with node(tmp_path, "ingest", 2, url) as (ingest, _):
            feeds = await ingest_feeds()
            for round_ in range(10):
                play(feeds, round_)
            await until(live_and_equal(ingest, edge))


async def test_nodes_authenticate_to_nats_with_a_user_and_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "nats").mkdir()
    server = NatsServer(nats_server_binary(), tmp_path / "nats", "--user", "crossbook", "--pass", "s3cret")
    server.start()
    try:
        auth = 'user = "crossbook"\npassword = "s3cret"'
        async with (
            node(tmp_path, "ingest", 1, server.url, auth=auth) as (ingest, _),
            node(tmp_path, "edge", 1, server.url, auth=auth) as (edge, _),
        ):
            play(await ingest_feeds(), 0)
            await until(live_and_equal(ingest, edge))
        assert "s3cret" not in caplog.text
    finally:
        server.stop()
