"""ConsolidatedBook: the exact sum of the live venue books, with per-venue attribution."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.core import exact
from crossbook.core.consolidated import BBO, ConsolidatedBook, ConsolidatedLevel
from crossbook.core.engine import Engine
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Event, Level, VenueStatus

ZERO = Decimal(0)
D = Decimal
X = "BTC-USDT"
Y = "ETH-USDT"
VENUES: dict[str, tuple[str, ...]] = {"a": (X, Y), "b": (X,), "c": (X, Y)}
STALE_NS = 100

fast = settings(max_examples=100, deadline=None)


def lv(*pairs: tuple[str, str]) -> list[Level]:
    return [(D(p), D(s)) for p, s in pairs]


# -- the reference: a plain sum of venue books --------------------------------------------------


def expected_side(books: dict[str, list[Level]], descending: bool) -> list[ConsolidatedLevel]:
    """Sum venue levels per price, with attribution, best first."""
    by_price: dict[Decimal, dict[str, Decimal]] = {}
    for venue, levels in books.items():
        for price, size in levels:
            assert size > 0
            assert venue not in by_price.get(price, {})
            by_price.setdefault(price, {})[venue] = size
    out: list[ConsolidatedLevel] = []
    for price in sorted(by_price, reverse=descending):
        venues = by_price[price]
        with localcontext(Context(prec=500, traps=[Inexact])):
            total = sum(venues.values(), ZERO)
        out.append((price, total, venues))
    return out


def expected_bbo(bids: list[ConsolidatedLevel], asks: list[ConsolidatedLevel]) -> BBO:
    bid = (bids[0][0], bids[0][1], tuple(sorted(bids[0][2]))) if bids else None
    ask = (asks[0][0], asks[0][1], tuple(sorted(asks[0][2]))) if asks else None
    return BBO(bid, ask)


def assert_is_sum(book: ConsolidatedBook, bids: dict[str, list[Level]], asks: dict[str, list[Level]]) -> None:
    exp_bids, exp_asks = expected_side(bids, True), expected_side(asks, False)
    got_bids, got_asks = book.top_bids(10**6), book.top_asks(10**6)
    assert got_bids == exp_bids
    assert got_asks == exp_asks
    for price, total, venues in got_bids + got_asks:
        assert venues, f"empty level left at {price}"
        assert all(size > 0 for size in venues.values())
        assert Fraction(total) == sum((Fraction(s) for s in venues.values()), Fraction(0))
    assert len(book) == len(exp_bids) + len(exp_asks)
    assert book.venues() == {v for side in (bids, asks) for v, levels in side.items() if levels}
    bbo = book.bbo()
    assert bbo == expected_bbo(exp_bids, exp_asks)
    if bbo.bid is not None and bbo.ask is not None:
        assert bbo.crossed is (bbo.bid[0] > bbo.ask[0])
        assert bbo.locked is (bbo.bid[0] == bbo.ask[0])
    else:
        assert not bbo.crossed
        assert not bbo.locked


# -- ConsolidatedBook directly ------------------------------------------------------------------


def test_levels_sum_venues_with_attribution() -> None:
    book = ConsolidatedBook()
    book.update("a", lv(("100", "1"), ("99", "2")), lv(("101", "3")))
    book.update("b", lv(("100", "0.5"), ("98", "4")), lv(("101", "1"), ("102", "1")))
    assert book.top_bids(10) == [
        (D(100), D("1.5"), {"a": D(1), "b": D("0.5")}),
        (D(99), D(2), {"a": D(2)}),
        (D(98), D(4), {"b": D(4)}),
    ]
    assert book.top_asks(10) == [(D(101), D(4), {"a": D(3), "b": D(1)}), (D(102), D(1), {"b": D(1)})]
    assert book.top_bids(1) == [(D(100), D("1.5"), {"a": D(1), "b": D("0.5")})]
    assert book.top_asks(0) == []
    assert book.venues() == {"a", "b"}
    assert len(book) == 5

    book.update("a", lv(("100", "2.25")), [])  # absolute size: replaces a's share
    assert book.top_bids(1) == [(D(100), D("2.75"), {"a": D("2.25"), "b": D("0.5")})]
    book.update("b", lv(("100", "0")), lv(("102", "0")))
    assert book.top_bids(1) == [(D(100), D("2.25"), {"a": D("2.25")})]
    assert book.top_asks(10) == [(D(101), D(4), {"a": D(3), "b": D(1)})]
    book.update("a", lv(("100", "0")), [])  # the last venue leaves: the level goes
    assert book.top_bids(10)[0][0] == D(99)
    assert len(book) == 3


def test_zero_for_an_absent_venue_or_level_changes_nothing() -> None:
    book = ConsolidatedBook()
    book.update("a", lv(("100", "1")), [])
    book.update("b", lv(("100", "0"), ("50", "0")), lv(("100", "0")))
    assert book.top_bids(10) == [(D(100), D(1), {"a": D(1)})]
    assert book.top_asks(10) == []
    assert book.venues() == {"a"}


def test_drop_takes_out_every_level_of_one_venue() -> None:
    book = ConsolidatedBook()
    book.update("a", lv(("100", "1"), ("99", "1")), lv(("101", "1")))
    book.update("b", lv(("100", "2")), lv(("103", "2")))
    book.drop("a")
    assert book.top_bids(10) == [(D(100), D(2), {"b": D(2)})]
    assert book.top_asks(10) == [(D(103), D(2), {"b": D(2)})]
    assert book.venues() == {"b"}


def test_bbo_names_every_venue_at_the_best_price() -> None:
    book = ConsolidatedBook()
    assert book.bbo() == BBO(None, None)
    assert not book.bbo().crossed
    assert not book.bbo().locked
    book.update("c", lv(("100", "1")), lv(("102", "1")))
    book.update("a", lv(("100", "2"), ("101", "0")), lv(("102", "3"), ("103", "1")))
    book.update("b", lv(("99", "5")), lv(("102.0", "0.5")))
    bbo = book.bbo()
    assert bbo.bid == (D(100), D(3), ("a", "c"))
    assert bbo.ask == (D(102), D("4.5"), ("a", "b", "c"))
    assert not bbo.crossed
    assert not bbo.locked


@pytest.mark.parametrize(
    ("bid", "ask", "crossed", "locked"),
    [
        ("100", "101", False, False),
        ("101", "101", False, True),
        ("101.00", "101", False, True),
        ("101.5", "101", True, False),
        (None, "101", False, False),
        ("101", None, False, False),
    ],
)
def test_crossed_and_locked_across_venues(bid: str | None, ask: str | None, crossed: bool, locked: bool) -> None:
    book = ConsolidatedBook()
    if bid is not None:
        book.update("a", lv((bid, "1")), [])
    if ask is not None:
        book.update("b", [], lv((ask, "1")))
    bbo = book.bbo()
    assert bbo.crossed is crossed
    assert bbo.locked is locked
    assert (bbo.bid is None) is (bid is None)
    assert (bbo.ask is None) is (ask is None)


def test_sums_are_exact() -> None:
    book = ConsolidatedBook()
    book.update("a", lv(("100", "0.00000001")), [])
    book.update("b", lv(("100", "123456789.12345678")), [])
    assert book.top_bids(1)[0][1] == D("123456789.12345679")
    assert exact.text(book.top_bids(1)[0][1]) == "123456789.12345679"
    book.update("c", lv(("100", "0.000000000000000001")), [])
    assert exact.text(book.top_bids(1)[0][1]) == "123456789.123456790000000001"
    book.update("a", lv(("100", "0")), [])
    book.update("c", lv(("100", "0")), [])
    assert exact.text(book.top_bids(1)[0][1]) == "123456789.12345678"
    # Many tiny changes to one share never drift.
    for i in range(1, 200):
        book.update("a", lv(("100", f"0.{i:08d}")), [])
    assert book.top_bids(1)[0][1] == D("123456789.12345678") + D("0.00000199")


@pytest.mark.parametrize(
    "text", ["1e30", "0." + "0" * 30 + "1", "1" * 37, "NaN", "-1", "Infinity", "x", "0e-999999999", "0e+99"]
)
def test_exact_parse_rejects_what_no_market_sends(text: str) -> None:
    with pytest.raises(exact.BadNumber):
        exact.parse(text)


def test_exact_arithmetic_refuses_to_round() -> None:
    assert exact.add(D("0.00000001"), D("123456789.12345678")) == D("123456789.12345679")
    assert exact.sub(D("123456789.12345679"), D("0.00000001")) == D("123456789.12345678")
    with pytest.raises(ArithmeticError):
        exact.add(D("1E+60"), D("1E-60"))


@settings(max_examples=200, deadline=None)
@given(digits=st.integers(0, 10**30), exp=st.integers(-24, -6), zeros=st.integers(0, 5))
def test_exact_text_round_trips(digits: int, exp: int, zeros: int) -> None:
    value = Decimal(f"{digits}E{exp}")
    padded = exact.parse(format(value, "f") + ("." if "." not in format(value, "f") else "") + "0" * zeros)
    assert padded == value
    out = exact.text(padded)
    assert exact.parse(out) == value
    assert "E" not in out
    assert "e" not in out
    if "." in out:
        assert not out.endswith("0")
        assert not out.endswith(".")
    assert out == exact.text(value)
    assert (out == "0") is (value == 0)


@pytest.mark.parametrize("bad", ["NaN", "sNaN", "Infinity", "-inf", "-1", "-0.00000001", "1,5", "", " x", "0x10"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(exact.BadNumber):
        exact.parse(bad)


def test_clearing_the_caches_parses_and_formats_afresh() -> None:
    first = exact.parse("61824.25000000")
    assert exact.parse("61824.25000000") is first  # remembered: one Decimal for one text
    spelled = exact.text(first)
    exact.clear_caches()
    again = exact.parse("61824.25000000")
    assert again == first
    assert again is not first
    assert exact.text(again) == spelled == "61824.25"


high_precision = st.builds(lambda digits, exp: Decimal(f"{digits}E{exp}"), st.integers(1, 10**20), st.integers(-18, 4))


@fast
@given(
    sizes=st.lists(st.tuples(st.sampled_from("abcdefgh"), high_precision), min_size=1, max_size=30),
)
def test_random_high_precision_sums_are_exact(sizes: list[tuple[str, Decimal]]) -> None:
    book = ConsolidatedBook()
    shares: dict[str, Decimal] = {}
    for venue, size in sizes:
        book.update(venue, [(D(7), size)], [(D(8), size)])
        shares[venue] = size
        expected = sum((Fraction(s) for s in shares.values()), Fraction(0))
        assert Fraction(book.top_bids(1)[0][1]) == expected
        assert Fraction(book.top_asks(1)[0][1]) == expected
    for venue in list(shares):
        book.update(venue, [(D(7), ZERO)], [])
        del shares[venue]
        if shares:
            assert Fraction(book.top_bids(1)[0][1]) == sum((Fraction(s) for s in shares.values()), Fraction(0))
    assert book.top_bids(1) == []


def test_many_digit_bid_prices_stay_exact() -> None:
    """29+ significant digits: keying bids by negated price must not round them together."""
    p1 = D("12345678901234567890.123456789")
    p2 = D("12345678901234567890.123456788")
    book = ConsolidatedBook()
    book.update("a", [(p1, D(1))], [])
    book.update("b", [(p2, D(2))], [])
    assert book.top_bids(2) == [(p1, D(1), {"a": D(1)}), (p2, D(2), {"b": D(2)})]
    assert book.bbo().bid == (p1, D(1), ("a",))


# -- through the engine -------------------------------------------------------------------------


def _price(ticks: int) -> Decimal:
    return Decimal(ticks).scaleb(-1)


prices = st.integers(990, 1010).map(_price)
sizes = st.one_of(
    st.just(ZERO),
    st.integers(1, 10**12).map(lambda i: Decimal(f"{i}E-8")),
    st.sampled_from([D("0.00000001"), D("123456789.12345678"), D(1), D("0.5")]),
)
side_levels = st.lists(st.tuples(prices, sizes), max_size=6)


@dataclass(frozen=True)
class Ingest:
    venue: str
    events: tuple[Event, ...]
    dt: int


@dataclass(frozen=True)
class Tick:
    dt: int


@dataclass(frozen=True)
class Down:
    venue: str
    dt: int


Op = Ingest | Tick | Down


@st.composite
def events(draw: st.DrawFn, venue: str) -> Event:
    symbol = draw(st.sampled_from(VENUES[venue]))
    kind = draw(st.sampled_from(["snapshot", "delta", "delta", "delta", "status"]))
    if kind == "status":
        state = draw(st.sampled_from([BookState.LIVE, BookState.SYNCING, BookState.DOWN, BookState.CONNECTING]))
        return VenueStatus(draw(st.sampled_from([symbol, None])), state, 0, draw(st.sampled_from([None, "gap"])))
    bids, asks = draw(side_levels), draw(side_levels)
    if kind == "snapshot":
        return BookSnapshot(symbol, list(dict(bids).items()), list(dict(asks).items()), 0)
    return BookDelta(symbol, bids, asks, 0)


@st.composite
def ops(draw: st.DrawFn) -> Op:
    kind = draw(st.sampled_from(["ingest"] * 8 + ["tick", "tick", "down"]))
    dt = draw(st.integers(0, 2 * STALE_NS // 3))
    if kind == "tick":
        return Tick(dt)
    venue = draw(st.sampled_from(sorted(VENUES)))
    if kind == "down":
        return Down(venue, dt)
    return Ingest(venue, tuple(draw(st.lists(events(venue), min_size=0, max_size=3))), dt)


def run(engine: Engine, op: Op, now: int) -> None:
    if isinstance(op, Ingest):
        engine.ingest(op.venue, op.events, now)
    elif isinstance(op, Tick):
        engine.tick(now)
    else:
        engine.venue_down(op.venue, "crash", now)


def assert_sum_of_live_books(engine: Engine) -> None:
    for symbol in (X, Y):
        live = [v for v, syms in VENUES.items() if symbol in syms and engine.state(symbol, v) is BookState.LIVE]
        assert_is_sum(
            engine.consolidated[symbol],
            {v: engine.book(symbol, v).bids() for v in live},
            {v: engine.book(symbol, v).asks() for v in live},
        )


@settings(max_examples=150, deadline=None)
@given(script=st.lists(ops(), min_size=1, max_size=40))
def test_engine_consolidated_is_sum_of_live_venue_books(script: list[Op]) -> None:
    engine = Engine(VENUES, STALE_NS)
    now = 0
    for op in script:
        now += op.dt
        run(engine, op, now)
        assert_sum_of_live_books(engine)


def _live(engine: Engine, venue: str, now: int, bids: list[Level], asks: list[Level], symbol: str = X) -> None:
    engine.ingest(venue, [BookSnapshot(symbol, bids, asks, now)], now)


def _three_live(engine: Engine) -> None:
    _live(engine, "a", 0, lv(("100", "1"), ("99", "1")), lv(("101", "1")))
    _live(engine, "b", 0, lv(("100", "0.00000001")), lv(("101", "123456789.12345678"), ("102", "1")))
    _live(engine, "c", 0, lv(("99.5", "3")), lv(("101.0", "2")))


def _books(engine: Engine, venues: list[str]) -> tuple[dict[str, list[Level]], dict[str, list[Level]]]:
    return {v: engine.book(X, v).bids() for v in venues}, {v: engine.book(X, v).asks() for v in venues}


@pytest.mark.parametrize("state", [BookState.DOWN, BookState.SYNCING, BookState.CONNECTING])
@pytest.mark.parametrize("per_symbol", [True, False])
def test_venue_leaving_live_leaves_exactly_the_others(state: BookState, per_symbol: bool) -> None:
    engine = Engine(VENUES, STALE_NS)
    _three_live(engine)
    book = engine.consolidated[X]
    assert_is_sum(book, *_books(engine, ["a", "b", "c"]))
    assert book.bbo().ask == (D(101), D("123456792.12345678"), ("a", "b", "c"))

    engine.ingest("b", [VenueStatus(X if per_symbol else None, state, 1, "gap")], 1)
    assert engine.state(X, "b") is state
    assert "b" not in book.venues()
    assert_is_sum(book, *_books(engine, ["a", "c"]))
    assert book.bbo().ask == (D(101), D(3), ("a", "c"))
    assert book.bbo().bid == (D(100), D(1), ("a",))

    # Back: a fresh snapshot makes it live again with the new levels.
    _live(engine, "b", 2, lv(("100.5", "7")), lv(("101", "0.00000001")))
    assert engine.state(X, "b") is BookState.LIVE
    assert_is_sum(book, *_books(engine, ["a", "b", "c"]))
    assert book.bbo().bid == (D("100.5"), D(7), ("b",))
    assert book.bbo().ask == (D(101), D("3.00000001"), ("a", "b", "c"))


def test_stale_venue_leaves_and_comes_back_when_heard_from() -> None:
    engine = Engine(VENUES, STALE_NS)
    _three_live(engine)
    book = engine.consolidated[X]
    engine.ingest("a", [], 60)
    engine.ingest("c", [], 60)
    engine.tick(STALE_NS)  # exactly stale_after since b was heard: not yet
    assert engine.state(X, "b") is BookState.LIVE
    engine.tick(STALE_NS + 1)
    assert engine.state(X, "b") is BookState.STALE
    assert engine.state(X, "a") is BookState.LIVE
    assert_is_sum(book, *_books(engine, ["a", "c"]))
    # The venue book itself is kept while stale.
    assert engine.book(X, "b").asks() == lv(("101", "123456789.12345678"), ("102", "1"))

    engine.ingest("b", [], STALE_NS + 2)  # any message: heard from again
    assert engine.state(X, "b") is BookState.LIVE
    assert_is_sum(book, *_books(engine, ["a", "b", "c"]))

    engine.tick(3 * STALE_NS)  # everyone silent now
    assert book.top_bids(10) == book.top_asks(10) == []
    assert book.bbo() == BBO(None, None)
    engine.ingest("c", [BookDelta(X, lv(("99.5", "0"), ("98", "1")), [], 3 * STALE_NS)], 3 * STALE_NS)
    assert_is_sum(book, *_books(engine, ["c"]))
    assert engine.book(X, "c").bids() == lv(("98", "1"))


def test_deltas_of_a_live_venue_reach_the_consolidated_book() -> None:
    engine = Engine(VENUES, STALE_NS)
    _three_live(engine)
    book = engine.consolidated[X]
    engine.ingest("a", [BookDelta(X, lv(("100", "0"), ("100.2", "5")), lv(("101", "0.5"), ("100.2", "1")), 1)], 1)
    assert_is_sum(book, *_books(engine, ["a", "b", "c"]))
    bbo = book.bbo()
    assert bbo.bid == (D("100.2"), D(5), ("a",))
    assert bbo.ask == (D("100.2"), D(1), ("a",))
    assert bbo.locked
    assert not bbo.crossed
    engine.ingest("c", [BookDelta(X, lv(("100.3", "1")), [], 2)], 2)
    assert book.bbo().crossed
    assert not book.bbo().locked


def test_snapshot_of_a_live_venue_replaces_its_share() -> None:
    engine = Engine(VENUES, STALE_NS)
    _three_live(engine)
    _live(engine, "a", 1, lv(("98", "1")), [])
    book = engine.consolidated[X]
    assert_is_sum(book, *_books(engine, ["a", "b", "c"]))
    assert book.top_bids(10)[0] == (D(100), D("0.00000001"), {"b": D("0.00000001")})
    assert all("a" not in venues for _, _, venues in book.top_asks(10))


def test_venue_down_leaves_others_and_other_symbols_alone() -> None:
    engine = Engine(VENUES, STALE_NS)
    _three_live(engine)
    _live(engine, "a", 0, lv(("10", "1")), lv(("11", "1")), symbol=Y)
    _live(engine, "c", 0, lv(("10", "2")), [], symbol=Y)
    engine.venue_down("c", "crash", 5)
    assert_is_sum(engine.consolidated[X], *_books(engine, ["a", "b"]))
    assert engine.consolidated[Y].top_bids(5) == [(D(10), D(1), {"a": D(1)})]
    assert engine.consolidated[Y].top_asks(5) == [(D(11), D(1), {"a": D(1)})]


@pytest.mark.parametrize("bad", [[1], {"p": 1}, None, "١٢٣"])
def test_parse_rejects_unhashable_and_odd_values(bad: object) -> None:
    if bad == "١٢٣":  # other scripts' digits: never from a venue; the checked path decides, as before
        assert exact.parse(bad) == D(123)
        return
    with pytest.raises(exact.BadNumber):
        exact.parse(bad)


@settings(max_examples=300, deadline=None)
@given(text=st.from_regex(r"[0-9]{0,40}(\.[0-9]{0,30}){0,2}", fullmatch=True))
def test_parse_fast_path_agrees_with_the_checked_path(text: str) -> None:
    """The cached, screened path accepts and rejects exactly what the full check does."""
    try:
        want: Decimal | None = exact._checked(text)
    except exact.BadNumber:
        want = None
    for _ in range(2):  # the second call comes from the cache
        try:
            got: Decimal | None = exact.parse(text)
        except exact.BadNumber:
            got = None
        assert got == want


def test_parse_refuses_a_bool_even_after_the_equal_int() -> None:
    """``True == 1``: a remembered int must not answer for a bool (a malformed frame's ``true``)."""
    assert exact.parse(1) == D("1")
    for bad in (True, False):
        with pytest.raises(exact.BadNumber):
            exact.parse(bad)
        with pytest.raises(exact.BadNumber):
            list(exact.levels([[bad, "1"]]))


def test_parse_reads_decimals_and_floats_by_their_exact_value() -> None:
    """Not from a built-in venue, but a plugin may pass them (``parse`` takes any object)."""
    assert exact.parse(D("2.25")) == D("2.25")
    assert exact.parse(0.75) == D("0.75")
    with pytest.raises(exact.BadNumber):
        exact.parse(0.1)  # its binary value has 55 digits
