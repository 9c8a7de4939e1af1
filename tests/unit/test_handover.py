"""The handover, sans I/O: a venue's connections and planned reconnects driven with frames and
clock readings, no sockets and no sleeps, through the interleavings that matter."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import orjson

from crossbook.core.model import BookSnapshot, Trade, VenueStatus
from crossbook.plugin import (
    BookUpdate,
    ConnectionState,
    Consecutive,
    Output,
    Reconnect,
    Rejected,
    Side,
    SnapshotSource,
    Stream,
)
from crossbook.toolkit import handover
from crossbook.toolkit.handover import Connection, Handover, Step
from crossbook.toolkit.sync import BookSync

X, Y = "BTC-USD", "ETH-USD"
IDLE = 10.0


class Toy:
    """A venue that sends in-stream snapshots and +1 sequenced updates, trades with ids, a
    goodbye (a planned reconnect) and refusals: just enough wire protocol to drive a handover."""

    snapshot_source = SnapshotSource.STREAM
    ping_interval: float | None = None
    idle_timeout = IDLE

    def __init__(self, resubscribe: bool = True) -> None:
        self.can_resubscribe = resubscribe

    def streams(self, symbols: Sequence[str]) -> list[Stream]:
        return [Stream("ws://toy", tuple(symbols), (f"sub {' '.join(symbols)}",))]

    def resubscribe(self, symbols: Sequence[str]) -> list[str] | None:
        return [f"sub {' '.join(symbols)}"] if self.can_resubscribe else None

    def app_ping(self) -> str | None:
        return None

    def parse(self, conn: ConnectionState, frame: str | bytes, recv_ns: int) -> list[Output]:
        msg = orjson.loads(frame)
        kind = msg["t"]
        if kind == "bye":
            return [Reconnect("the venue asked")]
        if kind == "no":
            return [Rejected(msg["s"], "no such symbol")]
        if kind == "trade":
            return [Trade(msg["s"], Decimal(1), Decimal(1), Side.BUY, msg["id"], recv_ns)]
        level = [(Decimal(msg["p"]), Decimal(1))]
        return [BookUpdate(msg["s"], level, [], recv_ns, snapshot=kind == "snap", last=msg["seq"])]


def machine(resubscribe: bool = True) -> Handover:
    protocol = Toy(resubscribe)
    return Handover(protocol, lambda s: BookSync(s, Consecutive(), SnapshotSource.STREAM), idle_timeout=IDLE)


def frame(kind: str, symbol: str = X, seq: int = 0, price: int = 100, **extra: str) -> str:
    return orjson.dumps({"t": kind, "s": symbol, "seq": seq, "p": price, **extra}).decode()


def live(h: Handover, conn: Connection, seq: int = 1, price: int = 100, mono: float = 0.0) -> Step:
    """Every symbol of ``conn`` gets its in-stream snapshot."""
    step = Step()
    for symbol in conn.stream.symbols:
        got = h.received(conn, frame("snap", symbol, seq, price), seq, mono)
        step.events += got.events
        step.close += got.close
    return step


def statuses(step: Step) -> list[tuple[str | None, str, str | None]]:
    return [(e.symbol, e.state.label, e.reason) for e in step.events if isinstance(e, VenueStatus)]


def opened(h: Handover, takeover: bool = False, mono: float = 0.0) -> tuple[Connection, Step]:
    conn = Connection(h.protocol.streams([X, Y])[0])
    return conn, h.opened(conn, takeover, "reconnect", 0, mono)


def planned_pair(h: Handover) -> tuple[Connection, Connection]:
    """A live connection that the venue asked to replace, and its successor, opened."""
    old, _ = opened(h)
    live(h, old)
    step = h.received(old, frame("bye"), 2, 1.0)
    assert step.successors == [old.stream]
    new, first = opened(h, takeover=True, mono=1.0)
    assert statuses(first) == [], "a successor builds its books privately"
    return old, new


def test_opening_subscribes_and_syncs_every_symbol() -> None:
    h = machine()
    conn, step = opened(h)
    assert step.send == ["sub BTC-USD ETH-USD"]
    assert statuses(step) == [(X, "syncing", None), (Y, "syncing", None)]
    got = live(h, conn)
    assert [type(e) for e in got.events] == [BookSnapshot, BookSnapshot]
    assert all(h.active[s].live for s in (X, Y))


def test_a_successor_takes_over_each_book_as_it_goes_live_and_the_old_connection_then_ends() -> None:
    h = machine()
    old, new = planned_pair(h)
    step = h.received(new, frame("snap", X, 5, 101), 3, 2.0)
    assert [(type(e), e.symbol) for e in step.events] == [(BookSnapshot, X)]  # a diff, no status
    assert step.close == []
    assert not old.done
    assert h.received(old, frame("upd", X, 2, 99), 4, 2.0).events == []  # a book taken over from is left alone
    step = h.received(new, frame("snap", Y, 5, 101), 5, 2.0)
    assert step.close == [old]
    assert old.done
    ended = h.closed(old, 6)
    assert ended.events == []
    assert ended.retry is None


def test_the_old_connection_dropped_first_is_not_reopened_and_the_successor_takes_its_books() -> None:
    h = machine()
    old, new = planned_pair(h)
    ended = h.closed(old, 3)
    assert ended.retry is None, "its successor owns the stream"
    assert statuses(ended) == [(X, "connecting", "reconnect"), (Y, "connecting", "reconnect")]
    step = live(h, new, seq=7)
    assert [(type(e), e.symbol) for e in step.events] == [(BookSnapshot, X), (BookSnapshot, Y)]
    assert all(h.active[s] is new.syncs[s] for s in (X, Y))


def test_a_successor_dropped_mid_takeover_is_retried_and_takes_over_the_rest() -> None:
    h = machine()
    old, new = planned_pair(h)
    h.received(new, frame("snap", X, 5), 3, 2.0)  # took BTC-USD over
    ended = h.closed(new, 4)
    assert ended.retry == "reconnect"
    assert statuses(ended) == [(X, "connecting", "reconnect")], "only the book it served"
    again, step = opened(h, takeover=True, mono=5.0)  # the retry is a successor still
    assert statuses(step) == [(X, "syncing", "reconnect")], "BTC-USD was not live: it syncs in the open"
    step = live(h, again, seq=9)
    assert [e.symbol for e in step.events if isinstance(e, BookSnapshot)] == [X, Y]
    assert old.done
    assert step.close == [old]


def test_a_snapshot_older_than_the_live_book_waits_for_the_successor_to_catch_up() -> None:
    """Only REST venues' ids compare across connections (see test_binance_fake for one); an
    in-stream venue's successor takes over on its first live book."""
    h = machine()
    _old, new = planned_pair(h)
    step = h.received(new, frame("snap", X, 0), 3, 2.0)  # an id below the live book's: not comparable
    assert [type(e) for e in step.events] == [BookSnapshot]


