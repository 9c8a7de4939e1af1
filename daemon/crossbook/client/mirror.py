"""A reference for API clients (sans-I/O): mirror book channels and prove nothing was missed.

Feed it every decoded message of a connection; it checks that each channel's ``seq`` starts at
1 and grows by exactly 1, and keeps book channels' levels so they can be compared with the
server's book at any ``seq``. While ``status`` is subscribed it also checks, after every
message, that the channels agree: the consolidated books and bbos name only venues whose last
status was ``live``, and a venue's own book has levels only while it is ``live`` or ``stale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class SequenceGap(AssertionError):
    """A channel's ``seq`` did not follow on from the previous message."""


class StatusDisagrees(AssertionError):
    """A book or bbo named a venue whose last ``status`` said it was not live."""


SHOWN_WHILE = {"live", "stale"}
"""States in which a venue's own book channel may have levels (a stale book keeps its last ones)."""


@dataclass
class BookMirror:
    """One book channel as the client sees it: price text -> (size text, attribution or None)."""

    bids: dict[str, tuple[str, dict[str, str] | None]] = field(default_factory=dict)
    asks: dict[str, tuple[str, dict[str, str] | None]] = field(default_factory=dict)

    def apply(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "snapshot":
            self.bids.clear()
            self.asks.clear()
        for side, levels in ((self.bids, msg["bids"]), (self.asks, msg["asks"])):
            for level in levels:
                price, size = level[0], level[1]
                if Decimal(size) == 0:
                    side.pop(price, None)
                else:
                    side[price] = (size, level[2] if len(level) > 2 else None)

    def top(self, side: str) -> list[tuple[str, str, dict[str, str] | None]]:
        """Levels of ``"bids"`` (best first) or ``"asks"``, as sent."""
        levels = self.bids if side == "bids" else self.asks
        ordered = sorted(levels.items(), key=lambda kv: Decimal(kv[0]), reverse=side == "bids")
        return [(p, s, a) for p, (s, a) in ordered]


class Mirror:
    """Every channel of one connection; seq 1 starts a channel afresh (after a resubscribe)."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}
        self.books: dict[str, BookMirror] = {}
        self.bbos: dict[str, dict[str, Any]] = {}
        self.states: dict[tuple[str, str], str] | None = None
        """(venue, symbol) -> the last ``status`` state, while ``status`` is subscribed."""
        self.messages = 0

    def apply(self, msg: dict[str, Any]) -> None:
        channel = msg.get("channel")
        if not isinstance(channel, str):
            if msg.get("type") == "ack" and msg.get("op") == "unsubscribe" and "status" in msg.get("channels", ()):
                self.states = None
            return
        if "seq" not in msg:
            if msg.get("type") == "unsubscribed":  # the server dropped the channel (a reload)
                self.seq.pop(channel, None)
                self.books.pop(channel, None)
                self.bbos.pop(channel, None)
            return
        expected = self.seq.get(channel, 0) + 1
        if msg["seq"] == 1:  # a (re)subscription starts afresh
            expected = 1
            self.books.pop(channel, None)
            if channel == "status":
                self.states = {}
        elif msg["seq"] != expected:
            raise SequenceGap(f"{channel}: seq {msg['seq']} after {expected - 1}")
        self.seq[channel] = expected
        self.messages += 1
        kind = msg["type"]
        if kind in ("snapshot", "delta"):
            book = self.books.setdefault(channel, BookMirror())
            book.apply(msg)
            self._check_book(channel, book)
        elif kind == "bbo":
            self.bbos[channel] = msg
            self._check_bbo(channel, msg)
        elif kind == "status" and self.states is not None:
            venue, symbol = msg["venue"], msg["symbol"]
            self.states[(venue, symbol)] = msg["state"]
            for name in (f"book.{symbol}", f"book.{symbol}.{venue}"):
                if name in self.books:
                    self._check_book(name, self.books[name])
            if f"bbo.{symbol}" in self.bbos:
                self._check_bbo(f"bbo.{symbol}", self.bbos[f"bbo.{symbol}"])

    def _state(self, venue: str, symbol: str) -> str:
        assert self.states is not None
        return self.states.get((venue, symbol), "unknown")

    def _check_book(self, channel: str, book: BookMirror) -> None:
        if self.states is None:
            return
        _, symbol, *own = channel.split(".", 2)
        if own:
            state = self._state(own[0], symbol)
            if (book.bids or book.asks) and state not in SHOWN_WHILE:
                raise StatusDisagrees(f"{channel} has levels while its status is {state}")
            return
        for side in (book.bids, book.asks):
            for price, (_, venues) in side.items():
                for venue in venues or ():
                    state = self._state(venue, symbol)
                    if state != "live":
                        raise StatusDisagrees(f"{channel} names {venue} at {price} while its status is {state}")

    def _check_bbo(self, channel: str, msg: dict[str, Any]) -> None:
        if self.states is None:
            return
        symbol = channel.partition(".")[2]
        for side in (msg.get("bid"), msg.get("ask")):
            for venue in side[2] if side else ():
                state = self._state(venue, symbol)
                if state != "live":
                    raise StatusDisagrees(f"{channel} names {venue} while its status is {state}")
