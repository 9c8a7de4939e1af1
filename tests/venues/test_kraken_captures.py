"""Kraken captures replayed: every exchange checksum in them matches the connector's books
(v1: 4,269; v2: 30 + 19 + the documentation example's 1); how v2's JSON numbers are read."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from captures import capture
from crossbook.testing.captures import read_cryptofeed, read_depthcharge
from crossbook.testing.replay import Replay
from crossbook.toolkit.sequence import Unsequenced
from crossbook.toolkit.sync import BookSync
from crossbook.toolkit.venue import SnapshotSource
from crossbook_kraken.protocol import KrakenProtocol, KrakenV1Protocol, checksum


def syncs(depth: int) -> object:
    return lambda s: BookSync(s, Unsequenced(), SnapshotSource.STREAM, depth=depth, checksum=checksum)


def verified(rp: Replay) -> int:
    return sum(sync.checksums_verified for sync in rp.syncs.values())


def test_v1_book1000_all_checksums_match() -> None:
    path = capture("kraken/kraken_v1_book1000_10pairs_20210417.cryptofeed.jsonl.gz")
    with gzip.open(path, "rt") as fh:
        symbols = [s.replace("-", "-") for s in orjson.loads(fh.readline())["config"]["l2_book"]]
    protocol = KrakenV1Protocol(symbols, ws_url="ws://x", depth=1000)
    rp = Replay(protocol, syncs(1000), symbols)  # type: ignore[arg-type]
    for rec in read_cryptofeed(path):
        if rec.kind == "recv":
            rp.frame(rec.data, rec.ts_ns)
    assert rp.parse_errors == []
    assert rp.resync_reasons() == {}
    assert verified(rp) == 4269
    assert all(s.live for s in rp.syncs.values())


@pytest.mark.parametrize(
    ("name", "expected", "snapshots"),
    [
        ("kraken/kraken_v2_minagbp_d25_20260816.depthcharge.ndjson", 30, 1),
        ("kraken/kraken_v2_minagbp_d25_resync_20260818.depthcharge.ndjson", 19, 2),
    ],
)
def test_v2_depthcharge_all_checksums_match(name: str, expected: int, snapshots: int) -> None:
    path = capture(name)
    protocol = KrakenProtocol(["MINA-GBP"], ws_url="ws://x", depth=25)
    rp = Replay(protocol, syncs(25), ["MINA-GBP"])  # type: ignore[arg-type]
    seen_snapshots = 0
    for rec in read_depthcharge(path):
        if rec.kind == "recv":
            outputs = rp.frame(rec.data, rec.ts_ns)
            seen_snapshots += sum(getattr(o, "snapshot", False) for o in outputs)
    assert rp.parse_errors == []
    assert rp.resync_reasons() == {}
    assert verified(rp) == expected
    assert seen_snapshots == snapshots


def test_v2_documentation_example() -> None:
    path: Path = capture("kraken/kraken_v2_single_docs_example.json")
    protocol = KrakenProtocol(["BTC-USD"], ws_url="ws://x", depth=10)
    rp = Replay(protocol, syncs(10), ["BTC-USD"])  # type: ignore[arg-type]
    rp.frame(path.read_text(), 0)
    assert rp.parse_errors == []
    assert rp.syncs["BTC-USD"].checksums_verified == 1
    assert checksum(rp.syncs["BTC-USD"].book) == 3310070434


def test_float_text_would_break_the_checksum() -> None:
    """Why numbers are parsed as Decimals: a float round trip drops trailing zeros."""
    from decimal import Decimal

    assert format(Decimal("0.10000000"), "f") == "0.10000000"
    assert str(float("0.10000000")) == "0.1"


def test_v2_numbers_keep_their_digits_and_only_prices_and_sizes_are_checked() -> None:
    from decimal import Decimal

    from crossbook.core.exact import BadNumber
    from crossbook.toolkit.venue import BookUpdate, ConnectionState

    protocol = KrakenProtocol(["BTC-USD"], ws_url="ws://x", depth=10)

    def book(bids: str, extra: str = "") -> BookUpdate:
        head = '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":'
        frame = head + bids + ',"asks":[],"checksum":3310070434' + extra + "}]}"
        (out,) = protocol.parse(ConnectionState(), frame, 0)
        assert isinstance(out, BookUpdate)
        return out

    upd = book('[{"price":95000.10,"qty":2},{"price":1e2,"qty":0.00010000}]', ',"other":-1.5')
    assert upd.checksum == 3310070434  # an integer stays an int
    (p1, q1), (p2, q2) = upd.bids
    assert [format(v, "f") for v in (p1, q1, p2, q2)] == ["95000.10", "2", "100", "0.00010000"]
    assert all(type(v) is Decimal for v in (p1, q1, p2, q2))
    for bad in (
        '[{"price":-1.5,"qty":1.0}]',
        '[{"price":1.5,"qty":-1}]',
        '[{"price":"1.5","qty":1.0}]',
        '[{"price":0e-999999999999999999,"qty":1.5}]',  # accepted, it would make the checksum's text ~1 EB
    ):
        with pytest.raises(BadNumber):
            book(bad)


def test_equal_numbers_with_other_digits_have_other_checksums() -> None:
    from decimal import Decimal

    from crossbook.core.book import L2Book

    def crc(bid: str, qty: str) -> int:
        book = L2Book()
        book.replace([(Decimal(bid), Decimal(qty))], [])
        return checksum(book)

    assert crc("5.1", "2") == crc("5.1", "2")  # remembered texts
    assert crc("5.10", "2") != crc("5.1", "2")
    assert crc("5.1", "2.0") != crc("5.1", "2")
