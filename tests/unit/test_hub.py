"""Hub: subscriptions, seq, and channel messages, checked the way a client sees them (sans-I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.api.channels import Subscriber
from crossbook.api.hub import Hub
from crossbook.client import Mirror
from crossbook.core.engine import Batch, Changes, Engine
from crossbook.core.exact import text
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Event, Level, Side, Trade, VenueStatus

D = Decimal
X = "BTC-USDT"
Y = "ETH-USDT"
VENUES: dict[str, tuple[str, ...]] = {"a": (X, Y), "b": (X,), "c": (X,)}
CONNECTORS = {"a": "sim", "b": "sim"}  # c has no entry: its connector is listed under its own name
MAX_DEPTH = 10
STALE_NS = 1_000

Msg = dict[str, Any]
Side_ = dict[str, tuple[str, dict[str, str] | None]]
"""A mirrored book side: price text -> (size text, attribution or None)."""
ViewLevel = tuple[str, str, dict[str, str] | None]


def lv(*pairs: tuple[str, str]) -> list[Level]:
    return [(D(p), D(s)) for p, s in pairs]


def make(watched: set[str] | None = None) -> tuple[Engine, Hub]:
    engine = Engine(VENUES, STALE_NS, watched=watched)
    return engine, Hub(engine, MAX_DEPTH, CONNECTORS)


def canonical(value: str) -> bool:
    return text(D(value)) == value


class Client:
    """One API connection as a client sees it: checks seq, mirrors books, keeps what came."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.session: Subscriber = hub.open()
        self.seq: dict[str, int] = {}
        self.depth: dict[str, int] = {}
        """Book channels subscribed, with their depth."""
        self.books: dict[str, tuple[Side_, Side_]] = {}
        self.bbo: dict[str, Msg] = {}
        self.mirror = Mirror()
        """The reference client, which checks that channels agree with ``status`` too."""

    def drain(self) -> list[Msg]:
        msgs: list[Msg] = [orjson.loads(frame) for frame in self.session.drain()]
        for msg in msgs:
            self._feed(msg)
        return msgs

    def send(self, request: Msg | bytes | str, now: int = 0) -> list[Msg]:
        data = request if isinstance(request, bytes | str) else orjson.dumps(request)
        self.hub.receive(self.session, data, now)
        return self.drain()

    def subscribe(self, channels: list[str], depth: int | None = None, now: int = 0, rid: Any = 1) -> list[Msg]:
        req: Msg = {"op": "subscribe", "id": rid, "channels": channels}
        if depth is not None:
            req["depth"] = depth
        msgs = self.send(req, now)
        assert msgs[0] == {"type": "ack", "op": "subscribe", "id": rid, "channels": list(dict.fromkeys(channels))}
        for name in channels:
            if name.startswith("book."):
                self.depth[name] = depth or self.hub.default_depth
        return msgs[1:]

    def unsubscribe(self, channels: list[str], rid: Any = 2) -> list[Msg]:
        msgs = self.send({"op": "unsubscribe", "id": rid, "channels": channels})
        assert msgs == [{"type": "ack", "op": "unsubscribe", "id": rid, "channels": channels}]
        for name in channels:
            self.seq.pop(name, None)  # a later subscription starts again at 1
            self.depth.pop(name, None)
            self.books.pop(name, None)
            self.bbo.pop(name, None)
        return msgs

    def close(self) -> None:
        self.hub.close(self.session)
        self.seq.clear()
        self.depth.clear()
        self.books.clear()
        self.bbo.clear()

    def _feed(self, msg: Msg) -> None:
        self.mirror.apply(msg)
        channel = msg.get("channel")
        if channel is None:
            assert msg["type"] in ("ack", "error", "pong", "list"), msg
            return
        assert isinstance(msg["seq"], int)
        assert msg["seq"] == self.seq.get(channel, 0) + 1, (channel, msg["seq"], self.seq.get(channel))
        self.seq[channel] = msg["seq"]
        kind = msg["type"]
        if kind == "snapshot":
            self.books[channel] = ({}, {})
        if kind in ("snapshot", "delta"):
            assert channel.startswith("book.")
            assert channel in self.books, f"delta before snapshot on {channel}"
            assert set(msg) - {"conflated"} == {"type", "channel", "seq", "ts", "bids", "asks"}
            if kind == "delta":
                assert msg["bids"] or msg["asks"], "empty delta"
            consolidated = channel.count(".") == 1
            for side, levels in zip(self.books[channel], (msg["bids"], msg["asks"]), strict=True):
                prices = [level[0] for level in levels]
                assert len(prices) == len(set(prices)), "a price twice in one message"
                for level in levels:
                    assert len(level) == (3 if consolidated else 2), level
                    price, size = level[0], level[1]
                    assert canonical(price), price
                    assert canonical(size), size
                    attribution = level[2] if consolidated else None
                    if size == "0":
                        assert kind == "delta", "a snapshot lists only levels that are there"
                        assert attribution in ({}, None)
                        assert price in side, f"removal of a level the client does not have: {price}"
                        del side[price]
                    else:
                        assert D(size) > 0
                        if attribution is not None:
                            assert attribution, "a level with no venue"
                            assert all(canonical(s) and D(s) > 0 for s in attribution.values())
                        side[price] = (size, attribution)
        elif kind == "bbo":
            self.bbo[channel] = msg

    def top(self, channel: str) -> tuple[list[ViewLevel], list[ViewLevel]]:
        bids, asks = self.books[channel]
        return (
            [(p, s, a) for p, (s, a) in sorted(bids.items(), key=lambda kv: D(kv[0]), reverse=True)],
            [(p, s, a) for p, (s, a) in sorted(asks.items(), key=lambda kv: D(kv[0]))],
        )


def engine_view(engine: Engine, channel: str, depth: int) -> tuple[list[ViewLevel], list[ViewLevel]]:
    """The server's top ``depth`` of a book channel, as text."""
    _, symbol, *venue = channel.split(".")
    if not venue:
        cb = engine.consolidated[symbol]
        return (
            [(text(p), text(s), {v: text(x) for v, x in a.items()}) for p, s, a in cb.top_bids(depth)],
            [(text(p), text(s), {v: text(x) for v, x in a.items()}) for p, s, a in cb.top_asks(depth)],
        )
    book = engine.book(symbol, venue[0])
    return (
        [(text(p), text(s), None) for p, s in book.top_bids(depth)],
        [(text(p), text(s), None) for p, s in book.top_asks(depth)],
    )


