"""The bus contract sans-I/O: the leader's encoding, a follower rebuilding books from it, bad
messages skipped, gaps, new leaders, fenced old ones and silence all resynced."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import orjson
import pytest

from crossbook.cluster import bus
from crossbook.cluster.follow import HEARD, Follower, Skip, TradesGap
from crossbook.cluster.lead import Leader
from crossbook.core.book import L2Book
from crossbook.core.engine import Engine
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Side, Trade, VenueStatus
from crossbook.service.config import ConfigError, load

SYMS = ("BTC-USDT", "ETH-USDT")
SEC = 10**9


def snapshot(symbol: str = "BTC-USDT", bid: str = "100.10", size: str = "1.50") -> BookSnapshot:
    return BookSnapshot(symbol, [(D(bid), D(size))], [(D("100.3"), D("2"))], 5, 4)


def delta(symbol: str = "BTC-USDT", price: str = "100.1", size: str = "0") -> BookDelta:
    return BookDelta(symbol, [(D(price), D(size))], [], 6)


def test_messages_carry_exact_decimal_text_and_number_each_book_from_1() -> None:
    leader = Leader("sim-a", SYMS, ep=7, node="n1")
    out = leader.messages([snapshot(), delta(), Trade("ETH-USDT", D("3.10"), D("0.5"), Side.BUY, "42", 9, 8)])
    subjects = [s for s, _ in out]
    assert subjects == ["crossbook.v1.book.sim-a.BTC-USDT"] * 2 + ["crossbook.v1.book.sim-a.ETH-USDT"]
    first, second, trade = (orjson.loads(p) for _, p in out)
    assert first == {
        "ep": 7,
        "seq": 1,
        "ts": 5,
        "k": "book",
        "vts": 4,
        "bids": [["100.1", "1.5"]],
        "asks": [["100.3", "2"]],
    }
    assert (second["seq"], second["bids"]) == (2, [["100.1", "0"]])
    assert trade == {
        "ep": 7,
        "seq": 1,
        "ts": 9,
        "k": "trade",
        "vts": 8,
        "price": "3.1",
        "size": "0.5",
        "side": "buy",
        "id": "42",
    }
    assert b'"100.1"' in out[0][1]  # text, never a JSON number


def test_a_venue_wide_status_goes_to_every_book_stream_and_unknown_symbols_are_left_out() -> None:
    leader = Leader("sim-a", SYMS, ep=1, node="n1")
    out = leader.messages([VenueStatus(None, BookState.DOWN, 3, "crash"), delta("DOGE-USDT")])
    assert [(s.rpartition(".")[2], orjson.loads(p)["state"]) for s, p in out] == [
        ("BTC-USDT", "down"),
        ("ETH-USDT", "down"),
    ]
    assert orjson.loads(out[0][1])["reason"] == "crash"


def roundtrip(events: list[Any], follower: Follower, leader: Leader, now: int = 0) -> list[Any]:
    out: list[Any] = []
    for subject, payload in leader.messages(events):
        out += follower.message(bus.symbol_of(subject), payload, now)
    return out


def synced(leader: Leader) -> Follower:
    """A follower whose books took the leader's (empty, connecting) snapshot."""
    follower = Follower("sim-a", SYMS, silent_after_ns=SEC)
    for symbol in SYMS:
        follower.snapshot(symbol, leader.snapshot(symbol, BookState.CONNECTING, L2Book(), None, 1), 0)
    return follower


def test_a_follower_gives_the_engine_the_events_the_leader_was_given() -> None:
    leader = Leader("sim-a", SYMS, ep=1, node="n1")
    follower = synced(leader)
    events = [VenueStatus("BTC-USDT", BookState.SYNCING, 4), snapshot(), delta(size="0.25")]
    events.append(Trade("BTC-USDT", D("100.2"), D("1"), Side.SELL, "t1", 7, None))
    assert roundtrip(events, follower, leader) == events


