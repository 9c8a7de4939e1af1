"""A book channel's levels kept on the client (sans-I/O): a snapshot, then deltas, in ``seq`` order."""

from __future__ import annotations

from decimal import Decimal

from crossbook.client.messages import BookMessage, Level, Snapshot


class LocalBook:
    """The top ``depth`` levels of one book channel, exactly as the server has them at ``seq``."""

    __slots__ = ("_asks", "_bids", "channel", "seq", "ts")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.seq = 0
        """The ``seq`` of the last message applied."""
        self.ts = 0
        """The ``ts`` of the last message applied (ns since the epoch)."""
        self._bids: dict[Decimal, Level] = {}
        self._asks: dict[Decimal, Level] = {}

    def clear(self) -> None:
        """Empty until the next snapshot (the channel is being resubscribed)."""
        self._bids.clear()
        self._asks.clear()
        self.seq = self.ts = 0

    def apply(self, msg: BookMessage) -> None:
        if isinstance(msg, Snapshot):
            self._bids.clear()
            self._asks.clear()
        for side, levels in ((self._bids, msg.bids), (self._asks, msg.asks)):
            for level in levels:
                if level.size:
                    side[level.price] = level
                else:
                    side.pop(level.price, None)
        self.seq = msg.seq
        self.ts = msg.ts

    @property
    def bids(self) -> list[Level]:
        """Best (highest) first."""
        return sorted(self._bids.values(), key=lambda level: level.price, reverse=True)

    @property
    def asks(self) -> list[Level]:
        """Best (lowest) first."""
        return sorted(self._asks.values(), key=lambda level: level.price)

    @property
    def best_bid(self) -> Level | None:
        return max(self._bids.values(), key=lambda level: level.price, default=None)

    @property
    def best_ask(self) -> Level | None:
        return min(self._asks.values(), key=lambda level: level.price, default=None)

    def __repr__(self) -> str:
        return f"<LocalBook {self.channel} seq={self.seq} bids={len(self._bids)} asks={len(self._asks)}>"
