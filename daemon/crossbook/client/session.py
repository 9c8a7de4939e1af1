"""The client's side of the API protocol (sans-I/O): fed frames, it returns what to deliver and
what to send.

Each channel is checked: its ``seq`` grows by exactly 1 from 1 after its subscribe is acked, and
a book channel starts with a snapshot. When that fails (a gap) the channel is resubscribed for a
fresh snapshot, and its subscriber is told with a :class:`Resync`; after a reconnect every channel
is. A conflated book channel needs no resubscribe: the server sends it a fresh snapshot itself.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from crossbook.client.book import LocalBook
from crossbook.client.messages import (
    Ack,
    ChannelMessage,
    Delta,
    Error,
    Listing,
    Pong,
    ProtocolError,
    Resync,
    Snapshot,
    Unsubscribed,
    decode,
    encode,
    split,
)

log = logging.getLogger("crossbook.client")

RETRY_AFTER = 1.0
"""Seconds before a request the server refused as ``rate_limited`` is sent again."""


@dataclass(frozen=True, slots=True)
class Send:
    """A request to write on the connection ``generation`` (once ``delay`` seconds have passed);
    a later connection makes it void, as that connection's own requests replace it."""

    data: bytes
    generation: int
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Deliver:
    """A message for a channel's subscriber, with its JSON text as the server sent it."""

    channel: str
    message: ChannelMessage | Resync | Unsubscribed
    raw: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused to subscribe these channels; they are no longer subscribed."""

    channels: tuple[str, ...]
    error: Error


@dataclass(frozen=True, slots=True)
class Reply:
    """The reply to a request made with :meth:`Session.request`."""

    id: int
    message: Pong | Listing | Error


Event = Send | Deliver | Refused | Reply


@dataclass(slots=True)
class _Sub:
    depth: int | None
    request: int | None = None
    """The id of the subscribe not yet acked; ``None`` once the channel's messages count."""
    seq: int = 0
    book: LocalBook | None = None


@dataclass(slots=True)
class _Request:
    data: bytes
    channels: tuple[str, ...] = ()
    op: str = "subscribe"