def test_bad_bus_messages_are_skips_with_a_reason() -> None:
    follower = Follower("sim-a", SYMS, silent_after_ns=SEC)
    good = orjson.loads(bus.encode(1, 1, delta()))
    bad = [
        b"not json",
        b"[1]",
        orjson.dumps({**good, "seq": 0}),
        orjson.dumps({**good, "ep": 1.5}),
        orjson.dumps({**good, "k": "nope"}),
        orjson.dumps({**good, "bids": [[100.1, "1"]]}),
        orjson.dumps({**good, "bids": [["-1", "1"]]}),
        orjson.dumps({**good, "bids": [["1"]]}),
        orjson.dumps({**good, "k": "status", "state": "stale"}),
        orjson.dumps({**good, "k": "trade", "side": "up"}),
    ]
    outs = [follower.message("BTC-USDT", payload, 0) for payload in bad]
    assert all(len(out) == 1 and isinstance(out[0], Skip) for out in outs), outs
    assert isinstance(follower.message("DOGE-USDT", bus.encode(1, 1, delta()), 0)[0], Skip)
    assert isinstance(follower.beat(b"{}", 0)[0], Skip)
    assert isinstance(follower.snapshot("BTC-USDT", b'{"ep":1}', 0)[0], Skip)


def test_a_gap_resyncs_the_book_from_a_snapshot_aligned_on_the_sequence() -> None:
    leader = Leader("sim-a", SYMS, ep=1, node="n1")
    follower = synced(leader)
    roundtrip([snapshot()], follower, leader)
    leader.messages([delta(size="3")])  # lost on the bus
    out = roundtrip([delta(price="100.0", size="1")], follower, leader, now=5)
    assert out == [VenueStatus("BTC-USDT", BookState.SYNCING, 5, "bus_gap"), TradesGap("BTC-USDT", 5)]
    assert follower.waiting() == ["BTC-USDT"]
    book = L2Book()
    book.replace([(D("100.1"), D("3")), (D("100.0"), D("1"))], [(D("100.3"), D("2"))])
    reply = leader.snapshot("BTC-USDT", BookState.LIVE, book, 3, 6)  # taken after seq 3
    later = roundtrip([delta(size="4")], follower, leader)  # seq 4, buffered
    assert later == []
    out = follower.snapshot("BTC-USDT", reply, 7)
    assert out[0] == BookSnapshot("BTC-USDT", book.bids(), book.asks(), 6)
    assert out[1:] == [delta(size="4")]
    assert follower.waiting() == []
    assert roundtrip([delta(size="5")], follower, leader) == [delta(size="5")]


def test_messages_buffered_before_the_snapshot_are_dropped_up_to_its_seq() -> None:
    leader = Leader("sim-a", SYMS, ep=1, node="n1")
    follower = Follower("sim-a", SYMS, silent_after_ns=SEC)
    assert roundtrip([delta(size="1"), delta()], follower, leader) == []  # waiting: buffered
    reply = leader.snapshot("BTC-USDT", BookState.LIVE, L2Book(), None, 1)  # after seq 2
    roundtrip([delta(size="9")], follower, leader)
    out = follower.snapshot("BTC-USDT", reply, 2)
    assert out == [BookSnapshot("BTC-USDT", [], [], 1), delta(size="9")]


def test_a_new_leader_resyncs_and_an_old_one_is_fenced() -> None:
    old, new = Leader("sim-a", SYMS, ep=1, node="a"), Leader("sim-a", SYMS, ep=2, node="b")
    follower = synced(old)
    assert roundtrip([snapshot()], follower, old) == [snapshot()]
    out = roundtrip([delta()], follower, new, now=3)  # seq 1 of epoch 2, not the whole book
    assert out == [VenueStatus("BTC-USDT", BookState.SYNCING, 3, "leader_changed"), TradesGap("BTC-USDT", 3)]
    assert roundtrip([delta()], follower, old) == []
    assert follower.fenced == 1
    stale_reply = old.snapshot("BTC-USDT", BookState.LIVE, L2Book(), None, 1)
    assert follower.snapshot("BTC-USDT", stale_reply, 4) == []
    assert follower.waiting() == ["BTC-USDT"]
    reply = new.snapshot("BTC-USDT", BookState.LIVE, L2Book(), None, 5)
    assert follower.snapshot("BTC-USDT", reply, 6)[0].recv_ns == 5  # type: ignore[union-attr]
    assert follower.waiting() == []


