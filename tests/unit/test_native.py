"""Two builds, one behaviour: the native extension against the pure-Python twin, on the same random
operations, compared exactly (values and the decimals they were given with)."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.core import exact, native
from crossbook.core.book import PureL2Book

NATIVE = exact.NATIVE


def require_native() -> Any:
    if NATIVE is None:
        why = native.why_pure.get("crossbook.core._native", "?")
        if os.environ.get("CI") == "true" and not native.PURE:
            pytest.fail(f"the native build is tested under CI: {why}")
        pytest.skip(f"the native build does not run: {why}")
    return NATIVE


def exactly(pairs: Any) -> list[tuple[str, str]]:
    """Levels compared with the decimals they carry (Decimal equality ignores them)."""
    return [(repr(p), repr(s)) for p, s in pairs]


MANTISSAS = st.one_of(
    st.integers(0, 10**6),
    st.integers(0, 10**18),
    st.sampled_from([0, 1, 9, 10, 99, 10**17, 9 * 10**17, 2**63 - 1, 2**63, 10**19, 10**24]),
)
PLACES = st.one_of(st.integers(0, 8), st.integers(0, 24))


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Price or size texts as venues send them, and the odd ones: trailing and leading zeros, no
    integer part, an exponent, too many digits or decimals for 64 bits."""
    m, d = draw(MANTISSAS), draw(PLACES)
    text = str(m).rjust(d + 1, "0")
    text = text[: len(text) - d] + ("." + text[len(text) - d :] if d else "")
    style = draw(st.integers(0, 9))
    if style == 0 and "." in text:
        text = text.lstrip("0") or "0"  # ".5"
    elif style == 1:
        text = "0" + text
    elif style == 2:
        text = f"{m}E-{d}"
    elif style == 3 and "." not in text:
        text += "."
    return text


BAD = ["", ".", "-1", "1e", "nan", "Infinity", "1.2.3", "+1", " 1", "1_000", "٣", "1" * 40, "0E-999999"]


SHAPES = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.dictionaries(st.text(max_size=2), st.none()))


@given(
    st.lists(st.lists(st.one_of(texts(), st.sampled_from(BAD)), min_size=2, max_size=3), max_size=8)
    | st.lists(st.lists(texts(), max_size=3) | SHAPES, max_size=4)
    | SHAPES
)
@settings(max_examples=300, deadline=None)
def test_levels_read_texts_as_the_pure_twin(raw: Any) -> None:
    """Any shape a venue may send, short levels and non-lists too: the same levels or error."""
    module = require_native()
    try:
        want: Any = exactly(exact.pure_levels(raw))
    except Exception as exc:
        want = type(exc)
    try:
        got: Any = exactly(module.levels(raw))
    except Exception as exc:
        got = type(exc)
    assert got == want


@st.composite
def batches(draw: st.DrawFn, prices: list[str]) -> list[tuple[Decimal, Decimal]]:
    """A side of one message: prices from a small set (so they repeat), sizes of any shape."""
    out = []
    for _ in range(draw(st.integers(0, 6))):
        price = draw(st.sampled_from(prices))
        size = draw(st.one_of(st.just("0"), st.just("0.000"), texts()))
        out.append((exact.parse(price), exact.parse(size)))
    return out


PRICES = ["100", "100.0", "100.10", "99.5", "99.50000000", "101", "0.00000001", "123456789.123456789", "1" + "0" * 18]


def read(book: Any) -> Any:
    return (
        exactly(book.bids()),
        exactly(book.asks()),
        exactly(book.top_bids(2)),
        exactly(book.top_asks(3)),
        book.depths(),
        book.crossed(),
        len(book),
        [repr(book.bid_size(exact.parse(p))) for p in PRICES],
        [repr(book.ask_size(exact.parse(p))) for p in PRICES],
        repr(book.best_bid()),
        repr(book.best_ask()),
        [book.digits(n, bids) for n in (0, 1, 3, 50) for bids in (True, False)],
    )


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_the_venue_book_behaves_as_the_pure_twin(data: st.DataObject) -> None:
    module = require_native()
    pure, twin = PureL2Book(), module.Book()
    for _ in range(data.draw(st.integers(1, 12))):
        op = data.draw(st.sampled_from(["apply", "apply", "apply", "replace", "truncate", "clear", "levels"]))
        if op in ("apply", "replace"):
            bids, asks = data.draw(batches(PRICES)), data.draw(batches(PRICES))
            getattr(pure, op)(bids, asks)
            getattr(twin, op)(bids, asks)
        elif op == "levels":  # the native path's own input: levels read from text
            raw = data.draw(st.lists(st.tuples(st.sampled_from(PRICES), texts()), max_size=5))
            pure.apply(exact.pure_levels(raw), [])
            twin.apply(module.levels(raw), [])
        elif op == "truncate":
            depth = data.draw(st.integers(0, 4))
            assert [exactly(c) for c in twin.truncate(depth)] == [exactly(c) for c in pure.truncate(depth)]
        else:
            pure.clear()
            twin.clear()
        assert read(twin) == read(pure)


