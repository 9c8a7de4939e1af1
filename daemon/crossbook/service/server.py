"""The API's I/O edge: WebSocket connections on ``/v1/stream`` plus ``/healthz``, ``/readyz`` and
the web view (:mod:`crossbook.service.webview`).

websockets' types stay in this module. Each connection has a reader (frames to the hub) and a
writer task. When the hub has queued frames, :meth:`ApiServer.wake` has them written as soon as
the current callback ends, to every socket that accepts data: no task switch per client, and
what several venue frames read together changed (one message per channel, see
:class:`~crossbook.core.engine.Batch`) goes out in one write per client. Only a client
whose socket is full, or that fell behind, is left to its writer task, which waits for the
socket to drain. Handshakes are checked before the upgrade (origin, bearer token, connection
limits); slow clients are conflated by the hub and closed with 1013 here if they stay behind.

``/v1/stream?batch=1`` opts a connection into batched frames: each text frame is then a JSON
array of the messages that were ready together, which costs the server and the client one frame
instead of one per message. ``linger_ms=N`` (1 to 1000) holds what is queued for a connection up to
N ms so that it goes out in one write with what follows: for a client that counts throughput over
latency (a recorder, a dashboard), one write then carries many messages, and the write is much of
the server's cost per client.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlparse

import anyio
import orjson
from anyio.abc import TaskStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from crossbook.api.channels import Limits, Subscriber
from crossbook.api.hub import Hub
from crossbook.api.wire import text_frame_header
from crossbook.core.engine import Engine
from crossbook.service.config import ServerConfig, read_tokens
from crossbook.service.metrics import Metrics
from crossbook.service.webview import INFO_PATH, WebView, info, same_origin

log = logging.getLogger("crossbook.server")
STREAM_PATH = "/v1/stream"
CLOSE_TIMEOUT = 2.0
MAX_LINGER_MS = 1000
CLOSE_REASONS = {1001: "shutdown", 1008: "policy", 1009: "frame_too_big", 1011: "ping_timeout", 1013: "slow"}


def limits(config: ServerConfig) -> Limits:
    return Limits(
        max_buffer_bytes=config.max_buffer_bytes,
        max_buffer_messages=config.max_buffer_messages,
        max_channels=config.max_channels_per_connection,
        max_ops_per_second=config.max_ops_per_second,
    )


class Connection:
    """One API connection: its socket, its state in the hub, and how it asked to be written to."""

    __slots__ = ("batched", "ip", "linger", "lingering", "subscriber", "waiter", "ws")

    def __init__(self, ws: ServerConnection, subscriber: Subscriber, batched: bool, linger: float | None) -> None:
        self.ws = ws
        self.subscriber = subscriber
        self.waiter = asyncio.Event()
        """Wakes the writer task (a full socket, or a subscriber behind)."""
        self.batched = batched
        """Asked for batched frames (``?batch=1``)."""
        self.linger = linger
        """Seconds its queued messages are held (``?linger_ms=``), or None."""
        self.lingering = False
        """Its queued messages wait for the ``linger_ms`` timer."""
        self.ip = _ip(ws)


class ApiServer:
    def __init__(self, hub: Hub, engine: Engine, metrics: Metrics, config: ServerConfig | None = None) -> None:
        self.hub = hub
        self.engine = engine
        self.metrics = metrics
        self.connections: dict[Subscriber, Connection] = {}
        self._pending: set[Subscriber] = set()
        """Subscribers with frames to write at the end of the current callback."""
        self.per_ip: Counter[str] = Counter()
        self.streams = True
        """Serves ``/v1/stream`` (an ``ingest`` node serves only health endpoints)."""
        self.reuse_port = False
        """Listens with SO_REUSEPORT, sharing the port with other processes (``edge`` nodes)."""
        self.web = WebView()
        self.configure(config or ServerConfig())

    def configure(self, config: ServerConfig) -> None:
        """Apply limits, tokens and origins (also on reload; host, port and TLS need a restart)."""
        self.config = config
        self.tokens = [t.encode() for t in read_tokens(config.tokens_file)] if config.tokens_file else []
        self.hub.limits = limits(config)

    def wake(self, subscribers: set[Subscriber]) -> None:
        """Called after the hub queued frames: they are written once the current callback ends
        (everything one read from a venue brought in goes out in one write per client)."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush_pending)
        self._pending |= subscribers

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, set()
        self._write_out(pending, linger=True)

    def _release(self, conn: Connection) -> None:
        """A lingering connection's timer: write what it holds."""
        conn.lingering = False
        self._write_out((conn.subscriber,), linger=False)

    def _write_out(self, subscribers: Iterable[Subscriber], linger: bool) -> None:
        """Write to every socket that takes data, or, with ``linger``, start the timer of a
        connection that asked for one; a full socket is left to its writer task."""
        connections = self.connections
        for subscriber in subscribers:
            conn = connections.get(subscriber)
            if conn is None:
                continue
            if conn.ws.paused or subscriber.behind_since is not None:
                conn.waiter.set()
            elif subscriber.outbox:
                if not linger or conn.linger is None:
                    self._flush(conn)
                elif not conn.lingering:
                    conn.lingering = True
                    asyncio.get_running_loop().call_later(conn.linger, self._release, conn)

    def _flush(self, conn: Connection) -> None:
        """Frame everything queued and hand it to the transport in one write."""
        frames = conn.subscriber.drain()
        ws = conn.ws
        protocol = ws.protocol
        if protocol.state is not OPEN:
            return  # closing: the reader ends the connection
        if protocol.extensions:  # permessage-deflate transforms each payload: websockets frames it
            if conn.batched:
                frames = [b"[" + b",".join(frames) + b"]"]
            for data in frames:
                protocol.send_text(data)
            ws.transport.writelines(protocol.data_to_send())
            return
        out = protocol.data_to_send()  # whatever websockets queued (a pong) goes first
        if conn.batched:
            joined = b",".join(frames)
            out += (text_frame_header(len(joined) + 2), b"[", joined, b"]")
        else:
            for data in frames:
                out += (text_frame_header(len(data)), data)
        ws.transport.writelines(out)

    async def serve(self, host: str, port: int, *, task_status: TaskStatus[int]) -> None:
        """Listen until cancelled; on the way out close every client with 1001 (going away)."""
        cfg = self.config
        tls = None
        if cfg.cert_file and cfg.key_file:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(cfg.cert_file, cfg.key_file)
        server: Server = await serve(
            self._connection,
            host,
            port,
            process_request=self._http,
            close_timeout=CLOSE_TIMEOUT,
            open_timeout=cfg.handshake_timeout,
            ping_interval=cfg.ping_interval,
            ping_timeout=cfg.ping_timeout,
            max_size=cfg.max_frame_bytes,
            compression="deflate" if cfg.compression == "deflate" else None,
            ssl=tls,
            reuse_port=self.reuse_port,
        )
        bound = server.sockets[0].getsockname()[1]
        if self.streams:  # before the API's line: whoever waits for that one has this one too
            log.info("web view: open %s://%s:%d/ in a browser", "https" if tls else "http", host, bound)
        log.info("API listening on %s://%s:%d%s", "wss" if tls else "ws", host, bound, STREAM_PATH)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._reap_slow, tg)
                task_status.started(bound)
                await anyio.sleep_forever()
        finally:
            lingering = [c.subscriber for c in self.connections.values() if c.lingering]
            for subscriber in lingering:
                self.connections[subscriber].lingering = False
            self._write_out(lingering, linger=False)  # before the close frames
            with anyio.move_on_after(CLOSE_TIMEOUT + 1, shield=True):
                server.close()
                await server.wait_closed()

    # -- handshakes ---------------------------------------------------------------------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlparse(request.path)
        if url.path == "/healthz":
            return _response(HTTPStatus.OK, {"status": "ok"})
        if url.path == "/readyz":
            waiting = [{"venue": v, "symbol": s, "state": st.label} for v, s, st in self.engine.not_live()]
            if waiting:
                return _response(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "not ready", "not_live": waiting})
            return _response(HTTPStatus.OK, {"status": "ready"})
        if self.streams and url.path == INFO_PATH:
            authorized = not self.tokens or self._authorized(request.headers, url.query)
            return _response(HTTPStatus.OK, info(self.hub, bool(self.tokens), authorized))
        page = self.web.page(url.path) if self.streams else None
        if page is not None:
            return page
        if url.path != STREAM_PATH or not self.streams:
            return self._reject("not_found", HTTPStatus.NOT_FOUND, f"no such path; the stream is at {STREAM_PATH}")
        origin = request.headers.get("Origin")
        allowed = self.config.allowed_origins
        if allowed and origin is not None and origin not in allowed and not self._own_origin(origin, request):
            return self._reject("origin", HTTPStatus.FORBIDDEN, "origin not allowed")
        if self.tokens and not self._authorized(request.headers, url.query):
            response = self._reject("unauthorized", HTTPStatus.UNAUTHORIZED, "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if len(self.connections) >= self.config.max_connections:
            return self._reject("too_many_connections", HTTPStatus.SERVICE_UNAVAILABLE, "too many connections")
        if self.per_ip[_ip(connection)] >= self.config.max_connections_per_ip:
            return self._reject("too_many_per_ip", HTTPStatus.TOO_MANY_REQUESTS, "too many connections from your IP")
        try:
            linger_seconds(url.query)
        except ValueError as exc:
            return self._reject("bad_query", HTTPStatus.BAD_REQUEST, str(exc))
        return None

    def _own_origin(self, origin: str, request: Request) -> bool:
        """The web view's own origin (the page this server serves) is always allowed."""
        return same_origin(origin, request.headers.get("Host"), bool(self.config.cert_file and self.config.key_file))

    def _authorized(self, headers: Headers, query: str) -> bool:
        """Bearer token from the header or ``?token=``, compared in constant time with every token."""
        auth = headers.get("Authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not given:
            given = (parse_qs(query).get("token") or [""])[0]
        candidate = given.encode()
        ok = False
        for token in self.tokens:
            ok |= hmac.compare_digest(candidate, token)
        return ok

    def _reject(self, reason: str, status: HTTPStatus, message: str) -> Response:
        self.metrics.handshakes_rejected.labels(reason).inc()
        return _response(status, {"error": message})

    # -- connections --------------------------------------------------------------------------

    async def _connection(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:  # a small kernel buffer makes a stalled client fall behind early
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer_bytes)
        query = urlparse(ws.request.path).query if ws.request is not None else ""
        batched = parse_qs(query).get("batch") == ["1"]
        conn = Connection(ws, self.hub.open(), batched, linger_seconds(query))  # checked before the upgrade
        self.connections[conn.subscriber] = conn
        self.per_ip[conn.ip] += 1
        self.metrics.clients.inc()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, conn)
                await self._read(conn)
                tg.cancel_scope.cancel()
        finally:
            del self.connections[conn.subscriber]
            self.per_ip[conn.ip] -= 1
            if not self.per_ip[conn.ip]:
                del self.per_ip[conn.ip]
            self.hub.close(conn.subscriber)
            self.metrics.clients.dec()
            self.metrics.clients_closed.labels(_close_reason(ws)).inc()

    async def _read(self, conn: Connection) -> None:
        receive, subscriber, ws = self.hub.receive, conn.subscriber, conn.ws
        try:
            async for message in ws:
                violation = receive(subscriber, message, time.time_ns())
                if violation is not None:
                    await ws.close(1008, violation[:120])
                    return
                if subscriber.outbox:
                    self.wake({subscriber})
        except ConnectionClosed:
            pass

    async def _write(self, conn: Connection) -> None:
        """Write for a client whose socket was full or that fell behind: wait until the socket
        drains, write what is queued, then let the hub catch the subscriber up."""
        buffered = self.metrics.client_buffer_bytes
        subscriber, event = conn.subscriber, conn.waiter
        while True:
            await event.wait()
            event.clear()
            try:
                await conn.ws.drain()
            except OSError:
                return  # the connection is gone (reset by the client): the reader ends it
            if subscriber.outbox:
                buffered.observe(subscriber.queued_bytes)
                self._flush(conn)
            if subscriber.behind_since is not None:
                self.hub.catch_up(subscriber, time.time_ns())
                event.set()

    async def _reap_slow(self, tg: Any) -> None:
        """Close connections still behind ``slow_client_timeout`` after falling behind (1013)."""
        while True:
            timeout = self.config.slow_client_timeout
            await anyio.sleep(min(0.25, timeout / 4))
            cutoff = time.time_ns() - int(timeout * 1e9)
            for subscriber, conn in list(self.connections.items()):
                if subscriber.behind_since is not None and subscriber.behind_since < cutoff:
                    subscriber.behind_since = None  # closed once
                    tg.start_soon(conn.ws.close, 1013, "too slow: still behind after conflation")


def linger_seconds(query: str) -> float | None:
    """``linger_ms`` of a stream URL's query in seconds (None without it); ValueError if it is
    not one whole number of milliseconds from 1 to ``MAX_LINGER_MS``."""
    given = parse_qs(query, keep_blank_values=True).get("linger_ms")
    if given is None:
        return None
    text = given[0] if len(given) == 1 else ""
    digits = text.lstrip("0")  # a number of any length could be all leading zeros
    if not (text.isascii() and text.isdigit() and 0 < len(digits) <= 4 and int(digits) <= MAX_LINGER_MS):
        raise ValueError(f"linger_ms must be one whole number of milliseconds from 1 to {MAX_LINGER_MS}")
    return int(digits) / 1000


def _ip(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "?"


def _close_reason(ws: ServerConnection) -> str:
    sent = ws.protocol.close_sent
    if sent is not None and sent.code in CLOSE_REASONS:
        return CLOSE_REASONS[sent.code]
    return "client"


def _response(status: HTTPStatus, body: dict[str, Any]) -> Response:
    data = orjson.dumps(body) + b"\n"
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)
