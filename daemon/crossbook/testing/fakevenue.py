"""Fake venue servers on 127.0.0.1 speaking a venue's real wire protocol, with fault injection.

One port serves both the WebSocket feed and the REST endpoints (plain HTTP requests are
answered by the dialect's ``rest``). A :class:`Dialect` knows the venue's wire format; the
:class:`FakeVenue` runs connections and injects faults: drop connections, skip a sequence
number, corrupt a checksum, send garbage or truncated frames, stall without closing, fail or
delay REST snapshots (429 with Retry-After), force a venue-requested reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from crossbook.core.model import Level
from crossbook.testing.market import FakeMarket


@dataclass(eq=False)
class FakeConnection:
    """One client connection to the fake venue, as the dialect sees it."""

    path: str
    query: dict[str, list[str]]
    symbols: set[str] = field(default_factory=set)
    """Symbols whose book updates this connection gets."""
    trades: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)
    """Dialect scratch (sequence numbers per connection, say)."""
    ws: ServerConnection | None = None
    received: list[str] = field(default_factory=list)


class Dialect(Protocol):
    """A venue's wire format, server side."""

    def on_connect(self, conn: FakeConnection) -> list[str]:
        """Frames to send when a client connects (subscriptions in the URL are read here)."""

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        """Frames answering a client frame (subscribe acks, pongs, in-stream snapshots)."""

    def advance(self, symbol: str, bids: list[Level], asks: list[Level]) -> Any:
        """Give one market change its venue-wide identity (sequence ids, checksum): the payload."""

    def encode(self, conn: FakeConnection, symbol: str, payload: Any, *, skip: bool = False) -> list[str]:
        """Frames carrying a payload to one connection (``skip``: lose them, keep its counters moving)."""

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        """(status, body) of a REST request."""

    def reconnect_frame(self) -> str | None:
        """The venue's 'please reconnect' frame, if it has one."""

    def corrupt(self, frame: str) -> str:
        """The frame with its checksum (if any) made wrong."""


class FakeVenue:
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
    return [[format(p, "f"), format(s, "f")] for p, s in levels]
