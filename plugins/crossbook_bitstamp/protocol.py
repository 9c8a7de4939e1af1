"""Bitstamp WebSocket v2 wire protocol (sans-I/O).

Books: ``diff_order_book_{pair}`` diffs (absolute amounts, ``"0"`` removes a level) plus a REST
``/api/v2/order_book/{pair}/`` snapshot, aligned on ``microtimestamp`` (``AfterTimestamp``: the
diffs the snapshot covers, ``microtimestamp <=`` the snapshot's, are dropped). Bitstamp sends
neither sequence numbers nor checksums, so a lost diff cannot be detected: the connector
re-snapshots periodically (see ``resnapshot_interval``), and a diff whose envelope is readable
but whose body is not resyncs its book (``parse_error``) rather than being skipped silently.

Trades: ``live_trades_{pair}``, ``type`` 0 = buy, 1 = sell is the taker's (aggressor's) side: on
the 2022 capture the order id of that side is always the newer (larger) one, i.e. the order that
arrived and matched a resting one. Amounts and prices come from the exact ``*_str`` fields.

Control: ``bts:subscribe`` answered by ``bts:subscription_succeeded``; ``{"event":"bts:heartbeat"}``
is the application ping; ``bts:request_reconnect`` asks for a (planned) reconnect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from crossbook.plugin import (
    HEARD,
    PARSE_ERRORS,
    BookUpdate,
    ConnectionState,
    HttpRequest,
    Output,
    Reconnect,
    Rejected,
    Resync,
    Side,
    SnapshotSource,
    Stream,
    Trade,
    levels,
)
from crossbook.plugin import parse as dec

BOOK_CHANNEL = "diff_order_book"
TRADE_CHANNEL = "live_trades"
HEARTBEAT = '{"event":"bts:heartbeat"}'
TRADE_SIDES = {0: Side.BUY, 1: Side.SELL}
ACKS = ("bts:subscription_succeeded", "bts:unsubscription_succeeded", "bts:heartbeat")


def venue_symbol(symbol: str) -> str:
    """``BTC-USD`` -> ``btcusd`` (spot only)."""
    parts = symbol.split("-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{symbol!r} has no Bitstamp pair name")
    return (parts[0] + parts[1]).lower()


def microtimestamp(value: Any) -> int:
    """Bitstamp's ``microtimestamp``: a string of decimal digits (or an integer)."""
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise TypeError(f"microtimestamp {value!r} is not a non-negative integer")


class BitstampProtocol:
    snapshot_source = SnapshotSource.REST
    ping_interval: float | None = 10.0
    """Seconds between ``bts:heartbeat`` pings (the idle timeout counts their acks as traffic)."""
    idle_timeout = 30.0

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ws_url: str,
        rest_url: str,
        trades: bool = True,
        symbols_per_connection: int = 100,
        heartbeat_interval: float | None = 10.0,
    ) -> None:
        self.ws_url = ws_url
        self.rest_url = rest_url.rstrip("/")
        self.trades = trades
        self.symbols_per_connection = symbols_per_connection
        self.ping_interval = heartbeat_interval
        self.to_venue = {s: venue_symbol(s) for s in symbols}
        self.from_venue = {v: s for s, v in self.to_venue.items()}

    # -- connections --------------------------------------------------------------------------

    @staticmethod
    def _subscribe(channel: str) -> str:
        return orjson.dumps({"event": "bts:subscribe", "data": {"channel": channel}}).decode()

    def streams(self, symbols: Sequence[str]) -> list[Stream]:
        out: list[Stream] = []
        step = self.symbols_per_connection
        for i in range(0, len(symbols), step):
            chunk = tuple(symbols[i : i + step])
            frames = [self._subscribe(f"{BOOK_CHANNEL}_{self.to_venue[s]}") for s in chunk]
            if self.trades:
                frames += [self._subscribe(f"{TRADE_CHANNEL}_{self.to_venue[s]}") for s in chunk]
            out.append(Stream(self.ws_url, chunk, tuple(frames)))
        return out

    def resubscribe(self, symbols: Sequence[str]) -> list[str] | None:
        return []  # REST venue: the diffs keep coming, the sync fetches a new snapshot

    def app_ping(self) -> str | None:
        return HEARTBEAT

    # -- frames -------------------------------------------------------------------------------

    def _channel(self, msg: dict[str, Any]) -> tuple[str, str | None]:
        """(channel kind, our symbol or ``None``) of a message's ``channel``."""
        channel = msg.get("channel")
        if not isinstance(channel, str):
            return "", None
        kind, _, pair = channel.rpartition("_")
        return kind, self.from_venue.get(pair)

    def parse(self, conn: ConnectionState, frame: str | bytes, recv_ns: int) -> list[Output]:
        msg = orjson.loads(frame)
        if not isinstance(msg, dict):
            raise TypeError(f"a {type(msg).__name__} is not a Bitstamp message")
        event = msg["event"]
        kind, symbol = self._channel(msg)
        if event == "data" and kind == BOOK_CHANNEL:
            if symbol is None:
                raise KeyError(f"diff for a pair not subscribed: {msg['channel']!r}")
            try:
                return [self._diff(symbol, msg["data"], recv_ns)]
            except PARSE_ERRORS:
                return [Resync(symbol, "parse_error")]  # a lost diff would go unnoticed
        if event == "trade" and kind == TRADE_CHANNEL:
            if symbol is None:
                raise KeyError(f"trade for a pair not subscribed: {msg['channel']!r}")
            return [self._trade(symbol, msg["data"], recv_ns)]
        if event == "bts:request_reconnect":
            return [Reconnect("bts:request_reconnect")]
        if event == "bts:error":
            data = msg.get("data")
            text = str(data.get("message") if isinstance(data, dict) else data)
            if symbol is not None:
                return [Rejected(symbol, text)]
            raise ValueError(f"venue error: {text}")
        if isinstance(event, str):
            return [HEARD]  # acks, heartbeat replies, channels we did not ask for
        raise TypeError(f"event {event!r}")

    @staticmethod
    def _diff(symbol: str, data: dict[str, Any], recv_ns: int) -> BookUpdate:
        micro = microtimestamp(data["microtimestamp"])
        return BookUpdate(symbol, levels(data["bids"]), levels(data["asks"]), recv_ns, micro * 1000, last=micro)

    @staticmethod
    def _trade(symbol: str, data: dict[str, Any], recv_ns: int) -> Trade:
        kind, trade_id = data["type"], data["id"]
        if type(kind) is not int or type(trade_id) is not int:
            raise TypeError(f"trade type {kind!r} or id {trade_id!r} is not an integer")
        side = TRADE_SIDES[kind]
        micro = microtimestamp(data["microtimestamp"])
        return Trade(
            symbol, dec(data["price_str"]), dec(data["amount_str"]), side, str(trade_id), recv_ns, micro * 1000
        )

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot_request(self, symbol: str) -> HttpRequest:
        return HttpRequest(f"{self.rest_url}/api/v2/order_book/{self.to_venue[symbol]}/")

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        msg = orjson.loads(body)
        micro = microtimestamp(msg["microtimestamp"])
        return BookUpdate(
            symbol, levels(msg["bids"]), levels(msg["asks"]), recv_ns, micro * 1000, snapshot=True, last=micro
        )
