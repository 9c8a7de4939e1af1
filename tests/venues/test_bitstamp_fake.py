"""The Bitstamp connector against a fake Bitstamp on loopback, with faults."""

from __future__ import annotations

import time
from decimal import Decimal

import anyio
import orjson
import pydantic
import pytest

from crossbook.core.model import BookSnapshot, BookState, Side, Trade, VenueStatus
from crossbook.testing import ManualClock
from crossbook.testing.conformance import Subject, rig, run_conformance
from crossbook.toolkit import handover
from crossbook.toolkit.venue import HEARD, BookUpdate, ConnectionState, Reconnect, Rejected, Resync
from crossbook_bitstamp import BitstampConfig, factory
from crossbook_bitstamp.fake import BitstampDialect
from crossbook_bitstamp.protocol import BitstampProtocol, venue_symbol

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SYMBOLS = ("BTC-USD", "ETH-USD")


def subject() -> Subject:
    return Subject(
        venue="bitstamp",
        factory=factory,
        config_model=BitstampConfig,
        dialect=BitstampDialect,
        config=lambda fake: {"ws_url": fake.ws_url, "rest_url": fake.rest_url},
        symbols=SYMBOLS,
    )


@pytest.mark.slow
async def test_conformance() -> None:
    """Sync, drop, stall, garbage, trades, 429 and the venue's ``bts:request_reconnect``. A lost diff
    cannot be seen (no sequence numbers, no checksum): the kit skips the gap and checksum scenarios."""
    report = await run_conformance(subject())
    assert report.failures == {}, str(report)
    assert report.passed == ["sync", "drop", "stall", "garbage", "trades", "rest_429", "planned_reconnect"]
    assert report.skipped.keys() == {"gap", "checksum"}


@pytest.mark.slow
async def test_periodic_resnapshot_repairs_an_invisible_loss() -> None:
    """A lost diff leaves the book silently wrong; the next re-snapshot (a planned reconnect
    building fresh books from REST) repairs it without any book leaving ``live``."""
    async with rig(subject(), resnapshot_interval=1.5, heartbeat_interval=0.2) as r:
        await r.converge()
        mark = len(r.feed.events)
        rest_before = len(r.fake.rest_requests)
        await r.fake.step("BTC-USD", n=10, skip=True)  # lost: nobody can tell
        assert not r.in_sync("BTC-USD")
        assert r.in_sync("ETH-USD")

        def repaired() -> bool:
            return any(isinstance(e, BookSnapshot) and e.symbol == "BTC-USD" for e in r.feed.events[mark:])

        with anyio.fail_after(10):  # the market stands still: only a re-snapshot can repair it
            await r.feed.wait_for(repaired)
        assert r.in_sync("BTC-USD")
        assert r.fake.connects >= 2
        assert len(r.fake.rest_requests) >= rest_before + 1
        assert [e for e in r.feed.events[mark:] if isinstance(e, VenueStatus)] == []
        await r.converge()
        assert [e for e in r.feed.events[mark:] if isinstance(e, VenueStatus)] == []


@pytest.mark.slow
async def test_heartbeats_keep_a_quiet_connection() -> None:
    """No diff for several idle timeouts: the ``bts:heartbeat`` replies keep the connection."""
    async with rig(subject(), heartbeat_interval=0.2, resnapshot_interval=0) as r:
        await r.converge()
        mark = len(r.feed.events)
        heard = r.feed.heard_count
        await anyio.sleep(2.5)  # the duration under test (idle timeout 1 s), not a synchronization
        assert r.fake.connects == 1
        assert r.feed.events[mark:] == []
        assert r.feed.heard_count >= heard + 8
        assert all(r.feed.state(s) is BookState.LIVE for s in SYMBOLS)


