"""The Binance connectors against a fake Binance on loopback, with faults."""

from __future__ import annotations

import anyio
import pytest

from crossbook.testing.conformance import Subject, rig, run_conformance
from crossbook_binance import BinanceConfig, BinanceFuturesConfig, spot
from crossbook_binance import futures as make_futures
from crossbook_binance.fake import BinanceDialect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def subject(futures: bool = False, symbols: tuple[str, ...] | None = None) -> Subject:
    return Subject(
        venue="binance",
        factory=make_futures if futures else spot,
        config_model=BinanceFuturesConfig if futures else BinanceConfig,
        dialect=lambda market: BinanceDialect(market, futures=futures),
        config=lambda fake: (
            {"ws_url": fake.ws_url, "rest_url": fake.rest_url} | ({"trades_ws_url": None} if futures else {})
        ),
        symbols=symbols or (("BTC-USDT-PERP", "ETH-USDT-PERP") if futures else ("BTC-USDT", "ETH-USDT")),
        rest_snapshots=True,
        planned_reconnects=True,
    )


@pytest.mark.parametrize("futures", [False, True], ids=["spot", "usdm"])
async def test_conformance(futures: bool) -> None:
    """Sync, gap, drop, stall, garbage, 429 and planned reconnect (Binance has no checksum)."""
    report = await run_conformance(subject(futures))
    assert report.failures == {}, str(report)
    assert report.skipped.keys() == {"checksum"}


async def test_weight_budget_limits_snapshot_requests() -> None:
    """15 symbols resyncing at once: weight 5 each within a budget of 60 a minute is 12 requests."""
    symbols = tuple(f"C{i}-USDT" for i in range(15))
    async with rig(subject(symbols=symbols), snapshot_limit=100, snapshot_weight_per_minute=60) as r:
        with anyio.fail_after(5):
            while len(r.fake.rest_requests) < 12:
                await r.fake.step(symbols[0])
                await anyio.sleep(0.01)  # let the scheduler run; requests are counted, there is no event
        await anyio.sleep(0.3)
        assert len(r.fake.rest_requests) == 12


async def test_rest_429_pauses_the_whole_venue() -> None:
    async with rig(subject()) as r:
        await r.converge()
        r.fake.fail_rest(429, times=1, retry_after=1.0)
        await r.fake.drop()  # both symbols resync at once; the first request meets the 429
        await r.until(lambda: r.fake.connects >= 2)
        await r.converge()
        times = [t for t, _ in r.fake.rest_requests]
        failed_at = times[2]  # two initial snapshots, then the 429
        assert all(t - failed_at >= 1.0 for t in times[3:]), "a request went out during Retry-After"
        assert len(times) == 5
