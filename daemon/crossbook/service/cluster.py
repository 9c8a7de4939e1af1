"""The daemon's ``ingest`` and ``edge`` roles: how each runs a venue (``[cluster]``, README "Cluster").

``ingest`` runs each venue's connector as ``all`` does, through a feed that also publishes to
NATS while the node holds the venue's lease (a standby runs the same, silent); ``edge`` runs no
connector but a follower of the venue's books on the bus. Either way the venue's events reach the
daemon's engine and hub through its own feed, unchanged.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crossbook.cluster.follow import Follower
from crossbook.cluster.lease import Lease
from crossbook.service.config import ClusterConfig, Venue
from crossbook.service.metrics import LAG_BUCKETS
from crossbook.service.supervisor import supervise
from crossbook.toolkit.connector import Feed

if TYPE_CHECKING:
    from crossbook.core.engine import Engine

RunVenue = Callable[[Venue, Feed, Callable[[str], None]], Awaitable[None]]
"""``run(venue, feed, on_stop)``: keeps one venue's books coming into ``feed``."""


def options(config: ClusterConfig) -> dict[str, Any]:
    """nats-py's options for the authentication and TLS ``config`` asks for."""
    out: dict[str, Any] = {}
    if config.user is not None:
        out |= {"user": config.user, "password": config.password}
    if config.creds_file is not None:
        out["user_credentials"] = str(config.creds_file)
    if config.tls_ca_file is not None or config.tls_cert_file is not None:
        tls = ssl.create_default_context(cafile=config.tls_ca_file)
        if config.tls_cert_file is not None:
            tls.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        out["tls"] = tls
    return out


class _ClusterCollector(Collector):
    """The cluster's per-node metrics, read from the leases and followers when scraped."""

    def __init__(self, leases: dict[str, Lease], followers: dict[str, Follower]) -> None:
        self.leases = leases
        self.followers = followers

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        leader = GaugeMetricFamily(
            "crossbook_cluster_leader", "1 if this node leads the venue, else 0", labels=["venue"]
        )
        state = GaugeMetricFamily(
            "crossbook_cluster_lease_state", "Venue lease: 0 standby, 1 leader, 2 unknown", labels=["venue"]
        )
        epoch = GaugeMetricFamily(
            "crossbook_cluster_epoch", "Leader epoch this node last led at (ingest) or follows (edge)", labels=["venue"]
        )
        wins = CounterMetricFamily(
            "crossbook_cluster_lease_wins", "Times this node took the venue lease", labels=["venue"]
        )
        resyncs = CounterMetricFamily(
            "crossbook_cluster_bus_resyncs", "Books the bus put back to syncing", labels=["venue"]
        )
        fenced = CounterMetricFamily(
            "crossbook_cluster_fenced", "Bus messages of an older leader epoch ignored", labels=["venue"]
        )
        for venue, lease in sorted(self.leases.items()):
            leader.add_metric([venue], int(lease.holds(now)))
            state.add_metric([venue], lease.state.value)
            epoch.add_metric([venue], lease.epoch)
            wins.add_metric([venue], lease.wins)
        for venue, follower in sorted(self.followers.items()):
            epoch.add_metric([venue], max(follower.ep, 0))
            resyncs.add_metric([venue], follower.resyncs)
            fenced.add_metric([venue], follower.fenced)
        yield from (leader, state, wins) if self.leases else (resyncs, fenced)
        yield epoch


async def run_role(
    config: ClusterConfig,
    engine: Engine,
    registry: CollectorRegistry,
    gap: Callable[[str, str, int], None],
    *,
    task_status: TaskStatus[RunVenue],
) -> None:
    """Connect to NATS and serve the role until cancelled; starts with how to run a venue.
    ``gap(venue, symbol, ts)``: an edge lost part of a book's stream, trades may be missing."""
    from crossbook.cluster import natsio  # only a cluster role imports NATS
    from crossbook.cluster.lead import Leader

    leases: dict[str, Lease] = {}
    followers: dict[str, Follower] = {}
    registry.register(_ClusterCollector(leases, followers))
    if config.role == "ingest":
        nc = await natsio.connect(config.nats_url, config.node, lambda _r, _s: None, lambda: None, **options(config))
        leaders = natsio.LeaderBus(nc, engine, config.node)

        async def lead(venue: Venue, feed: Feed, on_stop: Callable[[str], None]) -> None:
            lease = leases[venue.name] = Lease()

            async def run(leader: Leader, lease: Lease) -> None:
                leading = natsio.LeadingFeed(feed, leader, lease, leaders)

                def stopped(reason: str) -> None:
                    leading.down(reason)
                    on_stop(reason)

                await supervise(venue, leading, stopped)

            await leaders.lead(venue.name, venue.symbols, lease, run)

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(leaders.run)
                task_status.started(lead)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await nc.close()
    else:
        lag = Histogram(
            "crossbook_cluster_bus_lag_seconds",
            "The leader's receive of a venue message to this edge's receive of its bus message",
            ["venue"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        bus = natsio.FollowerBus()
        nc = await natsio.connect(config.nats_url, config.node, bus.lost, bus.back, **options(config))
        bus.nc = nc

        async def follow(venue: Venue, feed: Feed, _on_stop: Callable[[str], None]) -> None:
            follower = followers[venue.name] = Follower(venue.name, venue.symbols, natsio.SILENT_NS)
            await bus.follow(follower, feed, lag.labels(venue.name).observe, partial(gap, venue.name))

        try:
            task_status.started(follow)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await nc.close()
