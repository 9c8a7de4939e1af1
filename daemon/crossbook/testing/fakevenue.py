"""Fake venue servers on 127.0.0.1 speaking a venue's real wire protocol, with fault injection.

One port serves both the WebSocket feed and the REST endpoints (plain HTTP requests are
answered by the dialect's ``rest``). A :class:`Dialect`, which a connector's author writes, knows
the venue's wire format; the :class:`FakeVenue` runs connections, moves its :class:`FakeMarket`
and injects faults: drop connections, lose a message, corrupt a checksum, send garbage or
truncated frames, stall without closing, fail or delay REST snapshots (429 with Retry-After),
ask for a planned reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from crossbook.core.model import Level, Side, Trade
from crossbook.testing.market import FakeMarket


@dataclass(eq=False)
class FakeConnection:
    """One client connection to the fake venue, as the dialect sees it. The dialect records what
    the client subscribed to (in the URL, read in ``on_connect``, or in frames, in
    ``on_message``); the fake venue sends market changes and trades accordingly."""

    path: str
    """The WebSocket URL's path."""
    query: dict[str, list[str]]
    """The URL's query (``parse_qs``): where a venue takes subscriptions in the URL."""
    symbols: set[str] = field(default_factory=set)
    """Symbols (crossbook's spelling) whose book updates this connection gets."""
    trades: set[str] = field(default_factory=set)
    """Symbols whose trades this connection gets."""
    values: dict[str, Any] = field(default_factory=dict)
    """Dialect scratch (sequence numbers per connection, say)."""
    ws: ServerConnection | None = None
    """The server side of the WebSocket, to send on it or abort it."""
    received: list[str] = field(default_factory=list)
    """Every frame the client sent."""


class Dialect(Protocol):
    """A venue's wire format, server side: what the fake venue says, in the venue's own words.

    Built with the :class:`FakeMarket` whose books are the truth the connector must reproduce
    (``Subject.dialect`` is called with it). Frames are text, as the venue sends them.
    """

    def on_connect(self, conn: FakeConnection) -> list[str]:
        """Frames to send when a client connects; subscriptions in the URL are read here (add
        the symbols to ``conn.symbols`` and ``conn.trades``, and send snapshots if the venue does)."""

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        """Frames answering one client frame: subscribe acks (record the subscription on
        ``conn``), in-stream snapshots of ``self.market.books[symbol]``, pongs."""

    def advance(self, symbol: str, bids: list[Level], asks: list[Level]) -> Any:
        """Give one market change (absolute sizes; zero removes) its venue-wide identity, such as
        sequence ids and a checksum of the book after it: the payload :meth:`encode` sends."""

    def encode(self, conn: FakeConnection, symbol: str, payload: Any, *, skip: bool = False) -> list[str]:
        """Frames carrying a payload to one connection. ``skip``: the message is lost (send
        nothing), but per-connection counters move on as if it had been sent, so the client
        can notice the loss as it would on the venue."""

    def trade(self, conn: FakeConnection, trade: Trade) -> list[str]:
        """Frames carrying one trade to one connection subscribed to its symbol's trades;
        ``trade.side`` is the aggressor's, ``trade.trade_id`` the venue's id as text."""

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        """(HTTP status, body) of a REST request: the venue's snapshot endpoint, say."""

    def reconnect_frame(self) -> str | None:
        """The venue's 'please reconnect' frame, or None if the venue never asks (then the
        ``planned_reconnect`` scenario is skipped)."""

    def corrupt(self, frame: str) -> str:
        """The frame with its checksum made wrong (a venue without checksums returns it as is)."""