def bbo_fields(engine: Engine, symbol: str) -> Msg:
    bbo = engine.consolidated[symbol].bbo()
    return {
        "bid": None if bbo.bid is None else [text(bbo.bid[0]), text(bbo.bid[1]), list(bbo.bid[2])],
        "ask": None if bbo.ask is None else [text(bbo.ask[0]), text(bbo.ask[1]), list(bbo.ask[2])],
        "crossed": bbo.crossed,
        "locked": bbo.locked,
    }


def assert_books_match(engine: Engine, client: Client) -> None:
    for channel, depth in client.depth.items():
        assert client.top(channel) == engine_view(engine, channel, depth), (channel, depth)


def by_channel(msgs: list[Msg]) -> dict[str, list[Msg]]:
    out: dict[str, list[Msg]] = {}
    for msg in msgs:
        out.setdefault(msg["channel"], []).append(msg)
    return out


# -- subscribing ---------------------------------------------------------------------------------


def test_ack_then_snapshot_with_seq_1() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, lv(("100.50", "1.0"), ("99", "2")), lv(("101", "3")), 1)], 1)
    engine.ingest("b", [BookSnapshot(X, lv(("100.5", "0.25")), [], 1)], 1)
    client = Client(hub)
    frames_before = len(client.session.frames())
    hub.receive(client.session, orjson.dumps({"op": "subscribe", "id": "s1", "channels": [f"book.{X}"]}), 42)
    assert len(client.session.frames()) == frames_before + 2
    raw_snapshot = client.session.frames()[1]
    ack, snapshot = client.drain()
    assert ack == {"type": "ack", "op": "subscribe", "id": "s1", "channels": [f"book.{X}"]}
    assert snapshot == {
        "type": "snapshot",
        "channel": f"book.{X}",
        "seq": 1,
        "ts": 42,
        "bids": [["100.5", "1.25", {"a": "1", "b": "0.25"}], ["99", "2", {"a": "2"}]],
        "asks": [["101", "3", {"a": "3"}]],
    }
    assert raw_snapshot.startswith(b'{"type":"snapshot","channel":"book.BTC-USDT","seq":1,')


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_snapshot_of_each_channel_kind(lazy: bool) -> None:
    """Lazy (as in the daemon), the consolidated books are built at the first ``bbo`` or ``book``
    subscription of their symbol, from the live venue books, and give the same messages."""
    engine, hub = make(set() if lazy else None)
    engine.ingest("a", [BookSnapshot(X, lv(("100", "1")), lv(("101", "2")), 1)], 1)
    engine.ingest("c", [BookSnapshot(X, lv(("100", "3")), lv(("100.5", "1")), 1)], 1)
    assert len(engine.consolidated[X]) == (0 if lazy else 3)
    client = Client(hub)
    msgs = client.subscribe([f"book.{X}.a", f"bbo.{X}", f"trades.{X}", f"book.{Y}"], depth=1, now=7)
    assert msgs == [
        {
            "type": "snapshot",
            "channel": f"book.{X}.a",
            "seq": 1,
            "ts": 7,
            "bids": [["100", "1"]],
            "asks": [["101", "2"]],
        },
        {
            "type": "bbo",
            "channel": f"bbo.{X}",
            "seq": 1,
            "ts": 7,
            "bid": ["100", "4", ["a", "c"]],
            "ask": ["100.5", "1", ["c"]],
            "crossed": False,
            "locked": False,
        },
        {"type": "snapshot", "channel": f"book.{Y}", "seq": 1, "ts": 7, "bids": [], "asks": []},
    ]  # trades: nothing until a trade
    assert engine.watched == ({X, Y} if lazy else None)


def test_duplicate_channels_in_one_request_count_once() -> None:
    _, hub = make()
    client = Client(hub)
    msgs = client.subscribe([f"book.{X}", f"book.{X}"])
    assert len(msgs) == 1
    assert list(client.session.subs) == [f"book.{X}"]


def test_depth_limits_the_view_and_boundaries_are_accepted() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, [(D(100 - i), D(1)) for i in range(15)], [], 1)], 1)
    for depth in (1, MAX_DEPTH, None):
        client = Client(hub)
        (snapshot,) = client.subscribe([f"book.{X}.a"], depth=depth)
        assert len(snapshot["bids"]) == (depth or hub.default_depth)
        assert snapshot["bids"][0] == ["100", "1"]
    assert hub.default_depth == min(20, MAX_DEPTH)


# -- several depths on one channel -------------------------------------------------------------


def test_depth_groups_get_what_changed_within_their_depth() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, lv(("100", "1"), ("99", "1"), ("98", "1")), [], 1)], 1)
    clients = {depth: Client(hub) for depth in (1, 2, 10)}
    for depth, client in clients.items():
        client.subscribe([f"book.{X}"], depth=depth)

    # Level 3 changes: only the deep subscriber hears of it.
    touched = hub.publish(engine.ingest("a", [BookDelta(X, lv(("98", "5")), [], 2)], 2), 2)
    assert touched == {clients[10].session}
    assert clients[1].drain() == clients[2].drain() == []
    (msg,) = clients[10].drain()
    assert msg == {
        "type": "delta",
        "channel": f"book.{X}",
        "seq": 2,
        "ts": 2,
        "bids": [["98", "5", {"a": "5"}]],
        "asks": [],
    }

    # A new best bid pushes levels out of the shallow views: they are removed with size 0.
    touched = hub.publish(engine.ingest("b", [BookSnapshot(X, lv(("101", "2")), [], 3)], 3), 3)
    assert touched == {c.session for c in clients.values()}
    (d1,) = clients[1].drain()
    assert sorted(d1["bids"]) == [["100", "0", {}], ["101", "2", {"b": "2"}]]
    (d2,) = clients[2].drain()
    assert sorted(d2["bids"]) == [["101", "2", {"b": "2"}], ["99", "0", {}]]
    (d10,) = clients[10].drain()
    assert d10["bids"] == [["101", "2", {"b": "2"}]]
    assert [c.seq[f"book.{X}"] for c in clients.values()] == [2, 2, 3]
    for client in clients.values():
        assert_books_match(engine, client)

    # A venue leaving brings deeper levels back into view.
    changes = engine.ingest("b", [VenueStatus(X, BookState.SYNCING, 4, "gap")], 4)
    hub.publish(changes, 4)
    (d1,) = clients[1].drain()
    assert sorted(d1["bids"]) == [["100", "1", {"a": "1"}], ["101", "0", {}]]
    for client in clients.values():
        client.drain()
        assert_books_match(engine, client)


