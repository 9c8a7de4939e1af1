"""Record and replay: a daemon records two fake venues with planted faults (a gap, garbage, a bad
checksum, a dropped connection); replaying the files gives the same books and resyncs, and the
same API messages every time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from crossbook.core.model import BookState, Side
from crossbook.service.app import Daemon
from crossbook.service.recording import SUFFIX, RecordingReader, block, compressor
from crossbook.service.replay import prepare
from crossbook.testing.fakevenue import FakeVenue
from crossbook.testing.market import FakeMarket
from crossbook_binance.fake import BinanceDialect
from crossbook_kraken.fake import KrakenDialect
from support import running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SYMBOL = "BTC-USDT"
VENUES = ("bn", "kr")
CHANNELS = ["status", f"book.{SYMBOL}", f"bbo.{SYMBOL}", f"trades.{SYMBOL}", *(f"book.{SYMBOL}.{v}" for v in VENUES)]
SERVER = '[server]\nhost = "127.0.0.1"\nport = 0\n'


def books(daemon: Daemon) -> dict[str, Any]:
    """Every venue's book and the consolidated one, whole, with attribution."""
    engine = daemon.engine
    out: dict[str, Any] = {
        v: (engine.books[(SYMBOL, v)].book.bids(), engine.books[(SYMBOL, v)].book.asks()) for v in VENUES
    }
    consolidated = engine.consolidated[SYMBOL]
    out["consolidated"] = [
        [(p, a.total, a.venues) for p, a in side]
        for side in (consolidated.view_bids(1000), consolidated.view_asks(1000))
    ]
    return out


def resyncs(daemon: Daemon) -> dict[tuple[str, ...], float]:
    return {
        tuple(sample.labels[k] for k in ("venue", "symbol", "reason")): sample.value
        for metric in daemon.metrics.registry.collect()
        if metric.name == "crossbook_resyncs"
        for sample in metric.samples
        if sample.name == "crossbook_resyncs_total"
    }


async def record_session(tmp_path: Path) -> tuple[list[Path], dict[str, Any]]:
    """Run a recording daemon on two fake venues through the faults: the files, and the books,
    resyncs, records so far and API messages a client got when the venues last matched the
    fakes (the daemon's shutdown is recorded after that: its connections close)."""
    markets = {"bn": FakeMarket([SYMBOL], seed=1), "kr": FakeMarket([SYMBOL], seed=2, mid=100_003)}
    fakes = {"bn": FakeVenue(BinanceDialect(markets["bn"]), markets["bn"])}
    fakes["kr"] = FakeVenue(KrakenDialect(markets["kr"]), markets["kr"])
    async with fakes["bn"].running(), fakes["kr"].running():
        bn, kr = fakes["bn"], fakes["kr"]
        toml = (
            f'[venues.bn]\nconnector = "binance"\nsymbols = ["{SYMBOL}"]\nws_url = "{bn.ws_url}"\n'
            f'rest_url = "{bn.rest_url}"\ntrades = false\n'
            f'[venues.kr]\nconnector = "kraken"\nsymbols = ["{SYMBOL}"]\nws_url = "{kr.ws_url}"\n'
            f'[record]\ndir = "{tmp_path / "rec"}"\nflush_interval = 0.05\n'
        )
        async with (
            running_daemon(tmp_path, toml) as (daemon, addresses),
            connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream?batch=1") as ws,
            anyio.create_task_group() as tg,
        ):
            seen: list[Any] = []
            pong = anyio.Event()

            async def read() -> None:
                async for frame in ws:
                    for msg in orjson.loads(frame):
                        if msg["type"] == "pong":
                            pong.set()
                        seen.append(msg)

            tg.start_soon(read)
            await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "channels": CHANNELS}).decode())

            async def converge() -> None:
                """Move both markets until every book is live and equals its venue's."""
                with anyio.fail_after(20):
                    while not all(
                        daemon.engine.state(SYMBOL, v) is BookState.LIVE
                        and daemon.engine.books[(SYMBOL, v)].book.bids() == markets[v].books[SYMBOL].bids()
                        and daemon.engine.books[(SYMBOL, v)].book.asks() == markets[v].books[SYMBOL].asks()
                        for v in VENUES
                    ):
                        for fake in fakes.values():
                            await fake.step(SYMBOL)
                        await anyio.sleep(0.02)  # let the daemon read (it has no event to await here)

            await converge()
            await bn.step(SYMBOL, skip=True)  # a lost message: a gap
            await converge()
            await bn.send_all("{not json")  # garbage: skipped
            await kr.send_all("\x00garbage")
            await kr.step(SYMBOL, corrupt=True)  # a wrong checksum
            await converge()
            await bn.drop()  # a dropped connection: reconnect and resync
            await converge()
            for _ in range(20):
                await kr.trade(SYMBOL, kr.market.rng.choice(list(Side)))
                for fake in fakes.values():
                    await fake.step(SYMBOL)
            await converge()
            live_books, live_resyncs = books(daemon), resyncs(daemon)
            assert daemon.recorder is not None
            count = daemon.recorder.count
            await ws.send(orjson.dumps({"op": "ping", "id": 2}).decode())
            with anyio.fail_after(10):
                await pong.wait()
            tg.cancel_scope.cancel()
            assert daemon.feeds["bn"].skipped
            assert daemon.feeds["kr"].skipped
    files = sorted((tmp_path / "rec").glob("*" + SUFFIX))
    return files, {"books": live_books, "resyncs": live_resyncs, "count": count, "messages": seen}