@dataclass
class Session:
    """Every subscription of one client, across its connections."""

    generation: int = 0
    """Counts connections; 0 before the first."""
    connected: bool = False
    skipped: int = 0
    """Messages that could not be read, or that arrived for a channel not (yet) subscribed."""
    _subs: dict[str, _Sub] = field(default_factory=dict)
    _requests: dict[int, _Request] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- what the application does --------------------------------------------------------------

    def subscribe(self, channels: Iterable[str], depth: int | None = None) -> list[Event]:
        channels = tuple(dict.fromkeys(channels))
        taken = [c for c in channels if c in self._subs]
        if taken:
            raise ValueError(f"already subscribed: {', '.join(taken)}")
        for channel in channels:
            book = LocalBook(channel) if channel.startswith("book.") else None
            self._subs[channel] = _Sub(depth, book=book)
        return self._subscribe(channels, depth) if self.connected else []

    def unsubscribe(self, channels: Iterable[str]) -> list[Event]:
        channels = tuple(c for c in dict.fromkeys(channels) if self._subs.pop(c, None) is not None)
        if not channels or not self.connected:
            return []
        return [self._send(_Request(b"", channels, "unsubscribe"))[1]]

    def request(self, op: str) -> tuple[int, Send]:
        """A ``ping`` or ``list`` request: its id (the :class:`Reply` will carry it) and what to send."""
        rid = next(self._ids)
        data = msgspec.json.encode({"op": op, "id": rid})
        self._requests[rid] = _Request(data, op=op)
        return rid, Send(data, self.generation)

    def book(self, channel: str) -> LocalBook:
        """The local book of a subscribed book channel; ``KeyError`` for any other channel."""
        sub = self._subs.get(channel)
        if sub is None or sub.book is None:
            raise KeyError(f"not a subscribed book channel: {channel}")
        return sub.book

    @property
    def channels(self) -> list[str]:
        return list(self._subs)

    # -- what the connection does ---------------------------------------------------------------

    def connect(self) -> list[Event]:
        """A new connection is open: subscribe every channel afresh."""
        self.generation += 1
        self.connected = True
        self._requests.clear()
        groups: dict[int | None, list[str]] = defaultdict(list)
        for channel, sub in self._subs.items():
            groups[sub.depth].append(channel)
        return [event for depth, channels in groups.items() for event in self._subscribe(tuple(channels), depth)]

    def disconnect(self) -> list[Event]:
        """The connection is gone: every channel that had started is told it will start again."""
        self.connected = False
        events: list[Event] = []
        for channel, sub in self._subs.items():
            if sub.request is None:
                events.append(self._resync(channel, sub, "reconnect"))
        for rid, req in self._requests.items():
            if req.op in ("ping", "list"):
                events.append(Reply(rid, Error(rid, "disconnected", "the connection closed before the reply")))
        self._requests.clear()
        return events

    def receive(self, frame: str | bytes) -> list[Event]:
        """One frame from the server: the events it makes, in order."""
        events: list[Event] = []
        try:
            parts = split(frame)
        except ProtocolError as exc:
            self._skip(exc)
            return events
        for raw in parts:
            try:
                msg = decode(raw)
            except ProtocolError as exc:
                self._skip(exc)
                continue
            if isinstance(msg, Ack | Error | Pong | Listing):
                events += self._reply(msg)
            elif isinstance(msg, Unsubscribed):
                if self._subs.pop(msg.channel, None) is not None:
                    events.append(Deliver(msg.channel, msg, bytes(raw)))
            else:
                events += self._channel_message(msg, bytes(raw))
        return events

    # -- inside ---------------------------------------------------------------------------------

    def _channel_message(self, msg: ChannelMessage, raw: bytes) -> list[Event]:
        sub = self._subs.get(msg.channel)
        if sub is None or sub.request is not None:
            self.skipped += 1  # unsubscribed, or from before the (re)subscribe
            return []
        if msg.seq != sub.seq + 1 or (isinstance(msg, Delta) and sub.book is not None and sub.seq == 0):
            log.warning("%s: seq %d after %d; resubscribing for a fresh snapshot", msg.channel, msg.seq, sub.seq)
            resync = self._resync(msg.channel, sub, "gap")
            # Subscribing again to a subscribed channel would not send a snapshot: leave it first.
            unsubscribe = self._send(_Request(b"", (msg.channel,), "unsubscribe"))[1]
            return [resync, unsubscribe, *self._subscribe((msg.channel,), sub.depth)]
        sub.seq = msg.seq
        if sub.book is not None and isinstance(msg, Snapshot | Delta):
            sub.book.apply(msg)
        return [Deliver(msg.channel, msg, raw)]

    def _resync(self, channel: str, sub: _Sub, reason: str) -> Deliver:
        sub.seq = 0
        if sub.book is not None:
            sub.book.clear()
        notice = Resync(channel, reason)
        return Deliver(channel, notice, encode(notice))

    def _reply(self, msg: Ack | Error | Pong | Listing) -> list[Event]:
        rid = msg.id
        req = self._requests.get(rid) if isinstance(rid, int) else None
        if req is None or not isinstance(rid, int):
            if isinstance(msg, Error):
                log.warning("server error %s: %s", msg.code, msg.message)
            return []
        if isinstance(msg, Error) and msg.code == "rate_limited" and req.op not in ("ping", "list"):
            return [Send(req.data, self.generation, RETRY_AFTER)]
        del self._requests[rid]
        if req.op in ("ping", "list"):
            assert not isinstance(msg, Ack)
            return [Reply(rid, msg)]
        if req.op == "unsubscribe":
            return []
        mine = tuple(c for c in req.channels if (sub := self._subs.get(c)) is not None and sub.request == rid)
        if isinstance(msg, Error):
            for channel in mine:
                del self._subs[channel]
            return [Refused(mine, msg)] if mine else []
        for channel in mine:
            self._subs[channel].request = None
        return []

    def _subscribe(self, channels: tuple[str, ...], depth: int | None) -> list[Event]:
        if not channels:
            return []
        rid, send = self._send(_Request(b"", channels), depth)
        for channel in channels:
            sub = self._subs[channel]
            sub.request, sub.seq = rid, 0
            if sub.book is not None:
                sub.book.clear()
        return [send]

    def _send(self, req: _Request, depth: int | None = None) -> tuple[int, Send]:
        rid = next(self._ids)
        body: dict[str, object] = {"op": req.op, "id": rid, "channels": list(req.channels)}
        if depth is not None:
            body["depth"] = depth
        req.data = msgspec.json.encode(body)
        self._requests[rid] = req
        return rid, Send(req.data, self.generation)

    def _skip(self, exc: ProtocolError) -> None:
        self.skipped += 1
        log.warning("skipped: %s", exc)
