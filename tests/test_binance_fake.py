"""The Binance connector against a fake Binance on loopback, with faults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest

from crossbook.model import BookState
from crossbook.streaming import StreamingConnector
from crossbook.testing.conformance import Subject, run_conformance
from crossbook.testing.fakevenue import FakeVenue
from crossbook.testing.feed import EngineFeed
from crossbook.testing.market import FakeMarket
from crossbook_binance import BinanceConfig, BinanceFuturesConfig, spot
from crossbook_binance import futures as make_futures
from crossbook_binance.fake import BinanceDialect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


@dataclass
class Rig:
    fake: FakeVenue
    market: FakeMarket
    feed: EngineFeed
    connector: StreamingConnector

    def in_sync(self, symbol: str) -> bool:
        book, truth = self.feed.book(symbol), self.market.books[symbol]
        return self.feed.state(symbol) is BookState.LIVE and book.bids() == truth.bids() and book.asks() == truth.asks()

    async def converge(self, *symbols: str, steps: int = 5) -> None:
        """Move the market until the connector's books equal it (they must within the timeout)."""
        with anyio.fail_after(10):
            while not all(self.in_sync(s) for s in symbols or SYMBOLS):
                for s in symbols or SYMBOLS:
                    for _ in range(steps):
                        await self.fake.step(s)
                with anyio.move_on_after(0.05):
                    await self.feed.wait_for(lambda: all(self.in_sync(s) for s in symbols or SYMBOLS))


async def rig(symbols: list[str] = SYMBOLS, **config: object) -> AsyncIterator[Rig]:
    market = FakeMarket(symbols)
    fake = FakeVenue(BinanceDialect(market), market)
    async with fake.running():
        settings = {"ws_url": fake.ws_url, "rest_url": fake.rest_url, "idle_timeout": 1.0, **config}
        connector = spot("binance", tuple(symbols), BinanceConfig.model_validate(settings))
        feed = EngineFeed("binance", symbols)
        async with anyio.create_task_group() as tg:
            tg.start_soon(connector.run, feed)
            with anyio.fail_after(10):
                await fake.wait_connections(1)
            yield Rig(fake, market, feed, connector)
            tg.cancel_scope.cancel()


@pytest.fixture
async def binance() -> AsyncIterator[Rig]:
    async for r in rig():
        yield r


async def test_sync_from_snapshot_and_deltas(binance: Rig) -> None:
    await binance.converge()
    assert binance.feed.resyncs("gap") == 0
    assert binance.fake.connects == 1


async def test_gap_resyncs_that_symbol_only(binance: Rig) -> None:
    await binance.converge()
    statuses_before = len(binance.feed.statuses("ETH-USDT"))
    await binance.fake.step("BTC-USDT", skip=True)
    await binance.fake.step("BTC-USDT")
    with anyio.fail_after(5):
        await binance.feed.wait_for(lambda: binance.feed.resyncs("gap") == 1)
    await binance.converge()
    assert len(binance.feed.statuses("ETH-USDT")) == statuses_before
    assert binance.fake.connects == 1


async def test_drop_reconnects_and_resyncs(binance: Rig) -> None:
    await binance.converge()
    await binance.fake.drop()
    with anyio.fail_after(5):
        await binance.feed.wait_for(lambda: binance.feed.state("BTC-USDT") is not BookState.LIVE)
        await binance.fake.wait_connections(1)
    await binance.converge()
    assert binance.fake.connects == 2
    assert binance.feed.resyncs("reconnect") == 2


async def test_stall_is_detected_within_the_idle_timeout(binance: Rig) -> None:
    await binance.converge()
    binance.fake.stalled = True
    started = time.monotonic()
    with anyio.fail_after(5):
        await binance.feed.wait_for(lambda: binance.feed.state("BTC-USDT") is BookState.CONNECTING)
    assert time.monotonic() - started < 1.0 + 0.5
    binance.fake.stalled = False
    await binance.converge()


async def test_garbage_and_truncated_frames_are_counted_and_skipped(binance: Rig) -> None:
    await binance.converge()
    await binance.fake.send_all("{garbage")
    await binance.fake.send_all('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":')
    with anyio.fail_after(5):
        await binance.feed.wait_for(lambda: len(binance.feed.skipped) == 2)
    assert all("unreadable frame" in s for s in binance.feed.skipped)
    await binance.converge()
    assert binance.fake.connects == 1


async def test_rest_429_backs_off_without_a_storm() -> None:
    async for r in rig(["BTC-USDT"]):
        r.fake.fail_rest(429, times=1, retry_after=1.0)
        await r.converge("BTC-USDT")
        times = [t for t, path in r.fake.rest_requests if path == "/api/v3/depth"]
        assert len(times) == 2
        assert times[1] - times[0] >= 1.0


async def test_weight_budget_limits_snapshot_requests() -> None:
    symbols = [f"C{i}-USDT" for i in range(15)]
    async for r in rig(symbols, snapshot_limit=100, snapshot_weight_per_minute=60):
        with anyio.fail_after(5):
            while len(r.fake.rest_requests) < 12:
                await r.fake.step(symbols[0])
                await anyio.sleep(0.01)  # let the scheduler run; we count requests, no event to await
        await anyio.sleep(0.3)
        assert len(r.fake.rest_requests) == 12  # weight 5 each: a budget of 60 a minute


async def test_planned_reconnect_shows_no_gap(binance: Rig) -> None:
    await binance.converge()
    mark = len(binance.feed.events)
    await binance.fake.request_reconnect()
    with anyio.fail_after(10):
        await binance.fake.wait_connections(2)
    await binance.converge()
    with anyio.fail_after(10):
        while binance.fake.connects < 2 or len(binance.fake.connections) != 1:
            await binance.fake.step("BTC-USDT")
            await binance.fake.step("ETH-USDT")
            with anyio.move_on_after(0.05):
                await binance.feed.wait_for(lambda: False)
    await binance.converge()
    later = [s for s in binance.feed.statuses() if binance.feed.events.index(s) >= mark]
    assert later == []  # never left live


@pytest.mark.parametrize("futures", [False, True], ids=["spot", "usdm"])
async def test_conformance(futures: bool) -> None:
    symbols = ("BTC-USDT-PERP", "ETH-USDT-PERP") if futures else ("BTC-USDT", "ETH-USDT")
    subject = Subject(
        venue="binance",
        factory=make_futures if futures else spot,
        config_model=BinanceFuturesConfig if futures else BinanceConfig,
        dialect=lambda market: BinanceDialect(market, futures=futures),
        config=lambda fake: (
            {"ws_url": fake.ws_url, "rest_url": fake.rest_url} | ({"trades_ws_url": None} if futures else {})
        ),
        symbols=symbols,
        rest_snapshots=True,
        planned_reconnects=True,
    )
    report = await run_conformance(subject)
    assert report.failures == {}, str(report)
    assert report.skipped.keys() == {"checksum"}
