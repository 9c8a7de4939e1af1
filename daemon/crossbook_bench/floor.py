"""The Python floor of a frame's work, for the ``stages`` benchmark.

:func:`replay` does what crossbook does with a Binance depth diff for one subscriber of ``book``
and ``bbo`` (decode, sequence check, exact levels, venue book, consolidated book with attribution,
top-``depth`` diff, bbo, encoding with a ``seq``) inlined in one loop: no events, sync rules,
engine or hub. It uses crossbook's own parse cache, venue book and canonical texts, so only the
structure differs. How far crossbook's stages are above it is what the structure costs; the floor
itself is the most that Python with exact decimals gets out of this design.
"""

from __future__ import annotations

import time
from bisect import bisect_left, insort
from decimal import Decimal
from typing import Any

import orjson

from crossbook.core.book import L2Book
from crossbook.core.exact import levels, text

Level = list[Any]
"""[price, total size, version, venue] of the floor's consolidated book (one venue quotes each
level, as in :class:`~crossbook.core.consolidated.AggLevel` ``solo``)."""
Side = tuple[dict[Decimal, Level], list[Decimal]]
"""One side of the floor's consolidated book: its levels and their prices in ascending order."""


def replay(snapshot: str | bytes, frames: list[bytes], venue: str, depth: int) -> tuple[float, list[Any]]:
    """Seconds spent on ``frames`` after ``snapshot``, and the final consolidated top ``depth``
    levels a side as ``(price, size)`` lists (for checking that the work was the same)."""
    snap = orjson.loads(snapshot)
    last = snap["lastUpdateId"]
    book = L2Book()
    book.replace(levels(snap["bids"]), levels(snap["asks"]))
    sides: list[Side] = []
    for side_levels in (book.bids(), book.asks()):
        agg: dict[Decimal, Level] = {p: [p, s, 0, venue] for p, s in side_levels}
        sides.append((agg, sorted(agg)))
    views: list[dict[Any, Any]] = [{}, {}]
    version = seq = 0
    bbo: tuple[Any, ...] | None = None
    clock = time.perf_counter
    spent = 0.0
    for frame in frames:
        start = clock()
        data = orjson.loads(frame)["data"]
        if data["u"] <= last:
            spent += clock() - start
            continue
        if data["U"] > last + 1:
            raise ValueError(f"gap before update {data['U']}")
        last = data["u"]
        bids, asks = levels(data["b"]), levels(data["a"])
        book.apply(bids, asks)
        out: list[list[Any]] = []
        for (agg, prices), changes, view, is_bid in zip(sides, (bids, asks), views, (True, False), strict=True):
            for price, size in changes:
                level = agg.get(price)
                if level is None:
                    if size:
                        version += 1
                        agg[price] = [price, size, version, venue]
                        insort(prices, price)
                elif not size:
                    del agg[price]
                    del prices[bisect_left(prices, price)]
                elif level[1] != size:
                    version += 1
                    level[1] = size
                    level[2] = version
            top = [agg[p] for p in (prices[: -depth - 1 : -1] if is_bid else prices[:depth])]
            sent = [[text(lv[0]), text(lv[1]), {lv[3]: text(lv[1])}] for lv in top if view.get(lv[0]) != lv[2]]
            kept = {lv[0] for lv in top}
            sent += [[text(p), "0", {}] for p in view if p not in kept]
            view.clear()
            view.update((lv[0], lv[2]) for lv in top)
            out.append(sent)
        seq += 1
        message = orjson.dumps({"type": "delta", "channel": "book", "seq": seq, "bids": out[0], "asks": out[1]})
        best_bid, best_ask = _best(sides[0], -1), _best(sides[1], 0)
        if (best_bid, best_ask) != bbo:
            bbo = (best_bid, best_ask)
            message += orjson.dumps({"type": "bbo", "channel": "bbo", "seq": seq, "bid": best_bid, "ask": best_ask})
        spent += clock() - start
    (bid_levels, bid_prices), (ask_levels, ask_prices) = sides
    top_bids = [[p, bid_levels[p][1]] for p in bid_prices[: -depth - 1 : -1]]
    return spent, [top_bids, [[p, ask_levels[p][1]] for p in ask_prices[:depth]]]


def _best(side: Side, index: int) -> list[Any] | None:
    """The best level of a side as the ``bbo`` message has it."""
    levels_, prices = side
    if not prices:
        return None
    level = levels_[prices[index]]
    return [text(level[0]), text(level[1]), [level[3]]]
