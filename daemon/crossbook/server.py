"""The API's I/O edge: WebSocket connections on ``/v1/stream`` plus ``/healthz`` and ``/readyz``.

websockets' types stay in this module. Each connection has a reader (frames to the hub) and a
writer that drains the session's outbox when the hub wakes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from typing import Any

import anyio
import orjson
from anyio.abc import TaskStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from crossbook.engine import Engine
from crossbook.hub import Hub, Session
from crossbook.metrics import Metrics

log = logging.getLogger("crossbook.server")
STREAM_PATH = "/v1/stream"
CLOSE_TIMEOUT = 2.0


class ApiServer:
    def __init__(self, hub: Hub, engine: Engine, metrics: Metrics) -> None:
        self.hub = hub
        self.engine = engine
        self.metrics = metrics
        self.waiters: dict[Session, asyncio.Event] = {}

    def wake(self, sessions: set[Session]) -> None:
        """Called after the hub queued frames: let those sessions' writers run."""
        waiters = self.waiters
        for session in sessions:
            event = waiters.get(session)
            if event is not None:
                event.set()

    async def serve(self, host: str, port: int, *, task_status: TaskStatus[int]) -> None:
        """Listen until cancelled; on the way out close every client with 1001 (going away)."""
        server: Server = await serve(
            self._connection, host, port, process_request=self._http, close_timeout=CLOSE_TIMEOUT
        )
        bound = server.sockets[0].getsockname()[1]
        log.info("API listening on ws://%s:%d%s", host, bound, STREAM_PATH)
        try:
            task_status.started(bound)
            await anyio.sleep_forever()
        finally:
            with anyio.move_on_after(CLOSE_TIMEOUT + 1, shield=True):
                server.close()
                await server.wait_closed()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == STREAM_PATH:
            return None
        if path == "/healthz":
            return _response(HTTPStatus.OK, {"status": "ok"})
        if path == "/readyz":
            waiting = [{"venue": v, "symbol": s, "state": st.label} for v, s, st in self.engine.not_live()]
            if waiting:
                return _response(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "not ready", "not_live": waiting})
            return _response(HTTPStatus.OK, {"status": "ready"})
        return _response(HTTPStatus.NOT_FOUND, {"error": f"no such path; the stream is at {STREAM_PATH}"})

    async def _connection(self, ws: ServerConnection) -> None:
        session = self.hub.open()
        event = self.waiters[session] = asyncio.Event()
        self.metrics.clients.inc()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, ws, session, event)
                await self._read(ws, session, event)
                tg.cancel_scope.cancel()
        finally:
            del self.waiters[session]
            self.hub.close(session)
            self.metrics.clients.dec()

    async def _read(self, ws: ServerConnection, session: Session, event: asyncio.Event) -> None:
        receive = self.hub.receive
        try:
            async for message in ws:
                receive(session, message, time.time_ns())
                if session.outbox:
                    event.set()
        except ConnectionClosed:
            pass

    @staticmethod
    async def _write(ws: ServerConnection, session: Session, event: asyncio.Event) -> None:
        outbox = session.outbox
        try:
            while True:
                await event.wait()
                event.clear()
                while outbox:
                    await ws.send(outbox.popleft(), text=True)
        except ConnectionClosed:
            pass


def _response(status: HTTPStatus, body: dict[str, Any]) -> Response:
    data = orjson.dumps(body) + b"\n"
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)
