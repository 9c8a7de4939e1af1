"""The daemon's ``ingest`` and ``edge`` roles: how each runs a venue (``[cluster]``, README "Cluster").

``ingest`` runs each venue's connector as ``all`` does, through a feed that also publishes to
NATS; ``edge`` runs no connector but a follower of the venue's books on the bus. Either way the
venue's events reach the daemon's engine and hub through its own feed, unchanged.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from crossbook.service.config import ClusterConfig, Venue
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


async def run_role(config: ClusterConfig, engine: Engine, *, task_status: TaskStatus[RunVenue]) -> None:
    """Connect to NATS and serve the role until cancelled; starts with how to run a venue."""
    from crossbook.cluster import natsio  # only a cluster role imports NATS
    from crossbook.cluster.lead import Leader

    if config.role == "ingest":
        nc = await natsio.connect(config.nats_url, config.node, lambda _r, _s: None, lambda: None, **options(config))
        leaders = natsio.LeaderBus(nc, engine, config.node, ep=time.time_ns() // 1000)

        async def lead(venue: Venue, feed: Feed, on_stop: Callable[[str], None]) -> None:
            async def run(leader: Leader) -> None:
                leading = natsio.LeadingFeed(feed, leader, leaders)

                def stopped(reason: str) -> None:
                    leading.down(reason)
                    on_stop(reason)

                await supervise(venue, leading, stopped)

            await leaders.lead(venue.name, venue.symbols, run)

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(leaders.run)
                task_status.started(lead)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await nc.close()
    else:
        followers = natsio.FollowerBus()
        nc = await natsio.connect(config.nats_url, config.node, followers.lost, followers.back, **options(config))
        followers.nc = nc

        async def follow(venue: Venue, feed: Feed, _on_stop: Callable[[str], None]) -> None:
            await followers.follow(venue.name, venue.symbols, feed)

        try:
            task_status.started(follow)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await nc.close()
