"""The client's I/O: one WebSocket connection at a time (``websockets``), reconnected with capped,
jittered backoff, running a :class:`~crossbook.client.session.Session`."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from crossbook.client.book import LocalBook
from crossbook.client.messages import ChannelMessage, Error, Listing, Pong, Resync, Unsubscribed
from crossbook.client.session import Deliver, Event, Refused, Reply, Send, Session

log = logging.getLogger("crossbook.client")

BACKOFF_BASE = 0.25
HEALTHY_AFTER = 30.0
"""A connection that lasted this long before it closed starts the backoff afresh."""
RETRIED_STATUS = {429, 500, 502, 503, 504}
"""Handshake refusals worth retrying: the server is busy or restarting (not 401, 403, 404...)."""

Item = ChannelMessage | Resync | Unsubscribed


class SubscriptionError(Exception):
    """The server refused a subscription (``code`` as in the API's error codes)."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.code = error.code


def backoff(attempt: int, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, BACKOFF_BASE * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, BACKOFF_BASE * 2.0 ** min(attempt, 30)))


def stream_url(url: str, batch: bool) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "batch"] + ([("batch", "1")] if batch else [])
    return urlunsplit(parts._replace(query=urlencode(query)))


class Client:
    """A connection to crossbook's API that keeps its subscriptions across reconnects; made by
    :func:`connect`."""

    def __init__(self, url: str, token: str | None, backoff_cap: float, queue: int, options: dict[str, Any]) -> None:
        self.url = url
        self.session = Session()
        self.reconnects = 0
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._options = options
        self._cap = backoff_cap
        self._queue = queue
        self._rng = random.Random()
        self._ws: ClientConnection | None = None
        self._routes: dict[str, MemoryObjectSendStream[tuple[Item | Error, bytes]]] = {}
        self._waiting: dict[int, tuple[anyio.Event, list[Pong | Listing | Error]]] = {}
        self._failed: BaseException | None = None
        self._tg: TaskGroup | None = None

    # -- the application's side -----------------------------------------------------------------

    async def subscribe(self, *channels: str, depth: int | None = None) -> AsyncIterator[Item]:
        """Every message of these channels, typed, in order; a :class:`Resync` when one starts
        again from a fresh snapshot. Raises :class:`SubscriptionError` if the server refuses."""
        async for message, _raw in self._subscription(channels, depth):
            yield message

    async def subscribe_json(self, *channels: str, depth: int | None = None) -> AsyncIterator[bytes]:
        """As :meth:`subscribe`, each message as the JSON text the server sent (a ``resync``
        notice is the client's own)."""
        async for _message, raw in self._subscription(channels, depth):
            yield raw

    def book(self, channel: str) -> LocalBook:
        """The local book of a subscribed book channel, as of the last message received (empty
        until its snapshot); ``KeyError`` for a channel not subscribed."""
        return self.session.book(channel)

    async def ping(self) -> None:
        """Returns once everything the server queued before this ping has been received."""
        await self._request("ping")

    async def listing(self) -> Listing:
        """The server's venues, symbols and channels (the ``list`` request)."""
        reply = await self._request("list")
        assert isinstance(reply, Listing)
        return reply

    # -- inside ---------------------------------------------------------------------------------

    async def _subscription(self, channels: Iterable[str], depth: int | None) -> AsyncIterator[tuple[Item, bytes]]:
        channels = tuple(dict.fromkeys(channels))
        send, receive = anyio.create_memory_object_stream[tuple[Item | Error, bytes]](self._queue)
        events = self.session.subscribe(channels, depth)
        self._routes.update(dict.fromkeys(channels, send))
        try:
            await self._handle(events)
            async with receive:
                async for item, raw in receive:
                    if isinstance(item, Error):
                        raise SubscriptionError(item)
                    yield item, raw
            if self._failed is not None:
                raise self._failed
        finally:
            for channel in channels:
                self._routes.pop(channel, None)
            send.close()
            with anyio.CancelScope(shield=True):
                await self._handle(self.session.unsubscribe(channels))

    async def _request(self, op: str) -> Pong | Listing:
        rid, send = self.session.request(op)
        done, reply = self._waiting[rid] = (anyio.Event(), [])
        try:
            await self._handle([send])
            await done.wait()
        finally:
            del self._waiting[rid]
        if isinstance(reply[0], Error):
            raise ConnectionError(f"{op}: {reply[0].message}")
        return reply[0]

    async def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Deliver):
                route = self._routes.get(event.channel)
                if route is not None:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await route.send((event.message, event.raw))  # waits while the reader is behind
            elif isinstance(event, Send):
                if event.delay and self._tg is not None:
                    self._tg.start_soon(self._send_later, event)
                else:
                    await self._write(event)
            elif isinstance(event, Refused):
                for route in {id(r): r for c in event.channels if (r := self._routes.get(c))}.values():
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await route.send((event.error, b""))
            elif isinstance(event, Reply) and event.id in self._waiting:
                done, reply = self._waiting[event.id]
                reply.append(event.message)
                done.set()

    async def _write(self, send: Send) -> None:
        ws = self._ws
        if ws is not None and send.generation == self.session.generation:
            with contextlib.suppress(ConnectionClosed):  # the next connection resubscribes
                await ws.send(send.data.decode())

    async def _send_later(self, send: Send) -> None:
        await anyio.sleep(send.delay)
        await self._write(send)

    async def _open(self) -> None:
        self._ws = await ws_connect(stream_url(self.url, True), additional_headers=self._headers, **self._options)
        await self._handle(self.session.connect())

    async def _run(self) -> None:
        """Read frames until the connection closes, then reconnect, for as long as the client is open."""
        attempt = 0
        try:
            while True:
                opened = anyio.current_time()
                assert self._ws is not None
                try:
                    async for frame in self._ws:
                        await self._handle(self.session.receive(frame))
                except ConnectionClosed as exc:
                    log.info("connection closed (%s); reconnecting", exc)
                self._ws = None
                await self._handle(self.session.disconnect())
                if anyio.current_time() - opened > HEALTHY_AFTER:
                    attempt = 0
                while self._ws is None:
                    await anyio.sleep(backoff(attempt, self._cap, self._rng))
                    attempt += 1
                    try:
                        await self._open()
                    except (OSError, TimeoutError, InvalidMessage) as exc:
                        log.info("reconnect failed: %s", exc)
                    except InvalidStatus as exc:
                        if exc.response.status_code not in RETRIED_STATUS:
                            raise
                        log.info("reconnect refused: %s", exc)
                self.reconnects += 1
        except Exception as exc:  # the client cannot go on: every subscription raises it
            self._failed = exc
            for route in self._routes.values():
                route.close()
            for done, reply in self._waiting.values():
                reply.append(Error(None, "failed", str(exc)))
                done.set()


@contextlib.asynccontextmanager
async def connect(
    url: str, token: str | None = None, *, backoff_cap: float = 10.0, queue: int = 1000, **options: Any
) -> AsyncIterator[Client]:
    """Connect to ``url`` (``ws://HOST:PORT/v1/stream``; ``batch=1`` is added) and keep connecting
    until the block exits. ``token`` is sent as a bearer token. A subscription's messages wait in
    a queue of ``queue`` messages; while it is full the client stops reading, and a server whose
    buffers then fill conflates the connection. ``options`` go to ``websockets``' ``connect``.
    The first connection's failure raises; later ones are retried with backoff up to
    ``backoff_cap`` seconds."""
    client = Client(url, token, backoff_cap, queue, options)
    await client._open()
    try:
        async with anyio.create_task_group() as tg:
            client._tg = tg
            tg.start_soon(client._run)
            yield client
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # _run keeps its errors: only the block's own can be here
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        if client._ws is not None:
            await client._ws.close()
