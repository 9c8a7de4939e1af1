"""A fake Binance (spot or USD-M) for tests: combined streams in the URL, REST depth snapshots."""

from __future__ import annotations

import random
import time

import orjson

from crossbook.plugin import Level
from crossbook.testing import FakeConnection, FakeMarket, levels_text
from crossbook_binance.protocol import venue_symbol


class BinanceDialect:
    def __init__(self, market: FakeMarket, *, futures: bool = False, seed: int = 3) -> None:
        self.market = market
        self.futures = futures
        self.rng = random.Random(seed)
        self.to_venue = {s: venue_symbol(s, futures) for s in market.books}
        self.from_venue = {v.lower(): s for s, v in self.to_venue.items()}
        self.ids = dict.fromkeys(market.books, 1_000_000)

    def on_connect(self, conn: FakeConnection) -> list[str]:
        for name in conn.query.get("streams", [""])[0].split("/"):
            venue, _, kind = name.partition("@")
            symbol = self.from_venue.get(venue)
            if symbol is not None:
                (conn.trades if kind == "trade" else conn.symbols).add(symbol)
                conn.values.setdefault("names", {})[(symbol, kind.startswith("depth"))] = name
        return []

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
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
