"""Binance spot and USD-M captures replayed: books equal bookTicker at every coinciding update id."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import orjson
import pytest

from captures import capture
from crossbook.core.model import BookDelta, Level
from crossbook.testing.captures import Record, read_cryptofeed, read_hftbacktest
from crossbook.testing.replay import Replay
from crossbook.toolkit.sequence import FirstLastIds, PrevLinked
from crossbook.toolkit.sync import BookSync
from crossbook.toolkit.venue import BookUpdate, SnapshotSource
from crossbook_binance.protocol import BinanceProtocol


def replay(
    records: Iterable[Record], symbols: list[str], futures: bool, snapshot_limit: int | None = None
) -> tuple[Replay, int]:
    """Replay a capture; returns the replay and how many bookTicker points matched the book.

    bookTicker's ``u`` shares the depth stream's id space: wherever it equals the ``u`` of an
    applied diff, the book's best bid and ask after that diff must equal the ticker's.
    """
    protocol = BinanceProtocol(symbols, ws_url="ws://x", rest_url="http://x", futures=futures)
    rule = PrevLinked() if futures else FirstLastIds()
    rp = Replay(protocol, lambda s: BookSync(s, rule, SnapshotSource.REST, snapshot_limit=snapshot_limit), symbols)
    tops: dict[tuple[str, int], tuple[Level | None, Level | None]] = {}
    tickers: dict[tuple[str, int], tuple[Level, Level]] = {}

    def after_update(upd: BookUpdate, sync: BookSync) -> None:
        if sync.live and upd.last is not None and sync.last == upd.last:
            tops[(upd.symbol, upd.last)] = (sync.book.best_bid(), sync.book.best_ask())

    rp.on_update = after_update
    for rec in records:
        if rec.kind == "http":
            if rec.url is None:
                rp.snapshot(symbols[0], rec.data, rec.ts_ns)
            elif "/depth" in rec.url:
                venue = parse_qs(urlparse(rec.url).query)["symbol"][0]
                rp.snapshot(protocol.from_venue[venue], rec.data, rec.ts_ns)
        elif rec.kind == "recv":
            rp.frame(rec.data, rec.ts_ns)
            data = orjson.loads(rec.data).get("data", {})
            if data.get("e", "bookTicker") == "bookTicker" and "b" in data and "s" in data:
                key = (protocol.from_venue[data["s"]], data["u"])
                tickers[key] = ((Decimal(data["b"]), Decimal(data["B"])), (Decimal(data["a"]), Decimal(data["A"])))
    both = tops.keys() & tickers.keys()
    mismatched = {k: (tops[k], tickers[k]) for k in both if tops[k] != tickers[k]}
    assert not mismatched, list(mismatched.items())[:3]
    return rp, len(both)


def check_clean(rp: Replay) -> None:
    assert rp.parse_errors == []
    assert rp.resync_reasons() == {}
    assert all(s.live for s in rp.syncs.values())
    assert not any(s.book.crossed() for s in rp.syncs.values())
    assert any(isinstance(e, BookDelta) for e in rp.events)


@pytest.mark.parametrize(
    ("path", "futures", "expected"),
    [
        ("binance/binance_spot_btcusdt_depth100ms_20240808.hftbacktest.gz", False, 564),
        ("binance_futures/binance_usdm_btcusdt_depth0ms_20240808.hftbacktest.gz", True, 629),
    ],
)
@pytest.mark.slow
def test_hftbacktest_books_match_bookticker(path: str, futures: bool, expected: int) -> None:
    rp, matched = replay(read_hftbacktest(capture(path)), ["BTC-USDT-PERP" if futures else "BTC-USDT"], futures)
    check_clean(rp)
    assert matched == expected


@pytest.mark.parametrize(
    ("path", "futures", "expected"),
    [
        ("binance/binance_spot_btcusdt_depth100ms_20240808.hftbacktest.gz", False, 351),
        ("binance_futures/binance_usdm_btcusdt_depth0ms_20240808.hftbacktest.gz", True, 386),
    ],
)
@pytest.mark.slow
def test_books_that_keep_only_their_snapshots_prices_match_bookticker_until_the_market_leaves_them(
    path: str, futures: bool, expected: int
) -> None:
    """With the connectors' default ``snapshot_limit`` (1000, as these captures' snapshots): the
    market leaves the covered prices in both, and with no second snapshot recorded the book resyncs
    (``beyond_snapshot``) and stays syncing. Until then it equals bookTicker at every coinciding id
    (351 of the 564 above, 386 of the 629)."""
    symbol = "BTC-USDT-PERP" if futures else "BTC-USDT"
    rp, matched = replay(read_hftbacktest(capture(path)), [symbol], futures, snapshot_limit=1000)
    assert rp.resync_reasons() == {"beyond_snapshot": 1}
    assert rp.snapshots_wanted == {symbol}
    assert matched == expected


@pytest.mark.parametrize(
    ("path", "futures", "expected"),
    [
        ("binance/binance_spot_4sym_depth100ms_20211012.cryptofeed.jsonl.gz", False, 26),
        ("binance_futures/binance_usdm_4sym_depth_20210722.cryptofeed.jsonl.gz", True, 50),
    ],
)
def test_cryptofeed_books_match_bookticker(path: str, futures: bool, expected: int) -> None:
    file = capture(path)
    with __import__("gzip").open(file, "rt") as fh:
        header = orjson.loads(fh.readline())
    symbols = [s + "-PERP" if futures and s.count("-") == 1 else s for s in header["config"]["l2_book"]]
    rp, matched = replay(read_cryptofeed(file), symbols, futures)
    check_clean(rp)
    assert matched == expected
