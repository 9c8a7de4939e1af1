"""The sans-I/O half of a streaming connector: what a venue module implements.

A venue module parses frames and builds requests; it never opens a socket, sleeps or reads a
clock. The toolkit (:mod:`crossbook.toolkit.streaming`) owns every connection, timer and retry, and
:class:`crossbook.toolkit.sync.BookSync` owns every book's sequencing, so a connector can neither block
the loop nor get a reconnect or a resync wrong.

Per frame, :meth:`VenueProtocol.parse` returns outputs:

- :class:`BookUpdate`: levels for one symbol with the venue's sequence ids and checksum; the
  book's :class:`~crossbook.toolkit.sync.SequenceRule` decides whether it applies, is stale, or is a gap;
- :class:`~crossbook.core.model.Trade`: published as is;
- :class:`Send`: a frame to send back on the same connection (a pong, say);
- :class:`Resync`: the parser saw a problem the sequence rule cannot (a connection-wide
  sequence gap, a frame it could not read for a symbol);
- :class:`Reconnect`: the venue asked for a reconnect (a planned one: the old connection serves
  until the new one's books are live);
- :class:`Rejected`: the venue refused a subscription;
- :class:`Heard`: a heartbeat or ack, proof the connection is alive.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from crossbook.core.model import Level, Trade


class SnapshotSource(enum.Enum):
    STREAM = "stream"
    """The venue sends the snapshot on the WebSocket after subscribing."""
    REST = "rest"
    """Buffer updates, fetch the snapshot over REST, align by sequence ids."""


@dataclass(slots=True)
class BookUpdate:
    symbol: str
    bids: list[Level]
    asks: list[Level]
    recv_ns: int
    venue_ns: int | None = None
    snapshot: bool = False
    """An in-stream snapshot: replaces the book (and resets its sequence)."""
    first: int | None = None
    """First sequence id the update covers (Binance ``U``)."""
    last: int | None = None
    """Sequence id after the update (Binance ``u``, OKX ``seqId``, Bybit ``u``, Bitstamp microtimestamp)."""
    prev: int | None = None
    """Sequence id the update follows (Binance futures ``pu``, OKX ``prevSeqId``)."""
    checksum: int | None = None
    """The venue's checksum of the book after this update, when it sends one (0 = none)."""


def seq_id(value: Any) -> int:
    """A venue sequence id, which must be a JSON integer (a mistyped one makes the frame unreadable)."""
    if type(value) is not int:
        raise TypeError(f"sequence id {value!r} is not an integer")
    return value


@dataclass(slots=True)
class Send:
    frame: str


@dataclass(slots=True)
class Resync:
    symbol: str | None
    """``None``: every symbol of the connection."""
    reason: str


@dataclass(slots=True)
class Reconnect:
    reason: str


@dataclass(slots=True)
class Rejected:
    symbol: str | None
    message: str


@dataclass(slots=True)
class Heard:
    pass


HEARD = Heard()

Output = BookUpdate | Trade | Send | Resync | Reconnect | Rejected | Heard


@dataclass(frozen=True, slots=True)
class Stream:
    """One WebSocket connection to open: where, for which symbols, and what to send first."""

    url: str
    symbols: tuple[str, ...]
    subscribe: tuple[str, ...] = ()
    books: bool = True
    """False for a connection that carries only trades (its symbols' books come from another)."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    weight: int = 1
    params: dict[str, str] = field(default_factory=dict)


class ConnectionState:
    """Scratch space a parser keeps per connection in ``values``: a new, empty one comes with
    every connection (and every reconnect). What a parser learns on one connection lives here:
    a per-connection sequence number, or which symbols already had their snapshot, which is how
    a venue that sends no sequence ids tells a snapshot from an update."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}


PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, ArithmeticError, RecursionError)
"""What a parser raises on a frame it cannot read (malformed JSON, missing or mistyped fields, JSON
nested deeper than the decoder recurses: stdlib json and msgspec raise ``RecursionError``); the
toolkit counts such a frame in ``crossbook_skipped_events_total`` and skips it."""


class VenueProtocol(Protocol):
    """A venue's wire protocol, sans I/O: parse frames, build requests; never a socket, a sleep or a
    clock. One instance per configured venue, run by :class:`~crossbook.plugin.StreamingConnector`.

    The three settings below are read, never written: plain class attributes satisfy them.
    """

    @property
    def snapshot_source(self) -> SnapshotSource:
        """Where a book's snapshot comes from: in the stream after subscribing, or over REST
        (then the protocol implements :class:`RestSnapshots` too)."""

    @property
    def ping_interval(self) -> float | None:
        """Seconds between pings (``None``: the venue pings us): WebSocket pings, or the frame
        :meth:`app_ping` gives."""

    @property
    def idle_timeout(self) -> float:
        """Seconds without any frame before the connection counts as stalled and is replaced
        (its books resync with reason ``stale``)."""

    def streams(self, symbols: Sequence[str]) -> list[Stream]:
        """Split symbols over connections within the venue's per-connection limits."""

    def parse(self, conn: ConnectionState, frame: str | bytes, recv_ns: int) -> list[Output]:
        """Turn one received frame into outputs. Raise ``ValueError`` for a frame it cannot read."""

    def resubscribe(self, symbols: Sequence[str]) -> list[str] | None:
        """Frames that make the venue send these symbols' books afresh on the open connection, or
        ``None`` when it cannot: then a resync is a reconnect (a new connection, every book of
        the old one resyncing). All the symbols one frame or one gap put out of sync come in one
        call: a venue that takes several symbols a message needs few messages."""

    def app_ping(self) -> str | None:
        """An application-level ping frame to send every ``ping_interval`` (``None``: protocol ping)."""


class RestSnapshots(Protocol):
    """What a venue whose ``snapshot_source`` is ``REST`` implements too."""

    def snapshot_request(self, symbol: str) -> HttpRequest:
        """The REST request of ``symbol``'s snapshot."""

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        """A REST snapshot body as an update with ``snapshot=True`` and ``last`` set."""
