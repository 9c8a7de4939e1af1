"""Bybit v5 public WebSocket (spot or linear), sans-I/O: ``orderbook.{depth}.{symbol}`` and
``publicTrade.{symbol}``.

The snapshot comes in-stream after subscribing and any later snapshot replaces the book (Bybit
re-sends one after internal problems); each delta's ``u`` is the previous one plus 1, and
``u == 1`` means the service restarted, so that message is a snapshot too.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from crossbook.plugin import (
    HEARD,
    BookUpdate,
    ConnectionState,
    Output,
    Rejected,
    Side,
    SnapshotSource,
    Stream,
    Trade,
    levels,
    seq_id,
)
from crossbook.plugin import parse as dec

URLS = {
    "spot": "wss://stream.bybit.com/v5/public/spot",
    "linear": "wss://stream.bybit.com/v5/public/linear",
}
DEPTHS = (1, 50, 200, 1000)
ARGS_PER_REQUEST = 10
"""Bybit spot accepts at most 10 topics per subscribe request."""


def venue_symbol(symbol: str, category: str) -> str:
    """Spot ``BTC-USDT`` -> ``BTCUSDT``; linear ``BTC-USDT-PERP`` -> ``BTCUSDT``."""
    parts = symbol.split("-")
    if category == "spot" and len(parts) == 2:
        return parts[0] + parts[1]
    if category == "linear" and len(parts) == 3 and parts[2] == "PERP":
        return parts[0] + parts[1]
    raise ValueError(f"{symbol!r} has no Bybit {category} name")


class BybitProtocol:
    snapshot_source = SnapshotSource.STREAM
    ping_interval: float | None = 20.0
    idle_timeout = 30.0

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ws_url: str,
        category: str = "spot",
        depth: int = 200,
        trades: bool = True,
        symbols_per_connection: int = 50,
    ) -> None:
        self.ws_url = ws_url
        self.depth = depth
        self.trades = trades
        self.symbols_per_connection = symbols_per_connection
        self.to_venue = {s: venue_symbol(s, category) for s in symbols}
        self.from_venue = {v: s for s, v in self.to_venue.items()}

    def _ops(self, op: str, topics: list[str]) -> list[str]:
        return [
            orjson.dumps({"op": op, "args": topics[i : i + ARGS_PER_REQUEST]}).decode()
            for i in range(0, len(topics), ARGS_PER_REQUEST)
        ]

    def _book_topic(self, symbol: str) -> str:
        return f"orderbook.{self.depth}.{self.to_venue[symbol]}"

    def streams(self, symbols: Sequence[str]) -> list[Stream]:
        out = []
        for i in range(0, len(symbols), self.symbols_per_connection):
            chunk = tuple(symbols[i : i + self.symbols_per_connection])
            topics = [self._book_topic(s) for s in chunk]
            if self.trades:
                topics += [f"publicTrade.{self.to_venue[s]}" for s in chunk]
            out.append(Stream(self.ws_url, chunk, tuple(self._ops("subscribe", topics))))
        return out

    def resubscribe(self, symbols: Sequence[str]) -> list[str] | None:
        topics = [self._book_topic(symbol) for symbol in symbols]
        return self._ops("unsubscribe", topics) + self._ops("subscribe", topics)

    def app_ping(self) -> str | None:
        return '{"op":"ping"}'

    def parse(self, conn: ConnectionState, frame: str | bytes, recv_ns: int) -> list[Output]:
        msg = orjson.loads(frame)
        topic = msg.get("topic")
        if topic is None:
            if msg.get("op") in ("subscribe", "unsubscribe") and msg.get("success") is False:
                return [Rejected(None, str(msg.get("ret_msg")))]
            return [HEARD]  # acks and pongs
        kind = topic.partition(".")[0]
        if kind == "orderbook":
            data = msg["data"]
            last = seq_id(data["u"])
            return [
                BookUpdate(
                    self.from_venue[data["s"]],
                    levels(data["b"]),
                    levels(data["a"]),
                    recv_ns,
                    seq_id(msg["ts"]) * 1_000_000,
                    snapshot=msg["type"] == "snapshot" or last == 1,
                    last=last,
                )
            ]
        if kind == "publicTrade":
            return [
                Trade(
                    self.from_venue[t["s"]],
                    dec(t["p"]),
                    dec(t["v"]),
                    Side.BUY if t["S"] == "Buy" else Side.SELL,
                    str(t["i"]),
                    recv_ns,
                    seq_id(t["T"]) * 1_000_000,
                )
                for t in msg["data"]
            ]
        return [HEARD]
