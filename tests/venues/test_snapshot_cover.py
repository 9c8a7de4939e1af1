"""A depth-limited REST snapshot (Binance's ``limit``) covers only the prices down to its last level:
the book keeps those, drops what is sent beyond them, and re-snapshots once the market has moved
away from them, staying live meanwhile (below a quarter of the limit it resyncs: ``beyond_snapshot``);
a snapshot that is not full covers its whole side."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crossbook.core.model import BookDelta, BookSnapshot, BookState, Event, Level, VenueStatus
from crossbook.toolkit import sync as sync_module
from crossbook.toolkit.sequence import FirstLastIds
from crossbook.toolkit.sync import Action, BookSync, FetchSnapshot
from crossbook.toolkit.venue import BookUpdate, SnapshotSource


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


EIGHT_BIDS = lv(*((str(100 - i), "1") for i in range(8)))  # 100 .. 93
EIGHT_ASKS = lv(*((str(101 + i), "1") for i in range(8)))  # 101 .. 108


def test_a_side_left_with_fewer_than_half_the_limit_is_rebased_while_live() -> None:
    sync = live_sync(8, EIGHT_BIDS, EIGHT_ASKS)
    events, actions = diff(sync, 11, lv(("100", "0"), ("99", "0"), ("98", "0"), ("97", "0")), [])
    assert sync.live  # 4 bids left: half of 8, still enough
    assert actions == []

    # The market falls: one more bid goes, and those that come lie below the covered prices.
    events, actions = diff(sync, 12, lv(("96", "0"), ("92", "1")), lv(("99", "1")))
    assert sync.live
    assert sync.rebasing
    assert actions == [FetchSnapshot(sync)]
    (delta,) = events
    assert isinstance(delta, BookDelta)
    assert delta.bids == lv(("96", "0"))  # 92 is beyond the covered prices: dropped
    events, actions = diff(sync, 13, lv(("91", "2")), [])  # applied to the live book, and kept for the new one
    assert actions == []
    assert sync.book.depths() == (3, 9)
    live_book = sync.book

    # The new snapshot, taken after update 12, covers where the market now is; 13 is applied on it.
    new_bids = lv(("95", "1"), ("94", "1"), ("93", "1"), ("92", "1"), *((str(90 - i), "1") for i in range(4)))
    events, actions = [], []
    sync.on_snapshot(BookUpdate("BTC-USDT", new_bids, [*lv(("99", "1")), *EIGHT_ASKS[:7]], 2, last=12), events, actions)

    assert sync.live
    assert not sync.rebasing
    assert actions == []
    (snapshot,) = events  # no status: the book never left ``live``
    assert isinstance(snapshot, BookSnapshot)
    assert snapshot.book is sync.book
    assert sync.book is not live_book
    assert sync.book.bids() == [*new_bids[:4], (Decimal(91), Decimal(2)), *new_bids[4:]]
    assert (sync.bid_floor, sync.ask_ceiling) == (Decimal(87), Decimal(107))
    assert sync.buffer == []


def test_a_rebase_snapshot_older_than_the_buffer_is_fetched_again_while_the_book_stays() -> None:
    sync = live_sync(8, EIGHT_BIDS, EIGHT_ASKS)
    diff(sync, 11, lv(*((str(100 - i), "0") for i in range(5))), [])
    assert sync.rebasing
    live_book = sync.book
    events: list[Event] = []
    actions: list[Action] = []
    sync.on_snapshot(BookUpdate("BTC-USDT", EIGHT_BIDS, EIGHT_ASKS, 2, last=9), events, actions)  # before 11
    assert (events, actions) == ([], [FetchSnapshot(sync)])
    assert sync.live
    assert sync.rebasing
    assert sync.book is live_book
    assert sync.book.depths() == (3, 8)


def test_a_side_left_with_fewer_than_a_quarter_of_the_limit_resyncs() -> None:
    sync = live_sync(8, EIGHT_BIDS, EIGHT_ASKS)
    events, actions = diff(sync, 11, lv(*((str(100 - i), "0") for i in range(7))), [])  # 1 bid left

    assert not sync.live
    assert [e for e in events if isinstance(e, BookDelta)] == []
    (status,) = events
    assert isinstance(status, VenueStatus)
    assert (status.state, status.reason) == (BookState.SYNCING, "beyond_snapshot")
    assert actions == [FetchSnapshot(sync)]
    assert (sync.bid_floor, sync.ask_ceiling) == (None, None)
    assert not sync.rebasing


def test_a_snapshot_that_already_leaves_a_side_thin_is_rebased_or_refetched() -> None:
    """Buffered diffs replayed on a new snapshot may leave a side thin already."""
    for gone, live in ((5, True), (7, False)):
        sync = BookSync("BTC-USDT", FirstLastIds(), SnapshotSource.REST, snapshot_limit=8)
        events: list[Event] = []
        actions: list[Action] = []
        sync.start(0, events, actions)
        levels = lv(*((str(100 - i), "0") for i in range(gone)))
        sync.on_update(BookUpdate("BTC-USDT", levels, [], 5, first=11, last=11), [], [])
        actions.clear()
        sync.on_snapshot(BookUpdate("BTC-USDT", EIGHT_BIDS, EIGHT_ASKS, 1, last=10), events, actions)
        assert sync.live is live
        assert sync.rebasing is live
        assert actions == [FetchSnapshot(sync)]


def thin_at_go_live(gone: int) -> BookSync:
    """A sync whose first snapshot is left thin by the buffered update 11 replayed on it."""
    sync = BookSync("BTC-USDT", FirstLastIds(), SnapshotSource.REST, snapshot_limit=8)
    sync.start(0, [], [])
    levels = lv(*((str(100 - i), "0") for i in range(gone)))
    sync.on_update(BookUpdate("BTC-USDT", levels, [], 5, first=11, last=11), [], [])
    sync.on_snapshot(BookUpdate("BTC-USDT", EIGHT_BIDS, EIGHT_ASKS, 1, last=10), [], [])
    return sync


def test_a_rebase_snapshot_older_than_the_live_book_is_refused_with_nothing_buffered() -> None:
    """Binance's REST snapshot may be older than what the stream delivered: with no update
    buffered to show it, the ids do."""
    sync = thin_at_go_live(5)
    assert sync.rebasing
    assert sync.buffer == []
    live_book = sync.book
    events: list[Event] = []
    actions: list[Action] = []
    sync.on_snapshot(BookUpdate("BTC-USDT", EIGHT_BIDS, EIGHT_ASKS, 2, last=10), events, actions)
    assert (events, actions) == ([], [FetchSnapshot(sync)])
    assert sync.book is live_book
    assert sync.book.depths() == (3, 8)
    assert sync.last == 11

    sync.on_snapshot(BookUpdate("BTC-USDT", EIGHT_BIDS[5:], EIGHT_ASKS, 3, last=11), events, actions)
    assert not sync.rebasing  # as new as the live book: taken
    assert sync.book is not live_book


def test_a_refused_rebase_snapshot_leaves_the_live_books_covered_prices() -> None:
    sync = live_sync(8, EIGHT_BIDS, EIGHT_ASKS)
    diff(sync, 11, lv(*((str(100 - i), "0") for i in range(5))), [])
    older = BookUpdate("BTC-USDT", lv(*((str(90 - i), "1") for i in range(8))), EIGHT_ASKS[:7], 2, last=9)
    sync.on_snapshot(older, [], [])
    assert (sync.bid_floor, sync.ask_ceiling) == (Decimal(93), Decimal(108))


def test_a_rebase_whose_snapshot_never_comes_resyncs_when_its_buffer_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_module, "MAX_BUFFER", 3)
    sync = live_sync(8, EIGHT_BIDS, EIGHT_ASKS)
    diff(sync, 11, lv(*((str(100 - i), "0") for i in range(5))), [])  # buffered: 1
    diff(sync, 12, [], lv(("101", "2")))
    diff(sync, 13, [], lv(("101", "3")))
    assert sync.live
    events, _ = diff(sync, 14, [], lv(("101", "4")))
    assert not sync.live
    assert isinstance(events[-1], VenueStatus)
    assert events[-1].reason == "gap"


def test_half_and_a_quarter_of_an_odd_limit() -> None:
    """Limit 5: rebased with 2 levels a side (fewer than 2.5), resynced with 1 (fewer than 1.25)."""
    five = EIGHT_BIDS[:5]
    sync = live_sync(5, five, EIGHT_ASKS[:5])
    diff(sync, 11, lv(("100", "0"), ("99", "0")), [])
    assert not sync.rebasing
    diff(sync, 12, lv(("98", "0")), [])
    assert sync.rebasing
    assert sync.live
    diff(sync, 13, lv(("97", "0")), [])
    assert not sync.live


def test_a_snapshot_limit_is_for_rest_snapshots() -> None:
    with pytest.raises(ValueError, match="REST"):
        BookSync("BTC-USDT", FirstLastIds(), SnapshotSource.STREAM, snapshot_limit=8)
