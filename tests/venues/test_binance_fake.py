"""The Binance connectors against a fake Binance on loopback, with faults."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import anyio
import orjson
import pytest

from crossbook.core.model import BookSnapshot, BookState, Trade, VenueStatus
from crossbook.testing.conformance import Subject, rig, run_conformance
from crossbook.testing.fakevenue import FakeVenue
from crossbook.toolkit import handover
from crossbook.toolkit.handover import Connection, Handover
from crossbook.toolkit.retry import BACKOFF_BASE
from crossbook.toolkit.sync import BookSync
from crossbook.toolkit.venue import BookUpdate, Stream
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
    )


@pytest.mark.parametrize("futures", [False, True], ids=["spot", "usdm"])
@pytest.mark.slow
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


@pytest.mark.slow
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


def trades_apart(fake: FakeVenue) -> dict[str, Any]:
    """Trades on their own connection (another URL of the same fake)."""
    return {"ws_url": fake.ws_url, "rest_url": fake.rest_url, "trades_ws_url": f"{fake.ws_url}/t"}


def trade_frame(trade_id: int, pair: str = "BTCUSDT") -> str:
    data = {"e": "trade", "s": pair, "t": trade_id, "p": "100.5", "q": "0.1", "T": 1_700_000_000_000, "m": True}
    return orjson.dumps({"stream": f"{pair.lower()}@trade", "data": data}).decode()


@pytest.mark.slow
async def test_a_trades_only_connection_lost_while_handing_over_is_not_reopened() -> None:
    """The venue drops the old trades-only connection before a trade showed its successor carries
    the trades: the successor does, and reopening the old one would keep two for good."""
    async with rig(replace(subject(futures=True), config=trades_apart), idle_timeout=30.0) as r:
        await r.converge()
        old = next(c for c in await r.handing_over(1.0, connections=4) if c.path.startswith("/t"))
        assert old.ws is not None
        old.ws.transport.abort()
        await r.until(lambda: len(r.fake.connections) == 2)  # and the old book one, at the takeover
        connects = r.fake.connects
        await anyio.sleep(BACKOFF_BASE)  # a reopened connection would come within the first backoff
        assert r.fake.connects == connects == 4
        assert sorted(c.path for c in r.fake.connections) == ["/stream", "/t/stream"]
        await r.fake.send_all(trade_frame(1))
        await r.until(lambda: any(isinstance(e, Trade) for e in r.feed.events))


@pytest.mark.slow
async def test_a_second_planned_reconnect_hands_over_once() -> None:
    """The connection that took over at one planned reconnect is the old one at the next: its
    books, no longer active, must not take themselves back from its successor."""
    async with rig(subject(), idle_timeout=30.0) as r, anyio.create_task_group() as tg:
        await r.converge()

        async def market() -> None:  # updates keep coming during the handovers, as they do
            while True:
                for symbol in r.subject.symbols:
                    await r.fake.step(symbol)
                await anyio.sleep(0.005)

        tg.start_soon(market)
        connects = r.fake.connects
        for round_ in (1, 2):
            snapshots = sum(isinstance(e, BookSnapshot) for e in r.feed.events)
            r.fake.rest_delay = 0.2  # the successor's second book goes live a while after its first
            await r.fake.request_reconnect()
            await r.until(lambda: r.fake.connects == connects + round_ and len(r.fake.connections) == 1)  # noqa: B023
            await anyio.sleep(0.3)  # a book that took itself back would do so on its next update
            assert sum(isinstance(e, BookSnapshot) for e in r.feed.events) == snapshots + 2  # one takeover each
        tg.cancel_scope.cancel()
        await r.converge()


@pytest.mark.slow
async def test_a_successor_lost_before_taking_over_is_retried_as_a_successor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The new connection of a planned reconnect is lost before its books are live: its retry
    still builds them privately while the old connection serves them (subscribers see no
    resync) and takes them over, so the old connection ends then, not at the handover deadline."""
    monkeypatch.setattr(handover, "HANDOVER_TIMEOUT", 30.0)
    async with rig(subject(), idle_timeout=30.0) as r:
        await r.converge()
        mark = len(r.feed.events)
        old, new = await r.handing_over(1.0)
        assert new.ws is not None
        new.ws.transport.abort()
        await r.until(lambda: r.fake.connects == 3)
        r.fake.rest_delay = 0.0
        await r.until(lambda: old not in r.fake.connections)  # 10 s: long before the deadline
        await r.converge()
        assert [e for e in r.feed.events[mark:] if isinstance(e, VenueStatus)] == []
        assert sum(isinstance(e, BookSnapshot) for e in r.feed.events[mark:]) == 2  # one takeover each


