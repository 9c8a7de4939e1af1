"""Two builds, one behaviour, as subscribers see it: the native views and encoder against the pure
twin's, and a whole engine and hub on each build sending the same bytes for the same events."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.api import channels, views, wire
from crossbook.api.hub import Hub
from crossbook.core import book, consolidated, engine, exact
from crossbook.core.engine import Batch, Engine
from crossbook.toolkit import sync
from unit.test_hub import VENUES, random_step
from unit.test_native import PRICES, batches, require_native


def require_native_api() -> Any:
    require_native()
    if views.NATIVE is None:
        pytest.skip("the native API module does not run")
    return views.NATIVE


@contextlib.contextmanager
def pure_build() -> Iterator[None]:
    """The pure twin's classes in every module that makes books, levels or views."""
    swaps = [
        (engine, "L2Book", book.PureL2Book),
        (engine, "ConsolidatedBook", consolidated.PureConsolidatedBook),
        (sync, "L2Book", book.PureL2Book),
        (sync, "as_levels", exact.pure_as_levels),
        (channels, "SideView", views.PureSideView),
        (views, "encode_consolidated", views.pure_encode_consolidated),
        (views, "encode_venue", views.pure_encode_venue),
        (views, "encode_bbo", views.pure_encode_bbo),
    ]
    with pytest.MonkeyPatch.context() as patch:
        for module, name, pure in swaps:
            patch.setattr(module, name, pure)
        yield


def reaches(data: st.DataObject) -> Decimal | None:
    return data.draw(st.one_of(st.none(), st.sampled_from([exact.parse(p) for p in PRICES])))


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_views_send_what_the_pure_twin_sends(data: st.DataObject) -> None:
    module = require_native_api()
    core = require_native()
    pure_c, twin_c = consolidated.PureConsolidatedBook(), core.Consolidated()
    pure_b, twin_b = book.PureL2Book(), core.Book()
    depth = data.draw(st.integers(1, 5))
    pairs = [(views.PureSideView(), module.SideView()) for _ in range(4)]
    for _ in range(data.draw(st.integers(1, 12))):
        venue = data.draw(st.sampled_from(["a", "b", "c"]))
        bids, asks = data.draw(batches(PRICES)), data.draw(batches(PRICES))
        if data.draw(st.integers(0, 8)) == 0:
            pure_c.drop(venue)
            twin_c.drop(venue)
        else:
            pure_c.update(venue, bids, asks)
            twin_c.update(venue, bids, asks)
        op = data.draw(st.sampled_from(["apply", "apply", "replace", "clear"]))
        if op == "clear":
            pure_b.clear()
            twin_b.clear()
        else:
            getattr(pure_b, op)(bids, asks)
            getattr(twin_b, op)(bids, asks)
        for i, (pure_view, twin_view) in enumerate(pairs):
            side = i % 2 == 0
            reach = reaches(data)
            if i < 2:
                got = twin_view.diff_consolidated(twin_c, depth, side)
                assert got == pure_view.diff_consolidated(pure_c, depth, side)
            else:
                got = twin_view.diff_venue(twin_b, depth, side)
                assert got == pure_view.diff_venue(pure_b, depth, side)
            if twin_view.may_change(depth, reach, side) != pure_view.may_change(depth, reach, side):
                assert twin_view.may_change(depth, reach, side), "the native view may look more, never less"
        for side in (True, False):
            assert module.encode_consolidated(twin_c, depth, side) == views.pure_encode_consolidated(
                pure_c, depth, side
            )
            assert module.encode_venue(twin_b, depth, side) == views.pure_encode_venue(pure_b, depth, side)
        sides = module.encode_bbo(twin_c)
        assert sides == views.pure_encode_bbo(pure_c)
        for conflated in (False, True):  # the body is what channel_body makes of the fields
            fields = {"ts": 7, **orjson.loads(b"{" + sides)} | ({"conflated": True} if conflated else {})
            assert wire.bbo_body(7, sides, conflated) == wire.channel_body(fields)


def run(seed: int, steps: int) -> list[list[bytes]]:
    """Random events read together at random through an engine and a hub; every frame each of a
    few subscribers got, in order."""
    rng = random.Random(seed)
    eng = Engine(VENUES, 1_000)
    hub = Hub(eng, 10, {})
    batch = Batch(eng, hub.publish)
    hub.publish_held = batch.flush
    subscribers = [hub.open() for _ in range(3)]
    requests = [
        b'{"op":"subscribe","id":1,"channels":["status","book.BTC-USDT","bbo.BTC-USDT"],"depth":3}',
        b'{"op":"subscribe","id":1,"channels":["book.BTC-USDT.a","book.BTC-USDT.b","book.ETH-USDT"]}',
        b'{"op":"subscribe","id":1,"channels":["book.BTC-USDT","trades.BTC-USDT","book.ETH-USDT.a"],"depth":10}',
    ]
    for subscriber, request in zip(subscribers, requests, strict=True):
        hub.receive(subscriber, request, 0)
    got: list[list[bytes]] = [[] for _ in subscribers]
    now = 0
    for _ in range(steps):
        now += rng.randint(0, 400)
        batch.add(random_step(rng, eng, now), now)
        if rng.random() < 0.6:
            batch.flush()
        for out, subscriber in zip(got, subscribers, strict=True):
            out += subscriber.drain()
    batch.flush()
    for out, subscriber in zip(got, subscribers, strict=True):
        out += subscriber.drain()
    return got


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_hub_sends_the_same_bytes_on_both_builds(seed: int) -> None:
    require_native_api()
    native = run(seed, 800)
    with pure_build():
        pure = run(seed, 800)
    for twin, reference in zip(native, pure, strict=True):
        assert len(twin) == len(reference)
        assert twin == reference
    assert sum(map(len, native)) > 500
