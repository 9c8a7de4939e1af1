"""Sequence rules (sans-I/O): how a venue's sequence ids tell whether an update applies to a
book, is already covered by it, or shows that something was lost."""

from __future__ import annotations

import enum
from typing import Protocol

from crossbook.toolkit.venue import BookUpdate


class Verdict(enum.Enum):
    APPLY = "apply"
    DROP = "drop"
    """Already covered by the book (older than the snapshot or the last update)."""
    GAP = "gap"
    """Something is missing between the book and this update."""


class Unsequenced:
    """No sequence ids (Kraken, whose checksum is the detector; Coinbase, sequenced per connection)."""

    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        return Verdict.APPLY

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        return Verdict.APPLY


class AfterTimestamp:
    """Ordered by a timestamp only (Bitstamp ``microtimestamp``): drop what the snapshot covers."""

    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        if snapshot_last is not None and upd.last is not None and upd.last <= snapshot_last:
            return Verdict.DROP
        return Verdict.APPLY

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        return Verdict.APPLY


class FirstLastIds:
    """Binance spot: ``U``/``u``; the first kept has ``U <= id+1 <= u``, then ``U == u_prev + 1``.

    (Here and below, an id that is missing cannot prove continuity, so it counts as a gap.)
    """

    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        if snapshot_last is None or upd.first is None or upd.last is None:
            return Verdict.GAP
        if upd.last <= snapshot_last:
            return Verdict.DROP
        return Verdict.APPLY if upd.first <= snapshot_last + 1 <= upd.last else Verdict.GAP

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        if last is None or upd.first is None or upd.last is None:
            return Verdict.GAP
        if upd.last <= last:
            return Verdict.DROP
        return Verdict.APPLY if upd.first == last + 1 else Verdict.GAP


class PrevLinked:
    """Chained by the previous id: Binance futures (``pu``) and OKX (``prevSeqId``).

    Ids are not contiguous, so continuity is identity: the first update kept after a snapshot
    spans it (``prev <= id < last``), every later one has ``prev`` equal to the last ``last``.
    """

    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        if snapshot_last is None or upd.last is None or upd.prev is None:
            return Verdict.GAP
        if upd.last <= snapshot_last:
            return Verdict.DROP
        return Verdict.APPLY if upd.prev <= snapshot_last else Verdict.GAP

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        if upd.prev is not None and upd.prev == last:
            return Verdict.APPLY
        if last is not None and upd.last is not None and upd.last <= last:
            return Verdict.DROP
        return Verdict.GAP


class Consecutive:
    """Each update's id is the previous one plus 1 (Bybit ``u``)."""

    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        return self.next(snapshot_last, upd)

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        if last is None or upd.last is None:
            return Verdict.GAP
        if upd.last <= last:
            return Verdict.DROP
        return Verdict.APPLY if upd.last == last + 1 else Verdict.GAP


class SequenceRule(Protocol):
    """How a venue's updates follow one another; any class with these methods is one."""

    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        """The first update after a REST snapshot whose id is ``snapshot_last``."""

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        """An update after one already applied (or after an in-stream snapshot)."""
