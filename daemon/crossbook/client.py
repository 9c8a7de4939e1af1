"""A reference for API clients (sans-I/O): mirror book channels and prove nothing was missed.

Feed it every decoded message of a connection; it checks that each channel's ``seq`` starts at
1 and grows by exactly 1, and keeps book channels' levels so they can be compared with the
server's book at any ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class SequenceGap(AssertionError):
    """A channel's ``seq`` did not follow on from the previous message."""


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
        self.messages = 0

    def apply(self, msg: dict[str, Any]) -> None:
        channel = msg.get("channel")
        if not isinstance(channel, str):
            return
        if "seq" not in msg:
            if msg.get("type") == "unsubscribed":  # the server dropped the channel (a reload)
                self.seq.pop(channel, None)
                self.books.pop(channel, None)
            return
        expected = self.seq.get(channel, 0) + 1
        if msg["seq"] == 1:  # a (re)subscription starts afresh
            expected = 1
            self.books.pop(channel, None)
        elif msg["seq"] != expected:
            raise SequenceGap(f"{channel}: seq {msg['seq']} after {expected - 1}")
        self.seq[channel] = expected
        self.messages += 1
        if msg["type"] in ("snapshot", "delta"):
            self.books.setdefault(channel, BookMirror()).apply(msg)
