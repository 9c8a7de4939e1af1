"""A depth-limited REST snapshot (Binance's ``limit``) covers only the prices down to its last level:
the book keeps those, drops what is sent beyond them, and re-snapshots once the market has moved
away from them (``beyond_snapshot``); a snapshot that is not full covers its whole side."""

from __future__ import annotations

from decimal import Decimal

from crossbook.model import BookDelta, BookState, Event, Level, VenueStatus
from crossbook.sync import Action, BookSync, FetchSnapshot, FirstLastIds
from crossbook.venue import BookUpdate, SnapshotSource


def lv(*pairs: tuple[str, str]) -> list[Level]:
    return [(Decimal(p), Decimal(s)) for p, s in pairs]


def live_sync(limit: int | None, bids: list[Level], asks: list[Level]) -> BookSync:
    sync = BookSync("BTC-USDT", FirstLastIds(), SnapshotSource.REST, snapshot_limit=limit)
    events: list[Event] = []
    actions: list[Action] = []
    sync.start(0, events, actions)
    sync.on_snapshot(BookUpdate("BTC-USDT", bids, asks, 1, last=10), events, actions)
    assert sync.live
    return sync


def diff(sync: BookSync, n: int, bids: list[Level], asks: list[Level]) -> tuple[list[Event], list[Action]]:
    events: list[Event] = []
    actions: list[Action] = []
    sync.on_update(BookUpdate("BTC-USDT", bids, asks, n, first=n, last=n), events, actions)
    return events, actions


FOUR_BIDS = lv(("100", "1"), ("99", "1"), ("98", "1"), ("97", "1"))
FOUR_ASKS = lv(("101", "1"), ("102", "1"), ("103", "1"), ("104", "1"))


def test_levels_sent_beyond_a_full_snapshot_are_dropped() -> None:
    sync = live_sync(4, FOUR_BIDS, FOUR_ASKS)
    assert (sync.bid_floor, sync.ask_ceiling) == (Decimal(97), Decimal(104))

    events, actions = diff(sync, 11, lv(("96", "5"), ("97", "2")), lv(("104.5", "5"), ("101", "3")))

    assert actions == []
    (delta,) = events
    assert isinstance(delta, BookDelta)
    assert delta.bids == lv(("97", "2"))  # what the book applied
    assert delta.asks == lv(("101", "3"))
    assert sync.book.bids() == lv(("100", "1"), ("99", "1"), ("98", "1"), ("97", "2"))
    assert sync.book.asks() == lv(("101", "3"), ("102", "1"), ("103", "1"), ("104", "1"))


def test_a_snapshot_with_fewer_levels_than_the_limit_covers_its_whole_side() -> None:
    sync = live_sync(5, FOUR_BIDS, FOUR_ASKS)
    assert (sync.bid_floor, sync.ask_ceiling) == (None, None)
    diff(sync, 11, lv(("1", "5")), lv(("1000", "5")))
    assert sync.book.depths() == (5, 5)


def test_without_a_limit_every_level_is_kept() -> None:
    sync = live_sync(None, FOUR_BIDS, FOUR_ASKS)
    diff(sync, 11, lv(("1", "5")), lv(("1000", "5")))
    assert sync.book.depths() == (5, 5)


def test_a_side_left_with_fewer_than_half_the_limit_resyncs() -> None:
    sync = live_sync(4, FOUR_BIDS, FOUR_ASKS)
    events, actions = diff(sync, 11, lv(("100", "0")), [])  # 3 bids left: half of 4 is 2, still enough
    assert sync.live
    assert actions == []

    # The market falls: bids go, those that come lie below the covered prices and are unknown.
    events, actions = diff(sync, 12, lv(("99", "0"), ("98", "0"), ("95", "1")), lv(("99.5", "1")))

    assert not sync.live
    assert [e for e in events if isinstance(e, BookDelta)] == []
    (status,) = events
    assert isinstance(status, VenueStatus)
    assert (status.state, status.reason) == (BookState.SYNCING, "beyond_snapshot")
    assert actions == [FetchSnapshot(sync)]
    assert (sync.bid_floor, sync.ask_ceiling) == (None, None)

    # A new snapshot covers the prices where the market now is.
    new_bids, new_asks = lv(("97", "1"), ("95", "1"), ("94", "1"), ("93", "1")), lv(("99.5", "1"), ("101", "1"))
    events, actions = [], []
    sync.on_snapshot(BookUpdate("BTC-USDT", new_bids, new_asks, 2, last=12), events, actions)
    assert sync.live
    assert (sync.bid_floor, sync.ask_ceiling) == (Decimal(93), None)


def test_a_snapshot_that_already_leaves_a_side_thin_asks_again() -> None:
    """Buffered diffs replayed on a new snapshot may leave a side too thin already."""
    sync = BookSync("BTC-USDT", FirstLastIds(), SnapshotSource.REST, snapshot_limit=4)
    events: list[Event] = []
    actions: list[Action] = []
    sync.start(0, events, actions)
    sync.on_update(BookUpdate("BTC-USDT", lv(("100", "0"), ("99", "0"), ("98", "0")), [], 5, first=11, last=11), [], [])
    actions.clear()
    sync.on_snapshot(BookUpdate("BTC-USDT", FOUR_BIDS, FOUR_ASKS, 1, last=10), events, actions)
    assert not sync.live
    assert actions == [FetchSnapshot(sync)]
    assert isinstance(events[-1], VenueStatus)
    assert events[-1].reason == "beyond_snapshot"