@pytest.mark.slow
async def test_a_connection_lost_while_handing_over_leaves_its_books_to_the_successor() -> None:
    """The venue drops the old connection of a planned reconnect while the successor still waits
    for its snapshots: the old one is not reopened (two connections would serve one stream, one of
    them nothing, for good); the successor takes the books over once they are live."""
    async with rig(subject(), idle_timeout=30.0) as r:
        await r.converge()
        old, _ = await r.handing_over(1.0)
        assert old.ws is not None
        old.ws.transport.abort()
        await r.until(lambda: len(r.fake.connections) == 1)
        r.fake.rest_delay = 0.0
        await r.converge()
        await anyio.sleep(BACKOFF_BASE)  # a reopened connection would come within the first backoff
        assert r.fake.connects == 2
        assert len(r.fake.connections) == 1


@pytest.mark.slow
async def test_a_successor_takes_over_a_book_that_resynced_during_the_handover() -> None:
    """The old connection's book hits a gap while its successor waits for its REST snapshot; the
    answer makes the successor's book live first, privately, while the old one still resyncs.
    The successor keeps its book current and takes over: it stayed stuck until the handover
    deadline, and then the book went down with both connections open."""
    async with rig(subject(), idle_timeout=30.0) as r:
        await r.converge()
        requests = len(r.fake.rest_requests)
        r.fake.rest_delay = 2.0
        await r.fake.request_reconnect()
        # The successor's first snapshot request is in flight (they go one at a time).
        await r.until(lambda: len(r.fake.connections) == 2 and len(r.fake.rest_requests) == requests + 1)
        old, new = r.fake.connections  # connections in order
        assert new.ws is not None
        payload = r.fake.dialect.advance("BTC-USDT", *r.fake.market.change("BTC-USDT", 3))
        for frame in r.fake.dialect.encode(new, "BTC-USDT", payload):  # the old connection misses it
            await new.ws.send(frame)
        await r.fake.step("BTC-USDT")
        await r.until(lambda: r.feed.resyncs("gap") == 1)
        r.fake.rest_delay = 0.0  # the request in flight still takes its 2 s
        with anyio.fail_after(20):  # the handover deadline is 60 s
            while old in r.fake.connections:
                for symbol in r.subject.symbols:
                    await r.fake.step(symbol)
                await anyio.sleep(0.05)  # a market moving, not a wait for an event
        await r.converge()
        assert r.fake.connects == 2


@pytest.mark.parametrize("separate", [False, True], ids=["with-books", "trades-only"])
@pytest.mark.slow
async def test_a_planned_reconnect_publishes_each_trade_once(separate: bool) -> None:
    """While the old and the new connections overlap (both get every trade), a trade is published
    once: on a connection that also carries books (spot) as on a trades-only one (USD-M with
    ``trades_ws_url``, where both connections used to publish until the handover timeout). An old
    trades-only connection ends once its successor has delivered a trade it delivered too: not
    before (it ended at the book takeover, whether or not its successor carried trades yet)."""
    subj = subject(futures=separate)
    if separate:
        subj = replace(subj, config=trades_apart)
    connections = 2 if separate else 1
    async with rig(subj) as r:
        await r.converge()
        snapshots = sum(isinstance(e, BookSnapshot) for e in r.feed.events)
        r.fake.rest_delay = 1.0  # the new connection's books wait: both connections stay open
        await r.fake.request_reconnect()
        await r.until(lambda: len(r.fake.connections) == 2 * connections)
        for trade_id in (1, 2, 3):
            await r.fake.send_all(trade_frame(trade_id))
        await r.until(lambda: sum(isinstance(e, Trade) for e in r.feed.events) >= 3)
        if separate:  # once both connections have delivered a trade of each of its symbols
            await r.fake.send_all(trade_frame(1, "ETHUSDT"))
            await r.until(lambda: len(r.fake.connections) == 3)  # the old trades-only one ended
            assert sum(isinstance(e, BookSnapshot) for e in r.feed.events) == snapshots, "before the takeover"
        r.fake.rest_delay = 0.0
        await r.until(lambda: r.fake.connects >= 2 * connections and len(r.fake.connections) == connections)
        for _ in range(2):  # a repeat on one connection is not a duplicate (Kraken v1 ids are times)
            await r.fake.send_all(trade_frame(4))

        def btc() -> list[str]:
            return [e.trade_id for e in r.feed.events if isinstance(e, Trade) and e.symbol.startswith("BTC")]

        await r.until(lambda: len(btc()) >= 5)
        assert btc() == ["1", "2", "3", "4", "4"]