def test_attribution_change_alone_is_a_delta() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, lv(("100", "1")), [], 1)], 1)
    engine.ingest("b", [BookSnapshot(X, lv(("100", "1")), [], 1)], 1)
    client = Client(hub)
    client.subscribe([f"book.{X}"])
    changes = engine.ingest("a", [BookDelta(X, lv(("100", "1.5")), [], 2)], 2)
    changes.books |= engine.ingest("b", [BookDelta(X, lv(("100", "0.5")), [], 2)], 2).books
    hub.publish(changes, 2)
    (msg,) = client.drain()
    assert msg["bids"] == [["100", "2", {"a": "1.5", "b": "0.5"}]]
    assert_books_match(engine, client)


def test_no_message_when_the_view_did_not_change() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, lv(("100", "1")), [], 1)], 1)
    client = Client(hub)
    client.subscribe([f"book.{X}", f"book.{X}.a", f"bbo.{X}"])
    same = engine.ingest("a", [BookDelta(X, lv(("100", "1.0"), ("50", "0")), [], 2)], 2)
    assert (X, None) in same.books
    assert hub.publish(same, 2) == set()
    assert client.drain() == []


# -- bbo -----------------------------------------------------------------------------------------


def test_bbo_only_when_it_changes() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, lv(("100", "1"), ("99", "1")), lv(("102", "1")), 1)], 1)
    client = Client(hub)
    (first,) = client.subscribe([f"bbo.{X}"], now=5)
    assert first == {"type": "bbo", "channel": f"bbo.{X}", "seq": 1, "ts": 5, **bbo_fields(engine, X)}
    assert first["bid"] == ["100", "1", ["a"]]

    deep = engine.ingest("a", [BookDelta(X, lv(("99", "7")), lv(("103", "1")), 6)], 6)
    assert hub.publish(deep, 6) == set()
    assert client.drain() == []

    steps: list[tuple[str, list[Event]]] = [
        ("c", [BookSnapshot(X, lv(("100", "2")), lv(("101", "1")), 7)]),  # joins the best bid, new best ask
        ("b", [BookSnapshot(X, lv(("101", "1")), [], 8)]),  # locked
        ("b", [BookDelta(X, lv(("101.5", "1")), [], 9)]),  # crossed
        ("b", [VenueStatus(X, BookState.DOWN, 10, "crash")]),  # uncrossed again
    ]
    for ts, (venue, events) in enumerate(steps, start=7):
        hub.publish(engine.ingest(venue, events, ts), ts)
        (msg,) = client.drain()
        assert msg == {"type": "bbo", "channel": f"bbo.{X}", "seq": ts - 5, "ts": ts, **bbo_fields(engine, X)}
    assert [m["bid"] for m in [client.bbo[f"bbo.{X}"]]] == [["100", "3", ["a", "c"]]]


def test_bbo_flags() -> None:
    engine, hub = make()
    client = Client(hub)
    (empty,) = client.subscribe([f"bbo.{X}"])
    assert empty["bid"] is None
    assert empty["ask"] is None
    assert empty["crossed"] is False
    assert empty["locked"] is False
    hub.publish(engine.ingest("a", [BookSnapshot(X, lv(("100", "1")), [], 1)], 1), 1)
    hub.publish(engine.ingest("b", [BookSnapshot(X, [], lv(("100", "2")), 2)], 2), 2)
    hub.publish(engine.ingest("c", [BookSnapshot(X, lv(("100.1", "1")), [], 3)], 3), 3)
    msgs = client.drain()
    assert [(m["bid"], m["ask"], m["crossed"], m["locked"]) for m in msgs] == [
        (["100", "1", ["a"]], None, False, False),
        (["100", "1", ["a"]], ["100", "2", ["b"]], False, True),
        (["100.1", "1", ["c"]], ["100", "2", ["b"]], True, False),
    ]


# -- trades and status ---------------------------------------------------------------------------


def test_trades_channel() -> None:
    engine, hub = make()
    client, other = Client(hub), Client(hub)
    assert client.subscribe([f"trades.{X}"]) == []
    other.subscribe([f"trades.{Y}"])
    trades = [
        Trade(X, D("100.50"), D("0.010"), Side.BUY, "t1", 1000, 900),
        Trade(Y, D("10"), D("1"), Side.SELL, "t2", 1001),
        Trade(X, D("99"), D("2"), Side.SELL, "t3", 1002),
        Trade("SOL-USDT", D("1"), D("1"), Side.SELL, "t4", 1003),
    ]
    touched = hub.publish(engine.ingest("a", trades, 1004), 1004)
    assert touched == {client.session, other.session}
    assert client.drain() == [
        {
            "type": "trade",
            "channel": f"trades.{X}",
            "seq": 1,
            "venue": "a",
            "price": "100.5",
            "size": "0.01",
            "side": "buy",
            "id": "t1",
            "ts": 900,
            "recv_ts": 1000,
        },
        {
            "type": "trade",
            "channel": f"trades.{X}",
            "seq": 2,
            "venue": "a",
            "price": "99",
            "size": "2",
            "side": "sell",
            "id": "t3",
            "ts": 1002,
            "recv_ts": 1002,
        },
    ]
    assert [m["id"] for m in other.drain()] == ["t2"]
    # b does not quote ETH-USDT: its trade there is skipped.
    assert hub.publish(engine.ingest("b", [Trade(Y, D(1), D(1), Side.BUY, "t5", 1)], 1), 1) == set()


