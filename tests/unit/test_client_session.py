"""The client's protocol, sans-I/O: frames in, messages and requests out."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson

from crossbook.client import Delta, Level, Resync, Snapshot, Trade
from crossbook.client.connection import backoff
from crossbook.client.session import Deliver, Event, Refused, Reply, Send, Session


def sent(events: list[Event]) -> list[dict[str, Any]]:
    return [orjson.loads(e.data) for e in events if isinstance(e, Send)]


def delivered(events: list[Event]) -> list[Any]:
    return [e.message for e in events if isinstance(e, Deliver)]


def frame(*msgs: dict[str, Any]) -> bytes:
    return orjson.dumps(list(msgs))


def book(kind: str, seq: int, bids: list[list[Any]], asks: list[list[Any]] | None = None) -> dict[str, Any]:
    return {"type": kind, "channel": "book.X-Y", "seq": seq, "ts": seq, "bids": bids, "asks": asks or []}


def subscribed(session: Session, channels: list[str], depth: int | None = 5) -> int:
    session.subscribe(channels, depth)
    (request,) = sent(session.connect())
    want = {"op": "subscribe", "id": request["id"], "channels": channels}
    assert request == (want if depth is None else want | {"depth": depth})
    assert session.receive(frame({"type": "ack", "op": "subscribe", "id": request["id"], "channels": channels})) == []
    return int(request["id"])


def test_snapshot_and_deltas_keep_an_exact_book() -> None:
    session = Session()
    subscribed(session, ["book.X-Y"])
    snap = book("snapshot", 1, [["100.10", "1.5", {"a": "1", "b": "0.5"}], ["100", "2", {"a": "2"}]], [["101", "3"]])
    (msg,) = delivered(session.receive(frame(snap)))
    assert isinstance(msg, Snapshot)
    assert msg.bids[0] == Level(Decimal("100.10"), Decimal("1.5"), {"a": Decimal("1"), "b": Decimal("0.5")})
    events = session.receive(frame(book("delta", 2, [["100.10", "0", {}], ["99.5", "0.0000001", {"b": "0.0000001"}]])))
    assert isinstance(delivered(events)[0], Delta)
    local = session.book("book.X-Y")
    assert [(lv.price, lv.size) for lv in local.bids] == [
        (Decimal("100"), Decimal(2)),
        (Decimal("99.5"), Decimal("1E-7")),
    ]
    assert local.best_ask == Level(Decimal("101"), Decimal("3"))
    assert local.seq == 2


def test_a_gap_resubscribes_for_a_fresh_snapshot() -> None:
    session = Session()
    subscribed(session, ["book.X-Y", "trades.X-Y"])
    session.receive(frame(book("snapshot", 1, [["100", "1"]])))
    events = session.receive(frame(book("delta", 3, [["100", "2"]])))
    assert delivered(events) == [Resync("book.X-Y", "gap")]
    unsubscribe, subscribe = sent(events)
    assert (unsubscribe["op"], unsubscribe["channels"]) == ("unsubscribe", ["book.X-Y"])
    assert (subscribe["op"], subscribe["channels"], subscribe["depth"]) == ("subscribe", ["book.X-Y"], 5)
    local = session.book("book.X-Y")
    assert local.bids == []
    # what the old subscription still sends is dropped, until the new one is acked
    late = book("delta", 4, [["100", "3"]])
    assert delivered(session.receive(frame(late))) == []
    ack = {"type": "ack", "op": "subscribe", "id": subscribe["id"], "channels": ["book.X-Y"]}
    trade = {"type": "trade", "channel": "trades.X-Y", "seq": 1, "venue": "a", "price": "1", "size": "2"}
    trade |= {"side": "buy", "id": "7", "ts": 1, "recv_ts": 2}
    events = session.receive(frame(ack, book("snapshot", 1, [["99", "1"]]), trade))
    assert [type(m) for m in delivered(events)] == [Snapshot, Trade]
    assert [lv.price for lv in local.bids] == [Decimal(99)]


def test_a_delta_before_any_snapshot_is_a_gap() -> None:
    session = Session()
    subscribed(session, ["book.X-Y"])
    assert delivered(session.receive(frame(book("delta", 1, [["1", "1"]])))) == [Resync("book.X-Y", "gap")]


def test_a_conflated_snapshot_replaces_the_book_without_a_resubscribe() -> None:
    session = Session()
    subscribed(session, ["book.X-Y"])
    session.receive(frame(book("snapshot", 1, [["100", "1"]])))
    # the messages dropped while the client was slow gave their seq back: seq goes on by 1
    events = session.receive(frame(book("snapshot", 2, [["98", "1"]]) | {"conflated": True}))
    assert sent(events) == []
    (msg,) = delivered(events)
    assert isinstance(msg, Snapshot)
    assert msg.conflated
    local = session.book("book.X-Y")
    assert [lv.price for lv in local.bids] == [Decimal(98)]


def test_a_reconnect_resubscribes_everything_and_fails_pending_requests() -> None:
    session = Session()
    subscribed(session, ["book.X-Y", "status"], depth=None)
    session.receive(frame(book("snapshot", 1, [["100", "1"]])))
    rid, _ = session.request("ping")
    events = session.disconnect()
    assert delivered(events) == [Resync("book.X-Y", "reconnect"), Resync("status", "reconnect")]
    (reply,) = [e for e in events if isinstance(e, Reply)]
    assert reply.id == rid
    (again,) = sent(session.connect())
    assert (again["op"], again["channels"], "depth" in again) == ("subscribe", ["book.X-Y", "status"], False)


def test_refusals_rate_limits_and_unreadable_input() -> None:
    session = Session()
    session.subscribe(["book.NOPE"])
    (request,) = sent(session.connect())
    limited = {"type": "error", "id": request["id"], "code": "rate_limited", "message": "slow down"}
    (retry,) = session.receive(frame(limited))
    assert isinstance(retry, Send)
    assert retry.delay > 0
    assert orjson.loads(retry.data) == request
    refused = {"type": "error", "id": request["id"], "code": "unknown_channel", "message": "unknown channel(s)"}
    (event,) = session.receive(frame(refused))
    assert isinstance(event, Refused)
    assert event.channels == ("book.NOPE",)
    assert session.channels == []
    assert session.receive(b"[not json") == []
    assert session.receive(b'{"type":"from-the-future"}') == []
    assert session.skipped == 2


def test_reconnect_delays_are_jittered_and_capped() -> None:
    rng = random.Random(1)
    delays = [[backoff(attempt, 10.0, rng) for _ in range(200)] for attempt in range(12)]
    assert all(0 <= d <= min(10.0, 0.25 * 2**a) for a, ds in enumerate(delays) for d in ds)
    assert len(set(delays[3])) == 200  # jittered: no two clients reconnect in step
    assert max(delays[11]) > 9  # the cap is reached, not exceeded
