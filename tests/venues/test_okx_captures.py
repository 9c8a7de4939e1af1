"""OKX capture (2022, in-stream snapshots, no seqIds yet) replayed: all 290 checksums match."""

from __future__ import annotations

from captures import capture
from crossbook.testing.captures import read_cryptofeed
from crossbook.testing.replay import Replay
from crossbook.toolkit.sync import BookSync
from crossbook.toolkit.venue import SnapshotSource
from crossbook_okx.protocol import OkxProtocol, SeqIdsOrChecksum, checksum

# cryptofeed's names in the capture header, written the crossbook way
SYMBOLS = ["BTC-USD-220527", "UNI-USD-PERP", "BTC-USDT"]


def test_all_checksums_match() -> None:
    path = capture("okx/okx_books_3inst_20220513.cryptofeed.jsonl.gz")
    protocol = OkxProtocol(SYMBOLS, ws_url="ws://x", rest_url="http://x", snapshot="stream")
    rp = Replay(
        protocol,
        lambda s: BookSync(s, SeqIdsOrChecksum(), SnapshotSource.STREAM, checksum=checksum),
        SYMBOLS,
    )
    for rec in read_cryptofeed(path):
        if rec.kind == "recv":
            rp.frame(rec.data, rec.ts_ns)
    assert rp.parse_errors == []
    assert rp.resync_reasons() == {}
    assert sum(s.checksums_verified for s in rp.syncs.values()) == 290
    assert all(s.live for s in rp.syncs.values())


def test_documented_vector() -> None:
    """PROTOCOLS.md: "3366.1:7:3366.8:9:3366:6:3368:8" -> -1881014294."""
    from decimal import Decimal

    from crossbook.core.book import L2Book

    book = L2Book()
    book.replace([(Decimal("3366.1"), Decimal("7")), (Decimal("3366"), Decimal("6"))], [])
    book.apply([], [(Decimal("3366.8"), Decimal("9")), (Decimal("3368"), Decimal("8"))])
    assert checksum(book) == -1881014294