def test_status_channel_first_gets_every_book_then_changes() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, [], [], 1)], 1)
    engine.ingest("c", [VenueStatus(None, BookState.SYNCING, 1)], 1)
    client = Client(hub)
    first = client.subscribe(["status"], now=3)
    assert first == [
        {"type": "status", "channel": "status", "seq": i, "venue": v, "symbol": s, "state": state, "ts": 3}
        for i, (s, v, state) in enumerate(
            [(X, "a", "live"), (X, "b", "connecting"), (X, "c", "syncing"), (Y, "a", "connecting")], start=1
        )
    ]
    changes = engine.ingest("a", [VenueStatus(None, BookState.SYNCING, 5, "gap")], 6)
    touched = hub.publish(changes, 6)
    assert touched == {client.session}
    assert client.drain() == [
        {
            "type": "status",
            "channel": "status",
            "seq": 5,
            "venue": "a",
            "symbol": X,
            "state": "syncing",
            "ts": 5,
            "reason": "gap",
        },
        {
            "type": "status",
            "channel": "status",
            "seq": 6,
            "venue": "a",
            "symbol": Y,
            "state": "syncing",
            "ts": 5,
            "reason": "gap",
        },
    ]
    engine.ingest("b", [BookSnapshot(X, [], [], 7)], 7)
    hub.publish(engine.tick(7 + STALE_NS + 1), 7 + STALE_NS + 1)
    (stale,) = client.drain()
    assert stale == {
        "type": "status",
        "channel": "status",
        "seq": 7,
        "venue": "b",
        "symbol": X,
        "state": "stale",
        "ts": 7 + STALE_NS + 1,
        "reason": "stale",
    }
    # Subscribing again changes nothing and resends nothing.
    assert client.subscribe(["status"]) == []


# -- errors keep the session usable -------------------------------------------------------------

BAD_REQUESTS: list[tuple[Msg | bytes, str, Any]] = [
    (b"{", "bad_json", None),
    (b"not json at all", "bad_json", None),
    (b"", "bad_json", None),
    (b"[]", "bad_json", None),
    (b'["op", "ping"]', "bad_json", None),
    (b'"ping"', "bad_json", None),
    (b"null", "bad_json", None),
    (b"42", "bad_json", None),
    (b"\xff\xfe{}", "bad_json", None),
    (b'{"op": "ping", "id": 1', "bad_json", None),
    ({"id": 1}, "unknown_op", 1),
    ({"op": "pong", "id": "x"}, "unknown_op", "x"),
    ({"op": "Subscribe", "id": 2, "channels": ["status"]}, "unknown_op", 2),
    ({"op": None, "id": 2}, "unknown_op", 2),
    ({"op": ["ping"], "id": 2}, "unknown_op", 2),
    ({"op": "ping", "id": 1.5}, "bad_request", None),
    ({"op": "ping", "id": True}, "bad_request", None),
    ({"op": "ping", "id": [1]}, "bad_request", None),
    ({"op": "ping", "id": {"a": 1}}, "bad_request", None),
    ({"op": "subscribe", "id": 3}, "bad_request", 3),
    ({"op": "subscribe", "id": 3, "channels": []}, "bad_request", 3),
    ({"op": "subscribe", "id": 3, "channels": None}, "bad_request", 3),
    ({"op": "subscribe", "id": 3, "channels": "status"}, "bad_request", 3),
    ({"op": "subscribe", "id": 3, "channels": ["status", 1]}, "bad_request", 3),
    ({"op": "subscribe", "id": 3, "channels": {"status": 1}}, "bad_request", 3),
    ({"op": "unsubscribe", "id": 3}, "bad_request", 3),
    ({"op": "unsubscribe", "id": 3, "channels": []}, "bad_request", 3),
    *[
        ({"op": "subscribe", "id": 4, "channels": [f"book.{X}"], "depth": depth}, "bad_depth", 4)
        for depth in (0, -1, MAX_DEPTH + 1, 10**6, "5", 2.5, 1.0, True, False, None, [5], {"n": 5})
    ],
    *[
        ({"op": "subscribe", "id": "u", "channels": [f"book.{X}", name]}, "unknown_channel", "u")
        for name in (
            "book.SOL-USDT",
            f"book.{X}.zz",
            f"book.{Y}.b",
            f"book.{X}.",
            f"book.{X}.a.b",
            "book..a",
            "book",
            "book.",
            "bbo.",
            "bbo",
            f"bbo.{X}.a",
            "trades.SOL-USDT",
            f"trades.{X}.a",
            "status.x",
            "Status",
            "",
            X,
            f"BOOK.{X}",
            f"book.{X.lower()}",
        )
    ],
]


@pytest.mark.parametrize(("request_", "code", "rid"), BAD_REQUESTS)
def test_errors_keep_the_session_usable(request_: Msg | bytes, code: str, rid: Any) -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, lv(("100", "1")), [], 1)], 1)
    client = Client(hub)
    (error,) = client.send(request_)
    assert set(error) == {"type", "id", "code", "message"}
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["id"] == rid
    assert isinstance(error["message"], str)
    assert error["message"]
    # Nothing was subscribed (subscribing is all or nothing) and nothing will come.
    assert client.session.subs == {}
    assert hub._books == {}
    assert hub._bbo == {}
    assert hub._trades == {}
    changes = engine.ingest("a", [BookDelta(X, lv(("100", "2")), [], 2)], 2)
    assert hub.publish(changes, 2) == set()
    assert client.drain() == []
    # The session still works.
    assert client.send({"op": "ping", "id": 9}) == [{"type": "pong", "id": 9}]
    assert client.subscribe([f"book.{X}"], rid=10)[0]["bids"] == [["100", "2", {"a": "2"}]]