@pytest.mark.slow
async def test_a_book_keeps_only_the_prices_its_snapshot_covered_and_is_rebased_when_the_market_leaves_them() -> None:
    """``snapshot_limit`` 4 of a 30-level market: each snapshot covers the best 4 prices a side;
    levels sent beyond them are dropped, so the book is always the venue's top levels exactly. A
    side left with fewer than 2 has a new snapshot fetched while the book stays live."""
    symbol = "BTC-USDT"

    def exact_top() -> bool:
        if r.feed.state(symbol) is not BookState.LIVE:
            return False
        book, truth = r.feed.book(symbol), r.market.books[symbol]
        bids, asks = book.bids(), book.asks()
        exact = bids == truth.top_bids(len(bids)) and asks == truth.top_asks(len(asks))
        return exact and len(bids) >= 1 and len(asks) >= 1

    async with rig(subject(symbols=(symbol,)), snapshot_limit=4) as r:
        await r.until(lambda: len(r.fake.rest_requests) >= 2 and exact_top(), limit=30)
        assert len(r.feed.book(symbol)) < len(r.market.books[symbol])  # deeper levels were dropped
        assert [s.state for s in r.feed.statuses(symbol)] == [BookState.SYNCING]  # then live, throughout


def handing_over() -> tuple[Handover, BookSync, BookSync]:
    """A Binance connector's handover whose live book of BTC-USDT is at id 20, and a successor
    building its book from a snapshot it waits for."""
    symbol = "BTC-USDT"
    connector = spot("binance", (symbol,), BinanceConfig())
    machine = connector.handover
    active, successor = connector.make_sync(symbol), connector.make_sync(symbol)
    for sync in (active, successor):
        sync.start(0, [], [])
    active.on_snapshot(BookUpdate(symbol, [(Decimal(1), Decimal(1))], [(Decimal(2), Decimal(1))], 0, last=20), [], [])
    machine.active[symbol] = active
    machine.building.add(successor)
    machine.waiting[symbol] = [successor]
    return machine, active, successor


def snapshot_body(last: int) -> bytes:
    return orjson.dumps({"lastUpdateId": last, "bids": [["1", "2"]], "asks": [["2", "2"]]})


def test_a_successor_does_not_take_over_on_a_snapshot_older_than_the_live_book() -> None:
    """A snapshot request in flight when a successor subscribed is answered to it too: with nothing
    buffered to align it, only the live book's ids show that it is older."""
    symbol = "BTC-USDT"
    machine, active, successor = handing_over()

    step = machine.snapshot(symbol, snapshot_body(15), 1)
    assert not successor.live
    assert machine.waiting[symbol] == [successor]
    assert step.fetch == [symbol]
    assert machine.active[symbol] is active

    step = machine.snapshot(symbol, snapshot_body(25), 2)
    assert successor.live
    assert machine.active[symbol] is successor
    assert [type(e) for e in step.events] == [BookSnapshot]


def test_a_successor_behind_the_live_book_takes_over_once_it_has_caught_up() -> None:
    """A successor whose connection lags the old one goes live on an older state: taken over then,
    subscribers would see the book step back. It takes over when its own updates reach the old one's."""
    symbol = "BTC-USDT"
    machine, active, successor = handing_over()
    conn = Connection(Stream("ws://x", (symbol,)))
    conn.syncs[symbol] = successor

    def diff(first: int, last: int) -> str:
        return orjson.dumps(
            {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": last, "b": [["1", str(first)]], "a": []}
        ).decode()

    machine.received(conn, diff(16, 18), 1, 0.0)
    machine.snapshot(symbol, snapshot_body(15), 2)
    assert successor.live
    assert successor.last == 18
    assert machine.active[symbol] is active  # 18 is older than the live book's 20

    machine.received(conn, diff(19, 20), 3, 0.0)
    assert machine.active[symbol] is successor
