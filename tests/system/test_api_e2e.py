"""The API end to end: a daemon in this process, real websockets clients, a test-driven venue."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import scripted_plugin
from crossbook.client import Mirror
from crossbook.core.exact import text
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Level, Side, Trade, VenueStatus
from crossbook.service.app import Addresses, Daemon
from crossbook.toolkit.connector import Feed
from support import reloader, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

VENUES = """
plugins = ["scripted_plugin"]
[consolidated]
depth = 10
stale_after = {stale}
[venues.alpha]
connector = "scripted"
symbols = ["BTC-USDT", "ETH-USDT"]
[venues.beta]
connector = "scripted"
symbols = ["BTC-USDT"]
"""


UNLIMITED = "[server]\nmax_ops_per_second = 1000000\n"
"""These clients sync (ping) as fast as the daemon answers, which is not what the rate limit is
tested on: over 50 requests a second they would get ``rate_limited`` errors instead of pongs."""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Addresses]]:
    async with running_daemon(tmp_path, VENUES.format(stale=60) + UNLIMITED) as running:
        yield running


class Client:
    """A websockets client that mirrors its channels and checks every seq."""

    def __init__(self, ws: ClientConnection, batched: bool = False) -> None:
        self.ws = ws
        self.batched = batched
        """Connected with ``?batch=1``: every frame is a JSON array of messages."""
        self.mirror = Mirror()
        self.ids = 0
        self.received: list[dict[str, Any]] = []
        self.frames = 0
        self.pending: deque[dict[str, Any]] = deque()

    async def request(self, **msg: Any) -> dict[str, Any]:
        """Send a request and read up to its reply, applying channel messages on the way."""
        self.ids += 1
        await self.ws.send(orjson.dumps({**msg, "id": self.ids}).decode())
        while True:
            reply = await self.next()
            assert reply.get("code") != "rate_limited", reply
            if reply.get("id") == self.ids and "channel" not in reply:
                return reply

    async def next(self) -> dict[str, Any]:
        if not self.pending:
            data = orjson.loads(await self.ws.recv())
            self.frames += 1
            if self.batched:
                assert isinstance(data, list)
                assert data
                self.pending.extend(data)
            else:
                assert isinstance(data, dict)
                self.pending.append(data)
        msg = self.pending.popleft()
        self.received.append(msg)
        self.mirror.apply(msg)
        return msg

    async def sync(self) -> None:
        """Everything queued before now has arrived (replies are queued behind channel messages)."""
        assert (await self.request(op="ping"))["type"] == "pong"


def url(addresses: Addresses, batched: bool = False) -> str:
    return f"ws://127.0.0.1:{addresses.api_port}/v1/stream" + ("?batch=1" if batched else "")


def random_levels(rng: random.Random, mid: int, n: int, zero_share: float = 0.3) -> tuple[list[Level], list[Level]]:
    def level(side: int) -> Level:
        price = Decimal(mid + side * rng.randint(1, 40)) / 10
        size = Decimal(0) if rng.random() < zero_share else Decimal(rng.randint(1, 10**6)) / 10**4
        return price, size

    return [level(-1) for _ in range(n)], [level(1) for _ in range(n)]


def server_view(daemon: Daemon, symbol: str, venue: str | None, depth: int) -> dict[str, list[Any]]:
    """The daemon's book as a client should have it."""
    if venue is None:
        book = daemon.engine.consolidated[symbol]
        return {
            side: [(text(p), text(s), {v: text(x) for v, x in a.items()}) for p, s, a in levels]
            for side, levels in (("bids", book.top_bids(depth)), ("asks", book.top_asks(depth)))
        }
    vbook = daemon.engine.book(symbol, venue)
    return {
        side: [(text(p), text(s), None) for p, s in levels]
        for side, levels in (("bids", vbook.top_bids(depth)), ("asks", vbook.top_asks(depth)))
    }


def client_view(client: Client, channel: str) -> dict[str, list[Any]]:
    book = client.mirror.books[channel]
    return {"bids": book.top("bids"), "asks": book.top("asks")}


