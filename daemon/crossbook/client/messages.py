"""The API's messages as typed values (sans-I/O): what ``crossbook.client`` decodes frames into.

Prices and sizes are ``Decimal``, decoded from the exact text the server sends (never through a
float). Fields the server adds later are ignored, so a newer daemon does not break an older client.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec


class Level(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """A book level: ``[price, size]``, and on consolidated channels the size by venue."""

    price: Decimal
    size: Decimal
    venues: dict[str, Decimal] | None = None


class BboSide(msgspec.Struct, array_like=True, frozen=True):
    """One side of a ``bbo``: price, size, and the venues at that price."""

    price: Decimal
    size: Decimal
    venues: list[str]


class _Message(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class Snapshot(_Message, tag="snapshot"):
    """A book channel's top levels in full; ``conflated`` when it follows a slow-reader catch-up."""

    channel: str
    seq: int
    ts: int
    bids: list[Level]
    asks: list[Level]
    conflated: bool = False


class Delta(_Message, tag="delta"):
    """Changed levels with their new absolute size; size 0 removes the level."""

    channel: str
    seq: int
    ts: int
    bids: list[Level]
    asks: list[Level]


class Bbo(_Message, tag="bbo"):
    channel: str
    seq: int
    ts: int
    bid: BboSide | None
    ask: BboSide | None
    crossed: bool
    locked: bool
    conflated: bool = False


class Trade(_Message, tag="trade"):
    channel: str
    seq: int
    venue: str
    price: Decimal
    size: Decimal
    side: str
    id: str
    ts: int
    recv_ts: int


class Status(_Message, tag="status"):
    channel: str
    seq: int
    venue: str
    symbol: str
    state: str
    ts: int
    reason: str | None = None
    conflated: bool = False


class Conflated(_Message, tag="conflated"):
    """A trades channel's notice that ``dropped`` trades were dropped while the client was slow."""

    channel: str
    seq: int
    ts: int
    dropped: int


class Unsubscribed(_Message, tag="unsubscribed"):
    """The server dropped a channel (removed from its configuration)."""

    channel: str
    reason: str


class Ack(_Message, tag="ack"):
    op: str
    id: int | str | None
    channels: list[str]


class Pong(_Message, tag="pong"):
    id: int | str | None


class Error(_Message, tag="error"):
    id: int | str | None
    code: str
    message: str


class SymbolState(msgspec.Struct, frozen=True):
    symbol: str
    state: str
    resyncs: int = 0


class VenueInfo(msgspec.Struct, frozen=True):
    venue: str
    connector: str
    symbols: list[SymbolState]
    last_message_age: float | None = None
    """Seconds since the venue last sent anything; ``None`` before its first message."""


class Listing(_Message, tag="list"):
    id: int | str | None
    venues: list[VenueInfo]
    symbols: list[str]
    channels: list[str]
    max_depth: int


class Resync(msgspec.Struct, tag="resync", tag_field="type", frozen=True):
    """Made by the client, not sent by the server: the channel starts again from a fresh snapshot
    (after a ``gap`` in its ``seq`` or a ``reconnect``); what happened in between is not told."""

    channel: str
    reason: str


ChannelMessage = Snapshot | Delta | Bbo | Trade | Status | Conflated
Message = ChannelMessage | Unsubscribed | Ack | Pong | Error | Listing
BookMessage = Snapshot | Delta

_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)
_batch = msgspec.json.Decoder(list[msgspec.Raw])


class ProtocolError(ValueError):
    """A frame or message the client cannot read."""


def split(frame: str | bytes) -> list[msgspec.Raw]:
    """The messages of one frame (a JSON array with ``batch=1``, else one object), undecoded."""
    data = frame.encode() if isinstance(frame, str) else frame
    if data.lstrip()[:1] != b"[":
        return [msgspec.Raw(data)]
    try:
        return _batch.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"unreadable frame: {exc}") from None


def decode(raw: msgspec.Raw | bytes) -> Message:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"unreadable message: {exc}") from None


def encode(msg: Resync) -> bytes:
    return msgspec.json.encode(msg)