async def test_trades_and_unreadable_diffs() -> None:
    async with rig(subject()) as r:
        await r.converge()
        dialect = r.fake.dialect
        assert isinstance(dialect, BitstampDialect)
        assert all(c.trades == set(SYMBOLS) for c in r.fake.connections)
        for trade in (
            Trade("ETH-USD", Decimal("3805.44"), Decimal("0.07920000"), Side.BUY, "216000477", time.time_ns()),
            Trade("ETH-USD", Decimal("3802.93"), Decimal("0.93100000"), Side.SELL, "216000484", time.time_ns()),
        ):
            for conn in r.fake.connections:
                assert conn.ws is not None
                for frame in dialect.trade(conn, trade):
                    await conn.ws.send(frame)
        with anyio.fail_after(5):
            await r.feed.wait_for(lambda: sum(isinstance(e, Trade) for e in r.feed.events) >= 2)
        trades = [e for e in r.feed.events if isinstance(e, Trade)]
        assert [(t.symbol, t.trade_id, t.price, t.size, t.side) for t in trades] == [
            ("ETH-USD", "216000477", Decimal("3805.44"), Decimal("0.07920000"), Side.BUY),
            ("ETH-USD", "216000484", Decimal("3802.93"), Decimal("0.93100000"), Side.SELL),
        ]
        # a diff whose body cannot be read would be a silent loss: the book resyncs instead
        bad = {"data": {"microtimestamp": "1", "bids": [["x", "1"]], "asks": []}, "channel": "diff_order_book_btcusd"}
        await r.fake.send_all(orjson.dumps(bad | {"event": "data"}).decode())
        await r.until(lambda: r.feed.resyncs("parse_error") >= 1)
        await r.converge()
        assert [e.symbol for e in r.feed.statuses() if e.reason == "parse_error"] == ["BTC-USD"]
        assert r.fake.connects == 1


def test_parse_rules() -> None:
    protocol = BitstampProtocol(["BTC-USD"], ws_url="ws://x", rest_url="http://x/")
    conn = ConnectionState()
    diff = '{"data":{"timestamp":"1","microtimestamp":"1641343691244908","bids":[["1.15979","0"]],"asks":[]},'
    outs = protocol.parse(conn, diff + '"channel":"diff_order_book_btcusd","event":"data"}', 5)
    assert outs == [
        BookUpdate("BTC-USD", [(Decimal("1.15979"), Decimal(0))], [], 5, 1641343691244908000, last=1641343691244908)
    ]
    assert protocol.parse(
        conn, diff.replace('"1641343691244908"', '"-1"') + '"channel":"diff_order_book_btcusd","event":"data"}', 5
    ) == [Resync("BTC-USD", "parse_error")]
    with pytest.raises(KeyError):
        protocol.parse(conn, diff + '"channel":"diff_order_book_ethusd","event":"data"}', 5)
    assert protocol.parse(conn, '{"event":"bts:request_reconnect","channel":"","data":""}', 0) == [
        Reconnect("bts:request_reconnect")
    ]
    assert protocol.parse(
        conn, '{"event":"bts:subscription_succeeded","channel":"live_trades_btcusd","data":{}}', 0
    ) == [HEARD]
    error = '{"event":"bts:error","channel":"diff_order_book_btcusd","data":{"code":null,"message":"Bad subscription"}}'
    assert protocol.parse(conn, error, 0) == [Rejected("BTC-USD", "Bad subscription")]
    with pytest.raises(ValueError, match="venue error"):
        protocol.parse(conn, '{"event":"bts:error","channel":"","data":{"message":"Incorrect JSON format."}}', 0)
    data = {"id": 7, "amount_str": "0.1", "price_str": "1.0", "type": True, "microtimestamp": "1"}
    trade = orjson.dumps({"data": data, "channel": "live_trades_btcusd", "event": "trade"}).decode()
    with pytest.raises(TypeError):
        protocol.parse(conn, trade, 0)  # a boolean is not a trade type
    request = protocol.snapshot_request("BTC-USD")
    assert request.url == "http://x/api/v2/order_book/btcusd/"
    assert request.params == {}
    snap = protocol.parse_snapshot(
        "BTC-USD", b'{"timestamp":"1","microtimestamp":"17","bids":[["2","1"]],"asks":[]}', 9
    )
    assert snap.snapshot
    assert snap.last == 17
    assert snap.bids == [(Decimal(2), Decimal(1))]
    assert protocol.app_ping() == '{"event":"bts:heartbeat"}'


