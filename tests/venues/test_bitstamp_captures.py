"""The Bitstamp capture replayed: diffs aligned on each REST snapshot's ``microtimestamp``.

Bitstamp has neither sequence numbers nor checksums, so the checks are structural: a diff is
applied only when it is newer than its book's snapshot (exact counts of applied and dropped),
every diff stream is in ``microtimestamp`` order, all 10 books go live and none ever crosses.
The trade ``type`` is the aggressor's side: the order id of that side is the newer one.
"""

from __future__ import annotations

import gzip
from collections import Counter

import orjson

from captures import capture
from crossbook.core.model import BookDelta, BookSnapshot, Side, Trade
from crossbook.testing.captures import read_cryptofeed
from crossbook.testing.replay import Replay
from crossbook.toolkit.sequence import AfterTimestamp, Verdict
from crossbook.toolkit.sync import BookSync
from crossbook.toolkit.venue import BookUpdate, SnapshotSource
from crossbook_bitstamp.protocol import BitstampProtocol

DIFFS = "bitstamp/bitstamp_diff_order_book_10pairs_20220105.cryptofeed.jsonl.gz"


class Recorded(AfterTimestamp):
    """The Bitstamp rule, recording each verdict with the ids it compared."""

    def __init__(self) -> None:
        self.verdicts: list[tuple[str, Verdict, int | None, int | None]] = []

    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        verdict = super().first(snapshot_last, upd)
        self.verdicts.append((upd.symbol, verdict, snapshot_last, upd.last))
        return verdict

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        verdict = super().next(last, upd)
        self.verdicts.append((upd.symbol, verdict, last, upd.last))
        return verdict


def test_diffs_apply_only_after_each_snapshot() -> None:
    path = capture(DIFFS)
    with gzip.open(path, "rt") as fh:
        symbols: list[str] = orjson.loads(fh.readline())["config"]["l2_book"]
    protocol = BitstampProtocol(symbols, ws_url="ws://x", rest_url="http://x")
    rule = Recorded()
    rp = Replay(protocol, lambda s: BookSync(s, rule, SnapshotSource.REST), symbols)
    crossed: list[str] = []
    rp.on_update = lambda upd, sync: crossed.extend([upd.symbol] if sync.book.crossed() else [])

    # The file holds the REST responses first and the WebSocket after (grouped by connection):
    # replay in receive-time order, as the connector met them.
    records = sorted(read_cryptofeed(path), key=lambda r: r.ts_ns)
    snapshot_micro: dict[str, int] = {}
    diff_micros: dict[str, list[int]] = {s: [] for s in symbols}
    trades_checked = Counter[str]()
    for rec in records:
        if rec.kind == "http" and rec.url is not None and "/order_book/" in rec.url:
            symbol = protocol.from_venue[rec.url.rstrip("/").rsplit("/", 1)[1]]
            assert symbol in rp.snapshots_wanted
            rp.snapshot(symbol, rec.data, rec.ts_ns)
            snapshot_micro[symbol] = int(orjson.loads(rec.data)["microtimestamp"])
        elif rec.kind == "recv":
            msg = orjson.loads(rec.data)
            if msg["event"] == "data":
                diff_micros[protocol.from_venue[msg["channel"].rsplit("_", 1)[1]]].append(
                    int(msg["data"]["microtimestamp"])
                )
            for out in rp.frame(rec.data, rec.ts_ns):
                if isinstance(out, Trade):
                    data = msg["data"]
                    taker = data["buy_order_id"] if out.side is Side.BUY else data["sell_order_id"]
                    maker = data["sell_order_id"] if out.side is Side.BUY else data["buy_order_id"]
                    trades_checked["aggressor newer" if taker > maker else "aggressor older"] += 1

    assert rp.parse_errors == []
    assert rp.resync_reasons() == {}
    assert crossed == []
    assert all(s.live for s in rp.syncs.values())
    assert len(rp.syncs) == 10
    assert not any(s.book.crossed() for s in rp.syncs.values())
    assert all(m == sorted(m) for m in diff_micros.values())  # each pair's diffs come in order

    # every diff is judged once: dropped iff the snapshot covers it, applied iff it is newer
    assert len(rule.verdicts) == sum(map(len, diff_micros.values())) == 717
    dropped = Counter(s for s, v, _, _ in rule.verdicts if v is Verdict.DROP)
    applied = Counter(s for s, v, _, _ in rule.verdicts if v is Verdict.APPLY)
    assert sum(dropped.values()) == 102
    assert sum(applied.values()) == 615
    for symbol, verdict, _, micro in rule.verdicts:
        assert micro is not None
        assert (micro > snapshot_micro[symbol]) == (verdict is Verdict.APPLY), (symbol, micro)
    assert sum(isinstance(e, BookSnapshot) for e in rp.events) == 10
    assert sum(isinstance(e, BookDelta) for e in rp.events) == 615  # all applied diffs came after the snapshots
    # per pair, (dropped, applied); SGB-EUR sent no diff in these 24 s (live from its snapshot alone)
    assert {s: (dropped[s], applied[s]) for s in symbols} == {
        "SGB-EUR": (0, 0),
        "ETH-USD": (12, 73),
        "XRP-EUR": (6, 64),
        "BAT-EUR": (14, 75),
        "USDT-EUR": (12, 89),
        "USDT-USD": (13, 61),
        "XLM-GBP": (13, 60),
        "ADA-EUR": (5, 57),
        "BAT-BTC": (25, 111),
        "GALA-EUR": (2, 25),
    }
    assert trades_checked == {"aggressor newer": 10}
