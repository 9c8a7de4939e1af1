"""The Bybit connector against a fake Bybit v5 (spot) on loopback, with faults."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from crossbook.testing.conformance import Subject, run_conformance
from crossbook_bybit import BybitConfig, factory
from crossbook_bybit.fake import BybitDialect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.mark.slow
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
    assert set(report.passed) == {"sync", "gap", "drop", "stall", "garbage", "trades"}


def test_category_sets_the_default_url() -> None:
    assert BybitConfig().ws_url == "wss://stream.bybit.com/v5/public/spot"
    assert BybitConfig(category="linear").ws_url == "wss://stream.bybit.com/v5/public/linear"
    assert BybitConfig(ws_url="ws://127.0.0.1:1").ws_url == "ws://127.0.0.1:1"


def test_a_later_snapshot_and_u_1_reset_the_book() -> None:
    from crossbook.core.model import BookSnapshot, BookState
    from crossbook.testing.replay import Replay
    from crossbook.toolkit.sequence import Consecutive
    from crossbook.toolkit.sync import BookSync
    from crossbook.toolkit.venue import SnapshotSource
    from crossbook_bybit.protocol import BybitProtocol

    protocol = BybitProtocol(["BTC-USDT"], ws_url="ws://x")
    rp = Replay(protocol, lambda s: BookSync(s, Consecutive(), SnapshotSource.STREAM), ["BTC-USDT"])

    def frame(kind: str, u: int, bid: str) -> str:
        data = {"s": "BTCUSDT", "b": [[bid, "1"]], "a": [["200", "1"]], "u": u, "seq": 1}
        return orjson.dumps({"topic": "orderbook.200.BTCUSDT", "type": kind, "ts": 1, "data": data}).decode()

    rp.frame(frame("snapshot", 10, "100"), 1)
    rp.frame(frame("delta", 11, "101"), 2)
    rp.frame(frame("snapshot", 50, "90"), 3)  # Bybit re-sent a snapshot: it replaces the book
    assert rp.syncs["BTC-USDT"].book.bids() == [(Decimal("90"), Decimal("1"))]
    rp.frame(frame("delta", 1, "80"), 4)  # u == 1: the service restarted; a snapshot too
    assert rp.syncs["BTC-USDT"].book.bids() == [(Decimal("80"), Decimal("1"))]
    rp.frame(frame("delta", 2, "81"), 5)
    assert rp.syncs["BTC-USDT"].book.bids() == [(Decimal("81"), Decimal("1")), (Decimal("80"), Decimal("1"))]
    assert rp.resync_reasons() == {}
    assert sum(isinstance(e, BookSnapshot) for e in rp.events) == 3
    assert rp.states("BTC-USDT") == [BookState.SYNCING, BookState.LIVE], "as the daemon reports them"
