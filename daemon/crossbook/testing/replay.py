"""Replay frames through a connector's sans-I/O parts, without a network.

A :class:`Replay` holds a venue protocol and one :class:`~crossbook.plugin.BookSync` per symbol,
as the streaming toolkit would, and records every event they produce; an engine takes them as
the daemon's does, so book states read as the daemon reports them. REST snapshots are delivered
when the test (or the capture) provides them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import cast

from crossbook.core.changes import StatusChange
from crossbook.core.engine import Engine
from crossbook.core.model import BookState, Event, Trade
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

VENUE = "replay"


class Replay:
    """One connection's frames (and REST snapshots) through a protocol and its book syncs."""

    def __init__(self, protocol: VenueProtocol, make_sync: Callable[[str], BookSync], symbols: Sequence[str]) -> None:
        self.protocol = protocol
        self.syncs = {s: make_sync(s) for s in symbols}
        self.conn = ConnectionState()
        self.engine = Engine({VENUE: tuple(symbols)}, stale_after_ns=2**62, watched=set())
        self.changes: list[StatusChange] = []
        """Every book state change, as the daemon reports it (``status`` messages, metrics)."""
        self._ingested = 0
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
        self._ingest(now_ns)

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
        self._ingest(recv_ns)
        return outputs

    def snapshot(self, symbol: str, body: str | bytes, recv_ns: int) -> None:
        snap = cast(RestSnapshots, self.protocol).parse_snapshot(
            symbol, body.encode() if isinstance(body, str) else body, recv_ns
        )
        self.snapshots_wanted.discard(symbol)
        actions: list[Action] = []
        self.syncs[symbol].on_snapshot(snap, self.events, actions)
        self._actions(actions)
        self._ingest(recv_ns)

    def _ingest(self, now_ns: int) -> None:
        """The events not yet ingested, into the engine, as the daemon takes them."""
        fresh = self.events[self._ingested :]
        self._ingested = len(self.events)
        if fresh:
            self.changes += self.engine.ingest(VENUE, fresh, now_ns).statuses

    def _actions(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, FetchSnapshot):
                self.snapshots_wanted.add(action.sync.symbol)
            elif isinstance(action, Resubscribe):
                self.resubscribes.append(action.sync.symbol)

    def statuses(self, symbol: str | None = None) -> list[StatusChange]:
        """The book state changes (of ``symbol``'s book), as the daemon reports them."""
        return [c for c in self.changes if symbol is None or c.symbol == symbol]

    def states(self, symbol: str) -> list[BookState]:
        return [c.state for c in self.statuses(symbol)]

    def resync_reasons(self) -> Counter[str]:
        """Resyncs by reason, as ``crossbook_resyncs_total`` counts them."""
        return Counter(c.reason for c in self.changes if c.state is BookState.SYNCING and c.reason)
