"""A venue's leadership lease (sans-I/O), held in a JetStream key-value bucket.

The bucket (one replica) keeps a key's value :data:`TTL` seconds after its last write. A node
wins a venue with ``create`` (the key is absent: expired, deleted or never written) and keeps it
with ``update(last=revision)``, a compare-and-swap, every :data:`RENEW` seconds. The revision it
won at is its epoch: a bucket's revisions only grow, so a later leader's epoch is greater, and
followers fence off the older one.

A node counts itself leader only while its last successful write was *sent* less than
``TTL * SAFE`` ago (the key expires ``TTL`` after the server stored it, later still): a leader
frozen, busy or cut off from NATS stops publishing before anyone else can win. A leader that lapsed
so, and then renews with its revision, starts a new epoch (its followers may have missed what it
held back). A refused compare-and-swap means another node leads: the node stands down.

Fed monotonic clock readings and the KV calls' results; :meth:`Lease.action` says what to call.
"""

from __future__ import annotations

import math
from enum import IntEnum

TTL = 1.0
"""Seconds a lease outlives its holder's last renewal (the bucket's ``max_age``)."""
RENEW = TTL / 4
"""Seconds between a leader's renewals."""
RETRY = TTL / 10
"""Seconds between a standby's attempts to win a free lease (expiry has no event on NATS 2.9)."""
SAFE = 0.75
"""Share of ``TTL`` after a renewal was sent that its sender still counts itself leader."""


class LeaseState(IntEnum):
    """As the ``crossbook_cluster_lease_state`` gauge reports it."""

    STANDBY = 0
    """Another node holds the lease (a compare-and-swap or a create was refused)."""
    LEADER = 1
    UNKNOWN = 2
    """No answer yet, or the last write failed (NATS unreachable) and the lease lapsed."""


class Lease:
    """One venue's lease. ``action()`` is the next KV write: ``None`` for ``create``, else the
    revision for ``update(last=...)``; its result goes to :meth:`written`, :meth:`refused` or
    :meth:`failed`, then wait :meth:`wait` seconds."""

    def __init__(self) -> None:
        self.state = LeaseState.UNKNOWN
        self.epoch = 0
        """The revision the current (or last) lease of this node was won at; 0: never led."""
        self.revision = 0
        """This node's last write, while it may still be the key's latest; 0: none."""
        self.until = -math.inf
        """Monotonic time up to which this node counts itself leader."""
        self.wins = 0

    def holds(self, now: float) -> bool:
        """Whether this node leads at ``now`` (a lease past its time lapses here)."""
        if self.state is not LeaseState.LEADER:
            return False
        if now < self.until:
            return True
        self.state = LeaseState.UNKNOWN
        return False

    def action(self) -> int | None:
        return self.revision or None

    def wait(self) -> float:
        return RENEW if self.state is LeaseState.LEADER else RETRY

    def written(self, revision: int, sent: float, now: float) -> bool:
        """The write sent at ``sent`` stored ``revision`` (answered at ``now``); returns whether
        a new epoch began (the node just won, or comes back after a lapse)."""
        won = not self.holds(now)
        self.revision = revision
        self.until = sent + TTL * SAFE
        self.state = LeaseState.LEADER
        if won:
            self.epoch = revision
            self.wins += 1
        return won

    def refused(self) -> None:
        """The compare-and-swap (or create) was refused: another node holds the lease."""
        self.state = LeaseState.STANDBY
        self.revision = 0
        self.until = -math.inf

    def failed(self, now: float) -> None:
        """No answer (NATS unreachable, a timeout): a leader keeps its lease until it lapses."""
        if not self.holds(now):
            self.state = LeaseState.UNKNOWN
