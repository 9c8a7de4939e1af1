"""The OKX connector against a fake OKX on loopback, in both snapshot modes, with faults."""

from __future__ import annotations

import pytest

from crossbook.testing.conformance import Subject, run_conformance
from crossbook_okx import OkxConfig, factory
from crossbook_okx.fake import OkxDialect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.mark.parametrize("mode", ["rest", "stream"])
@pytest.mark.slow
async def test_conformance(mode: str) -> None:
    subject = Subject(
        venue="okx",
        factory=factory,
        config_model=OkxConfig,
        dialect=OkxDialect,
        config=lambda fake: {"ws_url": fake.ws_url, "rest_url": fake.rest_url, "snapshot": mode},
        symbols=("BTC-USDT", "ETH-USDT-PERP"),
        checksums=False,  # OKX's checksum is deprecated: 0 live and from the fake, so never checked
    )
    report = await run_conformance(subject)
    assert report.failures == {}, str(report)
    expected = {"sync", "gap", "drop", "stall", "garbage", "trades"} | ({"rest_429"} if mode == "rest" else set())
    assert set(report.passed) == expected
