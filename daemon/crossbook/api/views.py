"""What a book channel last sent of one side of its book, and the difference to send next, encoded
(sans-I/O): a delta applied to the subscriber's book always gives exactly the server's top
``depth`` levels at that ``seq``.

:class:`SideView` and the ``encode_*`` functions are the pure twins of the native build's, which
read the native books directly; the native build sends the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from crossbook.core import exact, native
from crossbook.core.book import BookView, Level
from crossbook.core.consolidated import AggLevel, Attribution, ConsolidatedBook
from crossbook.core.exact import ZERO, text

View = dict[Decimal, int | Decimal]
"""price -> what tells that a level changed: a consolidated level's version (see
:class:`~crossbook.core.consolidated.AggLevel`), a venue level's size. Best first."""
Change = tuple[Decimal, Decimal, Attribution | None]
"""(price, size, attribution; None for a venue book's level)"""
EMPTY = b"[]"
"""A side with no change, encoded."""


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


def encode(changes: Iterable[Change]) -> bytes:
    """Levels as the API sends them: ``[price, size]``, or ``[price, size, {venue: size}]`` for
    a consolidated book, exact decimal text."""
    out: list[list[Any]] = []
    for price, size, venues in changes:
        if venues is None:
            out.append([text(price), text(size)])
        elif len(venues) == 1:  # most levels: no comprehension
            name, share = venues[0]
            out.append([text(price), text(size), {name: text(share)}])
        else:
            out.append([text(price), text(size), {v: text(s) for v, s in venues}])
    return orjson.dumps(out)


class PureSideView:
    """What a book channel last sent of one side of its book (its top ``depth`` levels)."""

    __slots__ = ("levels",)

    def __init__(self) -> None:
        self.levels: View = {}

    def diff_consolidated(self, book: ConsolidatedBook, depth: int, bids: bool) -> bytes:
        """Bring the view to the book's top ``depth`` levels of one side; returns what changed,
        encoded (:data:`EMPTY` when nothing did)."""
        self.levels, changes = consolidated_diff(self.levels, book.view_bids(depth) if bids else book.view_asks(depth))
        return encode(changes) if changes else EMPTY

    def diff_venue(self, book: BookView, depth: int, bids: bool) -> bytes:
        self.levels, changes = venue_diff(self.levels, book.top_bids(depth) if bids else book.top_asks(depth))
        return encode(changes) if changes else EMPTY

    def may_change(self, depth: int, reach: Decimal | None, bids: bool) -> bool:
        """Whether changes that reach no better than ``reach`` (the best price a side's deltas set;
        None: they set none) can change a view of ``depth`` levels: not if they all lie below it."""
        if reach is None:
            return False
        if len(self.levels) < depth:
            return True
        worst = next(reversed(self.levels))
        return reach >= worst if bids else reach <= worst


def pure_encode_consolidated(book: ConsolidatedBook, depth: int, bids: bool) -> bytes:
    """A consolidated side's top ``depth`` levels, encoded (a snapshot's side)."""
    top = book.view_bids(depth) if bids else book.view_asks(depth)
    return encode([(p, lv.total, lv.venues) for p, lv in top])


def pure_encode_venue(book: BookView, depth: int, bids: bool) -> bytes:
    """A venue book side's top ``depth`` levels, encoded (a snapshot's side)."""
    return encode([(p, s, None) for p, s in (book.top_bids(depth) if bids else book.top_asks(depth))])


def _bbo_side(side: tuple[Decimal, Decimal, tuple[str, ...]] | None) -> list[Any] | None:
    return None if side is None else [text(side[0]), text(side[1]), list(side[2])]


def pure_encode_bbo(book: ConsolidatedBook) -> bytes:
    """A consolidated book's best bid and offer as a ``bbo`` message's fields after ``ts``:
    ``"bid":…,"ask":…,"crossed":…,"locked":…}``. Equal bytes, equal bbo: a channel compares them."""
    bbo = book.bbo()
    fields = {"bid": _bbo_side(bbo.bid), "ask": _bbo_side(bbo.ask), "crossed": bbo.crossed, "locked": bbo.locked}
    return orjson.dumps(fields)[1:]


NATIVE = native.load("crossbook.api._native") if exact.NATIVE is not None else None
"""The native module that reads the native books, where it runs."""
if TYPE_CHECKING or NATIVE is None:
    SideView = PureSideView
    encode_consolidated = pure_encode_consolidated
    encode_venue = pure_encode_venue
    encode_bbo = pure_encode_bbo
else:  # this build's: the pure ones stay the reference
    SideView, encode_consolidated, encode_venue = NATIVE.SideView, NATIVE.encode_consolidated, NATIVE.encode_venue
    encode_bbo = NATIVE.encode_bbo
