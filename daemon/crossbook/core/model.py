"""Normalized events every connector emits, whatever the venue.

Events are plain slotted dataclasses: cheap to build on the hot path and free of I/O. Each carries
the venue's own timestamp when the venue gives one and the local receive time, both in ns since the
epoch. The venue a connector speaks for is implied by the feed it publishes to.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from decimal import Decimal

from crossbook.core.book import BookView, Level

SYMBOL_RE = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+(-[A-Z0-9]+)*$")
"""``BASE-QUOTE`` upper case (``BTC-USDT``); derivatives add a suffix (``BTC-USDT-PERP``)."""

__all__ = ["SYMBOL_RE", "BookDelta", "BookSnapshot", "BookState", "Event", "Level", "Side", "Trade", "VenueStatus"]


class BookState(enum.Enum):
    """Where a venue's book for one symbol stands. The value is the ``crossbook_book_state`` gauge."""

    DOWN = 0
    CONNECTING = 1
    SYNCING = 2
    STALE = 3
    LIVE = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@dataclass(slots=True)
class BookSnapshot:
    """The venue's whole book (as deep as it gives it) for one symbol; replaces what was there.

    ``book``, when given, is a read-only view of the connector's own live book holding exactly
    these levels: the daemon reads it instead of keeping a copy. The connector applies each later
    :class:`BookDelta` to its book before publishing the delta, and changes it otherwise only
    after publishing a status that takes the book out of ``live`` (or a new snapshot).
    """

    symbol: str
    bids: list[Level]
    asks: list[Level]
    recv_ns: int
    venue_ns: int | None = None
    book: BookView | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class BookDelta:
    """Absolute new sizes of changed levels, in the venue's order; size zero removes a level."""

    symbol: str
    bids: list[Level]
    asks: list[Level]
    recv_ns: int
    venue_ns: int | None = None


@dataclass(slots=True)
class Trade:
    """One trade; ``side`` is the aggressor's."""

    symbol: str
    price: Decimal
    size: Decimal
    side: Side
    trade_id: str
    recv_ns: int
    venue_ns: int | None = None


@dataclass(slots=True)
class VenueStatus:
    """A change in a book's sync state; ``symbol=None`` means every symbol of the venue.

    ``reason`` says why a book left ``live`` (``gap``, ``checksum``, ``crossed``, ``reconnect``,
    ``stale``, ``parse_error``, ``crash``); a move to ``syncing`` with a reason counts a resync.
    """

    symbol: str | None
    state: BookState
    recv_ns: int
    reason: str | None = None


Event = BookSnapshot | BookDelta | Trade | VenueStatus
