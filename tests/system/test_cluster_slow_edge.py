"""A throttled edge over a real nats-server: its subscription to the books' streams holds only a
few messages, so bursts from the ingest overflow it and nats-py drops messages (a slow consumer,
reported only through ``error_cb``). The edge resyncs the books, ends live and equal to the
ingest, and never serves a book as ``live`` that the ingest's book never was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from nats.aio.client import Client

from crossbook.core.model import BookState
from crossbook.service.app import Daemon
from support import NatsServer
from system.test_cluster import BOOKS, ingest_feeds, live_and_equal, node, play, until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

PENDING_LIMIT = 8
"""Messages the edge's book subscription holds before nats-py drops (its default: 524,288)."""


@pytest.fixture
def throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscriptions to ``crossbook.v1.book.*`` (only an edge makes them) get a tiny pending limit."""
    subscribe = Client.subscribe

    async def limited(self: Client, subject: str, *args: Any, **kwargs: Any) -> Any:
        if subject.startswith("crossbook.v1.book."):
            kwargs["pending_msgs_limit"] = PENDING_LIMIT
        return await subscribe(self, subject, *args, **kwargs)

    monkeypatch.setattr(Client, "subscribe", limited)


def books(daemon: Daemon) -> dict[Any, Any]:
    """Each venue book's levels, hashable."""
    return {b: (tuple(daemon.engine.books[b].book.bids()), tuple(daemon.engine.books[b].book.asks())) for b in BOOKS}


@pytest.mark.usefixtures("throttled")
async def test_a_slow_consumer_edge_resyncs_and_is_never_wrong(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    truths: dict[Any, set[Any]] = {b: set() for b in BOOKS}
    # every state each ingest book was in: a live book on the edge must be one of them
    wrong: list[Any] = []
    async with node(tmp_path, "ingest", 1, url) as (ingest, _), node(tmp_path, "edge", 1, url) as (edge, _):

        async def watch() -> None:
            while True:  # each pass of the loop: after the edge's callbacks ran, before the next ones
                for b, levels in books(edge).items():
                    if edge.engine.books[b].state is BookState.LIVE and levels not in truths[b]:
                        wrong.append((b, levels))
                await anyio.lowlevel.checkpoint()

        feeds = await ingest_feeds()
        async with anyio.create_task_group() as tg:
            play(feeds, 0)
            for b, levels in books(ingest).items():
                truths[b].add(levels)
            await until(live_and_equal(ingest, edge))
            tg.start_soon(watch)
            round_ = 1
            for _burst in range(5):
                for _ in range(100):  # a burst: 600 bus messages published back to back
                    play(feeds, round_)
                    round_ += 1
                    for b, levels in books(ingest).items():
                        truths[b].add(levels)
                await until(live_and_equal(ingest, edge), within=20)
            tg.cancel_scope.cancel()
        slow = sum(
            edge.metrics.registry.get_sample_value(
                "crossbook_resyncs_total", {"venue": v, "symbol": s, "reason": "bus_slow"}
            )
            or 0
            for s, v in BOOKS
        )
        assert slow >= 1, "the bursts overflowed the edge's subscription"
        assert not wrong, f"the edge served a book live that the ingest never had: {wrong[:1]}"