def test_a_leader_taking_over_starts_its_epoch_with_whole_books_followed_at_once() -> None:
    old, new = Leader("sim-a", SYMS, ep=1, node="a"), Leader("sim-a", SYMS, ep=0, node="b")
    follower = synced(old)
    roundtrip([snapshot(), delta(), delta(symbol="ETH-USDT")], follower, old)
    book = L2Book()
    book.replace(snapshot().bids, snapshot().asks)
    takeover = new.start(5, {"BTC-USDT": (BookState.LIVE, book), "ETH-USDT": (BookState.SYNCING, L2Book())}, 9)
    out = [o for subject, payload in takeover for o in follower.message(bus.symbol_of(subject), payload, 10)]
    assert out == [
        TradesGap("BTC-USDT", 10),  # the old leader's trades after its last message may be lost
        BookSnapshot("BTC-USDT", book.bids(), book.asks(), 9),
        TradesGap("ETH-USDT", 10),
        VenueStatus("ETH-USDT", BookState.SYNCING, 9, "leader_changed"),
    ]
    assert follower.waiting() == []
    assert follower.ep == 5
    assert roundtrip([delta(size="3")], follower, new) == [delta(size="3")]  # seq 2 of epoch 5
    assert roundtrip([delta(size="7")], follower, old) == []  # the old leader, woken up: fenced
    assert follower.fenced == 1
    assert new.start(6, {"BTC-USDT": (BookState.LIVE, book), "ETH-USDT": (BookState.LIVE, book)}, 11)[0][1].startswith(
        b'{"ep":6,"seq":1,'
    ), "a new epoch numbers from 1 again"


def test_a_new_leader_sends_no_trade_twice() -> None:
    """A standby whose venue feed ran behind takes over and sends trades the old leader had sent:
    each reaches the engine once."""
    old, new = Leader("sim-a", SYMS, ep=1, node="a"), Leader("sim-a", SYMS, ep=0, node="b")
    follower = synced(old)

    def trade(trade_id: str) -> Trade:
        return Trade("BTC-USDT", D("100.2"), D("1"), Side.SELL, trade_id, 7, None)

    assert roundtrip([trade("t1"), trade("t2")], follower, old) == [trade("t1"), trade("t2")]
    book = L2Book()
    takeover = new.start(5, {"BTC-USDT": (BookState.LIVE, book), "ETH-USDT": (BookState.LIVE, book)}, 9)
    for subject, payload in takeover:
        follower.message(bus.symbol_of(subject), payload, 10)
    assert roundtrip([trade("t2"), trade("t3")], follower, new) == [trade("t3")]


def test_after_a_silence_a_lower_epoch_is_followed() -> None:
    """Epochs are lease revisions: a NATS whose store was wiped starts them again from 1."""
    follower = synced(Leader("sim-a", SYMS, ep=40, node="a"))
    follower.beat(Leader("sim-a", SYMS, ep=40, node="a").beat(None)[1], 0)
    assert follower.tick(2 * SEC)  # silent: syncing
    fresh = Leader("sim-a", SYMS, ep=0, node="a")
    takeover = fresh.start(1, dict.fromkeys(SYMS, (BookState.CONNECTING, L2Book())), 3)
    out = [o for subject, payload in takeover for o in follower.message(bus.symbol_of(subject), payload, 4)]
    assert out == [VenueStatus(s, BookState.CONNECTING, 3, "leader_changed") for s in SYMS]
    assert follower.fenced == 0