def cut(files: list[Path], count: int, path: Path) -> Path:
    """The first ``count`` records the daemon added, in one file of their own."""
    records = [r for f in files for r in RecordingReader(f).records()]
    header, added = records[0], [r for r in records if r[0] not in ("file", "lost")]
    lines = [orjson.dumps(r) + b"\n" for r in (header, *added[:count])]
    path.write_bytes(b"".join(block(lines[i : i + 100], compressor()) for i in range(0, len(lines), 100)))
    return path


@contextlib.asynccontextmanager
async def replaying(tmp_path: Path, files: list[Path]) -> AsyncIterator[tuple[Daemon, Any, ClientConnection]]:
    """A replay daemon serving the API, a client subscribed to every channel before it plays."""
    config = tmp_path / "replay.toml"
    config.write_text(SERVER + '[venues.x]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\n')
    daemon, replayer = prepare(files, str(config))
    async with anyio.create_task_group() as tg:
        port = await tg.start(daemon.server.serve, "127.0.0.1", 0)
        async with connect(f"ws://127.0.0.1:{port}/v1/stream?batch=1") as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "channels": CHANNELS}).decode())
            assert orjson.loads(await ws.recv())[0]["type"] == "ack"
            yield daemon, replayer, ws
        tg.cancel_scope.cancel()


def channel(messages: list[Any], name: str) -> list[Any]:
    """A channel's messages without ``seq`` (which counts from each subscription)."""
    return [{k: v for k, v in m.items() if k != "seq"} for m in messages if m.get("channel") == name]


async def api_messages(ws: ClientConnection) -> list[Any]:
    """What the client got until a pong."""
    await ws.send(orjson.dumps({"op": "ping", "id": 2}).decode())
    out: list[Any] = []
    with anyio.fail_after(10):
        while True:
            for msg in orjson.loads(await ws.recv()):
                if msg["type"] == "pong":
                    return out
                out.append(msg)


async def test_a_recorded_session_with_faults_replays_to_the_same_books_resyncs_and_messages(tmp_path: Path) -> None:
    recorded, live = await record_session(tmp_path)
    files = [cut(recorded, live["count"], tmp_path / f"cut{SUFFIX}")]
    kinds = {r[0] for f in recorded for r in RecordingReader(f).records()}
    assert {"file", "start", "open", "recv", "close", "snap", "flush"} <= kinds
    assert {("bn", SYMBOL, "gap"), ("kr", SYMBOL, "checksum"), ("bn", SYMBOL, "reconnect")} <= set(live["resyncs"])

    messages = []
    for _ in range(2):
        async with replaying(tmp_path, files) as (daemon, replayer, ws):
            await replayer.play(files, None)
            assert books(daemon) == live["books"]
            assert resyncs(daemon) == live["resyncs"]
            assert daemon.feeds["bn"].skipped
            assert daemon.feeds["kr"].skipped
            messages.append(await api_messages(ws))
            assert replayer.batches > 10
    assert messages[0] == messages[1]  # the same files, the same messages (timestamps too)
    # What the live client got after its subscription's first state, the replay sent last, the
    # same (book updates merged batch by batch as they were live), timestamps included.
    for name in CHANNELS[1:]:
        got = channel(live["messages"], name)
        if got and got[0]["type"] in ("snapshot", "bbo"):
            got = got[1:]
        assert got
        assert channel(messages[0], name)[-len(got) :] == got, name
