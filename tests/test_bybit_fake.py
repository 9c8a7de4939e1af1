"""The Bybit connector against a fake Bybit v5 (spot) on loopback, with faults."""

from __future__ import annotations

import pytest

from crossbook.testing.conformance import Subject, run_conformance
from crossbook_bybit import BybitConfig, factory
from crossbook_bybit.fake import BybitDialect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def test_conformance() -> None:
    subject = Subject(
        venue="bybit",
        factory=factory,
        config_model=BybitConfig,
        dialect=BybitDialect,
        config=lambda fake: {"ws_url": fake.ws_url},
        symbols=("BTC-USDT", "ETH-USDT"),
    )
    report = await run_conformance(subject)
    assert report.failures == {}, str(report)
    assert set(report.passed) == {"sync", "gap", "drop", "stall", "garbage"}


def test_category_sets_the_default_url() -> None:
    assert BybitConfig().ws_url == "wss://stream.bybit.com/v5/public/spot"
    assert BybitConfig(category="linear").ws_url == "wss://stream.bybit.com/v5/public/linear"
    assert BybitConfig(ws_url="ws://127.0.0.1:1").ws_url == "ws://127.0.0.1:1"