async def live_feeds(*venues: str) -> dict[str, Feed]:
    return {v: await scripted_plugin.feed(v) for v in venues}


@pytest.mark.parametrize("batched", [False, True], ids=["frame_per_message", "batched"])
@pytest.mark.slow
async def test_reconstructed_books_equal_the_daemons_at_every_check(
    daemon: tuple[Daemon, Addresses], batched: bool
) -> None:
    d, addresses = daemon
    feeds = await live_feeds("alpha", "beta")
    rng = random.Random(7)
    async with connect(url(addresses, batched)) as ws, connect(url(addresses, batched)) as deep_ws:
        client = Client(ws, batched)
        channels = ["book.BTC-USDT", "book.BTC-USDT.alpha", "bbo.BTC-USDT", "trades.BTC-USDT", "status"]
        ack = await client.request(op="subscribe", channels=channels, depth=5)
        assert ack == {"type": "ack", "op": "subscribe", "id": 1, "channels": channels}
        deep = Client(deep_ws, batched)
        await deep.request(op="subscribe", channels=["book.BTC-USDT"], depth=10)
        for feed in feeds.values():
            bids, asks = random_levels(rng, 650000, 30, zero_share=0)
            now = feed.now_ns()
            feed.publish([BookSnapshot("BTC-USDT", bids, asks, now)])
        trades = 0
        for step in range(3000):
            venue = rng.choice(["alpha", "beta"])
            feed = feeds[venue]
            now = feed.now_ns()
            roll = rng.random()
            if roll < 0.01:
                feed.publish([VenueStatus("BTC-USDT", BookState.SYNCING, now, "gap")])
                bids, asks = random_levels(rng, 650000, 20, zero_share=0)
                feed.publish([BookSnapshot("BTC-USDT", bids, asks, now)])
            elif roll < 0.05:
                trades += 1
                feed.publish([Trade("BTC-USDT", Decimal("65000.1"), Decimal("0.5"), Side.BUY, str(step), now, now)])
            else:
                bids, asks = random_levels(rng, 650000, rng.randint(1, 6))
                feed.publish([BookDelta("BTC-USDT", bids, asks, now)])
            if rng.random() < 0.7:  # else this message and the next are read together: one update
                await anyio.lowlevel.checkpoint()
            if step % 50 == 0:
                await client.sync()
                await deep.sync()
                assert client_view(client, "book.BTC-USDT") == server_view(d, "BTC-USDT", None, 5)
                assert client_view(client, "book.BTC-USDT.alpha") == server_view(d, "BTC-USDT", "alpha", 5)
                assert client_view(deep, "book.BTC-USDT") == server_view(d, "BTC-USDT", None, 10)
        await client.sync()
        assert client_view(client, "book.BTC-USDT") == server_view(d, "BTC-USDT", None, 5)
        assert client.mirror.seq["book.BTC-USDT"] > 1000
        kinds = {m["type"] for m in client.received}
        assert {"snapshot", "delta", "bbo", "trade", "status"} <= kinds
        assert sum(m["type"] == "trade" for m in client.received) == trades
        last_bbo = [m for m in client.received if m["type"] == "bbo"][-1]
        bbo = d.engine.consolidated["BTC-USDT"].bbo()
        assert bbo.bid is not None
        assert last_bbo["bid"] == [text(bbo.bid[0]), text(bbo.bid[1]), list(bbo.bid[2])]
        assert last_bbo["crossed"] == bbo.crossed
        if batched:  # what one venue message changes arrives in one frame
            assert client.frames < len(client.received) * 0.7
        else:
            assert client.frames == len(client.received)


