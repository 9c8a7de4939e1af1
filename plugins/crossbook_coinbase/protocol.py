"""Coinbase Advanced Trade market-data wire protocol (sans-I/O).

One subscribe message per channel (``level2``, ``market_trades``, ``heartbeats``) with the
connection's product ids. ``level2`` messages arrive on channel ``l2_data``: the first event of a
product is its full book (``snapshot``, delivered on the WebSocket), then ``update`` events with
absolute sizes (``new_quantity``, ``"0"`` removes the level); sides are ``bid`` and ``offer``.

Continuity: ``sequence_num`` counts every message of a connection, all channels together, by 1.
A jump means messages were lost, and since the number is not per product any book of the
connection may be the one that missed an update: the parser emits ``Resync(None, "gap")`` and
every book of the connection resubscribes (``level2`` unsubscribe + subscribe, which delivers a
fresh snapshot on the same connection). The number is committed only once a frame was read
whole, so a frame that cannot be read counts as lost too: the next one shows the jump.

Trades: ``side`` in ``market_trades`` is the *maker's* side (checked on the 2026 capture: every
trade printed at the best ask is ``SELL``, every one at the best bid ``BUY``), so the aggressor
is the opposite. The ``snapshot`` event of ``market_trades`` is recent history, not new trades,
and is not published.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from crossbook.plugin import (
    HEARD,
    BookUpdate,
    ConnectionState,
    Level,
    Output,
    Rejected,
    Resync,
    Side,
    SnapshotSource,
    Stream,
    Trade,
    seq_id,
)
from crossbook.plugin import parse as dec

SEQUENCE_KEY = "sequence_num"
"""Where a connection's last ``sequence_num`` is kept in its :class:`ConnectionState`."""
MAKER_TO_AGGRESSOR = {"BUY": Side.SELL, "SELL": Side.BUY}
BOOK_SIDES = ("bid", "offer")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9})\d*)?(Z|[+-]\d{2}:\d{2})",
)


def venue_symbol(symbol: str) -> str:
    """``BTC-USD`` -> ``BTC-USD``: Coinbase product ids are already ``BASE-QUOTE`` (spot only)."""
    parts = symbol.split("-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{symbol!r} has no Coinbase Advanced Trade spot product id")
    return symbol


def rfc3339_ns(text: Any) -> int:
    """``2026-08-09T21:05:48.483587501Z`` -> ns since the epoch, exactly (no float)."""
    if not isinstance(text, str):
        raise TypeError(f"timestamp {text!r} is not a string")
    m = RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"timestamp {text!r} is not RFC 3339")
    whole, fraction, zone = m.groups()
    moment = datetime.fromisoformat(whole.replace(" ", "T") + ("+00:00" if zone == "Z" else zone))
    seconds = (moment - EPOCH) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


