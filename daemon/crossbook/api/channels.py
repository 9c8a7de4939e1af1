"""Channels and their subscribers (sans-I/O): who is subscribed to what, each subscriber's bounded
outbox and request rate, and the fan-out of one channel message to every subscriber.

A subscriber that would queue more than its limits falls behind: its queued channel messages are
dropped (their ``seq`` numbers given back), new ones are not queued, and once it has drained
its outbox the hub catches it up with each channel's current state.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from crossbook.api import wire
from crossbook.api.views import SideView

ABUSE_SECONDS = 5
"""A client over its request rate by this many seconds' worth of requests is disconnected."""


@dataclass
class Limits:
    """Per-connection limits (the ``[server]`` config)."""

    max_buffer_bytes: int = 1024 * 1024
    max_buffer_messages: int = 2000
    max_channels: int = 1000
    max_ops_per_second: float = 50.0


@dataclass
class Stats:
    """Plain counters the metrics export (no metrics library in the sans-I/O API)."""

    sent: Counter[str] = field(default_factory=Counter)
    """Messages queued to clients, by kind (channel message types and ``reply``)."""
    conflations: int = 0
    """Times a subscriber fell behind and had its queued channel messages conflated."""


class ChannelName(NamedTuple):
    """A channel name read: ``status``, ``book.<SYMBOL>``, ``book.<SYMBOL>.<venue>``,
    ``bbo.<SYMBOL>`` or ``trades.<SYMBOL>``."""

    kind: str
    symbol: str
    venue: str | None
    """The venue of a venue's own book channel; ``""`` where the name has an empty one."""


def read_name(name: str) -> ChannelName | None:
    """The parts of a channel name, or ``None`` for a name of no known kind."""
    if name == "status":
        return ChannelName("status", "", None)
    kind, _, rest = name.partition(".")
    if kind == "book":
        symbol, dot, venue = rest.partition(".")
        # ``book.SYM.`` (an empty venue) is not ``book.SYM``: it would share that channel.
        return ChannelName(kind, symbol, venue if dot else None)
    if kind in ("bbo", "trades"):
        return ChannelName(kind, rest, None)
    return None


class Subscriber:
    """One API connection's state: its subscriptions, the frames waiting to be sent, and its
    request budget."""

    __slots__ = ("__weakref__", "behind_since", "op_stamp", "op_tokens", "outbox", "queued_bytes", "senders", "subs")

    def __init__(self, limits: Limits) -> None:
        self.outbox: deque[bytes] = deque()
        """The frames to send."""
        self.senders: deque[Sub | None] = deque()
        """Beside each frame, the subscription a channel message belongs to, or None for a frame
        that is never dropped (a reply, a trades ``conflated`` notice). Two deques, not one of
        pairs: a queued message then makes no object the cyclic garbage collector tracks (with many
        subscribers behind, such pairs set off costly full collections)."""
        self.queued_bytes = 0
        self.subs: dict[str, Sub] = {}
        self.behind_since: int | None = None
        """When the subscriber fell behind (ns), until it catches up."""
        self.op_tokens = limits.max_ops_per_second
        self.op_stamp = 0

    def push(self, sub: Sub | None, frame: bytes) -> None:
        self.outbox.append(frame)
        self.senders.append(sub)
        self.queued_bytes += len(frame)

    def frames(self) -> list[bytes]:
        return list(self.outbox)

    def drain(self) -> list[bytes]:
        """Take every queued frame (what a writer would send)."""
        out = self.frames()
        self.outbox.clear()
        self.senders.clear()
        self.queued_bytes = 0
        return out

    def fall_behind(self, now_ns: int) -> None:
        """Drop the queued channel messages (giving their seq numbers back) and stop queueing
        until the subscriber catches up; frames that are never dropped stay queued."""
        self.behind_since = now_ns
        kept: deque[bytes] = deque()
        for sub, data in zip(self.senders, self.outbox, strict=True):
            if sub is None:
                kept.append(data)
                continue
            sub.seq -= 1
            sub.missed = True
            self.queued_bytes -= len(data)
            if isinstance(sub.channel, TradesChannel):  # its channel messages are trades
                sub.dropped += 1
        self.outbox = kept
        self.senders = deque([None] * len(kept))

    def spend_request(self, now_ns: int, rate: float) -> bool | None:
        """Take one request from the token bucket: True within the rate, False over it, None so
        far over it (``ABUSE_SECONDS`` worth) that the connection must be closed."""
        self.op_tokens = min(rate, self.op_tokens + (now_ns - self.op_stamp) * rate / 1e9)
        self.op_stamp = now_ns
        self.op_tokens -= 1
        if self.op_tokens >= 0:
            return True
        return False if self.op_tokens >= -ABUSE_SECONDS * rate else None


