"""Failover over a real nats-server: two ingest processes on the same fake Binance venue (a leader
and a hot standby, each with its own venue connection) and an edge in this process. SIGKILL or
SIGSTOP the leader mid-stream: the standby wins the venue's lease and the edge's book is back to
``live`` and equal to the venue's; after SIGCONT the old leader is fenced and stands down."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import anyio
import httpx
import nats
import orjson
import pytest
from anyio.abc import TaskGroup
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from crossbook.core.model import BookState, Side
from crossbook.service.app import Daemon
from crossbook.testing.fakevenue import FakeVenue
from crossbook.testing.market import FakeMarket
from crossbook_binance.fake import BinanceDialect
from support import DaemonProcess, NatsServer, daemon_process, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(90)]

SYMBOL, VENUE = "BTC-USDT", "bn"
TAKEOVER_BOUND = 5.0
"""Seconds the test allows from the leader's last bus message to the edge's book live and equal
again (the target is 2 s: the measured figure is printed)."""


def toml(role: str, url: str, fake: FakeVenue) -> str:
    return (
        f'[cluster]\nrole = "{role}"\nnats_url = ["{url}"]\n'
        f'[venues.{VENUE}]\nconnector = "binance"\nsymbols = ["{SYMBOL}"]\nws_url = "{fake.ws_url}"\n'
        f'rest_url = "{fake.rest_url}"\n'
    )


@contextlib.contextmanager
def ingest(tmp_path: Path, name: str, url: str, fake: FakeVenue) -> Iterator[DaemonProcess]:
    path = tmp_path / f"{name}.toml"
    path.write_text(toml("ingest", url, fake))
    with daemon_process("--config", str(path), env={"CROSSBOOK_CLUSTER__NODE": name}) as proc:
        yield proc


async def gauges(proc: DaemonProcess) -> dict[str, float]:
    """The process's cluster gauges for the venue, by metric name."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5)).text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("crossbook_cluster_") and s.labels.get("venue") == VENUE
    }


async def until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``condition()`` holds, polled every 10 ms (it changes in other processes)."""
    start = time.monotonic()
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return time.monotonic() - start


async def until_gauge(proc: DaemonProcess, name: str, value: float, within: float = 20) -> None:
    with anyio.fail_after(within):
        while (await gauges(proc)).get(name) != value:  # noqa: ASYNC110
            await anyio.sleep(0.05)  # another process's metrics: no event to await


class Bus:
    """What the test hears on the venue's subjects: each epoch's last message time and beats' nodes."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        self.count: dict[int, int] = {}
        self.beats: list[tuple[float, str, int]] = []

    async def book(self, msg: Msg) -> None:
        ep = orjson.loads(msg.data)["ep"]
        self.last[ep] = time.monotonic()
        self.count[ep] = self.count.get(ep, 0) + 1

    async def beat(self, msg: Msg) -> None:
        data = orjson.loads(msg.data)
        self.beats.append((time.monotonic(), data["node"], data["ep"]))


@contextlib.asynccontextmanager
async def listening(url: str) -> AsyncIterator[Bus]:
    heard = Bus()
    nc = await nats.connect(url)
    try:
        await nc.subscribe(f"crossbook.v1.book.{VENUE}.*", cb=heard.book)
        await nc.subscribe(f"crossbook.v1.beat.{VENUE}", cb=heard.beat)
        yield heard
    finally:
        await nc.close()


def exact(edge: Daemon, market: FakeMarket) -> bool:
    vb = edge.engine.books[(SYMBOL, VENUE)]
    truth = market.books[SYMBOL]
    return vb.state is BookState.LIVE and vb.book.bids() == truth.bids() and vb.book.asks() == truth.asks()


def followed(edge: Daemon) -> int:
    value = edge.metrics.registry.get_sample_value("crossbook_cluster_epoch", {"venue": VENUE})
    return int(value or 0)


async def stream(fake: FakeVenue, tg: TaskGroup, trades: list[str]) -> anyio.Event:
    """Move the market and trade every 10 ms until the returned event is set (then stop moving);
    the trades' ids go to ``trades``."""
    pause = anyio.Event()

    async def run() -> None:
        while not pause.is_set():
            await fake.step(SYMBOL)
            trades.append((await fake.trade(SYMBOL, Side.BUY, D("0.01"))).trade_id)
            await anyio.sleep(0.01)

    tg.start_soon(run)
    return pause


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, nats_server: NatsServer
) -> AsyncIterator[tuple[FakeVenue, FakeMarket, DaemonProcess, DaemonProcess, Daemon, Bus]]:
    """A fake venue, leader ``a`` and standby ``b`` (both live), an edge live and exact."""
    market = FakeMarket([SYMBOL], seed=5)
    fake = FakeVenue(BinanceDialect(market), market)
    url = nats_server.url
    async with fake.running(), listening(url) as heard:
        with ingest(tmp_path, "ingest-a", url, fake) as a:
            await until_gauge(a, "crossbook_cluster_leader", 1)
            with ingest(tmp_path, "ingest-b", url, fake) as b:
                await fake.wait_connections(2, SYMBOL)
                await until_gauge(b, "crossbook_cluster_lease_state", 0)
                assert (await gauges(b))["crossbook_cluster_leader"] == 0, "b is the standby"
                async with running_daemon(tmp_path, toml("edge", url, fake)) as (edge, edge_at):
                    edge.api_port = edge_at.api_port  # type: ignore[attr-defined]
                    await until(lambda: exact(edge, market), 20, "the edge is live and exact")
                    yield fake, market, a, b, edge, heard