def test_config_and_symbols() -> None:
    config = BitstampConfig()
    assert (config.ws_url, config.rest_url, config.resnapshot_interval) == (
        "wss://ws.bitstamp.net",
        "https://www.bitstamp.net",
        300.0,
    )
    assert factory("bitstamp", SYMBOLS, config).max_connection_age == 300.0
    assert factory("bitstamp", SYMBOLS, BitstampConfig(resnapshot_interval=0)).max_connection_age is None
    with pytest.raises(pydantic.ValidationError):
        BitstampConfig.model_validate({"resnapshot_interval": -1})
    with pytest.raises(pydantic.ValidationError):
        BitstampConfig.model_validate({"channels": ["x"]})
    assert venue_symbol("BTC-USD") == "btcusd"
    assert venue_symbol("USDT-EUR") == "usdteur"
    with pytest.raises(ValueError, match="no Bitstamp"):
        venue_symbol("BTC-USD-PERP")
    protocol = BitstampProtocol(SYMBOLS, ws_url="ws://x", rest_url="http://x", trades=False)
    (stream,) = protocol.streams(SYMBOLS)
    assert [orjson.loads(f)["data"]["channel"] for f in stream.subscribe] == [
        "diff_order_book_btcusd",
        "diff_order_book_ethusd",
    ]


@pytest.mark.slow
async def test_a_subscription_rejected_on_the_new_connection_of_a_planned_reconnect() -> None:
    """The new connection's BTC subscription is refused while the old one still serves BTC: the
    new BTC book must never take over (a REST snapshot alone would make it live, then frozen);
    the old connection keeps serving BTC, ETH moves over. At the handover deadline (the test's
    clock moves 60 s at once) the old connection ends and BTC is ``down`` because it was
    rejected, not left ``connecting``."""
    clock = ManualClock()
    async with rig(subject(), clock=clock, idle_timeout=600.0) as r:
        await r.converge()
        mark = len(r.feed.events)
        old, new = await r.handing_over(0.5)
        assert new.ws is not None
        error = {"event": "bts:error", "channel": "diff_order_book_btcusd", "data": {"message": "subscription failed"}}
        await new.ws.send(orjson.dumps(error).decode())
        new.symbols.discard("BTC-USD")  # and the venue sends it no BTC diffs

        def took_over(symbol: str) -> bool:
            return any(isinstance(e, BookSnapshot) and e.symbol == symbol for e in r.feed.events[mark:])

        await r.until(lambda: took_over("ETH-USD"))
        await r.until(lambda: r.in_sync("BTC-USD") and r.in_sync("ETH-USD"))  # the market moves meanwhile
        assert not took_over("BTC-USD")
        assert old in r.fake.connections

        clock.advance(handover.HANDOVER_TIMEOUT)
        await r.until(lambda: old not in r.fake.connections)
        await r.until(lambda: r.feed.state("BTC-USD") is not BookState.LIVE)
        last = r.feed.statuses("BTC-USD")[-1]
        assert (last.state, last.reason) == (BookState.DOWN, "rejected")
        assert r.feed.state("BTC-USD") is BookState.DOWN
        await r.converge(["ETH-USD"])


async def test_a_successor_lost_after_a_refusal_on_the_old_connection_is_reconnecting() -> None:
    """BTC was refused on the old connection (down, rejected) and becomes the new connection's at
    once; that connection is lost while the old one still serves ETH: BTC is ``connecting``
    (reconnect), not the old connection's refusal again."""
    async with rig(subject(), idle_timeout=30.0) as r:
        await r.converge()
        (first,) = r.fake.connections
        assert first.ws is not None
        error = {"event": "bts:error", "channel": "diff_order_book_btcusd", "data": {"message": "subscription failed"}}
        await first.ws.send(orjson.dumps(error).decode())
        first.symbols.discard("BTC-USD")
        await r.until(lambda: r.feed.state("BTC-USD") is BookState.DOWN)
        old, new = await r.handing_over(5.0)  # the new books wait for their snapshots: the old stays
        assert old is first
        assert new.ws is not None
        await r.until(lambda: r.feed.state("BTC-USD") is BookState.SYNCING)  # the new connection's, at once
        new.ws.transport.abort()
        await r.until(lambda: r.feed.state("BTC-USD") is not BookState.SYNCING)
        last = r.feed.statuses("BTC-USD")[-1]
        assert (last.state, last.reason) == (BookState.CONNECTING, "reconnect")
        assert old in r.fake.connections
