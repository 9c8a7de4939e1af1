"""The Kraken connector against a fake Kraken v2 on loopback, with faults."""

from __future__ import annotations

import anyio
import pytest

from crossbook.core.model import BookState
from crossbook.testing.conformance import Subject, rig, run_conformance
from crossbook.testing.market import FakeMarket
from crossbook_kraken import KrakenConfig, factory
from crossbook_kraken.fake import KrakenDialect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


def subject(depth: int = 10, refuse_depth: int | None = None) -> Subject:
    def dialect(market: FakeMarket) -> KrakenDialect:
        return KrakenDialect(market, refuse_depth=refuse_depth)

    return Subject(
        venue="kraken",
        factory=factory,
        config_model=KrakenConfig,
        dialect=dialect,
        config=lambda fake: {"ws_url": fake.ws_url, "depth": depth},
        symbols=("BTC-USD", "ETH-USD"),
    )


@pytest.mark.slow
async def test_conformance() -> None:
    """Sync with truncation to depth 10, lost messages found by checksum, corrupt checksums,
    drop, stall, garbage: the scenarios that apply to Kraken."""
    report = await run_conformance(subject())
    assert report.failures == {}, str(report)
    assert set(report.passed) == {"sync", "gap", "checksum", "drop", "stall", "garbage", "trades"}


async def test_refused_subscription_takes_only_that_book_down() -> None:
    async with rig(subject(depth=25, refuse_depth=25)) as r:
        with anyio.fail_after(10):
            await r.feed.wait_for(lambda: r.feed.state("BTC-USD") is BookState.DOWN)
        assert r.feed.state("ETH-USD") is BookState.DOWN  # both asked for the refused depth
        assert any(s.reason == "rejected" for s in r.feed.statuses("BTC-USD"))
        assert r.fake.connects == 1  # refused, not disconnected
