"""A fake Coinbase Advanced Trade for tests: subscribe per channel, in-stream snapshots, and one
``sequence_num`` per connection shared by every channel (a skipped message leaves a jump)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from crossbook.plugin import Level, Side, Trade
from crossbook.testing import FakeConnection, FakeMarket

Updates = list[dict[str, str]]


AGGRESSOR_TO_MAKER = {Side.BUY: "SELL", Side.SELL: "BUY"}


def rfc3339(ns: int, digits: int = 9) -> str:
    """``2026-08-09T21:05:48.483587501Z`` (``digits`` of the fraction kept)."""
    whole = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{f'{ns % 1_000_000_000:09d}'[:digits]}Z"


def now_rfc3339() -> str:
    return rfc3339(time.time_ns())


def updates(bids: list[Level], asks: list[Level], when: str) -> Updates:
    def one(side: str, price: Decimal, size: Decimal) -> dict[str, str]:
        return {"side": side, "event_time": when, "price_level": format(price, "f"), "new_quantity": format(size, "f")}

    return [one("bid", p, s) for p, s in bids] + [one("offer", p, s) for p, s in asks]


class CoinbaseDialect:
    def __init__(self, market: FakeMarket) -> None:
        self.market = market

    def _frame(self, conn: FakeConnection, channel: str, events: list[dict[str, object]]) -> str:
        seq = conn.values.get("seq", 0)
        conn.values["seq"] = seq + 1
        msg = {"channel": channel, "client_id": "", "timestamp": now_rfc3339(), "sequence_num": seq, "events": events}
        return orjson.dumps(msg).decode()

    def _subscriptions(self, conn: FakeConnection) -> str:
        subs: dict[str, list[str]] = {"heartbeats": ["heartbeats"]} if conn.values.get("heartbeats") else {}
        if conn.symbols:
            subs["level2"] = sorted(conn.symbols)
        if conn.trades:
            subs["market_trades"] = sorted(conn.trades)
        return self._frame(conn, "subscriptions", [{"subscriptions": subs}])

    def on_connect(self, conn: FakeConnection) -> list[str]:
        return []

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
        kind, channel = msg.get("type"), msg.get("channel")
        products = [p for p in msg.get("product_ids", []) if p in self.market.books]
        if kind not in ("subscribe", "unsubscribe") or channel not in ("level2", "market_trades", "heartbeats"):
            return [orjson.dumps({"type": "error", "message": "Failure to subscribe"}).decode()]
        conn.values.setdefault("jwts", []).append(msg.get("jwt"))
        target = {"level2": conn.symbols, "market_trades": conn.trades}.get(channel)
        if channel == "heartbeats":
            conn.values["heartbeats"] = kind == "subscribe"
        elif target is not None and kind == "subscribe":
            target.update(products)
        elif target is not None:
            target.difference_update(products)
        out = [self._subscriptions(conn)]
        if channel == "level2" and kind == "subscribe" and products:
            when = now_rfc3339()
            events: list[dict[str, object]] = [
                {
                    "type": "snapshot",
                    "product_id": p,
                    "updates": updates(self.market.books[p].bids(), self.market.books[p].asks(), when),
                }
                for p in products
            ]
            out.append(self._frame(conn, "l2_data", events))
        return out

    def advance(self, symbol: str, bids: list[Level], asks: list[Level]) -> Updates:
        return updates(bids, asks, now_rfc3339())

    def encode(self, conn: FakeConnection, symbol: str, payload: Updates, *, skip: bool = False) -> list[str]:
        frame = self._frame(conn, "l2_data", [{"type": "update", "product_id": symbol, "updates": payload}])
        return [] if skip else [frame]

    def heartbeat(self, conn: FakeConnection) -> str:
        return self._frame(conn, "heartbeats", [{"current_time": now_rfc3339(), "heartbeat_counter": 1}])

    def trade(self, conn: FakeConnection, trade: Trade) -> list[str]:
        """Frames carrying one trade to one connection subscribed to its symbol's trades.

        A ``market_trades`` ``update`` event of one trade, numbered in the connection's
        ``sequence_num`` like every other message: ``side`` is the *maker's* (the aggressor's
        opposite), ``trade_id`` a string, ``time`` RFC 3339 in microseconds.
        """
        ns = trade.venue_ns if trade.venue_ns is not None else trade.recv_ns
        t = {
            "product_id": trade.symbol,
            "trade_id": trade.trade_id,
            "price": format(trade.price, "f"),
            "size": format(trade.size, "f"),
            "time": rfc3339(ns, 6),
            "side": AGGRESSOR_TO_MAKER[trade.side],
        }
        return [self._frame(conn, "market_trades", [{"type": "update", "trades": [t]}])]

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        return 404, '{"error":"NOT_FOUND"}'

    def reconnect_frame(self) -> str | None:
        return None

    def corrupt(self, frame: str) -> str:
        return frame  # Coinbase has no checksum
