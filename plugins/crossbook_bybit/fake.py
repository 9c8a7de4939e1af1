"""A fake Bybit v5 public stream (spot) for tests: acks, in-stream snapshots on subscribe,
deltas with ``u`` growing by 1, pongs."""

from __future__ import annotations

import time
from typing import Any

import orjson

from crossbook.plugin import Level, Side, Trade
from crossbook.testing import FakeConnection, FakeMarket
from crossbook_bybit.protocol import venue_symbol


def _levels(levels: list[Level]) -> list[list[str]]:
    return [[format(p, "f"), format(q, "f")] for p, q in levels]


class BybitDialect:
    def __init__(self, market: FakeMarket, category: str = "spot", depth: int = 200) -> None:
        self.market = market
        self.depth = depth
        self.to_venue = {s: venue_symbol(s, category) for s in market.books}
        self.from_venue = {v: s for s, v in self.to_venue.items()}
        self.u = dict.fromkeys(market.books, 100)

    def on_connect(self, conn: FakeConnection) -> list[str]:
        return []

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
        op = msg.get("op")
        if op == "ping":
            return [orjson.dumps({"success": True, "ret_msg": "pong", "conn_id": "fake", "op": "ping"}).decode()]
        out = [orjson.dumps({"success": True, "ret_msg": "", "conn_id": "fake", "req_id": "", "op": op}).decode()]
        for topic in msg.get("args", []):
            kind, _, venue = topic.rpartition(".")
            symbol = self.from_venue.get(venue)
            if symbol is not None and kind == "publicTrade":
                if op == "unsubscribe":
                    conn.trades.discard(symbol)
                else:
                    conn.trades.add(symbol)
                continue
            if symbol is None or not kind.startswith("orderbook"):
                continue
            if op == "unsubscribe":
                conn.symbols.discard(symbol)
                continue
            conn.symbols.add(symbol)
            book = self.market.books[symbol]
            out.append(self._frame(symbol, "snapshot", book.top_bids(self.depth), book.top_asks(self.depth)))
        return out

    def _frame(self, symbol: str, kind: str, bids: list[Level], asks: list[Level]) -> str:
        venue = self.to_venue[symbol]
        data = {"s": venue, "b": _levels(bids), "a": _levels(asks), "u": self.u[symbol], "seq": self.u[symbol] * 7}
        ts = time.time_ns() // 1_000_000
        return orjson.dumps({"topic": f"orderbook.{self.depth}.{venue}", "type": kind, "ts": ts, "data": data}).decode()

    def advance(self, symbol: str, bids: list[Level], asks: list[Level]) -> str:
        self.u[symbol] += 1
        return self._frame(symbol, "delta", bids, asks)

    def encode(self, conn: FakeConnection, symbol: str, payload: Any, *, skip: bool = False) -> list[str]:
        return [] if skip else [payload]

    def trade(self, conn: FakeConnection, trade: Trade) -> list[str]:
        """Frames carrying one trade to one connection subscribed to its symbol's trades.

        A ``publicTrade.{symbol}`` message (its ``type`` is always ``snapshot``) of one trade:
        ``S`` the taker's side (``Buy``/``Sell``), ``i`` the trade id as a string, ``T`` and
        ``ts`` in milliseconds, ``seq`` the cross sequence of the book's last update.
        """
        venue = self.to_venue[trade.symbol]
        ms = (trade.venue_ns if trade.venue_ns is not None else trade.recv_ns) // 1_000_000
        buy = trade.side is Side.BUY
        data = {
            "T": ms,
            "s": venue,
            "S": "Buy" if buy else "Sell",
            "v": format(trade.size, "f"),
            "p": format(trade.price, "f"),
            "L": "PlusTick" if buy else "MinusTick",
            "i": trade.trade_id,
            "BT": False,
            "RPI": False,
            "seq": self.u[trade.symbol] * 7,
        }
        msg = {"topic": f"publicTrade.{venue}", "type": "snapshot", "ts": ms, "data": [data]}
        return [orjson.dumps(msg).decode()]

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        return 404, "{}"

    def reconnect_frame(self) -> str | None:
        return None

    def corrupt(self, frame: str) -> str:
        return frame  # Bybit sends no checksum