def test_book_channel_with_an_empty_venue_is_unknown() -> None:
    """``book.SYM.`` once passed as ``book.SYM``: two subscriptions shared one channel and seq restarted."""
    engine, hub = make()
    client = Client(hub)
    client.subscribe([f"book.{X}"])
    (error,) = client.send({"op": "subscribe", "id": 1, "channels": [f"book.{X}."]})
    assert error["code"] == "unknown_channel"
    assert list(client.session.subs) == [f"book.{X}"]
    hub.publish(engine.ingest("a", [BookSnapshot(X, lv(("1", "1")), [], 1)], 1), 1)
    (delta,) = client.drain()
    assert delta["seq"] == 2
    assert_books_match(engine, client)


def test_unknown_channel_error_names_the_unknown_ones() -> None:
    _, hub = make()
    client = Client(hub)
    (error,) = client.send({"op": "subscribe", "channels": ["status", "bbo.NOPE", "trades.NOPE"]})
    assert error["code"] == "unknown_channel"
    assert error["id"] is None
    assert "bbo.NOPE" in error["message"]
    assert "trades.NOPE" in error["message"]
    assert "status" not in error["message"].replace("unknown channel", "")
    assert client.session.subs == {}


def test_unsubscribe_of_a_channel_not_subscribed() -> None:
    engine, hub = make()
    client = Client(hub)
    client.subscribe([f"book.{X}", "status"])
    (error,) = client.send({"op": "unsubscribe", "id": 5, "channels": ["status", f"bbo.{X}"]})
    assert error["type"] == "error"
    assert error["code"] == "not_subscribed"
    assert error["id"] == 5
    assert f"bbo.{X}" in error["message"]
    assert set(client.session.subs) == {f"book.{X}", "status"}  # all or nothing: status stays
    (error,) = client.send({"op": "unsubscribe", "channels": ["nonsense"]})
    assert error["code"] == "not_subscribed"
    hub.publish(engine.ingest("a", [BookSnapshot(X, lv(("1", "1")), [], 1)], 1), 1)
    msgs = client.drain()
    assert {m["channel"] for m in msgs} == {f"book.{X}", "status"}
    assert_books_match(engine, client)


@pytest.mark.parametrize("rid", [7, "abc", 0, -3, "", None])
def test_ping_pong(rid: Any) -> None:
    _, hub = make()
    client = Client(hub)
    assert client.send({"op": "ping", "id": rid}) == [{"type": "pong", "id": rid}]
    assert client.send(b'{"op":"ping"}') == [{"type": "pong", "id": None}]
    assert client.send('{"op": "ping", "id": 1, "extra": [1, 2]}') == [{"type": "pong", "id": 1}]


def test_list_reply() -> None:
    engine, hub = make()
    client = Client(hub)
    (reply,) = client.send({"op": "list", "id": 0})
    assert [v["last_message_age"] for v in reply["venues"]] == [None, None, None]  # never heard from
    engine.ingest("a", [BookSnapshot(X, [], [], 1)], 1)
    engine.ingest("b", [BookSnapshot(X, [], [], 1)], 500)
    engine.tick(STALE_NS + 2)  # a goes stale; b was heard from later
    engine.ingest("c", [VenueStatus(None, BookState.SYNCING, 1)], STALE_NS + 2)  # no reason: no resync
    engine.ingest("c", [BookSnapshot(X, [], [], 1), VenueStatus(X, BookState.SYNCING, 1, "gap")], 1_000_000_001)
    (reply,) = client.send({"op": "list", "id": "L"}, 2_500_000_001)
    assert reply == {
        "type": "list",
        "id": "L",
        "venues": [
            {
                "venue": "a",
                "connector": "sim",
                "symbols": [
                    {"symbol": X, "state": "stale", "resyncs": 0},
                    {"symbol": Y, "state": "connecting", "resyncs": 0},
                ],
                "last_message_age": 2.5,
            },
            {
                "venue": "b",
                "connector": "sim",
                "symbols": [{"symbol": X, "state": "live", "resyncs": 0}],
                "last_message_age": 2.5,
            },
            {
                "venue": "c",
                "connector": "c",
                "symbols": [{"symbol": X, "state": "syncing", "resyncs": 1}],
                "last_message_age": 1.5,
            },
        ],
        "symbols": [X, Y],
        "channels": [
            "status",
            f"book.{X}",
            f"bbo.{X}",
            f"trades.{X}",
            f"book.{X}.a",
            f"book.{X}.b",
            f"book.{X}.c",
            f"book.{Y}",
            f"bbo.{Y}",
            f"trades.{Y}",
            f"book.{Y}.a",
        ],
        "max_depth": MAX_DEPTH,
    }
    # Every listed channel can be subscribed to, all at once.
    msgs = client.subscribe(reply["channels"], now=2_500_000_001)
    assert set(client.session.subs) == set(reply["channels"])
    assert all(m["seq"] >= 1 for m in msgs)
    assert hub.stats.sent["reply"] == 3


# -- unsubscribe, re-subscribe, close -----------------------------------------------------------


def test_unsubscribe_stops_messages_and_a_new_subscription_starts_at_1() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, lv(("100", "1")), [], 1)], 1)
    leaving, staying = Client(hub), Client(hub)
    channels = [f"book.{X}", f"book.{X}.a", f"bbo.{X}", f"trades.{X}", "status"]
    leaving.subscribe(channels)
    staying.subscribe(channels)
    leaving.unsubscribe(channels)
    assert leaving.session.subs == {}
    changes = engine.ingest(
        "a",
        [
            BookDelta(X, lv(("101", "1")), [], 2),
            Trade(X, D(1), D(1), Side.BUY, "t", 2),
            VenueStatus(Y, BookState.DOWN, 2),
        ],
        2,
    )
    touched = hub.publish(changes, 2)
    assert touched == {staying.session}
    assert leaving.drain() == []
    assert {m["channel"] for m in staying.drain()} == set(channels)
    assert_books_match(engine, staying)

    (snapshot,) = leaving.subscribe([f"book.{X}"])
    assert snapshot["seq"] == 1
    assert_books_match(engine, leaving)


