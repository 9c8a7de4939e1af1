"""Engine: venue book states, staleness, what each ingest or tick reports as changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.core.book import BookView
from crossbook.core.engine import Changes, Engine, StatusChange
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Event, Level, Side, Trade, VenueStatus
from crossbook.toolkit.sequence import Unsequenced
from crossbook.toolkit.sync import Action, BookSync
from crossbook.toolkit.venue import BookUpdate, SnapshotSource

D = Decimal
ZERO = Decimal(0)
X = "BTC-USDT"
Y = "ETH-USDT"
VENUES: dict[str, tuple[str, ...]] = {"a": (X, Y), "b": (X,), "c": (Y, X)}
STALE_NS = 100
LIVE, STALE, SYNCING, DOWN, CONNECTING = (
    BookState.LIVE,
    BookState.STALE,
    BookState.SYNCING,
    BookState.DOWN,
    BookState.CONNECTING,
)


def lv(*pairs: tuple[str, str]) -> list[Level]:
    return [(D(p), D(s)) for p, s in pairs]


def snap(symbol: str, bids: list[Level], asks: list[Level], ts: int = 0) -> BookSnapshot:
    return BookSnapshot(symbol, bids, asks, ts)


def delta(symbol: str, bids: list[Level], asks: list[Level], ts: int = 0) -> BookDelta:
    return BookDelta(symbol, bids, asks, ts)


def status(symbol: str | None, state: BookState, ts: int = 0, reason: str | None = None) -> VenueStatus:
    return VenueStatus(symbol, state, ts, reason)


def transitions(changes: Changes) -> list[tuple[str, str, BookState, str | None]]:
    return [(st.venue, st.symbol, st.state, st.reason) for st in changes.statuses]


@pytest.fixture
def engine() -> Engine:
    return Engine(VENUES, STALE_NS)


# -- examples ------------------------------------------------------------------------------------


def test_initial_state(engine: Engine) -> None:
    assert engine.symbols == [X, Y]
    assert set(engine.books) == {(X, "a"), (Y, "a"), (X, "b"), (Y, "c"), (X, "c")}
    assert all(engine.state(s, v) is CONNECTING for s, v in engine.books)
    assert engine.not_live() == [
        ("a", X, CONNECTING),
        ("b", X, CONNECTING),
        ("c", X, CONNECTING),
        ("a", Y, CONNECTING),
        ("c", Y, CONNECTING),
    ]
    assert all(last is None for last in engine.last_message_ns.values())
    assert not engine.tick(10**12).statuses  # never heard from: never stale


def test_snapshot_makes_a_book_live(engine: Engine) -> None:
    changes = engine.ingest("a", [snap(X, lv(("100", "1")), lv(("101", "2")), ts=7)], 9)
    assert transitions(changes) == [("a", X, LIVE, None)]
    assert changes.statuses[0].ts == 7
    assert changes.books == {(X, "a"), (X, None)}
    assert changes.book_updates == [X]
    assert changes.skipped == []
    assert engine.state(X, "a") is LIVE
    assert engine.state(Y, "a") is CONNECTING
    assert engine.last_message_ns["a"] == 9
    assert engine.book(X, "a").bids() == lv(("100", "1"))
    assert engine.consolidated[X].top_asks(5) == [(D(101), D(2), {"a": D(2)})]
    assert ("a", X, LIVE) not in engine.not_live()

    again = engine.ingest("a", [snap(X, lv(("99", "1")), [])], 10)
    assert again.statuses == []  # already live
    assert again.books == {(X, "a"), (X, None)}
    assert engine.consolidated[X].top_asks(5) == []


def test_delta_before_snapshot_and_unknown_symbols_are_skipped(engine: Engine) -> None:
    changes = engine.ingest(
        "b",
        [
            delta(X, lv(("100", "1")), []),
            delta(Y, lv(("100", "1")), []),
            snap(Y, [], []),
            Trade(Y, D(1), D(1), Side.BUY, "t1", 0),
            status(Y, LIVE),
            status(X, STALE),
        ],
        5,
    )
    assert len(changes.skipped) == 6
    assert "before its snapshot" in changes.skipped[0]
    assert all("unknown symbol" in why for why in changes.skipped[1:5])
    assert "stale" in changes.skipped[5]
    assert changes.books == set()
    assert changes.statuses == []
    assert changes.trades == []
    assert len(engine.book(X, "b")) == 0
    assert engine.state(X, "b") is CONNECTING
    assert engine.last_message_ns["b"] == 5  # still heard from


def test_delta_applies_to_venue_and_consolidated_books(engine: Engine) -> None:
    engine.ingest("a", [snap(X, lv(("100", "1")), lv(("101", "1")))], 1)
    changes = engine.ingest("a", [delta(X, lv(("100", "0"), ("99", "3")), lv(("101", "1.5")))], 2)
    assert changes.books == {(X, "a"), (X, None)}
    assert changes.book_updates == [X]
    assert engine.book(X, "a").bids() == lv(("99", "3"))
    assert engine.consolidated[X].top_bids(5) == [(D(99), D(3), {"a": D(3)})]
    assert engine.consolidated[X].top_asks(5) == [(D(101), D("1.5"), {"a": D("1.5")})]


def test_a_lent_book_is_kept_once_and_a_failed_delta_leaves_nothing_behind(engine: Engine) -> None:
    """A sync lends its book with its snapshot: the engine applies no delta to it again, and when
    a delta the sync applied fails its checksum, the venue still leaves consolidation whole."""

    def top_size(book: BookView) -> int:
        best = book.best_bid()
        return int(best[1]) if best else 0

    sync = BookSync(X, Unsequenced(), SnapshotSource.STREAM, checksum=top_size)
    events: list[Event] = []
    actions: list[Action] = []
    sync.start(0, events, actions)
    sync.on_update(BookUpdate(X, lv(("100", "1"), ("99", "2")), lv(("101", "1")), 1, snapshot=True), events, actions)
    engine.ingest("b", [snap(X, lv(("100", "5")), [])], 1)
    engine.ingest("a", events, 1)
    assert engine.book(X, "a") is sync.book

    events = []
    sync.on_update(BookUpdate(X, lv(("100", "3")), [], 2, checksum=3), events, actions)
    engine.ingest("a", events, 2)
    assert [type(e) for e in events] == [BookDelta]
    assert engine.book(X, "a").bids() == lv(("100", "3"), ("99", "2"))
    assert engine.consolidated[X].top_bids(5) == [
        (D(100), D(8), {"a": D(3), "b": D(5)}),
        (D(99), D(2), {"a": D(2)}),
    ]

    events = []  # removes both bids, but the venue says the best bid is 7: resync
    sync.on_update(BookUpdate(X, lv(("100", "0"), ("99", "0")), [], 3, checksum=7), events, actions)
    assert [(e.state, e.reason) for e in events if isinstance(e, VenueStatus)] == [(SYNCING, "checksum")]
    engine.ingest("a", events, 3)
    assert engine.consolidated[X].top_bids(5) == [(D(100), D(5), {"b": D(5)})]
    assert engine.consolidated[X].top_asks(5) == []
    assert engine.book(X, "a") is not sync.book
    assert len(engine.book(X, "a")) == 0


def test_trades_are_passed_on(engine: Engine) -> None:
    trade = Trade(X, D("100.5"), D("0.1"), Side.SELL, "abc", 3, 2)
    changes = engine.ingest("b", [trade], 4)
    assert changes.trades == [("b", trade)]
    assert changes.books == set()


def test_merged_changes_reach_as_far_as_every_message_and_a_whole_book_stays_whole(engine: Engine) -> None:
    engine.ingest("a", [snap(X, lv(("100", "1")), lv(("101", "1"))), snap(Y, lv(("10", "1")), [])], 1)
    engine.ingest("b", [snap(X, lv(("99", "1")), [])], 1)
    trade = Trade(X, D("100.5"), D("0.1"), Side.SELL, "t1", 2, 2)
    first = engine.ingest("a", [delta(X, lv(("98", "2")), lv(("103", "1"))), trade], 2)
    first.merge(engine.ingest("a", [delta(X, lv(("99.5", "2")), [])], 3), 3, 2)
    first.merge(engine.ingest("a", [delta(Y, lv(("9", "1")), [])], 3), 3, 2)
    first.merge(engine.ingest("b", [status(X, SYNCING, 4, "gap")], 4), 4, 2)
    assert first.reach((X, "a")) == (D("99.5"), D(103))  # the highest bid, lowest ask of both
    assert first.reach((Y, "a")) == (D(9), None)
    assert first.reach((X, "b")) is None  # cleared by the status: changed anywhere
    assert first.reach((X, None)) is None  # b's levels left the consolidated book
    assert first.books == {(X, "a"), (Y, "a"), (X, "b"), (X, None), (Y, None)}
    assert first.trades == [("a", trade)]
    assert transitions(first) == [("b", X, SYNCING, "gap")]
    # Each book's time is the earliest message that changed it (the first ingest's: no entry).
    assert first.since == {(Y, "a"): 3, (Y, None): 3, (X, "b"): 4}
    first.merge(engine.ingest("a", [delta(X, lv(("97", "1")), []), delta(Y, lv(("8", "1")), [])], 5), 5, 2)
    assert first.reach((X, None)) is None  # a later delta does not narrow a whole change
    assert first.since == {(Y, "a"): 3, (Y, None): 3, (X, "b"): 4}  # changed again: the earliest stays
    # A message received earlier but merged later (a plugin's late publish) moves a book's time back.
    first.merge(engine.ingest("a", [delta(Y, lv(("7", "1")), [])], 1), 1, 2)
    first.merge(engine.ingest("a", [delta(X, lv(("96", "1")), [])], 1), 1, 2)
    assert first.since == {(Y, "a"): 1, (Y, None): 1, (X, "b"): 4, (X, "a"): 1, (X, None): 1}


def test_status_for_every_symbol_of_a_venue_and_book_clearing(engine: Engine) -> None:
    engine.ingest("a", [snap(X, lv(("100", "1")), []), snap(Y, lv(("10", "1")), [])], 1)
    engine.ingest("c", [snap(X, lv(("100", "2")), [])], 1)
    changes = engine.ingest("a", [status(None, SYNCING, 2, "gap")], 3)
    assert transitions(changes) == [("a", X, SYNCING, "gap"), ("a", Y, SYNCING, "gap")]
    assert all(st.ts == 2 for st in changes.statuses)
    assert changes.books == {(X, "a"), (Y, "a"), (X, None), (Y, None)}
    assert len(engine.book(X, "a")) == len(engine.book(Y, "a")) == 0
    assert engine.consolidated[X].top_bids(5) == [(D(100), D(2), {"c": D(2)})]
    assert engine.consolidated[Y].top_bids(5) == []

    # Deltas while syncing are skipped; live without a snapshot means an empty book.
    skipped = engine.ingest("a", [delta(X, lv(("1", "1")), [])], 4)
    assert len(skipped.skipped) == 1
    live = engine.ingest("a", [status(X, LIVE, 5)], 5)
    assert transitions(live) == [("a", X, LIVE, None)]
    assert engine.book(X, "a").bids() == []
    engine.ingest("a", [delta(X, lv(("1", "1")), [])], 6)
    assert engine.consolidated[X].top_bids(5)[-1] == (D(1), D(1), {"a": D(1)})


def test_same_state_again_reports_nothing(engine: Engine) -> None:
    changes = engine.ingest("b", [status(X, CONNECTING)], 1)
    assert changes.statuses == []
    assert changes.books == set()
    engine.ingest("b", [status(X, SYNCING, reason="gap")], 2)
    assert engine.ingest("b", [status(X, SYNCING, reason="gap")], 3).statuses == []


def test_staleness_boundary_and_return(engine: Engine) -> None:
    engine.ingest("a", [snap(X, lv(("100", "1")), []), status(Y, SYNCING)], 1000)
    engine.ingest("b", [snap(X, lv(("99", "1")), [])], 1050)
    assert engine.tick(1000 + STALE_NS).statuses == []
    changes = engine.tick(1000 + STALE_NS + 1)
    # Only a's live book turns stale; its syncing book keeps its state.
    assert transitions(changes) == [("a", X, STALE, "stale")]
    assert changes.statuses[0].ts == 1000 + STALE_NS + 1
    assert changes.books == {(X, None)}
    assert engine.state(Y, "a") is SYNCING
    assert engine.state(X, "b") is LIVE
    assert engine.consolidated[X].top_bids(5) == [(D(99), D(1), {"b": D(1)})]
    assert engine.book(X, "a").bids() == lv(("100", "1"))  # kept
    assert ("a", X, STALE) in engine.not_live()

    assert engine.tick(5000).statuses == [StatusChange("b", X, STALE, "stale", 5000)]  # once only
    assert engine.tick(6000).statuses == []

    # Heard from again: live books return with the book they had.
    back = engine.ingest("a", [], 6001)
    assert transitions(back) == [("a", X, LIVE, None)]
    assert back.books == {(X, None)}
    assert engine.consolidated[X].top_bids(5) == [(D(100), D(1), {"a": D(1)})]
    assert engine.state(Y, "a") is SYNCING

    # A delta from a stale venue applies after the venue is back.
    engine.tick(7000)
    changes = engine.ingest("a", [delta(X, lv(("100", "2")), [])], 7001)
    assert transitions(changes) == [("a", X, LIVE, None)]
    assert engine.consolidated[X].top_bids(5) == [(D(100), D(2), {"a": D(2)})]


def test_touch_reports_return_from_stale(engine: Engine) -> None:
    engine.ingest("b", [snap(X, lv(("1", "1")), [])], 0)
    engine.tick(STALE_NS + 1)
    changes = engine.touch("b", STALE_NS + 2)
    assert transitions(changes) == [("b", X, LIVE, None)]
    assert changes.books == {(X, None)}
    assert engine.last_message_ns["b"] == STALE_NS + 2


def test_stale_venue_goes_live_on_snapshot(engine: Engine) -> None:
    engine.ingest("b", [snap(X, lv(("1", "1")), [])], 0)
    engine.tick(STALE_NS + 1)
    changes = engine.ingest("b", [snap(X, lv(("2", "1")), [])], STALE_NS + 2)
    assert transitions(changes) == [("b", X, LIVE, None)]
    assert engine.consolidated[X].top_bids(5) == [(D(2), D(1), {"b": D(1)})]


def test_venue_down(engine: Engine) -> None:
    engine.ingest("a", [snap(X, lv(("100", "1")), []), snap(Y, lv(("10", "1")), [])], 1)
    engine.ingest("b", [snap(X, lv(("100", "2")), [])], 1)
    changes = engine.venue_down("a", "crash", 50)
    assert transitions(changes) == [("a", X, DOWN, "crash"), ("a", Y, DOWN, "crash")]
    assert all(st.ts == 50 for st in changes.statuses)
    assert {(X, "a"), (Y, "a"), (X, None), (Y, None)} <= changes.books
    assert engine.last_message_ns["a"] is None
    assert len(engine.book(X, "a")) == 0
    assert engine.consolidated[X].top_bids(5) == [(D(100), D(2), {"b": D(2)})]
    assert engine.tick(10**9).statuses == [StatusChange("b", X, STALE, "stale", 10**9)]  # a is not "stale"
    # A restarted connector syncs again.
    engine.ingest("a", [status(None, CONNECTING), snap(X, lv(("101", "1")), [])], 10**9 + 1)
    assert engine.state(X, "a") is LIVE
    assert engine.state(Y, "a") is CONNECTING


def test_venue_down_of_a_stale_venue_goes_straight_to_down(engine: Engine) -> None:
    """The supervisor saying a connector stopped is not hearing from the venue: no "live" blip."""
    engine.ingest("a", [snap(X, lv(("100", "1")), []), status(Y, SYNCING)], 0)
    engine.tick(STALE_NS + 1)
    assert engine.state(X, "a") is STALE
    changes = engine.venue_down("a", "crash", STALE_NS + 2)
    assert transitions(changes) == [("a", X, DOWN, "crash"), ("a", Y, DOWN, "crash")]
    assert changes.books == {(X, "a")}  # its book is cleared; the consolidated book had no share of it
    assert engine.state(X, "a") is DOWN
    assert engine.last_message_ns["a"] is None
    assert engine.consolidated[X].top_bids(5) == []


# -- a reference model, driven at random ------------------------------------------------------


@dataclass
class Model:
    """What the engine should hold, written as plainly as possible."""

    synced: dict[tuple[str, str], BookState] = field(default_factory=dict)
    bids: dict[tuple[str, str], dict[Decimal, Decimal]] = field(default_factory=dict)
    asks: dict[tuple[str, str], dict[Decimal, Decimal]] = field(default_factory=dict)
    last: dict[str, int | None] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)

    @classmethod
    def new(cls) -> Model:
        m = cls()
        for venue, symbols in VENUES.items():
            m.last[venue] = None
            for symbol in symbols:
                m.synced[(symbol, venue)] = CONNECTING
                m.bids[(symbol, venue)] = {}
                m.asks[(symbol, venue)] = {}
        return m

    def state(self, key: tuple[str, str]) -> BookState:
        if self.synced[key] is LIVE and key[1] in self.stale:
            return STALE
        return self.synced[key]

    def clear(self, key: tuple[str, str]) -> None:
        self.bids[key].clear()
        self.asks[key].clear()

    def ingest(self, venue: str, events: tuple[Event, ...], now: int) -> list[Trade]:
        self.last[venue] = now
        self.stale.discard(venue)
        trades: list[Trade] = []
        for ev in events:
            if isinstance(ev, Trade):
                if (ev.symbol, venue) in self.synced:
                    trades.append(ev)
            elif isinstance(ev, BookSnapshot):
                key = (ev.symbol, venue)
                if key in self.synced:
                    self.bids[key] = {p: s for p, s in ev.bids if s}
                    self.asks[key] = {p: s for p, s in ev.asks if s}
                    self.synced[key] = LIVE
            elif isinstance(ev, BookDelta):
                key = (ev.symbol, venue)
                if key in self.synced and self.synced[key] is LIVE:
                    for side, levels in ((self.bids[key], ev.bids), (self.asks[key], ev.asks)):
                        for p, s in levels:
                            if s:
                                side[p] = s
                            else:
                                side.pop(p, None)
            elif ev.state is not STALE:
                for symbol in VENUES[venue] if ev.symbol is None else (ev.symbol,):
                    key = (symbol, venue)
                    if key in self.synced:
                        self.synced[key] = ev.state
                        if ev.state is not LIVE:
                            self.clear(key)
        return trades

    def tick(self, now: int) -> None:
        for venue, last in self.last.items():
            if last is not None and now - last > STALE_NS:
                self.stale.add(venue)

    def down(self, venue: str) -> None:
        for symbol in VENUES[venue]:
            self.synced[(symbol, venue)] = DOWN
            self.clear((symbol, venue))
        self.last[venue] = None
        self.stale.discard(venue)


prices = st.integers(95, 105).map(lambda i: Decimal(i))
sizes = st.one_of(st.just(ZERO), st.integers(1, 10**10).map(lambda i: Decimal(f"{i}E-4")))
side_levels = st.lists(st.tuples(prices, sizes), max_size=5)


@st.composite
def events(draw: st.DrawFn, venue: str) -> Event:
    # Mostly the venue's own symbols; sometimes one it does not have (or nobody has).
    symbol = draw(st.sampled_from([*VENUES[venue] * 4, X, Y, "SOL-USDT"]))
    kind = draw(st.sampled_from(["snapshot"] * 3 + ["delta"] * 4 + ["status"] * 2 + ["trade"]))
    if kind == "status":
        state = draw(st.sampled_from([LIVE, SYNCING, SYNCING, DOWN, CONNECTING, STALE]))
        return VenueStatus(draw(st.sampled_from([symbol, None])), state, 0, draw(st.sampled_from([None, "gap"])))
    if kind == "trade":
        return Trade(symbol, D(100), D(1), Side.BUY, str(draw(st.integers(0, 99))), 0)
    bids, asks = draw(side_levels), draw(side_levels)
    if kind == "snapshot":
        return BookSnapshot(symbol, list(dict(bids).items()), list(dict(asks).items()), 0)
    return BookDelta(symbol, bids, asks, 0)


@dataclass(frozen=True)
class Op:
    kind: str  # "ingest", "tick", "down"
    venue: str
    events: tuple[Event, ...]
    dt: int


@st.composite
def ops(draw: st.DrawFn) -> Op:
    kind = draw(st.sampled_from(["ingest"] * 6 + ["tick"] * 3 + ["down"]))
    venue = draw(st.sampled_from(sorted(VENUES)))
    evs = tuple(draw(st.lists(events(venue), min_size=1, max_size=3))) if kind == "ingest" else ()
    return Op(kind, venue, evs, draw(st.integers(0, 70)))


def _snapshot_engine(engine: Engine) -> dict[tuple[str, str | None], object]:
    out: dict[tuple[str, str | None], object] = {}
    for (symbol, venue), vb in engine.books.items():
        out[(symbol, venue)] = (vb.book.bids(), vb.book.asks())
    for symbol, cb in engine.consolidated.items():
        out[(symbol, None)] = [(p, s, dict(a)) for side in (cb.top_bids(10**6), cb.top_asks(10**6)) for p, s, a in side]
    return out


def _consolidated(model: Model, symbol: str) -> list[tuple[Decimal, Decimal, dict[str, Decimal]]]:
    """The model's consolidated book: the live venue books summed, bids then asks, best first."""
    out = []
    for side, best_first in ((model.bids, True), (model.asks, False)):
        shares: dict[Decimal, dict[str, Decimal]] = {}
        for (sym, venue), levels in side.items():
            if sym == symbol and model.state((sym, venue)) is LIVE:
                for price, size in levels.items():
                    shares.setdefault(price, {})[venue] = size
        out += [(p, sum(shares[p].values(), ZERO), shares[p]) for p in sorted(shares, reverse=best_first)]
    return out


