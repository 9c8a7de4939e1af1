"""The venue lease sans-I/O: won by create, kept by compare-and-swap, its revision the epoch; a
leader that lapses (frozen, cut off) stops counting itself leader before the key expires, and a
refused swap stands it down."""

from __future__ import annotations

from crossbook.cluster.lease import RENEW, RETRY, SAFE, TTL, Lease, LeaseState


def test_a_create_wins_and_its_revision_is_the_epoch() -> None:
    lease = Lease()
    assert lease.state is LeaseState.UNKNOWN
    assert not lease.holds(0)
    assert lease.action() is None  # create
    assert lease.written(7, sent=0.0, now=0.01)
    assert lease.holds(0.01)
    assert lease.epoch == 7
    assert lease.wins == 1
    assert lease.action() == 7
    assert lease.wait() == RENEW
    assert not lease.written(8, sent=RENEW, now=RENEW + 0.01), "a renewal keeps the epoch"
    assert lease.epoch == 7
    assert lease.action() == 8


def test_a_refused_create_is_standby_and_retries_soon() -> None:
    lease = Lease()
    lease.refused()
    assert lease.state is LeaseState.STANDBY
    assert lease.action() is None
    assert lease.wait() == RETRY
    assert lease.written(12, sent=1.0, now=1.01)
    assert lease.epoch == 12


def test_a_refused_swap_stands_the_leader_down() -> None:
    lease = Lease()
    lease.written(3, sent=0.0, now=0.0)
    lease.refused()
    assert not lease.holds(0.1)
    assert lease.state is LeaseState.STANDBY
    assert lease.action() is None
    assert lease.epoch == 3


def test_a_leader_lapses_before_its_key_can_expire_and_comes_back_in_a_new_epoch() -> None:
    lease = Lease()
    lease.written(3, sent=0.0, now=0.0)
    lease.failed(0.5)  # NATS did not answer: still within the lease
    assert lease.holds(0.5)
    assert not lease.holds(TTL * SAFE), "frozen or cut off: silent before the key expires at TTL"
    assert lease.state is LeaseState.UNKNOWN
    assert lease.action() == 3
    assert lease.written(9, sent=TTL, now=TTL + 0.01), "back with its revision: a new epoch"
    assert lease.epoch == 9
    assert lease.wins == 2


def test_a_renewal_answered_after_the_lapse_starts_a_new_epoch() -> None:
    lease = Lease()
    lease.written(3, sent=0.0, now=0.0)
    assert lease.written(4, sent=0.5, now=TTL), "it went silent between: followers need whole books"
    assert lease.epoch == 4


def test_failures_while_not_leading_are_unknown() -> None:
    lease = Lease()
    lease.refused()
    lease.failed(1.0)
    assert lease.state is LeaseState.UNKNOWN
    assert not lease.holds(1.0)