class CoinbaseProtocol:
    snapshot_source = SnapshotSource.STREAM
    ping_interval: float | None = None
    """No protocol pings: the ``heartbeats`` channel sends a message every second."""
    idle_timeout = 10.0

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ws_url: str,
        jwt: str | None = None,
        trades: bool = True,
        symbols_per_connection: int = 10,
    ) -> None:
        self.ws_url = ws_url
        self.jwt = jwt
        self.trades = trades
        self.symbols_per_connection = symbols_per_connection
        self.to_venue = {s: venue_symbol(s) for s in symbols}
        self.from_venue = {v: s for s, v in self.to_venue.items()}
        for symbol in symbols:
            # The market-data channels serve -USD data for -USDC products.
            if symbol.endswith("-USDC") and symbol[:-1] not in self.from_venue:
                self.from_venue[symbol[:-1]] = symbol

    # -- connections --------------------------------------------------------------------------

    def _request(self, kind: str, channel: str, symbols: Sequence[str]) -> str:
        msg: dict[str, object] = {
            "type": kind,
            "product_ids": [self.to_venue[s] for s in symbols],
            "channel": channel,
        }
        if self.jwt:
            msg["jwt"] = self.jwt
        return orjson.dumps(msg).decode()

    def streams(self, symbols: Sequence[str]) -> list[Stream]:
        out: list[Stream] = []
        step = self.symbols_per_connection
        for i in range(0, len(symbols), step):
            chunk = tuple(symbols[i : i + step])
            channels = ["level2", *(["market_trades"] if self.trades else []), "heartbeats"]
            out.append(Stream(self.ws_url, chunk, tuple(self._request("subscribe", c, chunk) for c in channels)))
        return out

    def resubscribe(self, symbols: Sequence[str]) -> list[str] | None:
        """Leave and rejoin ``level2`` for the products, in one message each: Coinbase sends their
        snapshots again."""
        return [self._request("unsubscribe", "level2", symbols), self._request("subscribe", "level2", symbols)]

    def app_ping(self) -> str | None:
        return None

    # -- frames -------------------------------------------------------------------------------

    def parse(self, conn: ConnectionState, frame: str | bytes, recv_ns: int) -> list[Output]:
        msg = orjson.loads(frame)
        if not isinstance(msg, dict):
            raise TypeError(f"a {type(msg).__name__} is not a Coinbase message")
        channel = msg.get("channel")
        if channel is None and msg.get("type") == "error":
            outputs = self._error(msg)
        elif channel == "l2_data":
            outputs = self._book(msg, recv_ns)
        elif channel == "market_trades":
            outputs = self._trades(msg, recv_ns)
        elif isinstance(channel, str):
            outputs = [HEARD]  # heartbeats, subscriptions, and any channel we did not ask for
        else:
            raise ValueError("a message without a channel")
        if SEQUENCE_KEY not in msg and channel is None:
            return outputs
        seq = seq_id(msg[SEQUENCE_KEY])
        last = conn.values.get(SEQUENCE_KEY)
        conn.values[SEQUENCE_KEY] = seq
        if last is not None and seq != last + 1:
            return [Resync(None, "gap"), *outputs]
        return outputs

    def _book(self, msg: dict[str, Any], recv_ns: int) -> list[Output]:
        venue_ns = rfc3339_ns(msg["timestamp"])
        out: list[Output] = []
        for event in msg["events"]:
            kind = event["type"]
            if kind not in ("snapshot", "update"):
                raise ValueError(f"l2_data event type {kind!r}")
            bids: list[Level] = []
            asks: list[Level] = []
            for u in event["updates"]:
                side = u["side"]
                if side not in BOOK_SIDES:
                    raise ValueError(f"book side {side!r}")
                (bids if side == "bid" else asks).append((dec(u["price_level"]), dec(u["new_quantity"])))
            symbol = self.from_venue.get(event["product_id"])
            if symbol is not None:  # another product's data is not ours to apply (nor an error)
                out.append(BookUpdate(symbol, bids, asks, recv_ns, venue_ns, snapshot=kind == "snapshot"))
        return out

    def _trades(self, msg: dict[str, Any], recv_ns: int) -> list[Output]:
        out: list[Output] = []
        for event in msg["events"]:
            if event["type"] == "snapshot":
                continue  # recent history sent on subscribing, not new trades
            for t in event["trades"]:
                symbol = self.from_venue.get(t["product_id"])
                if symbol is None:
                    continue
                out.append(
                    Trade(
                        symbol,
                        dec(t["price"]),
                        dec(t["size"]),
                        MAKER_TO_AGGRESSOR[t["side"]],
                        str(t["trade_id"]),
                        recv_ns,
                        rfc3339_ns(t["time"]),
                    )
                )
        return out or [HEARD]

    def _error(self, msg: dict[str, Any]) -> list[Output]:
        """A subscription refused (naming products, or all of the connection's); any other
        error is unreadable as far as the books go (counted and logged by the toolkit)."""
        text = " ".join(str(msg.get(k, "")) for k in ("message", "reason")).strip()
        named = [s for s, v in self.to_venue.items() if re.search(rf"(?<![A-Z0-9-]){re.escape(v)}(?![A-Z0-9-])", text)]
        if named:
            return [Rejected(s, text) for s in named]
        if "subscri" in text.lower():
            return [Rejected(None, text)]
        raise ValueError(f"venue error: {text or msg!r}")