class FakeVenue:
    """A venue on 127.0.0.1: WebSocket and REST on one port, spoken by a :class:`Dialect`, the
    market moved by :meth:`step` and :meth:`trade`, faults injected by the other methods."""

    def __init__(self, dialect: Dialect, market: FakeMarket) -> None:
        self.dialect = dialect
        self.market = market
        self.connections: list[FakeConnection] = []
        self.port = 0
        self.stalled = False
        self.rest_failures: list[tuple[int, dict[str, str]]] = []
        """Responses to give to the next REST requests instead of the snapshot."""
        self.rest_delay = 0.0
        """Seconds to hold every REST response (a slow or hanging venue)."""
        self.rest_requests: list[tuple[float, str]] = []
        """(monotonic time, path) of every REST request served."""
        self.connects = 0
        self.trade_ids = 0
        """The last trade id :meth:`trade` gave."""
        self._connected = asyncio.Condition()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeVenue]:
        """Serve on 127.0.0.1 (the same port again when restarted); leaving kills the venue."""
        async with serve(self._handler, "127.0.0.1", self.port, process_request=self._http) as server:
            self.port = server.sockets[0].getsockname()[1]
            try:
                yield self
            finally:
                await self.drop()

    # -- server -------------------------------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlparse(request.path)
        self.rest_requests.append((time.monotonic(), url.path))
        if self.rest_delay:
            await asyncio.sleep(self.rest_delay)
        if self.rest_failures:
            status, headers = self.rest_failures.pop(0)
            return _response(status, "{}", headers)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        status, body = self.dialect.rest(url.path, params)
        return _response(status, body)

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        url = urlparse(ws.request.path)
        conn = FakeConnection(url.path, parse_qs(url.query), ws=ws)
        self.connections.append(conn)
        self.connects += 1
        try:
            for frame in self.dialect.on_connect(conn):
                await ws.send(frame)
            async with self._connected:
                self._connected.notify_all()
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                conn.received.append(text)
                for frame in self.dialect.on_message(conn, text):
                    if not self.stalled:
                        await ws.send(frame)
        except ConnectionClosed:
            pass
        finally:
            self.connections.remove(conn)

    async def wait_connections(self, count: int, symbol: str | None = None) -> None:
        """Until ``count`` connections are open (that carry ``symbol``'s book, when given)."""
        async with self._connected:
            await self._connected.wait_for(
                lambda: sum(symbol is None or symbol in c.symbols for c in self.connections) >= count
            )

    # -- driving ------------------------------------------------------------------------------

    async def step(self, symbol: str, n: int = 3, *, skip: bool = False, corrupt: bool = False) -> None:
        """One market change, sent to every connection subscribed to the symbol."""
        bids, asks = self.market.change(symbol, n)
        payload = self.dialect.advance(symbol, bids, asks)
        for conn in list(self.connections):
            if symbol in conn.symbols:
                for frame in self.dialect.encode(conn, symbol, payload, skip=skip):
                    await self._send(conn, self.dialect.corrupt(frame) if corrupt else frame)

    async def trade(self, symbol: str, side: Side, size: Decimal = Decimal("0.5")) -> Trade:
        """One trade at the market's best price on the other side (an aggressive buy lifts the
        best ask), sent to every connection subscribed to the symbol's trades; returns it."""
        book = self.market.books[symbol]
        best = book.best_ask() if side is Side.BUY else book.best_bid()
        assert best is not None, f"{symbol} has no level to trade against"
        self.trade_ids += 1
        now = time.time_ns()
        trade = Trade(symbol, best[0], size, side, str(self.trade_ids), now, now // 1_000_000 * 1_000_000)
        for conn in list(self.connections):
            if symbol in conn.trades:
                for frame in self.dialect.trade(conn, trade):
                    await self._send(conn, frame)
        return trade

    async def send_all(self, frame: str) -> None:
        for conn in list(self.connections):
            await self._send(conn, frame)

    async def _send(self, conn: FakeConnection, frame: str) -> None:
        if self.stalled or conn.ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(frame)

    async def drop(self) -> None:
        """Close every connection abruptly (no close frame)."""
        for conn in list(self.connections):
            if conn.ws is not None:
                conn.ws.transport.abort()

    async def request_reconnect(self) -> None:
        frame = self.dialect.reconnect_frame()
        assert frame is not None, "this venue has no reconnect request"
        await self.send_all(frame)

    def fail_rest(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.rest_failures.extend([(status, headers)] * times)


def _response(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    data = body.encode()
    hdrs = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    for k, v in (headers or {}).items():
        hdrs[k] = v
    return Response(status, HTTPStatus(status).phrase, hdrs, data)


def levels_text(levels: Sequence[Level]) -> list[list[str]]:
    """Levels as ``[["price", "size"], ...]`` in plain decimal text: the shape most venues send."""
    return [[format(p, "f"), format(s, "f")] for p, s in levels]
