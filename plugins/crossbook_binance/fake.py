"""A fake Binance (spot or USD-M) for tests: combined streams in the URL, REST depth snapshots."""

from __future__ import annotations

import random
import time

import orjson

from crossbook.plugin import Level, Side, Trade
from crossbook.testing import FakeConnection, FakeMarket, levels_text
from crossbook_binance.protocol import venue_symbol

TRADE_KINDS = ("trade", "aggTrade")


class BinanceDialect:
    def __init__(self, market: FakeMarket, *, futures: bool = False, seed: int = 3) -> None:
        self.market = market
        self.futures = futures
        self.rng = random.Random(seed)
        self.to_venue = {s: venue_symbol(s, futures) for s in market.books}
        self.from_venue = {v.lower(): s for s, v in self.to_venue.items()}
        self.ids = dict.fromkeys(market.books, 1_000_000)

    def _streams(self, conn: FakeConnection, names: list[str], *, subscribe: bool = True) -> None:
        """Book (``@depth...``) and trade (``@trade``, ``@aggTrade``) streams joined or left."""
        for name in names:
            venue, _, kind = name.partition("@")
            symbol = self.from_venue.get(venue)
            if symbol is None:
                continue
            trades = kind in TRADE_KINDS
            target = conn.trades if trades else conn.symbols
            if subscribe:
                target.add(symbol)
                if trades or kind.startswith("depth"):
                    conn.values.setdefault("names", {})[(symbol, not trades)] = name
            else:
                target.discard(symbol)

    def on_connect(self, conn: FakeConnection) -> list[str]:
        self._streams(conn, conn.query.get("streams", [""])[0].split("/"))
        return []

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
        method, params = msg.get("method"), msg.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE") and isinstance(params, list):
            self._streams(conn, [p for p in params if isinstance(p, str)], subscribe=method == "SUBSCRIBE")
        return [orjson.dumps({"result": None, "id": msg.get("id")}).decode()]

    def advance(self, symbol: str, bids: list[Level], asks: list[Level]) -> dict[str, object]:
        """Give a market change its update ids (once for every connection)."""
        prev = self.ids[symbol]
        first = prev + 1 + (self.rng.randint(0, 5) if self.futures else 0)
        last = first + len(bids) + len(asks)
        self.ids[symbol] = last
        data: dict[str, object] = {
            "e": "depthUpdate",
            "E": time.time_ns() // 1_000_000,
            "s": self.to_venue[symbol],
            "U": first,
            "u": last,
            "b": levels_text(bids),
            "a": levels_text(asks),
        }
        if self.futures:
            data["pu"] = prev
        return data

    def encode(self, conn: FakeConnection, symbol: str, payload: dict[str, object], *, skip: bool = False) -> list[str]:
        if skip:
            return []
        name = conn.values.get("names", {}).get((symbol, True), f"{self.to_venue[symbol].lower()}@depth")
        return [orjson.dumps({"stream": name, "data": payload}).decode()]

    def trade(self, conn: FakeConnection, trade: Trade) -> list[str]:
        """Frames carrying one trade to one connection subscribed to its symbol's trades.

        A ``<sym>@trade`` event (``t`` the trade id), or ``<sym>@aggTrade`` (``a``) when that is
        the stream the connection asked for; ``m`` is "the buyer was the maker", so an aggressive
        buy has ``m`` false; ``T`` (and ``E``) in milliseconds. Ids are integers on Binance.
        """
        venue = self.to_venue[trade.symbol]
        name = conn.values.get("names", {}).get((trade.symbol, False), f"{venue.lower()}@trade")
        kind = name.partition("@")[2]
        trade_id = int(trade.trade_id)
        ms = (trade.venue_ns if trade.venue_ns is not None else trade.recv_ns) // 1_000_000
        price, size = format(trade.price, "f"), format(trade.size, "f")
        maker_buyer = trade.side is Side.SELL  # the seller hit the bid: the buyer was the maker
        data: dict[str, object]
        if kind == "aggTrade":  # one trade aggregated: its first and last trade ids are its own
            data = {"e": kind, "E": ms, "s": venue, "a": trade_id, "p": price, "q": size, "f": trade_id}
            data |= {"l": trade_id, "T": ms, "m": maker_buyer}
        elif self.futures:
            data = {"e": kind, "E": ms, "T": ms, "s": venue, "t": trade_id, "p": price, "q": size, "X": "MARKET"}
            data["m"] = maker_buyer
        else:
            data = {"e": kind, "E": ms, "s": venue, "t": trade_id, "p": price, "q": size, "T": ms, "m": maker_buyer}
        if not self.futures:
            data["M"] = True  # spot's "was the best price match"
        return [orjson.dumps({"stream": name, "data": data}).decode()]

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        want = "/fapi/v1/depth" if self.futures else "/api/v3/depth"
        symbol = self.from_venue.get(params.get("symbol", "").lower())
        if path != want or symbol is None:
            return 400, '{"code":-1121,"msg":"Invalid symbol."}'
        limit = int(params.get("limit", "100"))
        book = self.market.books[symbol]
        body = {
            "lastUpdateId": self.ids[symbol],
            "bids": levels_text(book.top_bids(limit)),
            "asks": levels_text(book.top_asks(limit)),
        }
        return 200, orjson.dumps(body).decode()

    def reconnect_frame(self) -> str | None:
        return orjson.dumps({"e": "serverShutdown", "E": time.time_ns() // 1_000_000}).decode()

    def corrupt(self, frame: str) -> str:
        return frame  # Binance has no checksum
