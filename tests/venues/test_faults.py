"""Faults the daemon must survive without crashing, hanging or losing data (loopback only)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from crossbook.core.model import BookState
from crossbook.testing.conformance import rig
from crossbook.testing.feed import EngineFeed
from crossbook_binance import BinanceConfig, spot
from support import metric, running_daemon
from venues.test_binance_fake import subject

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SCRIPTED = '\nplugins = ["scripted_plugin"]\n[venues.alpha]\nconnector = "scripted"\nsymbols = ["BTC-USDT"]\n'


@pytest.mark.slow
async def test_unresolvable_host_retries_forever(caplog: pytest.LogCaptureFixture) -> None:
    config = BinanceConfig(ws_url="ws://nonexistent.invalid:9", rest_url="http://nonexistent.invalid:9")
    connector = spot("binance", ("BTC-USDT",), config)
    feed = EngineFeed("binance", ["BTC-USDT"])
    with caplog.at_level(logging.WARNING, "crossbook.toolkit.streaming"), anyio.move_on_after(2.5):
        await connector.run(feed)  # must neither return nor raise
        pytest.fail("the connector stopped")
    attempts = [r for r in caplog.records if "connection to ws://nonexistent.invalid:9" in r.getMessage()]
    assert len(attempts) >= 2  # backoff 0-0.5 s, then 0-1 s, ...
    assert feed.state("BTC-USDT") is BookState.CONNECTING


@pytest.mark.slow
async def test_rest_500_and_timeouts_are_retried() -> None:
    async with rig(subject(), rest_timeout=0.5) as r:
        await r.converge()
        r.fake.fail_rest(500, times=2)
        await r.fake.step("BTC-USDT", skip=True)
        await r.converge()
        r.fake.rest_delay = 1.0  # longer than rest_timeout: the request times out and is retried
        await r.fake.step("ETH-USDT", skip=True)
        await r.until(lambda: len(r.fake.rest_requests) >= 6)
        r.fake.rest_delay = 0.0
        await r.converge(limit=15)
        assert r.feed.resyncs("gap") == 2


@pytest.mark.slow
async def test_half_open_and_silent_clients_are_closed(tmp_path: Path) -> None:
    toml = SCRIPTED + "[server]\nhandshake_timeout = 0.5\nping_interval = 0.3\nping_timeout = 0.3\n"
    async with running_daemon(tmp_path, toml) as (daemon, addresses):
        # connected, never sends a handshake: closed after handshake_timeout
        half_open = socket.create_connection(("127.0.0.1", addresses.api_port))
        half_open.settimeout(5)
        assert await anyio.to_thread.run_sync(half_open.recv, 1024) == b""
        half_open.close()
        # handshake done, then silent (never answers pings): closed as ping_timeout
        silent = await connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream", ping_interval=None)
        silent.transport.pause_reading()
        await metric(daemon, "crossbook_clients_closed_total", {"reason": "ping_timeout"})
        silent.transport.abort()


async def test_one_megabyte_frame_is_refused_with_1009(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path, SCRIPTED) as (_, addresses),
        connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream", max_size=None) as ws,
    ):
        await ws.send("x" * 1024 * 1024)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009


FLOOD = """
import time
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

def flood(ws):
    ends = time.monotonic() + 8  # a connector that misses the cancel stops only when this does
    # unreadable (no ids, no levels): a counted skip, but only once its 60 kB are decoded
    frame = '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","pad":[%s]}}' % ",".join(["1"] * 30000)
    try:
        while time.monotonic() < ends:
            ws.send(frame)
    except ConnectionClosed:
        pass

with serve(flood, "127.0.0.1", 0) as server:
    print(server.socket.getsockname()[1], flush=True)
    server.serve_forever()
"""


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True}), "asyncio"], ids=["uvloop", "asyncio"])
async def test_a_flooding_venue_does_not_hold_up_cancellation() -> None:
    """``recv()`` does not suspend while frames are queued, and a venue (another process) that
    sends faster than the connector reads always has some queued: a shutdown or reload must
    still stop the connector at once (on uvloop, as the daemon runs, it otherwise waited for the
    venue to pause: 11 s of a 15 s systemd stop timeout in the overloaded latency benchmark)."""
    venue = subprocess.Popen([sys.executable, "-c", FLOOD], stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert venue.stdout is not None
        port = int(await anyio.to_thread.run_sync(venue.stdout.readline))
        config = BinanceConfig(ws_url=f"ws://127.0.0.1:{port}", rest_url="http://127.0.0.1:9", trades=False)
        feed = EngineFeed("binance", ["BTC-USDT"])
        async with anyio.create_task_group() as tg:
            tg.start_soon(spot("binance", ("BTC-USDT",), config).run, feed)
            with anyio.fail_after(10):
                await feed.wait_for(lambda: len(feed.skipped) > 500)
            tg.cancel_scope.cancel()
            cancelled = time.monotonic()
        # Missing the cancel takes the rest of the flood (~7 s). The bound leaves room for the
        # close handshake, which may wait close_timeout (2 s) for a peer busy flooding under load.
        assert time.monotonic() - cancelled < 3.0
    finally:
        venue.kill()
        venue.wait()
