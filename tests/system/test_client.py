"""The Python client against a running daemon: local books, a forced disconnect, a conflation."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import scripted_plugin
from crossbook.client import Client, Conflated, Delta, Resync, Snapshot, Trade, connect
from crossbook.core.model import BookDelta, BookSnapshot, Side
from crossbook.core.model import Trade as VenueTrade
from crossbook.service.app import Daemon
from crossbook.toolkit.connector import Feed
from support import ROOT, daemon_process, metric, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

VENUE = """
plugins = ["scripted_plugin"]
[consolidated]
stale_after = 600
[venues.alpha]
connector = "scripted"
symbols = ["BTC-USDT"]
"""
BOOK = "book.BTC-USDT"


def D(x: str | int) -> Decimal:
    return Decimal(x)


def daemon_book(daemon: Daemon, depth: int) -> tuple[list[Any], list[Any]]:
    book = daemon.engine.consolidated["BTC-USDT"]
    return book.top_bids(depth), book.top_asks(depth)


def client_book(client: Client) -> tuple[list[Any], list[Any]]:
    book = client.book(BOOK)
    return (
        [(lv.price, lv.size, lv.venues) for lv in book.bids],
        [(lv.price, lv.size, lv.venues) for lv in book.asks],
    )


def publish_snapshot(feed: Feed) -> None:
    bids = [(D(100) - D(k), D(k + 1)) for k in range(10)]
    asks = [(D(101) + D(k), D(k + 1)) for k in range(10)]
    feed.publish([BookSnapshot("BTC-USDT", bids, asks, feed.now_ns())])


@pytest.mark.slow
async def test_local_books_follow_the_daemon_across_a_forced_disconnect(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, VENUE) as (daemon, addresses):
        feed = await scripted_plugin.feed("alpha")
        publish_snapshot(feed)
        url = f"ws://127.0.0.1:{addresses.api_port}/v1/stream"
        async with connect(url) as client:
            messages: AsyncIterator[Any] = client.subscribe(BOOK, "trades.BTC-USDT", depth=5)
            first = await anext(messages)
            assert isinstance(first, Snapshot)
            assert (first.seq, first.bids[0].price, first.asks[0].venues) == (1, D(100), {"alpha": D(1)})
            feed.publish([BookDelta("BTC-USDT", [(D(100), D("0.5")), (D("100.5"), D("0.0000001"))], [], 1)])
            delta = await anext(messages)
            assert isinstance(delta, Delta)
            assert delta.seq == 2
            assert client_book(client) == daemon_book(daemon, 5)
            assert client.book(BOOK).bids[0].size == D("0.0000001")  # exact, not a float
            trade = VenueTrade("BTC-USDT", D(101), D(2), Side.BUY, "7", feed.now_ns())
            feed.publish([trade])
            traded = await anext(messages)
            assert isinstance(traded, Trade)
            assert (traded.price, traded.side, traded.id) == (D(101), "buy", "7")

            # the server closes the connection: every channel starts again from a fresh snapshot
            (conn,) = daemon.server.connections.values()
            await conn.ws.close(1012, "restarting")
            resyncs = [await anext(messages), await anext(messages)]
            assert resyncs == [Resync(BOOK, "reconnect"), Resync("trades.BTC-USDT", "reconnect")]
            feed.publish([BookDelta("BTC-USDT", [], [(D(101), D(0))], 2)])  # missed, then in the snapshot
            fresh = await anext(messages)
            assert isinstance(fresh, Snapshot)
            assert fresh.seq == 1
            await client.ping()
            assert client.reconnects == 1
            (venue,) = (await client.listing()).venues
            assert (venue.venue, venue.symbols[0].state, venue.symbols[0].resyncs) == ("alpha", "live", 0)
            assert venue.last_message_age is not None
            assert client_book(client) == daemon_book(daemon, 5)
            assert client.book(BOOK).best_ask == client.book(BOOK).asks[0]
            assert client.book(BOOK).asks[0].price == D(102)


@pytest.mark.slow
async def test_a_slow_reader_is_conflated_and_its_book_starts_again(tmp_path: Path) -> None:
    toml = VENUE + "[server]\nmax_buffer_bytes = 4096\nmax_buffer_messages = 50\nsend_buffer_bytes = 4096\n"
    async with running_daemon(tmp_path, toml) as (daemon, addresses):
        feed = await scripted_plugin.feed("alpha")
        publish_snapshot(feed)
        url = f"ws://127.0.0.1:{addresses.api_port}/v1/stream"
        async with connect(url, queue=1) as client:
            messages: AsyncIterator[Any] = client.subscribe(BOOK, "trades.BTC-USDT", depth=50)
            assert isinstance(await anext(messages), Snapshot)
            # The reader stops reading: the client's queue, then the sockets, then the server's
            # buffer for this connection fill, and the server conflates it.
            with anyio.fail_after(30):
                i = 0
                while not daemon.metrics.registry.get_sample_value("crossbook_conflations_total"):
                    i += 1
                    levels = [(D(100) - D(k) / 10, D(i % 50 + 1) + D(k)) for k in range(50)]
                    feed.publish([BookDelta("BTC-USDT", levels, [], feed.now_ns())])
                    feed.publish([VenueTrade("BTC-USDT", D(101), D(1), Side.SELL, str(i), feed.now_ns())])
                    await anyio.lowlevel.checkpoint()
            assert await metric(daemon, "crossbook_conflations_total") == 1
            received: list[Any] = []
            caught_up = anyio.Event()

            async def read() -> None:
                async for msg in messages:
                    received.append(msg)
                    if isinstance(msg, Snapshot) and msg.conflated:
                        caught_up.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                with anyio.fail_after(10):
                    await caught_up.wait()
                    await client.ping()
                assert client_book(client) == daemon_book(daemon, 50)
                tg.cancel_scope.cancel()  # ends the subscription: its book goes with it
            assert not [m for m in received if isinstance(m, Resync)]  # seq went on by exactly 1
            assert [m for m in received if isinstance(m, Conflated)]  # trades were dropped, and told
            with pytest.raises(KeyError):
                client.book(BOOK)


@pytest.mark.slow
def test_the_readme_example_runs_against_the_demo() -> None:
    """The README's client example, run as written against ``crossbook run`` with the demo."""
    readme = (ROOT / "README.md").read_text()
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "crossbook.client" in b]
    with daemon_process() as daemon:
        code = example.replace("ws://127.0.0.1:8765/", f"ws://127.0.0.1:{daemon.api_port}/")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [int(seq) for seq, _, _ in lines] == [1, 2, 3, 4, 5]
    for _, bid, ask in lines:
        assert Decimal(bid) > 0
        assert Decimal(ask) > 0