def test_resubscribe_with_another_depth_sends_a_snapshot_and_seq_goes_on() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, [(D(100 - i), D(1)) for i in range(8)], [], 1)], 1)
    client, other = Client(hub), Client(hub)
    other.subscribe([f"book.{X}"], depth=3)
    (snap1,) = client.subscribe([f"book.{X}"], depth=3)
    assert snap1["seq"] == 1
    assert len(snap1["bids"]) == 3
    hub.publish(engine.ingest("a", [BookDelta(X, lv(("100", "2")), [], 2)], 2), 2)
    assert [m["seq"] for m in client.drain()] == [2]
    assert [m["seq"] for m in other.drain()] == [2]

    (snap2,) = client.subscribe([f"book.{X}"], depth=6)
    assert snap2["type"] == "snapshot"
    assert snap2["seq"] == 3
    assert len(snap2["bids"]) == 6
    assert_books_match(engine, client)
    assert set(hub._books[(X, None)]) == {3, 6}

    # The same depth again: only the ack.
    assert client.subscribe([f"book.{X}"], depth=6) == []
    hub.publish(engine.ingest("a", [BookDelta(X, lv(("95", "9")), [], 3)], 3), 3)
    (delta,) = client.drain()
    assert delta["seq"] == 4
    assert delta["bids"] == [["95", "9", {"a": "9"}]]
    assert other.drain() == []  # level 6 is out of depth 3
    assert_books_match(engine, client)

    # The old group is dropped when its last subscriber moves away.
    other.subscribe([f"book.{X}"], depth=6)
    assert set(hub._books[(X, None)]) == {6}
    assert_books_match(engine, other)

    # Without a depth: the default depth.
    (snap3,) = client.subscribe([f"book.{X}"])
    assert snap3["seq"] == 5
    assert len(snap3["bids"]) == 8
    assert_books_match(engine, client)


def test_close_removes_the_session_from_channels() -> None:
    engine, hub = make()
    closing, staying = Client(hub), Client(hub)
    everything = ["status", f"book.{X}", f"book.{X}.b", f"bbo.{X}", f"trades.{X}"]
    closing.subscribe(everything, depth=4)
    closing.subscribe([f"book.{Y}"])
    staying.subscribe([f"book.{X}"], depth=4)
    hub.close(closing.session)
    assert closing.session not in hub.subscribers
    assert staying.session in hub.subscribers
    assert closing.session.subs == {}
    assert closing.session not in hub._status.subs
    assert set(hub._books) == {(X, None)}
    assert all(closing.session not in ch.subs for groups in hub._books.values() for ch in groups.values())
    assert hub._bbo == {}
    assert hub._trades == {}
    changes = engine.ingest("b", [BookSnapshot(X, lv(("1", "1")), [], 1), Trade(X, D(1), D(1), Side.BUY, "t", 1)], 1)
    assert hub.publish(changes, 1) == {staying.session}
    assert closing.drain() == []
    assert len(staying.drain()) == 1
    hub.close(closing.session)  # twice is harmless
    hub.close(staying.session)
    assert hub.subscribers == set()
    assert hub._books == {}


# -- everything at once, at random ---------------------------------------------------------------

PRICES = [D(95) + D("0.5") * i for i in range(21)]


def random_levels(rng: random.Random, n: int) -> list[Level]:
    out: list[Level] = []
    for _ in range(rng.randint(0, n)):
        price = rng.choice(PRICES)
        roll = rng.random()
        if roll < 0.3:
            size = D(0)
        elif roll < 0.4:
            size = rng.choice([D("0.00000001"), D("123456789.12345678"), D("1.10")])
        else:
            size = D(rng.randint(1, 10**9)).scaleb(-rng.randint(0, 8))
        out.append((price, size))
    return out


def random_step(rng: random.Random, engine: Engine, now: int) -> Changes:
    roll = rng.random()
    venue = rng.choice(sorted(VENUES))
    symbol = rng.choice([*VENUES[venue], *VENUES[venue], *VENUES[venue], X, Y, "SOL-USDT"])
    if roll < 0.04:
        return engine.tick(now)
    if roll < 0.05:
        return engine.venue_down(venue, "crash", now)
    events: list[Event] = []
    for _ in range(rng.randint(0, 3)):
        kind = rng.random()
        if kind < 0.6:
            events.append(BookDelta(symbol, random_levels(rng, 4), random_levels(rng, 4), now))
        elif kind < 0.75:
            bids, asks = dict(random_levels(rng, 8)), dict(random_levels(rng, 8))
            events.append(BookSnapshot(symbol, list(bids.items()), list(asks.items()), now))
        elif kind < 0.87:
            state = rng.choice([BookState.LIVE, BookState.SYNCING, BookState.DOWN, BookState.CONNECTING])
            events.append(VenueStatus(rng.choice([symbol, None]), state, now, rng.choice([None, "gap", ""])))
        else:
            side = rng.choice(list(Side))
            events.append(Trade(symbol, rng.choice(PRICES), D(rng.randint(1, 99)), side, f"t{now}", now, now - 1))
    return engine.ingest(venue, events, now)


@dataclass
class Told:
    """One update the batch told subscribers: what it held, and what each client got of it."""

    changes: Changes
    ts: int
    touched: set[Subscriber]
    got: dict[int, dict[str, list[Msg]]]
    bbo_changed: bool


def key_of(channel: str) -> tuple[str, str | None]:
    symbol, _, venue = channel.partition(".")[2].partition(".")
    return symbol, venue or None


