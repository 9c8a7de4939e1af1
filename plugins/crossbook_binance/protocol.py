"""Binance spot and USD-M futures wire protocol (sans-I/O).

Spot: diff depth ``<sym>@depth@100ms`` plus a REST ``/api/v3/depth`` snapshot, aligned by
``U``/``u`` (the first event kept has ``U <= lastUpdateId+1 <= u``, then ``U == u_prev+1``).
USD-M: ``@depth@...`` with ``pu`` chaining (ids are not contiguous) and ``/fapi/v1/depth``.
Streams go in the combined-stream URL, so a resync needs no message to the venue (Binance
closes connections that send more than 5 messages a second): a gap buffers and re-snapshots.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson

from crossbook.plugin import (
    HEARD,
    BookUpdate,
    ConnectionState,
    HttpRequest,
    Output,
    Reconnect,
    Side,
    SnapshotSource,
    Stream,
    Trade,
    levels,
    seq_id,
)
from crossbook.plugin import parse as dec

SPOT_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
FUTURES_WEIGHTS = ((50, 2), (100, 5), (500, 10), (1000, 20))
FUTURES_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
DATED = re.compile(r"^\d{6}$")


def venue_symbol(symbol: str, futures: bool = False) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``.

    USD-M: ``BTC-USDT-PERP`` -> ``BTCUSDT``, ``BTC-USDT-250627`` -> ``BTCUSDT_250627``.
    """
    parts = symbol.split("-")
    if futures and len(parts) == 3:
        if parts[2] == "PERP":
            return parts[0] + parts[1]
        if DATED.match(parts[2]):
            return f"{parts[0]}{parts[1]}_{parts[2]}"
    if len(parts) != 2:
        raise ValueError(f"{symbol!r} has no Binance {'USD-M ' if futures else ''}name")
    return parts[0] + parts[1]


class BinanceProtocol:
    snapshot_source = SnapshotSource.REST
    ping_interval: float | None = None  # Binance pings us; websockets answers
    idle_timeout = 30.0

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ws_url: str,
        rest_url: str,
        futures: bool = False,
        trades_ws_url: str | None = None,
        update_speed: str = "100ms",
        snapshot_limit: int = 1000,
        trades: bool = True,
        streams_per_connection: int = 200,
    ) -> None:
        self.futures = futures
        self.ws_url = ws_url.rstrip("/")
        self.trades_ws_url = (trades_ws_url or ws_url).rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.update_speed = update_speed
        self.snapshot_limit = snapshot_limit
        self.trades = trades
        self.streams_per_connection = streams_per_connection
        self.to_venue = {s: venue_symbol(s, futures) for s in symbols}
        self.from_venue = {v: s for s, v in self.to_venue.items()}

    # -- connections --------------------------------------------------------------------------

    def streams(self, symbols: Sequence[str]) -> list[Stream]:
        depth = "depth" if self.update_speed in ("", "1000ms", "250ms") else f"depth@{self.update_speed}"
        out: list[Stream] = []
        separate_trades = self.trades and self.trades_ws_url != self.ws_url
        per_symbol = 2 if self.trades and not separate_trades else 1
        step = max(1, self.streams_per_connection // per_symbol)
        for i in range(0, len(symbols), step):
            chunk = tuple(symbols[i : i + step])
            names = []
            for s in chunk:
                lower = self.to_venue[s].lower()
                names.append(f"{lower}@{depth}")
                if self.trades and not separate_trades:
                    names.append(f"{lower}@trade")
            out.append(Stream(f"{self.ws_url}/stream?streams={'/'.join(names)}", chunk))
            if separate_trades:
                trade_names = "/".join(f"{self.to_venue[s].lower()}@trade" for s in chunk)
                out.append(Stream(f"{self.trades_ws_url}/stream?streams={trade_names}", chunk, books=False))
        return out

    def resubscribe(self, symbols: Sequence[str]) -> list[str] | None:
        return []  # REST venue: the stream goes on, the sync re-snapshots

    def app_ping(self) -> str | None:
        return None

    # -- frames -------------------------------------------------------------------------------

    def parse(self, conn: ConnectionState, frame: str | bytes, recv_ns: int) -> list[Output]:
        msg = orjson.loads(frame)
        data = msg.get("data", msg)
        kind = data.get("e")
        if kind == "depthUpdate":
            return [
                BookUpdate(
                    self.from_venue[data["s"]],
                    levels(data["b"]),
                    levels(data["a"]),
                    recv_ns,
                    seq_id(data["E"]) * 1_000_000,
                    first=None if self.futures else seq_id(data["U"]),
                    last=seq_id(data["u"]),
                    prev=seq_id(data["pu"]) if self.futures else None,
                )
            ]
        if kind in ("trade", "aggTrade"):
            return [
                Trade(
                    self.from_venue[data["s"]],
                    dec(data["p"]),
                    dec(data["q"]),
                    Side.SELL if data["m"] else Side.BUY,  # m: the buyer was the maker
                    str(seq_id(data["t"] if kind == "trade" else data["a"])),
                    recv_ns,
                    seq_id(data["T"]) * 1_000_000,
                )
            ]
        if kind == "serverShutdown":
            return [Reconnect("serverShutdown")]
        return [HEARD]  # a request's reply, a bookTicker, a stream we did not ask for

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot_request(self, symbol: str) -> HttpRequest:
        path = "/fapi/v1/depth" if self.futures else "/api/v3/depth"
        table = FUTURES_WEIGHTS if self.futures else SPOT_WEIGHTS
        weight = next((w for limit, w in table if self.snapshot_limit <= limit), table[-1][1])
        return HttpRequest(
            self.rest_url + path,
            weight=weight,
            params={"symbol": self.to_venue[symbol], "limit": str(self.snapshot_limit)},
        )

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        msg = orjson.loads(body)
        venue_ns = seq_id(msg["E"]) * 1_000_000 if "E" in msg else None
        last = seq_id(msg["lastUpdateId"])
        return BookUpdate(symbol, levels(msg["bids"]), levels(msg["asks"]), recv_ns, venue_ns, snapshot=True, last=last)