def test_trades_are_published_once_across_both_connections() -> None:
    h = machine()
    old, new = planned_pair(h)

    def published(conn: Connection, trade_id: str) -> list[str]:
        events = h.received(conn, frame("trade", id=trade_id), 3, 2.0).events
        return [e.trade_id for e in events if isinstance(e, Trade)]

    assert published(old, "1") == ["1"]
    assert published(new, "1") == []  # both delivered it: once
    assert published(new, "2") == ["2"]  # only the new one
    assert published(old, "3") == ["3"]  # only the old one
    assert published(old, "3") == ["3"], "a repeat on one connection is another trade (ids that are times)"


def test_a_trades_only_old_connection_ends_once_its_successor_delivers_a_trade_it_delivered() -> None:
    h = machine()
    stream = Stream("ws://toy/trades", (X,), books=False)
    old = Connection(stream)
    h.opened(old, False, "reconnect", 0, 0.0)
    h.received(old, frame("bye"), 1, 1.0)
    new = Connection(stream)
    h.opened(new, True, "reconnect", 0, 1.0)
    h.received(new, frame("trade", id="9"), 2, 1.0)
    assert not old.done
    step = h.received(old, frame("trade", id="9"), 3, 1.0)
    assert step.close == [old]


def test_the_handover_deadline_ends_the_old_connection_after_60_seconds() -> None:
    h = machine()
    old, _new = planned_pair(h)  # planned at 1.0
    assert h.deadline(old, 1.0 + handover.HANDOVER_TIMEOUT - 0.001).close == []
    step = h.deadline(old, 1.0 + handover.HANDOVER_TIMEOUT)
    assert step.close == [old]
    ended = h.closed(old, 7)
    assert ended.retry is None
    assert statuses(ended) == [(X, "connecting", "reconnect"), (Y, "connecting", "reconnect")]
    assert h.deadline(old, 1.0 + 2 * handover.HANDOVER_TIMEOUT).close == [], "once"


def test_a_silent_connection_is_stalled_after_the_idle_timeout_and_its_books_resync_stale() -> None:
    h = machine()
    conn, _ = opened(h, mono=100.0)
    live(h, conn, mono=101.0)
    assert h.idle(conn, 101.0 + IDLE - 1) == 1.0
    assert h.idle(conn, 101.0 + IDLE) is None
    assert h.closed(conn, 5).retry == "stale"


def test_a_venue_that_cannot_resubscribe_has_the_connection_replaced() -> None:
    h = machine(resubscribe=False)
    conn, _ = opened(h)
    live(h, conn)
    step = h.received(conn, frame("upd", X, 5), 2, 0.0)  # seq 5 after 1: a gap
    assert statuses(step) == [(X, "syncing", "gap")]
    assert step.reconnect is not None
    assert "gap" in step.reconnect
    assert h.closed(conn, 3).retry == "reconnect"


def test_a_subscription_refused_on_the_successor_takes_the_book_down_when_the_old_one_ends() -> None:
    h = machine()
    old, new = planned_pair(h)
    step = h.received(new, frame("no", X), 3, 2.0)
    assert step.errors == ["subscription rejected: no such symbol"]
    assert statuses(step) == [], "the old connection still serves it"
    live(h, new, seq=4)  # ETH-USD taken over; BTC-USD never will be
    ended = h.closed(old, 5)
    assert statuses(ended) == [(X, "down", "rejected")]


def test_an_unreadable_frame_is_skipped_and_counted() -> None:
    h = machine()
    conn, _ = opened(h)
    step = h.received(conn, "{garbage", 1, 0.0)
    assert len(step.skipped) == 1
    assert "unreadable frame" in step.skipped[0]
    assert not step.heard
    assert step.events == []
    assert h.received(conn, frame("trade", id="1"), 2, 0.0).events != []
    assert h.received(conn, frame("upd", Y, 0), 3, 0.0).heard, "a frame with no events is still heard"