def test_heartbeats_tell_heard_and_a_lost_tail_once_confirmed() -> None:
    leader = Leader("sim-a", SYMS, ep=1, node="n1")
    follower = synced(leader)
    roundtrip([snapshot()], follower, leader)
    assert follower.beat(leader.beat(10)[1], 1) == [HEARD]
    assert follower.beat(leader.beat(10)[1], 2) == []
    leader.messages([delta()])  # the tail is lost
    assert follower.beat(leader.beat(10)[1], 3) == []  # maybe still on its way
    out = follower.beat(leader.beat(11)[1], 4)
    assert out == [HEARD, VenueStatus("BTC-USDT", BookState.SYNCING, 4, "bus_gap"), TradesGap("BTC-USDT", 4)]


def test_a_silent_leader_and_a_lost_connection_resync_every_book_once() -> None:
    leader = Leader("sim-a", SYMS, ep=1, node="n1")
    follower = synced(leader)
    follower.beat(leader.beat(None)[1], 0)
    assert follower.tick(SEC) == []
    out = follower.tick(SEC + 1)
    statuses = [(o.symbol, o.reason) for o in out if isinstance(o, VenueStatus)]
    assert statuses == [(s, "bus_silent") for s in SYMS]
    assert [o for o in out if isinstance(o, TradesGap)] == [TradesGap(s, SEC + 1) for s in SYMS]
    assert follower.tick(3 * SEC) == []
    assert follower.lost("bus_disconnected", 4) == []  # already syncing
    assert follower.resyncs == 2


def test_the_engine_fed_by_a_follower_equals_the_leaders(tmp_path: Path) -> None:
    leader = Leader("sim-a", SYMS, ep=1, node="n1")
    here, there = Engine({"sim-a": SYMS}, stale_after_ns=10**18), Engine({"sim-a": SYMS}, stale_after_ns=10**18)
    follower = Follower("sim-a", SYMS, silent_after_ns=SEC)
    for symbol in SYMS:
        follower.snapshot(symbol, leader.snapshot(symbol, BookState.CONNECTING, L2Book(), None, 0), 0)
    for i in range(200):
        events = [snapshot()] if i == 0 else [delta(price=f"{100 + i % 7}.{i % 3}", size=str(i % 4))]
        here.ingest("sim-a", events, i)
        for out in roundtrip(events, follower, leader):
            there.ingest("sim-a", [out], i)
    assert there.book("BTC-USDT", "sim-a").sides() == here.book("BTC-USDT", "sim-a").sides()
    assert there.state("BTC-USDT", "sim-a") is BookState.LIVE


def test_a_cluster_role_refuses_names_nats_cannot_carry_and_all_never_imports_nats(tmp_path: Path) -> None:
    assert all(bus.subject_token(t) for t in ("sim-a", "BTC-USDT"))
    assert not any(bus.subject_token(t) for t in ("a.b", "a*", ">", "a b", ""))
    path = tmp_path / "c.toml"
    path.write_text(
        '[cluster]\nrole = "edge"\nnode = "e1"\n[venues.sim-a]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\n'
    )
    config = load(path, environ={"CROSSBOOK_CLUSTER__ROLE": "ingest"})
    assert (config.settings.cluster.role, config.settings.cluster.node) == ("ingest", "e1")
    assert load(path, environ={}).settings.cluster.nats_url == ["nats://127.0.0.1:4222"]
    with pytest.raises(ConfigError, match=r"cluster\.role"):
        load(path, environ={"CROSSBOOK_CLUSTER__ROLE": "both"})
    for env, problem in (
        ({"CROSSBOOK_CLUSTER__USER": "u"}, "user and password go together"),
        ({"CROSSBOOK_CLUSTER__CREDS_FILE": str(tmp_path / "none.creds")}, "none.creds is not a readable file"),
    ):
        with pytest.raises(ConfigError, match=problem):
            load(path, environ=env)
    code = "import sys, crossbook.service.cli, crossbook.service.app; sys.exit('nats' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