def test_a_value_that_does_not_fit_sends_the_book_to_the_exact_path() -> None:
    module = require_native()
    book = module.Book()
    book.apply(module.levels([["100.5", "1"]]), [])
    assert book.native
    huge = "123456789012345678901234"
    book.apply(module.levels([["101", huge]]), [])
    assert not book.native
    assert book.bids() == [(Decimal("101"), Decimal(huge)), (Decimal("100.5"), Decimal(1))]
    book.clear()
    assert book.native


@pytest.mark.parametrize(
    ("levels", "high", "low"), [([], None, None), ([("2", "1"), ("3.0", "1"), ("1", "0")], "3.0", "1")]
)
def test_levels_give_their_extremes_and_bounds(
    levels: list[tuple[str, str]], high: str | None, low: str | None
) -> None:
    module = require_native()
    for made in (exact.pure_levels(levels), module.levels(levels)):
        assert repr(made.highest()) == repr(None if high is None else Decimal(high))
        assert repr(made.lowest()) == repr(None if low is None else Decimal(low))
        assert exactly(made.at_least(Decimal(2))) == exactly([lv for lv in exact.pure_levels(levels) if lv[0] >= 2])
        assert exactly(made.at_most(Decimal(2))) == exactly([lv for lv in exact.pure_levels(levels) if lv[0] <= 2])
        assert exactly(made + made) == exactly([*made, *made])


def canonical(levels: Any) -> list[Any]:
    """Consolidated levels in the words the API sends them (totals are sums: their decimals vary)."""
    return [(exact.text(p), exact.text(t), {v: exact.text(s) for v, s in dict(a).items()}) for p, t, a in levels]


def changed(diff: list[Any]) -> list[Any]:
    return [(exact.text(p), exact.text(t), [(v, exact.text(s)) for v, s in a] if a else a) for p, t, a in diff]


VENUE_NAMES = ["b", "a", "kraken", "c-2"]


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_the_consolidated_book_behaves_as_the_pure_twin(data: st.DataObject) -> None:
    """Same levels, totals, attribution, bbo, and the same levels changed between two looks (the
    versions behind a channel's deltas)."""
    from crossbook.api.views import consolidated_diff
    from crossbook.core.consolidated import PureConsolidatedBook

    module = require_native()
    pure, twin = PureConsolidatedBook(), module.Consolidated()
    views: dict[str, Any] = {"pure": ({}, {}), "twin": ({}, {})}
    for _ in range(data.draw(st.integers(1, 15))):
        venue = data.draw(st.sampled_from(VENUE_NAMES))
        if data.draw(st.integers(0, 9)) == 0:
            pure.drop(venue)
            twin.drop(venue)
        else:
            bids, asks = data.draw(batches(PRICES)), data.draw(batches(PRICES))
            pure.update(venue, bids, asks)
            twin.update(venue, module.as_levels(bids) if data.draw(st.booleans()) else bids, asks)
        assert canonical(twin.top_bids(6)) == canonical(pure.top_bids(6))
        assert canonical(twin.top_asks(6)) == canonical(pure.top_asks(6))
        assert twin.bbo() == pure.bbo()
        assert (twin.venues(), len(twin)) == (pure.venues(), len(pure))
        diffs = []
        for name, book in (("pure", pure), ("twin", twin)):
            old_bids, old_asks = views[name]
            new_bids, bid_changes = consolidated_diff(old_bids, book.view_bids(4))
            new_asks, ask_changes = consolidated_diff(old_asks, book.view_asks(4))
            views[name] = (new_bids, new_asks)
            diffs.append((changed(bid_changes), changed(ask_changes)))
        assert diffs[0] == diffs[1]


def test_a_total_that_does_not_fit_sends_the_consolidated_book_to_the_exact_path() -> None:
    module = require_native()
    book = module.Consolidated()
    big = str(2**62)
    book.update("a", module.levels([["100", big], ["99", "1"]]), [])
    assert book.native
    book.update("b", module.levels([["99", "2"], ["100", big]]), [])  # the second level overflows
    assert not book.native
    assert canonical(book.top_bids(2)) == [
        ("100", str(2**63), {"a": big, "b": big}),
        ("99", "3", {"a": "1", "b": "2"}),
    ]
