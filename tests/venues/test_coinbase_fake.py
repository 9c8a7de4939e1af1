"""The Coinbase Advanced Trade connector against a fake Coinbase on loopback, with faults."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from decimal import Decimal

import anyio
import orjson
import pydantic
import pytest

from crossbook.core.model import BookState, Side, Trade
from crossbook.testing.conformance import SCENARIOS, Rig, Subject, rig, run_conformance
from crossbook.testing.fakevenue import FakeConnection
from crossbook.toolkit.venue import ConnectionState, Rejected, Resync
from crossbook_coinbase import CoinbaseConfig, factory
from crossbook_coinbase.fake import CoinbaseDialect
from crossbook_coinbase.protocol import CoinbaseProtocol, venue_symbol

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SYMBOLS = ("BTC-USD", "ETH-USD")


def subject(per_connection: int = 10, *, gap_run: bool = False) -> Subject:
    return Subject(
        venue="coinbase",
        factory=factory,
        config_model=CoinbaseConfig,
        dialect=CoinbaseDialect,
        config=lambda fake: {"ws_url": fake.ws_url, "symbols_per_connection": per_connection},
        symbols=SYMBOLS,
        detects_gaps=True,  # its parser checks the per-connection sequence_num (the rule cannot)
        resync_reconnects=gap_run,
    )


def connection(r: Rig, symbol: str) -> FakeConnection:
    return next(c for c in r.fake.connections if symbol in c.symbols)


@pytest.mark.slow
async def test_conformance() -> None:
    """Sync, drop, stall, garbage and trades with both products on one connection (no checksum, no REST,
    no venue-requested reconnect). The gap scenario is run below with one product a connection."""
    report = await run_conformance(subject(), [s for s in SCENARIOS if s != "gap"])
    assert report.failures == {}, str(report)
    assert report.passed == ["sync", "drop", "stall", "garbage", "trades"]
    assert report.skipped.keys() == {"checksum", "rest_429", "planned_reconnect"}


async def test_conformance_gap() -> None:
    """The standard gap scenario. Coinbase's ``sequence_num`` is per connection, so a lost message
    resyncs every book of its connection: the scenario (which checks that the other symbol does not
    resync) runs with one product a connection. ``resync_reconnects`` only waives its check that
    exactly one connection was ever made, which presumes one connection; the next test checks that
    the gap is repaired without any reconnect."""
    report = await run_conformance(subject(per_connection=1, gap_run=True), ["gap"])
    assert report.failures == {}, str(report)
    assert report.passed == ["gap"]


async def test_gap_stays_within_its_connection_and_needs_no_reconnect() -> None:
    async with rig(subject(per_connection=1)) as r:
        await r.converge()
        assert r.fake.connects == 2
        eth_before = len(r.feed.statuses("ETH-USD"))
        await r.fake.step("BTC-USD", skip=True)
        await r.until(lambda: r.feed.resyncs("gap") >= 1)
        await r.converge()
        assert len(r.feed.statuses("ETH-USD")) == eth_before
        assert r.feed.resyncs("gap") == 1
        assert r.fake.connects == 2


async def test_gap_resubscribes_every_book_of_the_connection() -> None:
    """Both products share the connection: one lost message resyncs both by leaving and rejoining
    ``level2`` on the same connection (which delivers their snapshots again), in one message each
    way for all of them (Coinbase takes 8 messages a second; it was two per product)."""
    async with rig(subject()) as r:
        await r.converge()
        conn = r.fake.connections[0]
        sent = len(conn.received)
        await r.fake.step("BTC-USD", skip=True)
        await r.until(lambda: r.feed.resyncs("gap") >= 2)
        await r.converge()
        assert r.feed.resyncs("gap") == 2
        assert r.fake.connects == 1
        again = [orjson.loads(m) for m in conn.received[sent:]]
        assert [(m["type"], m["channel"], sorted(m["product_ids"])) for m in again] == [
            ("unsubscribe", "level2", ["BTC-USD", "ETH-USD"]),
            ("subscribe", "level2", ["BTC-USD", "ETH-USD"]),
        ]


async def test_any_channel_counts_in_the_sequence() -> None:
    """A heartbeat lost between book updates is a gap too (``sequence_num`` is shared)."""
    async with rig(subject()) as r:
        await r.converge()
        conn = r.fake.connections[0]
        assert conn.ws is not None
        dialect = r.fake.dialect
        assert isinstance(dialect, CoinbaseDialect)
        await conn.ws.send(dialect.heartbeat(conn))
        dialect.heartbeat(conn)  # numbered, never sent
        await r.until(lambda: r.feed.resyncs("gap") >= 2)
        await r.converge()
        assert r.fake.connects == 1


async def test_trades_carry_the_aggressor_side() -> None:
    async with rig(subject()) as r:
        await r.converge()
        conn = r.fake.connections[0]
        assert conn.ws is not None
        assert conn.trades == set(SYMBOLS)
        dialect = r.fake.dialect
        assert isinstance(dialect, CoinbaseDialect)
        for trade in (  # Coinbase sends the maker's side: SELL, then BUY
            Trade("ETH-USD", Decimal("1919.41"), Decimal("0.00100000"), Side.BUY, "77", time.time_ns()),
            Trade("ETH-USD", Decimal("1919.28"), Decimal("2"), Side.SELL, "78", time.time_ns()),
        ):
            for frame in dialect.trade(conn, trade):
                await conn.ws.send(frame)
        with anyio.fail_after(5):
            await r.feed.wait_for(lambda: sum(isinstance(e, Trade) for e in r.feed.events) >= 2)
        trades = [e for e in r.feed.events if isinstance(e, Trade)]
        assert [(t.symbol, t.trade_id, t.price, t.size, t.side) for t in trades] == [
            ("ETH-USD", "77", Decimal("1919.41"), Decimal("0.00100000"), Side.BUY),
            ("ETH-USD", "78", Decimal("1919.28"), Decimal("2"), Side.SELL),
        ]
        assert all(t.venue_ns is not None and abs(t.venue_ns - t.recv_ns) < 10**10 for t in trades)
        assert r.feed.resyncs("gap") == 0


async def test_jwt_goes_in_every_subscribe_and_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="websockets")  # its frame log: whatever an earlier test set
    token = "eyJ-secret-token"
    # The fake sends no heartbeats: with the rig's 1 s idle timeout, a 1 s stall of this process
    # would reconnect and lose the skipped message the test waits to see as a gap.
    async with rig(subject(), jwt=token, idle_timeout=30) as r:
        await r.converge()
        conn = r.fake.connections[0]
        await r.fake.step("BTC-USD", skip=True)  # the resubscriptions carry it too
        await r.until(lambda: r.feed.resyncs("gap") >= 2)
        await r.converge()
        jwts = conn.values["jwts"]
        assert len(jwts) == 5  # 3 subscribes (level2, market_trades, heartbeats), then one each way
        assert set(jwts) == {token}
    ours = [r.getMessage() for r in caplog.records if r.name != "websockets.server"]  # the fake's own log
    assert any(m.startswith("< TEXT") for m in ours), "frames were not logged at all: nothing was tested"
    assert sum("(redacted)" in m for m in ours) == 5
    assert not any(token[i : i + 8] in m for m in ours for i in range(len(token) - 7))
    config = CoinbaseConfig.model_validate({"jwt": token})
    assert token not in repr(config)
    assert token not in str(config.model_dump())


async def test_refused_subscription_takes_only_the_named_product_down() -> None:
    async with rig(subject()) as r:
        await r.converge()
        error = {"type": "error", "message": "Failure to subscribe", "reason": "ETH-USD is not a valid product"}
        await r.fake.send_all(orjson.dumps(error).decode())
        with anyio.fail_after(5):
            await r.feed.wait_for(lambda: r.feed.state("ETH-USD") is BookState.DOWN)
        await r.converge(["BTC-USD"])
        assert r.feed.state("BTC-USD") is BookState.LIVE


def test_parse_rules() -> None:
    protocol = CoinbaseProtocol(["BTC-USD", "SOL-USDC"], ws_url="ws://x")
    conn = ConnectionState()

    def frame(seq: int, channel: str = "heartbeats", events: Sequence[object] = ()) -> str:
        ts = "2026-08-09T21:05:48.1Z"
        return orjson.dumps({"channel": channel, "timestamp": ts, "sequence_num": seq, "events": list(events)}).decode()

    assert not any(isinstance(o, Resync) for o in protocol.parse(conn, frame(41), 0))  # any first number
    assert not any(isinstance(o, Resync) for o in protocol.parse(conn, frame(42), 0))
    assert protocol.parse(conn, frame(44), 0)[0] == Resync(None, "gap")
    assert protocol.parse(conn, frame(44), 0)[0] == Resync(None, "gap")  # a repeat is no continuation either
    with pytest.raises(TypeError):
        protocol.parse(conn, frame(45).replace('"sequence_num":45', '"sequence_num":"45"'), 0)
    # -USD data serves the -USDC product; another product's update is ignored, not an error
    update = {"side": "offer", "event_time": "x", "price_level": "150.10", "new_quantity": "3"}
    events: list[object] = [
        {"type": "update", "product_id": "SOL-USD", "updates": [update]},
        {"type": "update", "product_id": "DOGE-USD", "updates": [update]},
    ]
    outs = protocol.parse(conn, frame(45, "l2_data", events), 7)
    assert len(outs) == 1
    upd = outs[0]
    assert not isinstance(upd, Rejected | Resync)
    assert getattr(upd, "symbol", None) == "SOL-USDC"
    assert getattr(upd, "asks", None) == [(Decimal("150.10"), Decimal("3"))]
    assert getattr(upd, "venue_ns", None) == 1786309548_100000000
    bad_side = [{"type": "update", "product_id": "BTC-USD", "updates": [update | {"side": "ask"}]}]
    with pytest.raises(ValueError, match="book side"):
        protocol.parse(conn, frame(46, "l2_data", bad_side), 0)
    assert protocol.parse(conn, frame(47), 0)[0] == Resync(None, "gap")  # 46 was unreadable: lost
    with pytest.raises(ValueError, match="venue error"):
        protocol.parse(conn, '{"type":"error","message":"slow down"}', 0)
    assert protocol.parse(conn, '{"type":"error","message":"Failure to subscribe"}', 0) == [
        Rejected(None, "Failure to subscribe")
    ]


def test_config_and_symbols() -> None:
    assert CoinbaseConfig().ws_url == "wss://advanced-trade-ws.coinbase.com"
    with pytest.raises(pydantic.ValidationError):
        CoinbaseConfig.model_validate({"symbols_per_connection": 0})
    with pytest.raises(pydantic.ValidationError):
        CoinbaseConfig.model_validate({"depth": 10})
    assert venue_symbol("BTC-USD") == "BTC-USD"
    with pytest.raises(ValueError, match="no Coinbase"):
        venue_symbol("BTC-USD-PERP")
    streams = CoinbaseProtocol([f"C{i}-USD" for i in range(25)], ws_url="ws://x", trades=False).streams(
        [f"C{i}-USD" for i in range(25)]
    )
    assert [len(s.symbols) for s in streams] == [10, 10, 5]
    assert [orjson.loads(f)["channel"] for f in streams[0].subscribe] == ["level2", "heartbeats"]
