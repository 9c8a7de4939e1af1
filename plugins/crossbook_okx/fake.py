"""A fake OKX (v5 public) for tests: subscribe acks, in-stream snapshots (ignored in REST mode),
updates chained by prevSeqId/seqId with jumps, REST ``/api/v5/market/books`` snapshots."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from crossbook.plugin import Level, Side, Trade
from crossbook.testing import FakeConnection, FakeMarket
from crossbook_okx.protocol import venue_symbol


def _levels(levels: list[Level]) -> list[list[str]]:
    return [[format(p, "f"), format(q, "f"), "0", "1"] for p, q in levels]


class OkxDialect:
    def __init__(self, market: FakeMarket, seed: int = 7) -> None:
        self.market = market
        self.rng = random.Random(seed)
        self.from_venue = {venue_symbol(s): s for s in market.books}
        self.seq = dict.fromkeys(market.books, 1000)

    def on_connect(self, conn: FakeConnection) -> list[str]:
        return []

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]
        msg = orjson.loads(text)
        out = []
        for arg in msg.get("args", []):
            out.append(orjson.dumps({"event": msg["op"], "arg": arg, "connId": "fake"}).decode())
            symbol = self.from_venue.get(arg.get("instId", ""))
            if arg.get("channel") == "trades" and symbol is not None:
                if msg["op"] == "unsubscribe":
                    conn.trades.discard(symbol)
                else:
                    conn.trades.add(symbol)
                continue
            if arg.get("channel") != "books" or symbol is None:
                continue
            if msg["op"] == "unsubscribe":
                conn.symbols.discard(symbol)
                continue
            conn.symbols.add(symbol)
            book = self.market.books[symbol]
            data = self._data(book.bids(), book.asks(), -1, self.seq[symbol])
            out.append(self._frame(arg["instId"], "snapshot", data))
        return out

    @staticmethod
    def _data(bids: list[Level], asks: list[Level], prev: int, seq: int) -> dict[str, Any]:
        return {
            "asks": _levels(asks),
            "bids": _levels(bids),
            "ts": str(time.time_ns() // 1_000_000),
            "checksum": 0,
            "prevSeqId": prev,
            "seqId": seq,
        }

    @staticmethod
    def _frame(inst: str, action: str, data: dict[str, Any]) -> str:
        return orjson.dumps({"arg": {"channel": "books", "instId": inst}, "action": action, "data": [data]}).decode()

    def advance(self, symbol: str, bids: list[Level], asks: list[Level]) -> str:
        prev = self.seq[symbol]
        self.seq[symbol] = prev + self.rng.randint(1, 5)
        return self._frame(venue_symbol(symbol), "update", self._data(bids, asks, prev, self.seq[symbol]))

    def encode(self, conn: FakeConnection, symbol: str, payload: Any, *, skip: bool = False) -> list[str]:
        return [] if skip else [payload]

    def trade(self, conn: FakeConnection, trade: Trade) -> list[str]:
        """Frames carrying one trade to one connection subscribed to its symbol's trades.

        A ``trades`` push of one trade: ``side`` the taker's (``buy``/``sell``), ``tradeId``,
        ``px``, ``sz`` and ``ts`` (milliseconds) strings, ``count`` the trades it aggregates.
        """
        inst = venue_symbol(trade.symbol)
        ns = trade.venue_ns if trade.venue_ns is not None else trade.recv_ns
        data = {
            "instId": inst,
            "tradeId": trade.trade_id,
            "px": format(trade.price, "f"),
            "sz": format(trade.size, "f"),
            "side": "buy" if trade.side is Side.BUY else "sell",
            "ts": str(ns // 1_000_000),
            "count": "1",
        }
        return [orjson.dumps({"arg": {"channel": "trades", "instId": inst}, "data": [data]}).decode()]

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        symbol = self.from_venue.get(params.get("instId", ""))
        if path != "/api/v5/market/books" or symbol is None:
            return 200, '{"code":"51001","msg":"Instrument ID does not exist","data":[]}'
        depth = int(params.get("sz", "400"))
        book = self.market.books[symbol]
        data = self._data(book.top_bids(depth), book.top_asks(depth), -1, self.seq[symbol])
        return 200, orjson.dumps({"code": "0", "msg": "", "data": [data]}).decode()

    def reconnect_frame(self) -> str | None:
        return None

    def corrupt(self, frame: str) -> str:
        return frame  # live OKX sends checksum 0
