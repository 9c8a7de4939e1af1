"""What a book channel last sent of one side of its book, and the difference to send next
(sans-I/O): a delta applied to the subscriber's book always gives exactly the server's top
``depth`` levels at that ``seq``."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from crossbook.core.book import Level
from crossbook.core.consolidated import AggLevel, Attribution
from crossbook.core.exact import ZERO

View = dict[Decimal, int | Decimal]
"""price -> what tells that a level changed: a consolidated level's version (see
:class:`~crossbook.core.consolidated.AggLevel`), a venue level's size. Best first."""
Change = tuple[Decimal, Decimal, Attribution | None]
"""(price, size, attribution; None for a venue book's level)"""


def consolidated_diff(old: View, top: Iterable[tuple[Decimal, AggLevel]]) -> tuple[View, list[Change]]:
    """The new view of a consolidated side's top levels and what changed from ``old``, in one
    pass over the top levels with no copy of them."""
    new: View = {}
    out: list[Change] = []
    for p, lv in top:
        version = new[p] = lv.version
        if old.get(p) != version:
            out.append((p, lv.total, lv.venues))
    out.extend([(p, ZERO, ()) for p in old if p not in new])
    return new, out


def venue_diff(old: View, top: Iterable[Level]) -> tuple[View, list[Change]]:
    """The new view of a venue book side's top levels and what changed from ``old``."""
    new: View = {}
    out: list[Change] = []
    for p, size in top:
        new[p] = size
        if old.get(p) != size:
            out.append((p, size, None))
    out.extend([(p, ZERO, None) for p in old if p not in new])
    return new, out


def may_change(old: View, depth: int, reach: Decimal | None, bids: bool) -> bool:
    """Whether changes that reach no better than ``reach`` (the best price a side's deltas set;
    None: they set none) can change a view of ``depth`` levels: not if they all lie below it."""
    if reach is None:
        return False
    if len(old) < depth:
        return True
    worst = next(reversed(old))
    return reach >= worst if bids else reach <= worst