def run_random(rng: random.Random, steps: int, lazy: bool) -> None:
    """``lazy``: the engine keeps a consolidated book only once the hub watches it, as the daemon's
    does; ``book.ETH-USDT`` is first subscribed a third of the way in, its book built then. Venue
    messages are read together as the daemon reads them (a :class:`Batch`); the batch may be told
    early, before a book that left ``live`` comes back, so a step may tell subscribers more than
    once: every client's books equal the engine's after each."""
    engine, hub = make(set() if lazy else None)
    book_x, bbo_x, trades_x = f"book.{X}", f"bbo.{X}", f"trades.{X}"
    shallow, full, per_venue = Client(hub), Client(hub), Client(hub)
    shallow.subscribe([book_x, bbo_x], depth=3)
    full.subscribe([book_x, bbo_x, trades_x, "status"])
    per_venue.subscribe(["status", f"book.{X}.a", f"book.{Y}.a"], depth=5)
    per_venue.subscribe([f"book.{X}.b"], depth=2)
    assert engine.watched == ({X} if lazy else None)
    late = Client(hub)
    short_lived = Client(hub)
    short_lived.subscribe([book_x, f"book.{X}.c"], depth=1)
    clients = [shallow, full, per_venue, late, short_lived]
    told: list[Told] = []
    last_bbo = [engine.consolidated[X].bbo()]

    def publish(changes: Changes, ts: int) -> None:
        touched = hub.publish(changes, ts)
        got = {id(c): by_channel(c.drain()) for c in clients}
        bbo = engine.consolidated[X].bbo()
        told.append(Told(changes, ts, touched, got, bbo != last_bbo[0]))
        last_bbo[0] = bbo
        for client in clients:
            assert_books_match(engine, client)

    batch = Batch(engine, publish)
    hub.publish_held = batch.flush
    now = 0
    for step in range(steps):
        now += rng.randint(0, STALE_NS // 3)
        if step == steps // 3:
            late.subscribe([book_x], depth=3, now=now)  # joins a group that is already there
            late.subscribe([f"book.{Y}"], depth=2, now=now, rid=3)  # the first of its symbol
            assert engine.watched == ({X, Y} if lazy else None)
            assert_books_match(engine, late)
        if step == steps // 2:
            short_lived.unsubscribe([book_x])
            late.subscribe([book_x, f"book.{X}.c"], depth=7, now=now)  # another depth: snapshot, seq goes on
            assert_books_match(engine, late)
        if step == 2 * steps // 3:
            short_lived.close()

        told.clear()
        batch.add(random_step(rng, engine, now), now)
        for _ in range(rng.choice((0, 0, 0, 1, 3))):  # messages read together: one update for them all
            now += rng.randint(0, STALE_NS // 10)
            batch.add(random_step(rng, engine, now), now)
        batch.flush()

        for update in told:
            changes = update.changes
            assert update.touched == {c.session for c in clients if update.got[id(c)]}
            for client in clients:
                for channel, msgs in update.got[id(client)].items():
                    # Each book or bbo update is stamped with the earliest message that changed its book.
                    assert all(
                        m["ts"] == changes.since.get(key_of(channel), update.ts)
                        for m in msgs
                        if m["type"] not in ("trade", "status")
                    )
                    if channel.startswith("book."):
                        assert [m["type"] for m in msgs] == ["delta"]
            if step < steps // 2:
                assert update.got[id(short_lived)].keys() <= {book_x, f"book.{X}.c"}
            elif step < 2 * steps // 3:
                assert update.got[id(short_lived)].keys() <= {f"book.{X}.c"}
            else:
                assert update.got[id(short_lived)] == {}

            # bbo: a message exactly when it changed, with what ConsolidatedBook.bbo() says.
            for client in (shallow, full):
                assert len(update.got[id(client)].get(bbo_x, [])) == int(update.bbo_changed)

            # trades: one message per trade of the symbol, in order; status: one per change, the
            # changes to live first (no book named the venue before), each book's in order.
            trade_msgs = update.got[id(full)].get(trades_x, [])
            assert [(m["venue"], m["id"], m["price"], m["size"], m["side"]) for m in trade_msgs] == [
                (v, t.trade_id, text(t.price), text(t.size), t.side.value) for v, t in changes.trades if t.symbol == X
            ]
            status_msgs = update.got[id(full)].get("status", [])
            entering = [s for s in changes.statuses if s.state is BookState.LIVE]
            others = [s for s in changes.statuses if s.state is not BookState.LIVE]
            assert [(m["venue"], m["symbol"], m["state"], m.get("reason"), m["ts"]) for m in status_msgs] == [
                (s.venue, s.symbol, s.state.label, s.reason or None, s.ts) for s in entering + others
            ]
            for s in entering:  # a book's move to live is its first state change in an update
                first = next(o for o in changes.statuses if (o.venue, o.symbol) == (s.venue, s.symbol))
                assert first is s
        if told:
            for client in (shallow, full):
                assert {k: v for k, v in client.bbo[bbo_x].items() if k in ("bid", "ask", "crossed", "locked")} == (
                    bbo_fields(engine, X)
                )
        for client in clients:
            assert not client.session.outbox

    # Every channel's seq counted every message: the totals add up.
    assert full.seq[book_x] >= 1
    assert late.seq[book_x] >= 2


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_updates_keep_every_subscriber_exact(seed: int, lazy: bool) -> None:
    run_random(random.Random(seed), 1500, lazy)


@settings(max_examples=40, deadline=None)
@given(rng=st.randoms(use_true_random=False), lazy=st.booleans())
@pytest.mark.slow
def test_random_updates_property(rng: random.Random, lazy: bool) -> None:
    run_random(rng, 40, lazy)


# -- status before book: a subscriber's channels agree ------------------------------------------


def test_a_subscribe_sends_the_status_snapshot_before_the_books() -> None:
    engine, hub = make()
    engine.ingest("a", [BookSnapshot(X, lv(("100", "1")), lv(("101", "1")), 1)], 1)
    client = Client(hub)
    msgs = client.subscribe([f"book.{X}", f"bbo.{X}", f"book.{X}.a", "status"])
    kinds = [m["channel"] for m in msgs]
    assert kinds[: len(engine.books)] == ["status"] * len(engine.books)
    assert set(kinds[len(engine.books) :]) == {f"book.{X}", f"bbo.{X}", f"book.{X}.a"}


def test_a_venue_entering_is_live_before_its_levels_and_leaves_them_before_its_status() -> None:
    engine, hub = make()
    told: list[Subscriber] = []
    batch = Batch(engine, lambda changes, ts: told.extend(hub.publish(changes, ts)))
    client = Client(hub)
    client.subscribe(["status", f"book.{X}", f"bbo.{X}", f"book.{X}.b"])
    batch.add(engine.ingest("b", [VenueStatus(X, BookState.SYNCING, 1)], 1), 1)
    batch.add(engine.ingest("b", [BookSnapshot(X, lv(("100", "1")), lv(("101", "2")), 2)], 2), 2)
    batch.flush()
    got = [(m["channel"], m.get("state")) for m in client.drain()]
    # Told early (the book entering live had a state change untold), then live before its levels.
    assert got[:2] == [("status", "syncing"), ("status", "live")]
    assert sorted(got[2:]) == [(f"bbo.{X}", None), (f"book.{X}", None), (f"book.{X}.b", None)]
    # A resync and its new snapshot read together: the book leaves, then its status, then it comes back.
    batch.add(engine.ingest("b", [VenueStatus(X, BookState.SYNCING, 3, "gap")], 3), 3)
    batch.add(engine.ingest("b", [BookSnapshot(X, lv(("99", "1")), lv(("101", "2")), 4)], 4), 4)
    batch.flush()
    moves: list[tuple[str, Any, Any]] = [(m["channel"], m.get("state"), m.get("bids")) for m in client.drain()]
    assert sorted(moves[:3]) == [
        (f"bbo.{X}", None, None),
        (f"book.{X}", None, [["100", "0", {}]]),
        (f"book.{X}.b", None, [["100", "0"]]),
    ]
    assert moves[3:5] == [("status", "syncing", None), ("status", "live", None)]
    assert sorted(moves[5:]) == [
        (f"bbo.{X}", None, None),
        (f"book.{X}", None, [["99", "1", {"b": "1"}]]),
        (f"book.{X}.b", None, [["99", "1"]]),
    ]
    assert_books_match(engine, client)


def test_a_stale_venue_leaves_the_consolidated_book_and_keeps_its_own_levels() -> None:
    engine, hub = make()
    batch = Batch(engine, hub.publish)
    batch.add(engine.ingest("b", [BookSnapshot(X, lv(("100", "1")), [], 1)], 1), 1)
    batch.flush()
    client = Client(hub)
    client.subscribe(["status", f"book.{X}", f"book.{X}.b"])
    batch.add(engine.tick(1 + STALE_NS + 1), 1 + STALE_NS + 1)
    batch.flush()
    assert [(m["channel"], m.get("state")) for m in client.drain()] == [(f"book.{X}", None), ("status", "stale")]
    assert client.top(f"book.{X}.b") == ([("100", "1", None)], [])
    batch.add(engine.ingest("b", [BookDelta(X, lv(("100", "2")), [], 2 * STALE_NS)], 2 * STALE_NS), 2 * STALE_NS)
    batch.flush()
    got = [(m["channel"], m.get("state")) for m in client.drain()]
    assert got[0] == ("status", "live")
    assert sorted(got[1:]) == [(f"book.{X}", None), (f"book.{X}.b", None)]


EVENTS = st.sampled_from(["snapshot", "delta", "syncing", "down", "live", "heard", "tick", "crash", "trade"])


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(EVENTS, st.sampled_from(sorted(VENUES)), st.integers(0, 5), st.booleans(), st.booleans()),
        max_size=60,
    ),
    order=st.permutations(["status", f"book.{X}", f"bbo.{X}", f"book.{X}.a", f"book.{X}.b", f"trades.{X}"]),
    depth=st.integers(1, MAX_DEPTH),
)
def test_channels_agree_with_status_whatever_the_order_of_events(
    steps: list[tuple[str, str, int, bool, bool]], order: list[str], depth: int
) -> None:
    """Random venue events, read together at random, with a subscriber that falls behind and
    catches up at random: after every message its mirror's books and bbo name only venues whose
    last status was live (the reference client checks it), and it ends with the engine's books."""
    engine, hub = make()
    batch = Batch(engine, hub.publish)
    hub.publish_held = batch.flush
    client, slow = Client(hub), Client(hub)
    client.subscribe(order, depth=depth)
    slow.subscribe(order[::-1], depth=depth)
    now = 0
    for step, (kind, venue, price, flush, stall) in enumerate(steps):
        now += STALE_NS // 2
        level = lv((str(100 + price), str(step + 1)))
        ask = lv((str(106 + price), "1"))
        table: dict[str, list[Event]] = {
            "snapshot": [BookSnapshot(X, level, ask, now)],
            "delta": [BookDelta(X, level, [], now)],
            "syncing": [VenueStatus(X, BookState.SYNCING, now, "gap")],
            "down": [VenueStatus(None, BookState.DOWN, now)],
            "live": [VenueStatus(X, BookState.LIVE, now)],
            "heard": [],
            "trade": [Trade(X, D(100), D(1), Side.BUY, str(step), now)],
        }
        events = table.get(kind, [])
        if kind == "tick":
            changes = engine.tick(now)
        elif kind == "crash":
            changes = engine.venue_down(venue, "crash", now)
        else:
            changes = engine.ingest(venue, events, now)
        batch.add(changes, now)
        if flush:
            batch.flush()
        if stall and slow.session.behind_since is None:
            slow.session.fall_behind(now)
        elif not stall and slow.session.behind_since is not None:
            slow.session.drain()  # what was written before it fell behind
            hub.catch_up(slow.session, now)
        client.drain()
        if slow.session.behind_since is None:
            slow.drain()
    batch.flush()
    if slow.session.behind_since is not None:
        slow.session.drain()
        hub.catch_up(slow.session, now)
    for c in (client, slow):
        c.drain()
        assert_books_match(engine, c)


def test_a_trades_notice_is_never_dropped_by_falling_behind_again() -> None:
    """The ``conflated`` notice of a trades channel carries how many trades were dropped: a
    subscriber that falls behind again before it drained the notice still gets it, in order."""
    engine, hub = make()
    client = Client(hub)
    client.subscribe([f"trades.{X}"])
    trade = Trade(X, D(100), D(1), Side.BUY, "t", 1)
    hub.publish(engine.ingest("a", [trade, trade], 1), 1)
    client.session.fall_behind(2)  # both trades dropped
    hub.catch_up(client.session, 3)
    hub.publish(engine.ingest("a", [trade], 4), 4)
    client.session.fall_behind(5)  # the third trade dropped; the notice stays
    hub.catch_up(client.session, 6)
    msgs = client.drain()
    assert [(m["type"], m.get("dropped"), m["seq"]) for m in msgs] == [("conflated", 2, 1), ("conflated", 1, 2)]