class Sub:
    """One subscriber's subscription to one channel."""

    __slots__ = ("channel", "dropped", "missed", "seq")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.seq = 0
        self.missed = False
        """Messages were dropped while the subscriber was behind: send the current state."""
        self.dropped = 0
        """Trade messages dropped (they cannot be conflated, only announced)."""


class Channel:
    """Subscribers of one channel (of one depth, for books) and how to reach them."""

    __slots__ = ("heads", "name", "stats", "subs")
    kind: ClassVar[str]

    def __init__(self, name: str, stats: Stats) -> None:
        self.name = name
        self.stats = stats
        self.subs: dict[Subscriber, Sub] = {}
        self.heads: dict[str, bytes] = {}

    def head(self, kind: str) -> bytes:
        head = self.heads.get(kind)
        if head is None:
            head = self.heads[kind] = wire.channel_head(kind, self.name)
        return head

    def send_one(self, subscriber: Subscriber, kind: str, body: bytes, *, keep: bool = False) -> None:
        """Queue one message (its body after ``seq``, :func:`~crossbook.api.wire.channel_body`)
        for one subscriber (``keep``: one that falling behind never drops)."""
        sub = self.subs[subscriber]
        sub.seq += 1
        subscriber.push(None if keep else sub, wire.frame(self.head(kind), sub.seq, body))
        self.stats.sent[kind] += 1

    def send(self, kind: str, body: bytes, touched: set[Subscriber], limits: Limits, now_ns: int) -> None:
        """Queue one message (its body after ``seq``) for every subscriber: the fan-out hot loop
        (one ``seq`` splice and one append a subscriber; ``touched`` gets every subscriber, a
        behind one only wakes its writer)."""
        head = self.head(kind)
        max_bytes, max_messages = limits.max_buffer_bytes, limits.max_buffer_messages
        late = 0
        for subscriber, sub in self.subs.items():
            if subscriber.behind_since is not None:
                late += 1
                sub.missed = True
                if kind == "trade":
                    sub.dropped += 1
                continue
            sub.seq = seq = sub.seq + 1
            data = b"%b%d%b" % (head, seq, body)  # wire.frame, inlined
            outbox = subscriber.outbox
            outbox.append(data)
            subscriber.senders.append(sub)
            subscriber.queued_bytes = queued = subscriber.queued_bytes + len(data)
            if queued > max_bytes or len(outbox) > max_messages:
                subscriber.fall_behind(now_ns)
                self.stats.conflations += 1
        touched.update(self.subs)
        self.stats.sent[kind] += len(self.subs) - late


class StatusChannel(Channel):
    __slots__ = ()
    kind = "status"


class TradesChannel(Channel):
    __slots__ = ("symbol",)
    kind = "trades"

    def __init__(self, name: str, stats: Stats, symbol: str) -> None:
        super().__init__(name, stats)
        self.symbol = symbol


class BookChannel(Channel):
    """A book channel of one depth: the view it last sent, to send only what changed."""

    __slots__ = ("asks", "bids", "depth", "symbol", "venue")
    kind = "book"

    def __init__(self, name: str, stats: Stats, symbol: str, venue: str | None, depth: int) -> None:
        super().__init__(name, stats)
        self.symbol = symbol
        self.venue = venue
        self.depth = depth
        self.bids = SideView()
        self.asks = SideView()


class BboChannel(Channel):
    __slots__ = ("last", "symbol")
    kind = "bbo"

    def __init__(self, name: str, stats: Stats, symbol: str) -> None:
        super().__init__(name, stats)
        self.symbol = symbol
        self.last: bytes | None = None  # the bbo last sent, encoded (``views.encode_bbo``)
