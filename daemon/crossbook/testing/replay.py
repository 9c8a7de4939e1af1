"""Replay frames through a connector's sans-I/O parts, without a network.

A :class:`Replay` holds a venue protocol and one :class:`~crossbook.toolkit.sync.BookSync` per symbol,
as the streaming toolkit would, and records every event they produce. REST snapshots are
delivered when the test (or the capture) provides them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import cast

from crossbook.core.model import BookState, Event, Trade, VenueStatus
from crossbook.toolkit.sync import Action, BookSync, FetchSnapshot, Resubscribe
from crossbook.toolkit.venue import (
    PARSE_ERRORS,
    BookUpdate,
    ConnectionState,
    Output,
    RestSnapshots,
    Resync,
    VenueProtocol,
)


class Replay:
    def __init__(self, protocol: VenueProtocol, make_sync: Callable[[str], BookSync], symbols: Sequence[str]) -> None:
        self.protocol = protocol
        self.syncs = {s: make_sync(s) for s in symbols}
        self.conn = ConnectionState()
        self.events: list[Event] = []
        self.outputs: list[Output] = []
        self.snapshots_wanted: set[str] = set()
        self.resubscribes: list[str] = []
        self.parse_errors: list[str] = []
        self.on_update: Callable[[BookUpdate, BookSync], None] | None = None
        """Called after each book update is handled (for cross-checks like Binance bookTicker)."""
        self.start(0)

    def start(self, now_ns: int) -> None:
        """(Re)subscribe every symbol, as on a new connection."""
        for sync in self.syncs.values():
            actions: list[Action] = []
            sync.start(now_ns, self.events, actions)
            self._actions(actions)

    def frame(self, data: str | bytes, recv_ns: int) -> list[Output]:
        try:
            outputs = self.protocol.parse(self.conn, data, recv_ns)
        except PARSE_ERRORS as exc:
            self.parse_errors.append(f"{type(exc).__name__}: {exc}")
            return []
        self.outputs.extend(o for o in outputs if not isinstance(o, BookUpdate))
        for out in outputs:
            actions: list[Action] = []
            if isinstance(out, BookUpdate):
                sync = self.syncs[out.symbol]
                sync.on_update(out, self.events, actions)
                if self.on_update is not None:
                    self.on_update(out, sync)
            elif isinstance(out, Trade):
                self.events.append(out)
            elif isinstance(out, Resync):
                for symbol in (out.symbol,) if out.symbol else tuple(self.syncs):
                    self.syncs[symbol].fail(out.reason, recv_ns, self.events, actions)
            self._actions(actions)
        return outputs

    def snapshot(self, symbol: str, body: str | bytes, recv_ns: int) -> None:
        snap = cast(RestSnapshots, self.protocol).parse_snapshot(
            symbol, body.encode() if isinstance(body, str) else body, recv_ns
        )
        self.snapshots_wanted.discard(symbol)
        actions: list[Action] = []
        self.syncs[symbol].on_snapshot(snap, self.events, actions)
        self._actions(actions)

    def _actions(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, FetchSnapshot):
                self.snapshots_wanted.add(action.sync.symbol)
            elif isinstance(action, Resubscribe):
                self.resubscribes.append(action.sync.symbol)

    def statuses(self) -> list[VenueStatus]:
        return [e for e in self.events if isinstance(e, VenueStatus)]

    def resync_reasons(self) -> Counter[str]:
        return Counter(e.reason for e in self.statuses() if e.state is BookState.SYNCING and e.reason is not None)