async def take_over(
    fake: FakeVenue, market: FakeMarket, edge: Daemon, heard: Bus, stop: Callable[[], None], trades: list[str]
) -> tuple[int, int, float]:
    """Stop the leader mid-stream; returns the old and new epochs and the seconds from the old
    leader's last bus message to the edge's book ``live`` in the new epoch (then exact)."""
    old = followed(edge)
    live = edge.engine.books[(SYMBOL, VENUE)]
    async with anyio.create_task_group() as tg:
        pause = await stream(fake, tg, trades)
        at = heard.count.get(old, 0)
        await until(lambda: heard.count.get(old, 0) > at + 50, 5, "streaming on the bus")
        stop()
        await until(lambda: followed(edge) > old and live.state is BookState.LIVE, TAKEOVER_BOUND + 2, "takeover")
        took = time.monotonic() - heard.last[old]
        new = followed(edge)
        await until(lambda: heard.count.get(new, 0) > 50, 5, "streaming from the new leader")
        pause.set()
    await until(lambda: exact(edge, market), 5, "the edge is exact again")
    return old, followed(edge), took


async def received(ws: ClientConnection, last: str) -> list[dict[str, Any]]:
    """The trades channel's messages until the trade ``last``."""
    got: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        while not got or got[-1].get("id") != last:
            got.append(orjson.loads(await ws.recv()))
    return got


async def test_a_killed_leader_is_replaced_by_the_standby(tmp_path: Path, nats_server: NatsServer) -> None:
    async with cluster(tmp_path, nats_server) as (fake, market, a, b, edge, heard):
        sent: list[str] = []
        async with connect(f"ws://127.0.0.1:{edge.api_port}/v1/stream") as ws:  # type: ignore[attr-defined]
            await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "channels": [f"trades.{SYMBOL}"]}).decode())
            assert orjson.loads(await ws.recv())["type"] == "ack"
            old, new, took = await take_over(fake, market, edge, heard, a.proc.kill, sent)
            print(f"SIGKILL takeover: {took:.3f} s from the old leader's last bus message to the edge live again")
            got = await received(ws, sent[-1])
        ids = [m["id"] for m in got if m["type"] == "trade"]
        assert len(ids) == len(set(ids)), "no trade twice"
        assert [m["seq"] for m in got] == list(range(1, len(got) + 1))
        missing = [t for t in sent if t not in set(ids)]
        gaps = [i for i, m in enumerate(got) if m["type"] == "gap"]
        print(f"trades: {len(sent)} sent by the venue, {len(missing)} missing on the edge, gap notices at {gaps}")
        if missing:
            assert gaps, "trades lost without a gap notice"
            first_after = min(
                i for i, m in enumerate(got) if m["type"] == "trade" and sent.index(m["id"]) > sent.index(missing[-1])
            )
            assert gaps[0] < first_after, "the gap notice comes before the trades after the lost ones"
        assert new > old
        assert took < TAKEOVER_BOUND
        assert (await gauges(b))["crossbook_cluster_leader"] == 1
        assert (await gauges(b))["crossbook_cluster_epoch"] == new


async def test_a_frozen_leader_is_replaced_then_fenced_when_it_wakes(tmp_path: Path, nats_server: NatsServer) -> None:
    async with cluster(tmp_path, nats_server) as (fake, market, a, b, edge, heard):
        pid = a.proc.pid
        old, new, took = await take_over(fake, market, edge, heard, lambda: os.kill(pid, signal.SIGSTOP), [])
        print(f"SIGSTOP takeover: {took:.3f} s from the old leader's last bus message to the edge live again")
        assert took < TAKEOVER_BOUND
        woke = time.monotonic()
        os.kill(pid, signal.SIGCONT)
        await until_gauge(a, "crossbook_cluster_lease_state", 0)
        assert (await gauges(a))["crossbook_cluster_leader"] == 0, "the old leader stood down"
        async with anyio.create_task_group() as tg:
            pause = await stream(fake, tg, [])
            await until(lambda: len([t for t, *_ in heard.beats if t > woke]) >= 8, 10, "two seconds of beats")
            pause.set()
        await until(lambda: exact(edge, market), 10, "the edge is exact, following the new leader")
        assert followed(edge) == new
        assert (await gauges(b))["crossbook_cluster_leader"] == 1
        assert {node for t, node, _ in heard.beats if t > woke} == {"ingest-b"}, "the old leader is silent"
        fenced = edge.metrics.registry.get_sample_value("crossbook_cluster_fenced_total", {"venue": VENUE})
        print(f"old epoch last on the bus {heard.last[old] - woke:+.3f} s from SIGCONT; fenced on the edge: {fenced}")
