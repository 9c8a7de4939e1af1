"""A fake Bitstamp for tests: ``bts:subscribe`` channels, diffs stamped with a ``microtimestamp``,
REST ``/api/v2/order_book/{pair}/`` snapshots stamped with the last diff's, ``bts:request_reconnect``."""

from __future__ import annotations

import re
import time

import orjson

from crossbook.plugin import Level, Side, Trade
from crossbook.testing import FakeConnection, FakeMarket, levels_text
from crossbook_bitstamp.protocol import BOOK_CHANNEL, TRADE_CHANNEL, venue_symbol

ORDER_BOOK_PATH = re.compile(r"/api/v2/order_book/([a-z0-9]+)/?")


def dumps(msg: object) -> str:
    return orjson.dumps(msg).decode()


class BitstampDialect:
    def __init__(self, market: FakeMarket) -> None:
        self.market = market
        self.to_venue = {s: venue_symbol(s) for s in market.books}
        self.from_venue = {v: s for s, v in self.to_venue.items()}
        start = time.time_ns() // 1000
        self.micro = dict.fromkeys(market.books, start)
        """The microtimestamp of each book's last change (what its REST snapshot carries)."""

    def on_connect(self, conn: FakeConnection) -> list[str]:
        return []

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
        event = msg.get("event")
        if event == "bts:heartbeat":
            return [dumps({"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}})]
        channel = msg.get("data", {}).get("channel", "")
        kind, _, pair = channel.rpartition("_")
        symbol = self.from_venue.get(pair)
        if (
            event not in ("bts:subscribe", "bts:unsubscribe")
            or symbol is None
            or kind not in (BOOK_CHANNEL, TRADE_CHANNEL)
        ):
            return [dumps({"event": "bts:error", "channel": channel, "data": {"code": None, "message": "Bad request"}})]
        target = conn.symbols if kind == BOOK_CHANNEL else conn.trades
        if event == "bts:subscribe":
            target.add(symbol)
            return [dumps({"event": "bts:subscription_succeeded", "channel": channel, "data": {}})]
        target.discard(symbol)
        return [dumps({"event": "bts:unsubscription_succeeded", "channel": channel, "data": {}})]

    def advance(self, symbol: str, bids: list[Level], asks: list[Level]) -> dict[str, object]:
        micro = max(self.micro[symbol] + 1, time.time_ns() // 1000)
        self.micro[symbol] = micro
        return {
            "timestamp": str(micro // 1_000_000),
            "microtimestamp": str(micro),
            "bids": levels_text(bids),
            "asks": levels_text(asks),
        }

    def encode(self, conn: FakeConnection, symbol: str, payload: dict[str, object], *, skip: bool = False) -> list[str]:
        if skip:
            return []
        channel = f"{BOOK_CHANNEL}_{self.to_venue[symbol]}"
        return [dumps({"data": payload, "channel": channel, "event": "data"})]

    def trade(self, conn: FakeConnection, trade: Trade) -> list[str]:
        """Frames carrying one trade to one connection subscribed to its symbol's trades.

        A ``live_trades_{pair}`` ``trade`` event: an integer ``id``, ``type`` 0 (buy) or 1 (sell)
        the aggressor's side, whose order id is the newer (larger) one; float ``price`` and
        ``amount`` with their exact ``*_str`` texts; time in seconds and microseconds.
        """
        micro = (trade.venue_ns if trade.venue_ns is not None else trade.recv_ns) // 1000
        price, amount = format(trade.price, "f"), format(trade.size, "f")
        taker, maker = 1_443_875_737_346_049, 1_443_875_731_320_832
        data = {
            "id": int(trade.trade_id),
            "timestamp": str(micro // 1_000_000),
            "amount": float(amount),
            "amount_str": amount,
            "price": float(price),
            "price_str": price,
            "type": 0 if trade.side is Side.BUY else 1,
            "microtimestamp": str(micro),
            "buy_order_id": taker if trade.side is Side.BUY else maker,
            "sell_order_id": maker if trade.side is Side.BUY else taker,
        }
        channel = f"{TRADE_CHANNEL}_{self.to_venue[trade.symbol]}"
        return [dumps({"data": data, "channel": channel, "event": "trade"})]

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        m = ORDER_BOOK_PATH.fullmatch(path)
        symbol = self.from_venue.get(m.group(1)) if m else None
        if symbol is None:
            return 404, '{"status":"error","reason":"Not found"}'
        book, micro = self.market.books[symbol], self.micro[symbol]
        body = {
            "timestamp": str(micro // 1_000_000),
            "microtimestamp": str(micro),
            "bids": levels_text(book.bids()),
            "asks": levels_text(book.asks()),
        }
        return 200, dumps(body)

    def reconnect_frame(self) -> str | None:
        return dumps({"event": "bts:request_reconnect", "channel": "", "data": ""})

    def corrupt(self, frame: str) -> str:
        return frame  # Bitstamp has no checksum
