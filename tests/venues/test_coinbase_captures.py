"""Coinbase captures replayed.

Advanced Trade (2026): ``sequence_num`` is gap-free over the whole connection, both in-stream
snapshots and all 773 updates apply, the books never cross, and the trade sides normalize to the
aggressor (checked against the book: a trade at the best ask was bought, at the best bid sold).
A message removed from the capture shows as a gap that resyncs every book of the connection.

Exchange (2021, the old Pro feed): no sequence numbers on ``level2``, so only structural checks:
a small parser of that feed replays every book through the same sync and none ever crosses.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from captures import capture
from crossbook.core.exact import parse as dec
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Level, Trade
from crossbook.testing.captures import Record, read_cryptofeed, read_legacy
from crossbook.testing.replay import Replay
from crossbook.toolkit.sequence import Unsequenced
from crossbook.toolkit.sync import Action, BookSync
from crossbook.toolkit.venue import BookUpdate, Resync, SnapshotSource
from crossbook_coinbase.protocol import CoinbaseProtocol

ADVANCED = "coinbase/coinbase_advanced_l2_btc_eth_20260809.cryptofeed.jsonl.gz"
EXCHANGE = "coinbase/coinbase_exchange_level2_10prod_20210417.cryptofeed-legacy.txt.gz"


def header_symbols(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        symbols: list[str] = orjson.loads(fh.readline())["config"]["l2_book"]
    return symbols


def advanced_replay(path: Path, symbols: list[str]) -> Replay:
    protocol = CoinbaseProtocol(symbols, ws_url="ws://x")
    return Replay(protocol, lambda s: BookSync(s, Unsequenced(), SnapshotSource.STREAM), symbols)


def received(path: Path) -> list[Record]:
    return [r for r in read_cryptofeed(path) if r.kind == "recv"]


def test_advanced_sequence_is_gap_free_and_books_stay_uncrossed() -> None:
    path = capture(ADVANCED)
    symbols = header_symbols(path)
    frames = received(path)
    seqs = [orjson.loads(r.data)["sequence_num"] for r in frames]
    assert seqs == list(range(len(frames)))
    assert len(frames) == 1030

    rp = advanced_replay(path, symbols)
    crossed: list[str] = []
    applied = Counter[str]()

    def after_update(upd: BookUpdate, sync: BookSync) -> None:
        if sync.live:
            applied["snapshot" if upd.snapshot else "update"] += 1
        if sync.book.crossed():
            crossed.append(upd.symbol)

    rp.on_update = after_update
    side_check = Counter[str]()
    for rec in frames:
        before = len(rp.events)
        rp.frame(rec.data, rec.ts_ns)
        for trade in (e for e in rp.events[before:] if isinstance(e, Trade)):
            book = rp.syncs[trade.symbol].book
            bid, ask = book.best_bid(), book.best_ask()
            if bid is None or ask is None:
                side_check["no book yet"] += 1
            elif trade.price >= ask[0]:
                side_check["at ask, " + trade.side.value] += 1
            elif trade.price <= bid[0]:
                side_check["at bid, " + trade.side.value] += 1
            else:
                side_check["inside"] += 1

    assert rp.parse_errors == []
    assert not any(isinstance(o, Resync) for o in rp.outputs)
    assert rp.resync_reasons() == {}
    assert applied == {"snapshot": 2, "update": 773}
    assert sum(isinstance(e, BookSnapshot) for e in rp.events) == 2
    assert sum(isinstance(e, BookDelta) for e in rp.events) == 773
    assert crossed == []
    assert all(s.live for s in rp.syncs.values())
    assert {s: len(x.book) for s, x in rp.syncs.items()} == {"BTC-USD": 46007, "ETH-USD": 23328}
    # 79 live trades (the two market_trades snapshots are history and not published); every
    # trade printed at the touch has the aggressor side: bought at the ask, sold at the bid.
    assert side_check == {"at ask, buy": 48, "at bid, sell": 23, "inside": 7, "no book yet": 1}


@pytest.mark.parametrize("channel", ["l2_data", "heartbeats"])
def test_advanced_lost_message_resyncs_every_book_of_the_connection(channel: str) -> None:
    """Remove one message (a book update, or a heartbeat: the number is shared by all channels)."""
    path = capture(ADVANCED)
    symbols = header_symbols(path)
    frames = received(path)
    victim = [i for i, r in enumerate(frames) if orjson.loads(r.data)["channel"] == channel][10]
    rp = advanced_replay(path, symbols)
    for i, rec in enumerate(frames):
        if i == victim:
            continue
        rp.frame(rec.data, rec.ts_ns)
        if i == victim + 1:
            assert [o for o in rp.outputs if isinstance(o, Resync)] == [Resync(None, "gap")]
            assert rp.resync_reasons() == {"gap": 2}
            assert sorted(rp.resubscribes) == sorted(symbols)
            # no fresh snapshot in the capture: both books wait for the resubscription's
            assert all(s.state is BookState.SYNCING for s in rp.syncs.values())
    assert [o for o in rp.outputs if isinstance(o, Resync)] == [Resync(None, "gap")]
    assert not any(s.live for s in rp.syncs.values())


def test_advanced_unreadable_frame_counts_as_lost() -> None:
    """A frame the parser cannot read does not advance ``sequence_num``: the next one is a gap."""
    path = capture(ADVANCED)
    symbols = header_symbols(path)
    frames = received(path)
    broken = next(i for i, r in enumerate(frames) if i > 100 and orjson.loads(r.data)["channel"] == "l2_data")
    rp = advanced_replay(path, symbols)
    for i, rec in enumerate(frames[: broken + 2]):
        rp.frame(rec.data.replace('"price_level":"', '"price_level":"x') if i == broken else rec.data, rec.ts_ns)
    assert len(rp.parse_errors) == 1
    assert rp.resync_reasons() == {"gap": 2}


# -- Coinbase Exchange (2021) ---------------------------------------------------------------------


def exchange_records(path: Path) -> Iterator[Record]:
    """``read_legacy``, tolerating the two blank lines that end this file (it raises on them)."""
    records = read_legacy(path)
    while True:
        try:
            yield next(records)
        except StopIteration:
            return
        except ValueError:
            return  # the trailing blank lines; the count below proves nothing else was lost


def exchange_update(msg: dict[str, object], recv_ns: int) -> BookUpdate | None:
    """The old Exchange feed's ``snapshot`` and ``l2update`` (sides ``buy``/``sell``) as updates."""
    if msg["type"] not in ("snapshot", "l2update"):
        return None
    product = msg["product_id"]
    assert isinstance(product, str)
    if msg["type"] == "snapshot":
        raw_bids, raw_asks = msg["bids"], msg["asks"]
        assert isinstance(raw_bids, list)
        assert isinstance(raw_asks, list)
        bids = [(dec(p), dec(q)) for p, q in raw_bids]
        asks = [(dec(p), dec(q)) for p, q in raw_asks]
        return BookUpdate(product, bids, asks, recv_ns, snapshot=True)
    changes = msg["changes"]
    assert isinstance(changes, list)
    sides: dict[str, list[Level]] = {"buy": [], "sell": []}
    for side, price, size in changes:
        sides[side].append((dec(price), dec(size)))
    return BookUpdate(product, sides["buy"], sides["sell"], recv_ns)


