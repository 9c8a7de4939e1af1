"""A fake Kraken (WebSocket v2) for tests: acks, snapshots and updates within the subscribed
depth (levels pushed out are not removed, as on Kraken), CRC32 checksums, heartbeats."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from crossbook.plugin import Level, Side, Trade
from crossbook.testing import FakeConnection, FakeMarket, L2Book
from crossbook_kraken.protocol import DEPTHS, checksum, venue_symbol

CHECKSUM = re.compile(r'"checksum":(\d+)')


def _levels(levels: list[Level]) -> str:
    """Levels as JSON with bare number tokens holding the Decimals' exact text, as Kraken sends."""
    return "[" + ",".join('{{"price":{},"qty":{}}}'.format(format(p, "f"), format(q, "f")) for p, q in levels) + "]"


class KrakenDialect:
    def __init__(self, market: FakeMarket, refuse_depth: int | None = None) -> None:
        self.market = market
        self.refuse_depth = refuse_depth
        self.from_venue = {venue_symbol(s): s for s in market.books}

    def on_connect(self, conn: FakeConnection) -> list[str]:
        status = {"version": "2.0.10", "system": "online", "api_version": "v2", "connection_id": 1234567890123}
        return [orjson.dumps({"channel": "status", "type": "update", "data": [status]}).decode()]

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        msg = json.loads(text)
        method, params = msg.get("method"), msg.get("params", {})
        if method == "ping":
            return [orjson.dumps({"method": "pong", "req_id": msg.get("req_id")}).decode()]
        out: list[str] = []
        depth = params.get("depth", 10)
        for venue in params.get("symbol", []):
            symbol = self.from_venue.get(venue)
            result = {"channel": params.get("channel"), "symbol": venue}
            if params.get("channel") != "book":
                out.append(orjson.dumps({"method": method, "result": result, "success": True}).decode())
                if params.get("channel") == "trade" and symbol is not None:
                    if method == "unsubscribe":
                        conn.trades.discard(symbol)
                    else:
                        conn.trades.add(symbol)
                continue
            if symbol is None or depth not in DEPTHS or depth == self.refuse_depth:
                error = "Subscription depth not supported" if symbol else "Currency pair not supported"
                reply = {"method": method, "error": error, "success": False, "symbol": venue}
                out.append(orjson.dumps(reply).decode())
                continue
            out.append(orjson.dumps({"method": method, "result": result | {"depth": depth}, "success": True}).decode())
            views: dict[str, L2Book] = conn.values.setdefault("views", {})
            if method == "unsubscribe":
                conn.symbols.discard(symbol)
                views.pop(symbol, None)
                continue
            conn.symbols.add(symbol)
            conn.values.setdefault("depth", {})[symbol] = depth
            truth = self.market.books[symbol]
            view = views[symbol] = L2Book()
            view.replace(truth.top_bids(depth), truth.top_asks(depth))
            out.append(self._book("snapshot", venue, view.bids(), view.asks(), view))
        return out

    @staticmethod
    def _book(kind: str, venue: str, bids: list[Level], asks: list[Level], view: L2Book) -> str:
        stamp = "2026-08-16T23:37:03.745044Z"
        data = (
            f'{{"symbol":"{venue}","bids":{_levels(bids)},"asks":{_levels(asks)},'
            f'"checksum":{checksum(view)},"timestamp":"{stamp}"}}'
        )
        return f'{{"channel":"book","type":"{kind}","data":[{data}]}}'

    def advance(self, symbol: str, bids: list[Level], asks: list[Level]) -> str:
        return symbol

    def encode(self, conn: FakeConnection, symbol: str, payload: Any, *, skip: bool = False) -> list[str]:
        """What changed in this connection's top ``depth`` (its view is updated even when the
        message is lost, so the client's book and the next checksum disagree)."""
        view: L2Book = conn.values["views"][symbol]
        depth = conn.values["depth"][symbol]
        truth = self.market.books[symbol]
        new_bids, new_asks = dict(truth.top_bids(depth)), dict(truth.top_asks(depth))
        old_bids, old_asks = dict(view.bids()), dict(view.asks())
        bids = [(p, q) for p, q in new_bids.items() if old_bids.get(p) != q]
        asks = [(p, q) for p, q in new_asks.items() if old_asks.get(p) != q]
        # levels gone from the truth are removed; levels merely pushed out of the depth are not
        bids += [(p, Decimal(0)) for p in old_bids if p not in new_bids and truth.bid_size(p) is None]
        asks += [(p, Decimal(0)) for p in old_asks if p not in new_asks and truth.ask_size(p) is None]
        view.replace(new_bids.items(), new_asks.items())
        if skip or not (bids or asks):
            return []
        return [self._book("update", venue_symbol(symbol), bids, asks, view)]

    def trade(self, conn: FakeConnection, trade: Trade) -> list[str]:
        """Frames carrying one trade to one connection subscribed to its symbol's trades.

        A ``trade`` ``update`` of one trade: ``side`` the taker's (``buy``/``sell``), ``price`` and
        ``qty`` bare JSON numbers with the Decimals' exact text, ``trade_id`` an integer,
        ``timestamp`` RFC 3339 in microseconds.
        """
        ns = trade.venue_ns if trade.venue_ns is not None else trade.recv_ns
        whole = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        stamp = f"{whole}.{ns % 1_000_000_000 // 1000:06d}Z"
        side = "buy" if trade.side is Side.BUY else "sell"
        data = (
            f'{{"symbol":"{venue_symbol(trade.symbol)}","side":"{side}","price":{format(trade.price, "f")},'
            f'"qty":{format(trade.size, "f")},"ord_type":"market","trade_id":{int(trade.trade_id)},'
            f'"timestamp":"{stamp}"}}'
        )
        return [f'{{"channel":"trade","type":"update","data":[{data}]}}']

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        return 404, "{}"

    def reconnect_frame(self) -> str | None:
        return None

    def corrupt(self, frame: str) -> str:
        return CHECKSUM.sub(lambda m: f'"checksum":{(int(m.group(1)) + 1) % 2**32}', frame)
