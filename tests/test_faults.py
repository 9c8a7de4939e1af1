"""Faults the daemon must survive without crashing, hanging or losing data (loopback only)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from crossbook.model import BookState
from crossbook.testing.conformance import rig
from crossbook.testing.feed import EngineFeed
from crossbook_binance import BinanceConfig, spot
from support import metric, running_daemon
from test_binance_fake import subject

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SCRIPTED = '\nplugins = ["scripted_plugin"]\n[venues.alpha]\nconnector = "scripted"\nsymbols = ["BTC-USDT"]\n'


async def test_unresolvable_host_retries_forever(caplog: pytest.LogCaptureFixture) -> None:
    config = BinanceConfig(ws_url="ws://nonexistent.invalid:9", rest_url="http://nonexistent.invalid:9")
    connector = spot("binance", ("BTC-USDT",), config)
    feed = EngineFeed("binance", ["BTC-USDT"])
    with caplog.at_level(logging.WARNING, "crossbook.streaming"), anyio.move_on_after(2.5):
        await connector.run(feed)  # must neither return nor raise
        pytest.fail("the connector stopped")
    attempts = [r for r in caplog.records if "connection to ws://nonexistent.invalid:9" in r.getMessage()]
    assert len(attempts) >= 2  # backoff 0-0.5 s, then 0-1 s, ...
    assert feed.state("BTC-USDT") is BookState.CONNECTING


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
