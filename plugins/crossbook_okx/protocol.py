"""OKX v5 public WebSocket, sans-I/O: ``books`` and ``trades``.

Two snapshot modes: ``rest`` (default; OKX is retiring the in-stream snapshot) buffers updates
and aligns them on the REST snapshot's ``seqId``; ``stream`` takes the in-stream snapshot. Either
way updates chain by ``prevSeqId == seqId`` of the one before. The CRC32 checksum (top 25 levels,
signed) is verified when non-zero: OKX deprecated it and sends 0, which never fails a book.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

from crossbook.plugin import (
    HEARD,
    BookUpdate,
    BookView,
    ConnectionState,
    HttpRequest,
    Output,
    PrevLinked,
    Rejected,
    Side,
    SnapshotSource,
    Stream,
    Trade,
    Verdict,
    levels,
    seq_id,
)
from crossbook.plugin import parse as dec

DATED = re.compile(r"^\d{6}$")


def venue_symbol(symbol: str) -> str:
    """``BTC-USDT`` spot as is; ``BTC-USDT-PERP`` -> ``BTC-USDT-SWAP``; dated ``BTC-USD-250627`` as is."""
    parts = symbol.split("-")
    if len(parts) == 2:
        return symbol
    if len(parts) == 3 and parts[2] == "PERP":
        return f"{parts[0]}-{parts[1]}-SWAP"
    if len(parts) == 3 and DATED.match(parts[2]):
        return symbol
    raise ValueError(f"{symbol!r} has no OKX name")


def checksum(book: BookView) -> int:
    """OKX's signed CRC32 of the top 25 bids and asks interleaved ``bid:size:ask:size:...``."""
    bids, asks = book.top_bids(25), book.top_asks(25)
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            parts += [format(bids[i][0], "f"), format(bids[i][1], "f")]
        if i < len(asks):
            parts += [format(asks[i][0], "f"), format(asks[i][1], "f")]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2**32 if crc >= 2**31 else crc


class SeqIdsOrChecksum(PrevLinked):
    """``prevSeqId``/``seqId`` chaining; a message without them (OKX before 2022-2023) relies on
    its checksum alone."""

    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        return Verdict.APPLY if upd.last is None and snapshot_last is None else super().first(snapshot_last, upd)

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        return Verdict.APPLY if upd.last is None and last is None else super().next(last, upd)


def _ids(item: dict[str, Any]) -> tuple[int | None, int | None]:
    last = item.get("seqId")
    prev = item.get("prevSeqId")
    return (seq_id(last) if last is not None else None, seq_id(prev) if prev is not None else None)


class OkxProtocol:
    ping_interval: float | None = 20.0
    idle_timeout = 30.0

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ws_url: str,
        rest_url: str,
        snapshot: str = "rest",
        trades: bool = True,
        symbols_per_connection: int = 100,
        snapshot_depth: int = 400,
    ) -> None:
        self.ws_url = ws_url
        self.rest_url = rest_url.rstrip("/")
        self.snapshot_source = SnapshotSource.REST if snapshot == "rest" else SnapshotSource.STREAM
        self.trades = trades
        self.symbols_per_connection = symbols_per_connection
        self.snapshot_depth = snapshot_depth
        self.to_venue = {s: venue_symbol(s) for s in symbols}
        self.from_venue = {v: s for s, v in self.to_venue.items()}

    def _op(self, op: str, channel: str, symbols: Sequence[str]) -> str:
        args = [{"channel": channel, "instId": self.to_venue[s]} for s in symbols]
        return orjson.dumps({"op": op, "args": args}).decode()

    def streams(self, symbols: Sequence[str]) -> list[Stream]:
        out = []
        for i in range(0, len(symbols), self.symbols_per_connection):
            chunk = tuple(symbols[i : i + self.symbols_per_connection])
            frames = [self._op("subscribe", "books", chunk)]
            if self.trades:
                frames.append(self._op("subscribe", "trades", chunk))
            out.append(Stream(self.ws_url, chunk, tuple(frames)))
        return out

    def resubscribe(self, symbols: Sequence[str]) -> list[str] | None:
        if self.snapshot_source is SnapshotSource.REST:
            return []  # the stream goes on; the sync fetches a REST snapshot
        return [self._op("unsubscribe", "books", symbols), self._op("subscribe", "books", symbols)]

    def app_ping(self) -> str | None:
        return "ping"

    def parse(self, conn: ConnectionState, frame: str | bytes, recv_ns: int) -> list[Output]:
        if frame in ("pong", b"pong"):
            return [HEARD]
        msg = orjson.loads(frame)
        if "event" in msg:
            if msg["event"] == "error":
                inst = (msg.get("arg") or {}).get("instId")
                return [Rejected(self.from_venue.get(inst) if inst else None, f"{msg.get('code')}: {msg.get('msg')}")]
            return [HEARD]
        arg = msg["arg"]
        channel = arg["channel"]
        if channel == "books":
            symbol = self.from_venue[arg["instId"]]
            snapshot = msg.get("action") == "snapshot"
            if snapshot and self.snapshot_source is SnapshotSource.REST:
                return [HEARD]  # REST mode ignores an in-stream snapshot
            out: list[Output] = []
            for item in msg["data"]:
                last, prev = _ids(item)
                crc = item.get("checksum")
                out.append(
                    BookUpdate(
                        symbol,
                        levels(item["bids"]),
                        levels(item["asks"]),
                        recv_ns,
                        int(item["ts"]) * 1_000_000,
                        snapshot=snapshot,
                        last=last,
                        prev=prev,
                        checksum=seq_id(crc) or None if crc is not None else None,
                    )
                )
            return out
        if channel == "trades":
            return [
                Trade(
                    self.from_venue[t["instId"]],
                    dec(t["px"]),
                    dec(t["sz"]),
                    Side.BUY if t["side"] == "buy" else Side.SELL,
                    str(t["tradeId"]),
                    recv_ns,
                    int(t["ts"]) * 1_000_000,
                )
                for t in msg["data"]
            ]
        return [HEARD]

    def snapshot_request(self, symbol: str) -> HttpRequest:
        params = {"instId": self.to_venue[symbol], "sz": str(self.snapshot_depth)}
        return HttpRequest(self.rest_url + "/api/v5/market/books", weight=1, params=params)

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        msg = orjson.loads(body)
        if str(msg.get("code")) != "0":
            raise ValueError(f"OKX error {msg.get('code')}: {msg.get('msg')}")
        item = msg["data"][0]
        last, _ = _ids(item)
        return BookUpdate(
            symbol,
            levels(item["bids"]),
            levels(item["asks"]),
            recv_ns,
            int(item["ts"]) * 1_000_000,
            snapshot=True,
            last=last,
        )