def test_exchange_level2_books_never_cross() -> None:
    path = capture(EXCHANGE)
    syncs: dict[str, BookSync] = {}
    kinds = Counter[str]()
    applied = Counter[str]()
    resyncs: list[str] = []
    for rec in exchange_records(path):
        if rec.kind == "send":
            for product in orjson.loads(rec.data)["product_ids"]:
                if product not in syncs:
                    syncs[product] = BookSync(product, Unsequenced(), SnapshotSource.STREAM)
                    syncs[product].start(rec.ts_ns, [], [])
            continue
        msg = orjson.loads(rec.data)
        kinds[msg["type"]] += 1
        upd = exchange_update(msg, rec.ts_ns)
        if upd is None:
            continue
        sync = syncs[upd.symbol]
        actions: list[Action] = []
        sync.on_update(upd, [], actions)
        if actions:
            resyncs.append(upd.symbol)
        if sync.live:
            applied["snapshot" if upd.snapshot else "update"] += 1
            assert not sync.book.crossed()
    assert kinds.total() == 9946
    assert kinds["snapshot"] == 10
    assert kinds["l2update"] == 9719
    assert applied == {"snapshot": 10, "update": 9719}
    assert resyncs == []
    assert len(syncs) == 10
    assert all(s.live for s in syncs.values())
    assert all(s.book.best_bid() and s.book.best_ask() for s in syncs.values())
