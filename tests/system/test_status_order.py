"""A subscriber's channels agree with its ``status`` channel at every message, end to end.

Venues enter, resync, go stale, come back, go down and are reloaded away and back while clients
with every channel (one message a frame, batched, held with ``linger_ms``, and one conflated for
being slow) mirror them: their reference client (:class:`crossbook.client.Mirror`) checks after
every message that the consolidated book and bbo name only venues whose last status was ``live``
and that a venue's own book has levels only while it is ``live`` or ``stale``.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect

from crossbook.core.model import BookDelta, BookSnapshot, BookState, Side, Trade, VenueStatus
from crossbook.toolkit.connector import Feed
from support import reloader, running_daemon
from system.test_api_e2e import Client, client_view, live_feeds, random_levels, server_view, url

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SYMBOL = "BTC-USDT"
CONFIG = """
plugins = ["scripted_plugin"]
[consolidated]
depth = 10
stale_after = 0.3
[server]
max_ops_per_second = 1000000
max_buffer_messages = 10
[venues.alpha]
connector = "scripted"
symbols = ["BTC-USDT"]
"""
BETA = '[venues.beta]\nconnector = "scripted"\nsymbols = ["BTC-USDT"]\n'
CONFIG += BETA
CHANNELS = ["book.BTC-USDT", "bbo.BTC-USDT", "trades.BTC-USDT", "book.BTC-USDT.alpha", "book.BTC-USDT.beta", "status"]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def snapshot(feed: Feed, rng: random.Random) -> BookSnapshot:
    bids, asks = random_levels(rng, 650000, 15, zero_share=0)
    return BookSnapshot(SYMBOL, bids, asks, feed.now_ns())


def delta(feed: Feed, rng: random.Random) -> BookDelta:
    bids, asks = random_levels(rng, 650000, 3)
    return BookDelta(SYMBOL, bids, asks, feed.now_ns())


@pytest.mark.slow
async def test_every_channel_agrees_with_status_through_entries_resyncs_staleness_and_reloads(
    tmp_path: Path,
) -> None:
    rng = random.Random(23)
    async with running_daemon(tmp_path, CONFIG) as (d, addresses):
        path = Path(d.config.source)
        d.reloader = reloader(path)
        feeds = await live_feeds("alpha", "beta")
        base = url(addresses)
        async with (
            connect(base) as plain_ws,
            connect(base + "?batch=1") as batched_ws,
            connect(base + "?batch=1&linger_ms=20") as lingering_ws,
            connect(base) as slow_ws,
        ):
            clients = [Client(plain_ws), Client(batched_ws, True), Client(lingering_ws, True), Client(slow_ws)]
            plain, _, _, slow = clients
            for i, client in enumerate(clients):
                # The status channel first, last, or in the middle of one request.
                order = CHANNELS if i % 2 else CHANNELS[::-1]
                await client.request(op="subscribe", channels=order, depth=5)

            async def settle() -> None:
                """Every client has read everything sent so far, and mirrors the daemon's books."""
                for client in clients:
                    await client.sync()
                    await client.sync()  # a conflated client's catch-up is queued behind its first pong
                    assert client.mirror.states is not None
                    for channel in CHANNELS:
                        if channel.startswith("book.") and channel in client.mirror.seq:
                            _, _, venue = channel.partition(".")[2].partition(".")
                            want = server_view(d, SYMBOL, venue or None, 5)
                            assert client_view(client, channel) == want, (clients.index(client), channel)

            alpha, beta = feeds["alpha"], feeds["beta"]
            # Entering: syncing, then the snapshot read together with it.
            for feed in (alpha, beta):
                feed.publish([VenueStatus(SYMBOL, BookState.SYNCING, feed.now_ns())])
                feed.publish([snapshot(feed, rng)])
            await settle()

            # Resyncs, each read together with its new snapshot, among deltas and trades.
            for step in range(300):
                feed = rng.choice([alpha, beta])
                roll = rng.random()
                if roll < 0.05:
                    feed.publish([VenueStatus(SYMBOL, BookState.SYNCING, feed.now_ns(), "gap")])
                    feed.publish([snapshot(feed, rng)])
                elif roll < 0.1:
                    now = feed.now_ns()
                    feed.publish([Trade(SYMBOL, Decimal("65000.1"), Decimal(1), Side.BUY, str(step), now, now)])
                else:
                    feed.publish([delta(feed, rng)])
                if rng.random() < 0.6:
                    await anyio.lowlevel.checkpoint()
            await settle()

            # Alpha falls silent and goes stale, then comes back with a delta.
            with anyio.fail_after(5):
                while d.engine.state(SYMBOL, "alpha") is not BookState.STALE:
                    beta.publish([delta(beta, rng)])
                    await anyio.sleep(0.02)  # a venue's pace: staleness is measured in time
            await settle()
            assert client_view(plain, "book.BTC-USDT.alpha")["bids"], "a stale book keeps its levels"
            alpha.publish([delta(alpha, rng)])
            await settle()
            # From here on a venue is quiet while the test reads: a reload makes staleness slower.
            edit(path, "stale_after = 0.3", "stale_after = 60")
            assert d.reload() is True

            # The slow client stops reading through a burst: it is conflated, then catches up.
            slow_frames = slow.frames
            for _ in range(3000):
                feed = rng.choice([alpha, beta])
                feed.publish([delta(feed, rng)])
                if rng.random() < 0.01:
                    feed.publish([VenueStatus(SYMBOL, BookState.SYNCING, feed.now_ns(), "gap")])
                    feed.publish([snapshot(feed, rng)])
                await anyio.lowlevel.checkpoint()
                await plain.sync() if rng.random() < 0.01 else None
            await settle()
            assert slow.frames > slow_frames
            assert any(m.get("conflated") for m in slow.received), "the slow client was never conflated"

            # Beta goes down (its connector stopped), then a reload removes it and adds it back.
            beta.publish([VenueStatus(None, BookState.DOWN, beta.now_ns(), "crash")])
            await settle()
            edit(path, BETA, "")
            assert d.reload() is True
            await settle()
            assert all("book.BTC-USDT.beta" not in client.mirror.seq for client in clients)
            edit(path, "[venues.alpha]", BETA + "[venues.alpha]")
            assert d.reload() is True
            for client in clients:
                await client.request(op="subscribe", channels=["book.BTC-USDT.beta"], depth=5)
            beta = await _restarted(feeds["beta"])
            beta.publish([snapshot(beta, rng)])
            await settle()
            assert d.engine.state(SYMBOL, "beta") is BookState.LIVE

        for client in clients:
            entries = [m for m in client.received if m.get("channel") == "status" and m["state"] == "live"]
            assert len(entries) >= 6, "venues entered live fewer times than the test made them"


async def _restarted(old: Feed) -> Feed:
    """The feed of a scripted venue started again (a reload re-adds it)."""
    import scripted_plugin

    with anyio.fail_after(5):
        while True:
            feed = await scripted_plugin.feed(old.venue)
            if feed is not old:
                return feed
            await anyio.sleep(0.01)