@settings(max_examples=200, deadline=None)
@given(script=st.lists(ops(), min_size=5, max_size=40), watch_at=st.tuples(st.integers(0, 45), st.integers(0, 45)))
@pytest.mark.slow
def test_engine_matches_reference_model(script: list[Op], watch_at: tuple[int, int]) -> None:
    """Beside the engine, a lazy one (``watched``) keeps no consolidated book until it watches the
    symbol (at a random step, or never), and from then on the same one."""
    engine = Engine(VENUES, STALE_NS)
    lazy = Engine(VENUES, STALE_NS, watched=set())
    model = Model.new()
    now = 0
    for step, op in enumerate(script):
        for symbol, at in zip((X, Y), watch_at, strict=True):
            if step == at:
                lazy.watch(symbol)
        now += op.dt
        before_states = {key: engine.state(*key) for key in engine.books}
        before_books = _snapshot_engine(engine)
        if op.kind == "ingest":
            changes = engine.ingest(op.venue, op.events, now)
            lazy_changes = lazy.ingest(op.venue, op.events, now)
            assert [t for _, t in changes.trades] == model.ingest(op.venue, op.events, now)
            assert all(v == op.venue for v, _ in changes.trades)
        elif op.kind == "tick":
            changes = engine.tick(now)
            lazy_changes = lazy.tick(now)
            model.tick(now)
        else:
            changes = engine.venue_down(op.venue, "crash", now)
            lazy_changes = lazy.venue_down(op.venue, "crash", now)
            model.down(op.venue)

        for symbol in (X, Y):
            book = engine.consolidated[symbol]
            assert book.top_bids(10**6) + book.top_asks(10**6) == _consolidated(model, symbol)
            if lazy.watched is not None and symbol in lazy.watched:
                assert _snapshot_engine(lazy)[(symbol, None)] == _snapshot_engine(engine)[(symbol, None)]
            else:
                assert len(lazy.consolidated[symbol]) == 0
                assert (symbol, None) not in lazy_changes.books
        assert lazy_changes.books - {(X, None), (Y, None)} == changes.books - {(X, None), (Y, None)}

        # States and books are the model's.
        for key in engine.books:
            assert engine.state(*key) is model.state(key), key
            assert engine.book(*key).bids() == sorted(model.bids[key].items(), reverse=True)
            assert engine.book(*key).asks() == sorted(model.asks[key].items())
        assert engine.last_message_ns == model.last
        assert engine.not_live() == sorted(
            ((v, s, model.state((s, v))) for (s, v) in model.synced if model.state((s, v)) is not LIVE),
            key=lambda t: (t[1], t[0]),
        )

        # Every book that changed is reported (the hub relies on it).
        after_books = _snapshot_engine(engine)
        for changed, value in after_books.items():
            if value != before_books[changed]:
                assert changed in changes.books, changed

        # Reported status changes are a chain of real transitions ending at the current state.
        chains: dict[tuple[str, str], list[BookState]] = {}
        for st_change in changes.statuses:
            chains.setdefault((st_change.symbol, st_change.venue), []).append(st_change.state)
        for key, state in before_states.items():
            chain = [state, *chains.get(key, [])]
            assert all(a is not b for a, b in pairwise(chain)), (key, chain)
            assert chain[-1] is engine.state(*key), (key, chain)
        for st_change in changes.statuses:
            assert st_change.reason == ("stale" if st_change.state is STALE else st_change.reason)
            if op.kind == "down":
                assert st_change.state is DOWN
                assert st_change.reason == "crash"
            if op.kind == "tick":
                assert st_change.state is STALE
