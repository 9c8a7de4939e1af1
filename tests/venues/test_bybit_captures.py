"""Bybit v5 capture (linear and spot, orderbook.200) replayed: u continuity holds on every book,
all 6 snapshots and 2,142 deltas apply, no book ever crosses."""

from __future__ import annotations

from collections import Counter

from captures import capture
from crossbook.core.model import BookDelta, BookSnapshot
from crossbook.testing.captures import read_cryptofeed
from crossbook.testing.replay import Replay
from crossbook.toolkit.sequence import Consecutive
from crossbook.toolkit.sync import BookSync
from crossbook.toolkit.venue import BookUpdate, SnapshotSource
from crossbook_bybit.protocol import BybitProtocol

CONNECTIONS = {
    "BYBIT.ws.2": ("linear", ["BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP", "DOGE-USDT-PERP"]),
    "BYBIT.ws.3": ("spot", ["BTC-USDT", "ETH-USDT"]),
}


def test_sequences_hold_and_books_never_cross() -> None:
    path = capture("bybit/bybit_v5_orderbook200_linear_spot_20260809.cryptofeed.jsonl.gz")
    replays = {}
    for conn, (category, symbols) in CONNECTIONS.items():
        protocol = BybitProtocol(symbols, ws_url="ws://x", category=category)
        replays[conn] = Replay(protocol, lambda s: BookSync(s, Consecutive(), SnapshotSource.STREAM), symbols)
    updates: Counter[str] = Counter()
    crossed = 0
    for rec in read_cryptofeed(path):
        if rec.kind != "recv" or rec.conn not in replays:
            continue
        rp = replays[rec.conn]
        for out in rp.frame(rec.data, rec.ts_ns):
            if isinstance(out, BookUpdate):
                updates["snapshot" if out.snapshot else "delta"] += 1
                crossed += rp.syncs[out.symbol].book.crossed()
    events = [e for rp in replays.values() for e in rp.events]
    assert updates == {"snapshot": 6, "delta": 2142}
    assert sum(isinstance(e, BookSnapshot) for e in events) == 6
    assert sum(isinstance(e, BookDelta) for e in events) == 2142
    assert crossed == 0
    for rp in replays.values():
        assert rp.parse_errors == []
        assert rp.resync_reasons() == {}
        assert all(s.live for s in rp.syncs.values())
