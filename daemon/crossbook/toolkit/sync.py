"""Book sync state machine (sans-I/O): one per venue and symbol, shared by every connector.

It buffers updates while syncing, takes the snapshot (in-stream or REST), aligns updates on it by
the venue's :class:`SequenceRule`, verifies checksums and that the book is not crossed, and on
any inconsistency resyncs that symbol only: its book leaves consolidation (``syncing`` with the
reason) and the toolkit is asked for a new snapshot or a resubscribe.

The sync owns the book: it needs it for checksums and the crossed check, and it lets a planned
reconnect build a new book privately and hand it over whole once it is live. Its snapshots lend
the book to the engine (``BookSnapshot.book``), so a live book is kept once, not twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from crossbook.core.book import BookView, L2Book
from crossbook.core.exact import Levels, as_levels
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Event, VenueStatus
from crossbook.toolkit.sequence import SequenceRule, Verdict
from crossbook.toolkit.venue import BookUpdate, SnapshotSource

MAX_BUFFER = 20_000
"""Updates buffered while waiting for a REST snapshot; more means the snapshot is hopeless."""


@dataclass(slots=True)
class FetchSnapshot:
    """The sync needs a REST snapshot (deliver it to ``sync.on_snapshot``)."""

    sync: BookSync


@dataclass(slots=True)
class Resubscribe:
    """The sync needs the venue to send its symbol's book afresh."""

    sync: BookSync
    reason: str


Action = FetchSnapshot | Resubscribe
Checksum = Callable[[BookView], int]
"""A venue's checksum of a book, to compare with the one its update carries."""