async def test_messages_read_together_go_out_as_one_update_per_channel(daemon: tuple[Daemon, Addresses]) -> None:
    """What a connector publishes before it waits (a venue's backlog read at once) is in the books
    first, then each book and bbo channel gets one update for all of it: stamped with the receive
    time of the earliest message that changed its book, and exact; no trade or status is left out."""
    d, addresses = daemon
    feeds = await live_feeds("alpha", "beta")
    for feed in feeds.values():
        feed.publish([BookSnapshot("BTC-USDT", [(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], 1)])
    feeds["alpha"].publish([BookSnapshot("ETH-USDT", [(Decimal(10), Decimal(1))], [], 1)])
    async with connect(url(addresses)) as ws:
        client = Client(ws)
        channels = ["book.BTC-USDT", "book.BTC-USDT.alpha", "bbo.BTC-USDT", "trades.BTC-USDT", "status"]
        channels.append("book.ETH-USDT")
        await client.request(op="subscribe", channels=channels, depth=5)
        await client.sync()
        seen = len(client.received)
        alpha, beta = feeds["alpha"], feeds["beta"]
        first = alpha.now_ns()
        alpha.publish([BookDelta("BTC-USDT", [(Decimal(100), Decimal(3))], [], first)])
        beta.publish([Trade("BTC-USDT", Decimal(101), Decimal(1), Side.BUY, "t1", first + 1, first + 1)])
        alpha.publish([BookDelta("ETH-USDT", [(Decimal(10), Decimal(2))], [], first + 2)])
        bids, asks = [(Decimal("100.5"), Decimal(2))], [(Decimal(101), Decimal(0))]
        alpha.publish([BookDelta("BTC-USDT", bids, asks, first + 2)])
        alpha.publish([BookDelta("ETH-USDT", [(Decimal(9), Decimal(1))], [], first + 3)])
        beta.publish([VenueStatus("BTC-USDT", BookState.SYNCING, first + 3, "gap")])
        beta.publish([Trade("BTC-USDT", Decimal(101), Decimal(2), Side.SELL, "t2", first + 4, first + 4)])
        await client.sync()
        got = [m for m in client.received[seen:] if "channel" in m]
        by_channel: dict[str, list[dict[str, Any]]] = {}
        for m in got:
            by_channel.setdefault(m["channel"], []).append(m)
        assert [m["type"] for m in by_channel["book.BTC-USDT"]] == ["delta"]
        assert [m["type"] for m in by_channel["book.BTC-USDT.alpha"]] == ["delta"]
        assert [m["type"] for m in by_channel["bbo.BTC-USDT"]] == ["bbo"]
        assert [m["id"] for m in by_channel["trades.BTC-USDT"]] == ["t1", "t2"]
        assert [(m["venue"], m["state"]) for m in by_channel["status"]] == [("beta", "syncing")]
        assert {m["ts"] for m in got if m["type"] in ("delta", "bbo") and "BTC" in m["channel"]} == {first}
        assert [(m["type"], m["ts"]) for m in by_channel["book.ETH-USDT"]] == [("delta", first + 2)]
        assert client_view(client, "book.ETH-USDT") == server_view(d, "ETH-USDT", None, 5)
        assert client_view(client, "book.BTC-USDT") == server_view(d, "BTC-USDT", None, 5)
        assert client_view(client, "book.BTC-USDT") == {
            "bids": [("100.5", "2", {"alpha": "2"}), ("100", "3", {"alpha": "3"})],
            "asks": [],
        }
        assert client_view(client, "book.BTC-USDT.alpha") == server_view(d, "BTC-USDT", "alpha", 5)
        assert by_channel["bbo.BTC-USDT"][0]["bid"] == ["100.5", "2", ["alpha"]]
        assert by_channel["bbo.BTC-USDT"][0]["ask"] is None


async def test_a_request_handled_while_updates_are_held_back_comes_after_them(
    daemon: tuple[Daemon, Addresses],
) -> None:
    """A client's request can be handled after a venue message changed the books and before
    subscribers were told (its reader runs in the same loop pass): what was held back goes out
    first, so a new subscriber's first bbo and status are current and nothing is sent twice."""
    d, addresses = daemon
    feeds = await live_feeds("alpha", "beta")
    for feed in feeds.values():
        feed.publish([BookSnapshot("BTC-USDT", [(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], 1)])
    async with connect(url(addresses)) as ws1, connect(url(addresses)) as ws2:
        old, new = Client(ws1), Client(ws2)
        await old.request(op="subscribe", channels=["bbo.BTC-USDT", "status"])
        await new.sync()
        (session,) = [s for s in d.server.connections if not s.subs]
        alpha, beta = feeds["alpha"], feeds["beta"]
        first = alpha.now_ns()
        alpha.publish([BookDelta("BTC-USDT", [(Decimal("100.5"), Decimal(2))], [], first)])
        beta.publish([VenueStatus("BTC-USDT", BookState.SYNCING, first + 1, "gap")])
        request = orjson.dumps({"op": "subscribe", "id": 9, "channels": ["bbo.BTC-USDT", "status"]})
        assert d.hub.receive(session, request, alpha.now_ns()) is None  # what ApiServer._read does
        d.server.wake({session})
        await old.sync()
        await new.sync()
        bbos = [m for m in new.received if m.get("channel") == "bbo.BTC-USDT"]
        assert [m["bid"] for m in bbos] == [["100.5", "2", ["alpha"]]]
        states = [(m["venue"], m["symbol"], m["state"]) for m in new.received if m.get("channel") == "status"]
        assert [st for st in states if st[1] == "BTC-USDT"] == [
            ("alpha", "BTC-USDT", "live"),
            ("beta", "BTC-USDT", "syncing"),
        ]
        told = [m for m in old.received if m.get("ts") == first]
        assert [m["channel"] for m in told] == ["bbo.BTC-USDT"]
        assert [(m["venue"], m["state"]) for m in old.received if m.get("ts") == first + 1] == [("beta", "syncing")]


@pytest.mark.slow
async def test_a_lingering_connection_gets_what_came_within_linger_ms_in_one_write(
    daemon: tuple[Daemon, Addresses],
) -> None:
    """``?linger_ms=`` holds a connection's messages from the first queued until the timer ends,
    then writes them at once: every delta in order (not conflated), seq unbroken, the mirror exact.
    A prompt client beside it gets each update as it happens."""
    d, addresses = daemon
    feeds = await live_feeds("alpha", "beta")
    alpha = feeds["alpha"]
    alpha.publish([BookSnapshot("BTC-USDT", [(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], 1)])
    async with connect(url(addresses, True)) as ws, connect(url(addresses, True) + "&linger_ms=1000") as held_ws:
        prompt, lingering = Client(ws, True), Client(held_ws, True)
        for client in (prompt, lingering):
            await client.request(op="subscribe", channels=["book.BTC-USDT"], depth=5)
            assert (await client.next())["type"] == "snapshot"  # queued with the ack (one frame held)
        frames = lingering.frames
        start = time.monotonic()
        for i in range(20):
            bid = (Decimal(100) + Decimal(i + 1) / 100, Decimal(i + 1))  # a new best bid: in the top 5
            alpha.publish([BookDelta("BTC-USDT", [bid], [], alpha.now_ns())])
            assert (await prompt.next())["seq"] == i + 2  # one update each, after the snapshot
        published = time.monotonic() - start
        assert published < 0.9, f"publishing took {published:.2f} s: too long to see the holding"
        deltas = [await lingering.next() for _ in range(20)]
        waited = time.monotonic() - start
        assert lingering.frames == frames + 1
        assert [m["seq"] for m in deltas] == list(range(2, 22))
        assert waited >= 0.99
        assert client_view(lingering, "book.BTC-USDT") == server_view(d, "BTC-USDT", None, 5)
        assert client_view(prompt, "book.BTC-USDT") == client_view(lingering, "book.BTC-USDT")


@pytest.mark.slow
async def test_a_shutdown_writes_what_a_lingering_connection_holds_before_closing(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, VENUES.format(stale=60) + UNLIMITED) as (_, addresses):
        alpha = await scripted_plugin.feed("alpha")
        alpha.publish([BookSnapshot("BTC-USDT", [(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], 1)])
        held_ws = await connect(url(addresses, True) + "&linger_ms=1000")
        prompt_ws = await connect(url(addresses, True))
        lingering, prompt = Client(held_ws, True), Client(prompt_ws, True)
        for client in (lingering, prompt):
            await client.request(op="subscribe", channels=["book.BTC-USDT"], depth=5)
            assert (await client.next())["type"] == "snapshot"
        alpha.publish([BookDelta("BTC-USDT", [(Decimal("100.5"), Decimal(1))], [], alpha.now_ns())])
        assert (await prompt.next())["type"] == "delta"  # queued for both: the lingering one holds it
    delta = await lingering.next()
    assert (delta["type"], delta["seq"], delta["bids"]) == ("delta", 2, [["100.5", "1", {"alpha": "1"}]])
    with pytest.raises(ConnectionClosed) as closed:
        await lingering.next()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    await prompt_ws.close()


async def test_a_reload_tells_what_was_held_back_before_removing_channels(daemon: tuple[Daemon, Addresses]) -> None:
    """A trade read before a reload removed its symbol is sent, then ``unsubscribed``."""
    d, addresses = daemon
    path = Path(d.config.source)

    def drop_eth() -> None:
        path.write_text(path.read_text().replace('symbols = ["BTC-USDT", "ETH-USDT"]', 'symbols = ["BTC-USDT"]'))

    d.reloader = reloader(path)
    alpha = (await live_feeds("alpha"))["alpha"]
    async with connect(url(addresses)) as ws:
        client = Client(ws)
        await client.request(op="subscribe", channels=["trades.ETH-USDT"])
        now = alpha.now_ns()
        alpha.publish([Trade("ETH-USDT", Decimal(10), Decimal(1), Side.BUY, "t-eth", now, now)])
        drop_eth()
        assert d.reload() is True
        await client.sync()
        told = [(m["type"], m.get("id")) for m in client.received if m.get("channel") == "trades.ETH-USDT"]
        assert told == [("trade", "t-eth"), ("unsubscribed", None)]


async def test_a_failed_publish_starts_every_subscriber_afresh(
    daemon: tuple[Daemon, Addresses], caplog: pytest.LogCaptureFixture
) -> None:
    """A failure while publishing (here a trade time no JSON encoder takes, as a faulty
    connector might send) must not leave subscribers half told: it is logged, and every
    subscription gets its channel's current state, marked conflated; updates go on."""
    d, addresses = daemon
    alpha = (await live_feeds("alpha"))["alpha"]
    alpha.publish([BookSnapshot("BTC-USDT", [(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], 1)])
    async with connect(url(addresses)) as ws:
        client = Client(ws)
        channels = ["book.BTC-USDT", "bbo.BTC-USDT", "trades.BTC-USDT"]
        await client.request(op="subscribe", channels=channels, depth=5)
        seen = len(client.received)
        now = alpha.now_ns()
        bad = Trade("BTC-USDT", Decimal(100), Decimal(1), Side.BUY, "t1", now, 2**70)  # over 64 bits
        alpha.publish([BookDelta("BTC-USDT", [(Decimal("100.5"), Decimal(2))], [], now), bad])
        fresh: list[tuple[str, str]] = []
        with anyio.fail_after(10):
            while len(fresh) < 3:
                msg = await client.next()
                if msg.get("conflated") or msg["type"] == "conflated":
                    fresh.append((msg["channel"], msg["type"]))
        assert "publishing an update failed" in caplog.text
        assert sorted(fresh) == [
            ("bbo.BTC-USDT", "bbo"),
            ("book.BTC-USDT", "snapshot"),
            ("trades.BTC-USDT", "conflated"),
        ]
        assert not [m for m in client.received[seen:] if m["type"] in ("delta", "trade")]  # nothing half told
        assert client_view(client, "book.BTC-USDT") == server_view(d, "BTC-USDT", None, 5)
        alpha.publish([BookDelta("BTC-USDT", [(Decimal("100.7"), Decimal(1))], [], alpha.now_ns())])
        await client.sync()
        assert client_view(client, "book.BTC-USDT") == server_view(d, "BTC-USDT", None, 5)
        assert client.received[-2]["type"] == "bbo"  # before the pong
        assert client.received[-2]["bid"] == ["100.7", "1", ["alpha"]]


async def test_errors_keep_the_connection_open(daemon: tuple[Daemon, Addresses]) -> None:
    _, addresses = daemon
    async with connect(url(addresses)) as ws:
        client = Client(ws)
        await ws.send("{not json")
        assert (await client.next())["code"] == "bad_json"
        await ws.send("[1, 2]")
        assert (await client.next())["code"] == "bad_json"
        cases: list[tuple[dict[str, Any], str]] = [
            ({"op": "dance"}, "unknown_op"),
            ({"op": "subscribe"}, "bad_request"),
            ({"op": "subscribe", "channels": "book.BTC-USDT"}, "bad_request"),
            ({"op": "subscribe", "channels": ["book.DOGE-USDT"]}, "unknown_channel"),
            ({"op": "subscribe", "channels": ["book.BTC-USDT.gamma"]}, "unknown_channel"),
            ({"op": "subscribe", "channels": ["candles.BTC-USDT"]}, "unknown_channel"),
            ({"op": "subscribe", "channels": ["book.BTC-USDT"], "depth": 0}, "bad_depth"),
            ({"op": "subscribe", "channels": ["book.BTC-USDT"], "depth": 11}, "bad_depth"),
            ({"op": "subscribe", "channels": ["book.BTC-USDT"], "depth": "5"}, "bad_depth"),
            ({"op": "unsubscribe", "channels": ["book.BTC-USDT"]}, "not_subscribed"),
        ]
        for request, code in cases:
            reply = await client.request(**request)
            assert reply["type"] == "error", request
            assert reply["code"] == code, request
            assert reply["id"] == client.ids
            assert reply["message"]
        assert client.mirror.seq == {}
        await client.sync()


async def test_list_unsubscribe_and_several_clients(daemon: tuple[Daemon, Addresses]) -> None:
    _, addresses = daemon
    feeds = await live_feeds("alpha", "beta")
    async with connect(url(addresses)) as ws1, connect(url(addresses)) as ws2:
        one, two = Client(ws1), Client(ws2)
        listing = await one.request(op="list")
        assert listing["type"] == "list"
        assert listing["symbols"] == ["BTC-USDT", "ETH-USDT"]
        assert {v["venue"]: v["connector"] for v in listing["venues"]} == {"alpha": "scripted", "beta": "scripted"}
        assert "book.ETH-USDT.alpha" in listing["channels"]
        assert "book.ETH-USDT.beta" not in listing["channels"]
        await one.request(op="subscribe", channels=["book.ETH-USDT", "bbo.ETH-USDT"])
        await two.request(op="subscribe", channels=["book.ETH-USDT"], depth=3)
        alpha = feeds["alpha"]
        alpha.publish([BookSnapshot("ETH-USDT", [(Decimal("3000.5"), Decimal("2"))], [], alpha.now_ns())])
        await one.sync()
        await two.sync()
        assert client_view(one, "book.ETH-USDT")["bids"] == [("3000.5", "2", {"alpha": "2"})]
        assert client_view(two, "book.ETH-USDT")["bids"] == [("3000.5", "2", {"alpha": "2"})]
        ack = await one.request(op="unsubscribe", channels=["book.ETH-USDT"])
        assert ack["type"] == "ack"
        before = len(one.received)
        alpha.publish([BookDelta("ETH-USDT", [(Decimal("3000.5"), Decimal("3"))], [], alpha.now_ns())])
        await one.sync()
        await two.sync()
        assert not [m for m in one.received[before:] if m.get("channel") == "book.ETH-USDT"]
        assert client_view(two, "book.ETH-USDT")["bids"] == [("3000.5", "3", {"alpha": "3"})]


async def test_stale_venue_leaves_and_rejoins_consolidation(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, VENUES.format(stale=0.3)) as (d, addresses):
        feeds = await live_feeds("alpha", "beta")
        async with connect(url(addresses)) as ws:
            client = Client(ws)
            await client.request(op="subscribe", channels=["book.BTC-USDT", "status"])
            for venue, price in (("alpha", "100"), ("beta", "101")):
                feed = feeds[venue]
                feed.publish([BookSnapshot("BTC-USDT", [(Decimal(price), Decimal(1))], [], feed.now_ns())])
            with anyio.fail_after(5):
                while True:  # keep beta talking; alpha falls silent
                    feeds["beta"].heard()
                    msg = await client.next()
                    if msg["type"] == "status" and msg["venue"] == "alpha" and msg["state"] == "stale":
                        break
            await client.sync()
            assert client_view(client, "book.BTC-USDT")["bids"] == [("101", "1", {"beta": "1"})]
            assert d.engine.state("BTC-USDT", "alpha") is BookState.STALE
            sample = d.metrics.registry.get_sample_value
            counted = sample("crossbook_venue_messages_total", {"venue": "alpha"}) or 0
            feeds["alpha"].heard()  # a message without events counts too
            assert sample("crossbook_venue_messages_total", {"venue": "alpha"}) == counted + 1
            await client.sync()
            assert [m["state"] for m in client.received if m.get("venue") == "alpha"][-1] == "live"
            assert client_view(client, "book.BTC-USDT")["bids"] == [
                ("101", "1", {"beta": "1"}),
                ("100", "1", {"alpha": "1"}),
            ]


@pytest.mark.slow
async def test_crashing_connector_is_restarted_while_the_api_serves(tmp_path: Path) -> None:
    toml = VENUES.format(stale=60) + '[venues.crasher]\nconnector = "scripted"\nsymbols = ["BTC-USDT"]\ncrash = true\n'
    async with running_daemon(tmp_path, toml) as (d, addresses):
        with anyio.fail_after(20):
            await scripted_plugin.wait_starts("crasher", 3)
        async with connect(url(addresses)) as ws:
            client = Client(ws)
            await client.sync()
            listing = await client.request(op="list")
            states = {v["venue"]: v["symbols"][0]["state"] for v in listing["venues"]}
            assert states["crasher"] == "down"
        restarts = d.metrics.registry.get_sample_value("crossbook_connector_restarts_total", {"venue": "crasher"})
        assert restarts is not None
        assert restarts >= 2
        assert d.metrics.registry.get_sample_value("crossbook_connector_restarts_total", {"venue": "alpha"}) == 0


@pytest.mark.parametrize(
    ("compression", "batched"),
    [(None, False), (None, True), ("deflate", False), ("deflate", True)],
    ids=["plain", "plain-batched", "deflate", "deflate-batched"],
)
async def test_frames_of_every_length_class_reach_a_websockets_client(
    tmp_path: Path, compression: str | None, batched: bool
) -> None:
    """The server frames messages itself unless an extension is negotiated: a snapshot over 64 KiB
    (8-byte length), deltas of 126..65535 bytes (2-byte length) and small ones (7-bit) all parse."""
    toml = VENUES.format(stale=60).replace("depth = 10", "depth = 1000") + '[server]\ncompression = "deflate"\n'
    async with running_daemon(tmp_path, toml) as (d, addresses):
        feed = await scripted_plugin.feed("alpha")
        bids = [(Decimal(60000 - i), Decimal(f"1.{i:04d}")) for i in range(1000)]
        asks = [(Decimal(60001 + i), Decimal(f"2.{i:04d}")) for i in range(1000)]
        feed.publish([BookSnapshot("BTC-USDT", bids, asks, feed.now_ns())])
        async with connect(url(addresses, batched), compression=compression, max_size=2**22) as ws:
            assert bool(ws.protocol.extensions) is (compression == "deflate")
            client = Client(ws, batched)
            await client.request(op="subscribe", channels=["book.BTC-USDT"], depth=1000)
            await client.sync()
            assert max(len(orjson.dumps(m)) for m in client.received) > 65536
            for n in (1, 5, 500):
                feed.publish([BookDelta("BTC-USDT", bids[:n], [(p, s + 1) for p, s in asks[:n]], feed.now_ns())])
                await client.sync()
                assert client_view(client, "book.BTC-USDT") == server_view(d, "BTC-USDT", None, 1000)
