"""L2Book: one venue's price levels, exact and sorted best first."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.core.book import L2Book, PureL2Book
from crossbook.core.model import Level

ZERO = Decimal(0)


def _price(ticks: int, pad: int) -> Decimal:
    """A price on a 0.01 grid, sometimes written with extra trailing zeros (equal, other exponent)."""
    base = format(Decimal(ticks).scaleb(-2), "f")
    return Decimal(base + "0" * pad)


prices = st.builds(_price, st.integers(1, 80), st.integers(0, 2))
positive_sizes = st.integers(1, 10**14).map(lambda i: Decimal(i).scaleb(-8))
sizes = st.one_of(st.just(ZERO), st.just(Decimal("0.000")), positive_sizes, positive_sizes)
levels = st.lists(st.tuples(prices, sizes), max_size=12)
"""Levels of a delta: prices may repeat (applied in order) and may be absent when removed."""
book_sides = st.lists(st.tuples(prices, sizes), max_size=12, unique_by=lambda level: level[0])
"""Levels of a snapshot: one entry per price (zero sizes are skipped)."""
deltas = st.lists(st.tuples(levels, levels), max_size=25)

fast = settings(max_examples=150, deadline=None)


def _apply_model(model: dict[Decimal, Decimal], changes: list[Level]) -> None:
    for price, size in changes:
        if size:
            model[price] = size
        else:
            model.pop(price, None)


def _sorted_bids(model: dict[Decimal, Decimal]) -> list[Level]:
    return sorted(model.items(), key=lambda kv: kv[0], reverse=True)


def _sorted_asks(model: dict[Decimal, Decimal]) -> list[Level]:
    return sorted(model.items(), key=lambda kv: kv[0])


def _book(bids: list[Level], asks: list[Level]) -> L2Book:
    book = L2Book()
    book.replace(bids, asks)
    return book


@fast
@given(snapshot=st.tuples(book_sides, book_sides), updates=deltas, probes=st.lists(prices, max_size=10))
@pytest.mark.slow
def test_incremental_deltas_equal_rebuild(
    snapshot: tuple[list[Level], list[Level]], updates: list[tuple[list[Level], list[Level]]], probes: list[Decimal]
) -> None:
    book = L2Book()
    book.replace(*snapshot)
    bid_model: dict[Decimal, Decimal] = {}
    ask_model: dict[Decimal, Decimal] = {}
    _apply_model(bid_model, snapshot[0])
    _apply_model(ask_model, snapshot[1])
    for bids, asks in updates:
        book.apply(bids, asks)
        _apply_model(bid_model, bids)
        _apply_model(ask_model, asks)
        assert book.bids() == _sorted_bids(bid_model)
        assert book.asks() == _sorted_asks(ask_model)

    rebuilt = L2Book()
    rebuilt.replace(list(bid_model.items()), list(ask_model.items()))
    assert book.bids() == rebuilt.bids()
    assert book.asks() == rebuilt.asks()
    assert len(book) == len(rebuilt) == len(bid_model) + len(ask_model)
    assert all(size > 0 for _, size in book.bids() + book.asks())
    for price in probes + list(bid_model) + list(ask_model):
        assert book.bid_size(price) == bid_model.get(price)
        assert book.ask_size(price) == ask_model.get(price)


@fast
@given(bids=book_sides, asks=book_sides, n=st.integers(0, 15))
def test_top_n_is_best_first(bids: list[Level], asks: list[Level], n: int) -> None:
    book = _book(bids, asks)
    bid_model: dict[Decimal, Decimal] = {}
    ask_model: dict[Decimal, Decimal] = {}
    _apply_model(bid_model, bids)
    _apply_model(ask_model, asks)

    top_bids, top_asks = book.top_bids(n), book.top_asks(n)
    assert top_bids == _sorted_bids(bid_model)[:n]
    assert top_asks == _sorted_asks(ask_model)[:n]
    assert len(top_bids) == min(n, len(bid_model))
    assert all(a[0] > b[0] for a, b in pairwise(top_bids))
    assert all(a[0] < b[0] for a, b in pairwise(top_asks))
    assert book.top_bids(n) == book.bids()[:n]
    assert book.top_asks(n) == book.asks()[:n]


@fast
@given(bids=book_sides, asks=book_sides)
def test_best_and_crossed(bids: list[Level], asks: list[Level]) -> None:
    book = _book(bids, asks)
    bid_prices = [p for p, s in dict(bids).items() if s]
    ask_prices = [p for p, s in dict(asks).items() if s]
    best_bid, best_ask = book.best_bid(), book.best_ask()
    if bid_prices:
        assert best_bid is not None
        assert best_bid[0] == max(bid_prices)
        assert best_bid == book.top_bids(1)[0]
    else:
        assert best_bid is None
    if ask_prices:
        assert best_ask is not None
        assert best_ask[0] == min(ask_prices)
        assert best_ask == book.top_asks(1)[0]
    else:
        assert best_ask is None
    expected = bool(bid_prices and ask_prices and max(bid_prices) >= min(ask_prices))
    assert book.crossed() is expected


@pytest.mark.parametrize(
    ("bids", "asks", "crossed"),
    [
        ([], [], False),
        ([("100", "1")], [], False),
        ([], [("100", "1")], False),
        ([("99.99", "1")], [("100", "1")], False),
        ([("100", "1")], [("100", "2")], True),  # locked counts as crossed for one venue
        ([("100.0", "1")], [("100", "2")], True),
        ([("100.01", "1"), ("90", "5")], [("100", "1"), ("101", "1")], True),
        ([("100", "1"), ("101", "0")], [("100.5", "1")], False),  # the zero level is not there
    ],
)
def test_crossed_examples(bids: list[tuple[str, str]], asks: list[tuple[str, str]], crossed: bool) -> None:
    book = _book([(Decimal(p), Decimal(s)) for p, s in bids], [(Decimal(p), Decimal(s)) for p, s in asks])
    assert book.crossed() is crossed


def test_crossed_by_delta_and_uncrossed_again() -> None:
    book = _book([(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))])
    assert not book.crossed()
    book.apply([(Decimal(101), Decimal(2))], [])
    assert book.crossed()
    book.apply([(Decimal(101), ZERO)], [])
    assert not book.crossed()
    book.apply([], [(Decimal(100), Decimal(3))])
    assert book.crossed()


def test_empty_book() -> None:
    book = L2Book()
    assert len(book) == 0
    assert not book
    assert book.best_bid() is None
    assert book.best_ask() is None
    assert book.bids() == book.asks() == []
    assert book.top_bids(5) == book.top_asks(5) == []
    assert book.bid_size(Decimal(1)) is None
    assert not book.crossed()


def test_removing_absent_levels_is_harmless() -> None:
    book = L2Book()
    book.apply([(Decimal(1), ZERO)], [(Decimal(2), ZERO)])
    assert len(book) == 0
    book.apply([(Decimal(1), Decimal(5))], [])
    book.apply([(Decimal(2), ZERO)], [(Decimal(1), ZERO)])  # the bid at 1 is not the ask at 1
    assert book.bids() == [(Decimal(1), Decimal(5))]
    assert book.asks() == []


def test_replace_drops_previous_levels_and_zero_sizes() -> None:
    book = _book([(Decimal(10), Decimal(1)), (Decimal(9), Decimal(2))], [(Decimal(11), Decimal(1))])
    book.replace([(Decimal(8), Decimal(3)), (Decimal(7), ZERO)], [(Decimal(12), ZERO), (Decimal(13), Decimal(4))])
    assert book.bids() == [(Decimal(8), Decimal(3))]
    assert book.asks() == [(Decimal(13), Decimal(4))]
    assert len(book) == 2
    book.clear()
    assert len(book) == 0
    assert book.bids() == book.asks() == []


def test_levels_in_a_delta_apply_in_order() -> None:
    book = L2Book()
    p = Decimal(5)
    book.apply([(p, Decimal(1)), (p, ZERO)], [(p + 1, ZERO), (p + 1, Decimal(2))])
    assert book.bids() == []
    assert book.asks() == [(Decimal(6), Decimal(2))]
    book.apply([(p, Decimal(1)), (p, Decimal(3))], [])
    assert book.bids() == [(p, Decimal(3))]


def test_equal_prices_in_other_notation_are_one_level() -> None:
    book = L2Book()
    book.apply([(Decimal("100.10"), Decimal(1))], [(Decimal("1E+2"), Decimal(2))])
    book.apply([(Decimal("100.1"), Decimal(4))], [(Decimal("100.000"), Decimal(3))])
    assert len(book) == 2
    assert book.bids() == [(Decimal("100.1"), Decimal(4))]
    assert book.asks() == [(Decimal(100), Decimal(3))]
    book.apply([(Decimal("100.1000"), Decimal("0.0"))], [(Decimal(100), ZERO)])
    assert len(book) == 0


def test_sizes_kept_exactly() -> None:
    tiny, huge = Decimal("0.00000001"), Decimal("123456789.12345678")
    book = _book([(Decimal(1), tiny), (Decimal(2), huge)], [(Decimal(3), Decimal("1.10"))])
    assert book.bid_size(Decimal(1)) == tiny
    assert book.bid_size(Decimal(2)) == huge
    assert book.top_bids(2)[1][1].as_tuple() == tiny.as_tuple()
    assert book.top_bids(2)[0][1].as_tuple() == huge.as_tuple()
    size = book.ask_size(Decimal(3))
    assert size is not None
    assert size.as_tuple() == Decimal("1.10").as_tuple()  # stored as given; formatting is the API's job


long_prices = st.builds(
    lambda digits, exp: Decimal(f"{digits}E{exp}"), st.integers(10**28, 10**40), st.integers(-30, 0)
)


@fast
@given(prices=st.lists(long_prices, min_size=1, max_size=6, unique=True))
def test_many_digit_prices_are_exact_on_both_sides(prices: list[Decimal]) -> None:
    """Bids are keyed by negated price; negating must not round (29+ significant digits)."""
    one = Decimal(1)
    book = _book([(p, one) for p in prices], [(p, one) for p in prices])
    assert [p for p, _ in book.bids()] == sorted(prices, reverse=True)
    assert [p for p, _ in book.asks()] == sorted(prices)
    best = book.best_bid()
    assert best is not None
    assert best[0] == max(prices)
    for p in prices:
        assert book.bid_size(p) == one
    book.apply([(p, ZERO) for p in prices], [])
    assert book.bids() == []


def test_remembered_digits_are_bounded() -> None:
    """The pure twin's memo of digit texts keeps its numbers alive: unbounded, a long run would
    hold every one it saw."""
    from crossbook.core import book as module

    b = PureL2Book()
    for i in range(module.DIGITS_SIZE + 100):
        b.replace([(Decimal(f"{i}.50"), Decimal("0.010"))], [])
        assert b.digits(1, True) == f"{i}50".lstrip("0") + "10"
        assert len(module._DIGITS) <= module.DIGITS_SIZE