class BookSync:
    def __init__(
        self,
        symbol: str,
        rule: SequenceRule,
        source: SnapshotSource,
        *,
        depth: int | None = None,
        snapshot_limit: int | None = None,
        checksum: Checksum | None = None,
        check_crossed: bool = True,
    ) -> None:
        self.symbol = symbol
        self.rule = rule
        self.source = source
        self.depth = depth
        """Truncate each side to this many levels after every update (Kraken sends no removals
        for levels that fall out of the subscribed depth)."""
        if snapshot_limit is not None and source is not SnapshotSource.REST:
            raise ValueError("snapshot_limit is the depth of a REST snapshot")
        self.snapshot_limit = snapshot_limit
        """Levels a side a REST snapshot holds at most (Binance's ``limit``). Beyond the last level
        of a side that full, prices are unknown: the venue sends nothing for a level that does not
        change, so a book built on such a snapshot lacks the deep levels that stay put. The book
        keeps only the prices the snapshot covered (levels sent beyond them are dropped). Once a
        side holds fewer than half the limit (the market moved toward prices whose levels it does
        not know), it fetches a new snapshot and stays live meanwhile (:attr:`rebasing`); below a
        quarter it resyncs (``beyond_snapshot``). So its best quarter of the limit is always exact."""
        self.bid_floor: Decimal | None = None
        """The lowest bid price the snapshot covered, if its bid side was full; else None."""
        self.ask_ceiling: Decimal | None = None
        """The highest ask price the snapshot covered, if its ask side was full; else None."""
        self.checksum = checksum
        self.check_crossed = check_crossed
        self.book = L2Book()
        self.state = BookState.CONNECTING
        self.last: int | None = None
        self.aligned = False
        self.buffer: list[BookUpdate] = []
        self.rebasing = False
        """A live book waits for a new REST snapshot (see ``snapshot_limit``): the updates it applies
        are also buffered, to be aligned on that snapshot into a new book that then replaces it."""
        self.checksums_verified = 0
        """Venue checksums that matched the book (replays of captures count them)."""

    @property
    def live(self) -> bool:
        return self.state is BookState.LIVE

    def start(self, now_ns: int, events: list[Event], actions: list[Action], reason: str | None = None) -> None:
        """The subscription was (re)sent: forget the book and sync afresh."""
        self._reset()
        self.state = BookState.SYNCING
        events.append(VenueStatus(self.symbol, BookState.SYNCING, now_ns, reason))
        if self.source is SnapshotSource.REST:
            actions.append(FetchSnapshot(self))

    def stop(self, now_ns: int, events: list[Event], state: BookState, reason: str) -> None:
        """The connection is gone: the book is no longer maintained."""
        self._reset()
        self.state = state
        events.append(VenueStatus(self.symbol, state, now_ns, reason))

    def fail(self, reason: str, now_ns: int, events: list[Event], actions: list[Action]) -> None:
        """Something is inconsistent: resync this symbol only."""
        self.start(now_ns, events, actions, reason)
        if self.source is SnapshotSource.STREAM:
            actions.append(Resubscribe(self, reason))

    def _reset(self) -> None:
        self.book.clear()
        self.buffer.clear()
        self.last = None
        self.aligned = False
        self.bid_floor = self.ask_ceiling = None
        self.rebasing = False

    # -- updates ------------------------------------------------------------------------------

    def on_update(self, upd: BookUpdate, events: list[Event], actions: list[Action]) -> None:
        if upd.snapshot:
            if self.state is BookState.CONNECTING:
                return
            self.book.replace(upd.bids, upd.asks)
            self.last = upd.last
            self.aligned = True
            self._go_live(upd, events, actions)
        elif self.state is BookState.LIVE:
            self._apply(upd, events, actions)
            if self.rebasing and self.state is BookState.LIVE:
                if len(self.buffer) >= MAX_BUFFER:  # the snapshot is hopeless, as when syncing
                    self.fail("gap", upd.recv_ns, events, actions)
                else:
                    self.buffer.append(upd)
        elif self.state is BookState.SYNCING and self.source is SnapshotSource.REST:
            if len(self.buffer) >= MAX_BUFFER:
                self.fail("gap", upd.recv_ns, events, actions)
            else:
                self.buffer.append(upd)

    def on_snapshot(self, snap: BookUpdate, events: list[Event], actions: list[Action]) -> None:
        """A REST snapshot arrived: align the buffered updates on it. A live book being rebased stays
        as it is until the new one is built, then gives way to it (one ``BookSnapshot``, no status)."""
        rebase = self.state is BookState.LIVE and self.rebasing
        if self.state is not BookState.SYNCING and not rebase:
            return
        live = (self.book, self.last, self.aligned, self.bid_floor, self.ask_ceiling)
        if rebase:
            self.book = L2Book()
            self.rebasing = False
        self.book.replace(snap.bids, snap.asks)
        self._cover(snap)
        self.last = snap.last
        self.aligned = False
        buffered, self.buffer = self.buffer, []
        scratch: list[Event] = []
        for i, upd in enumerate(buffered):
            verdict = self._verdict(upd)
            if verdict is Verdict.DROP:
                continue
            if verdict is Verdict.GAP:
                if not self.aligned:  # the snapshot is older than what we hold: fetch again
                    self.buffer = buffered[i:]
                    if rebase:
                        self._keep_live(live, actions)
                        return
                    self.book.clear()
                    self.last = None
                    self.bid_floor = self.ask_ceiling = None
                    actions.append(FetchSnapshot(self))
                else:
                    self.fail("gap", upd.recv_ns, events, actions)
                return
            self._apply_levels(upd, scratch)
        if rebase and live[1] is not None and (self.last is None or self.last < live[1]):
            self._keep_live(live, actions)  # nothing buffered showed it, but the snapshot is older
            return
        self._go_live(snap, events, actions)

    def _keep_live(
        self, live: tuple[L2Book, int | None, bool, Decimal | None, Decimal | None], actions: list[Action]
    ) -> None:
        """A rebase's snapshot is older than the live book: keep that one and ask again."""
        self.book, self.last, self.aligned, self.bid_floor, self.ask_ceiling = live
        self.rebasing = True
        actions.append(FetchSnapshot(self))

    def _verdict(self, upd: BookUpdate) -> Verdict:
        if self.aligned:
            return self.rule.next(self.last, upd)
        return self.rule.first(self.last, upd)

    def _apply(self, upd: BookUpdate, events: list[Event], actions: list[Action]) -> None:
        verdict = self._verdict(upd)
        if verdict is Verdict.DROP:
            return
        if verdict is Verdict.GAP:
            self.fail("gap", upd.recv_ns, events, actions)
            return
        bids, asks = self._apply_levels(upd, events)
        if not self._consistent(upd, events, actions):
            return
        events.append(BookDelta(self.symbol, bids, asks, upd.recv_ns, upd.venue_ns))

    def _cover(self, snap: BookUpdate) -> None:
        """Note which prices a REST snapshot covers (see ``snapshot_limit``)."""
        limit = self.snapshot_limit
        full_bids = limit is not None and len(snap.bids) >= limit
        full_asks = limit is not None and len(snap.asks) >= limit
        self.bid_floor = as_levels(snap.bids).lowest() if full_bids else None
        self.ask_ceiling = as_levels(snap.asks).highest() if full_asks else None

    def _apply_levels(self, upd: BookUpdate, events: list[Event]) -> tuple[Levels, Levels]:
        """Apply an update's levels within the covered prices; returns the levels applied."""
        bids, asks = as_levels(upd.bids), as_levels(upd.asks)
        floor, ceiling = self.bid_floor, self.ask_ceiling
        if floor is not None:
            bids = bids.at_least(floor)
        if ceiling is not None:
            asks = asks.at_most(ceiling)
        self.book.apply(bids, asks)
        if upd.last is not None:
            self.last = upd.last
        self.aligned = True
        if self.depth is None:
            return bids, asks
        cut_bids, cut_asks = self.book.truncate(self.depth)
        return bids + cut_bids, asks + cut_asks

    def _covered(self) -> int | None:
        """Levels on the thinner side that a full snapshot side bounds, or None if neither is."""
        bids, asks = self.book.depths()
        if self.bid_floor is None:
            return None if self.ask_ceiling is None else asks
        return bids if self.ask_ceiling is None else min(bids, asks)

    def _consistent(self, upd: BookUpdate, events: list[Event], actions: list[Action]) -> bool:
        if self.checksum is not None and upd.checksum:
            if self.checksum(self.book) != upd.checksum:
                self.fail("checksum", upd.recv_ns, events, actions)
                return False
            self.checksums_verified += 1
        if self.check_crossed and self.book.crossed():
            self.fail("crossed", upd.recv_ns, events, actions)
            return False
        limit = self.snapshot_limit
        covered = None if limit is None else self._covered()
        if limit is not None and covered is not None:
            if 4 * covered < limit:
                self.fail("beyond_snapshot", upd.recv_ns, events, actions)
                return False
            if 2 * covered < limit and not self.rebasing:
                self.rebasing = True
                actions.append(FetchSnapshot(self))
        return True

    def _go_live(self, snap: BookUpdate, events: list[Event], actions: list[Action]) -> None:
        if self.depth is not None:
            self.book.truncate(self.depth)
        if not self._consistent(snap, events, actions):
            return
        self.state = BookState.LIVE
        book = self.book
        events.append(BookSnapshot(self.symbol, book.bids(), book.asks(), snap.recv_ns, snap.venue_ns, book))
