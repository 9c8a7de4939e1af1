"""The API facing the internet: slow consumers, limits, auth, origins and TLS."""

from __future__ import annotations

import socket
import ssl
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest
from prometheus_client import generate_latest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

import scripted_plugin
from crossbook.api.channels import Limits
from crossbook.api.hub import Hub
from crossbook.client import Mirror
from crossbook.core.engine import Engine
from crossbook.core.exact import text
from crossbook.core.model import BookDelta, BookSnapshot
from crossbook.service.server import linger_seconds
from support import metric, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

VENUE = """
plugins = ["scripted_plugin"]
[venues.alpha]
connector = "scripted"
symbols = ["BTC-USDT"]
"""


def D(x: str | int) -> Decimal:
    return Decimal(x)


# -- conflation, sans-I/O -----------------------------------------------------------------------


def test_a_slow_session_is_conflated_with_continuous_seq() -> None:
    engine = Engine({"alpha": ["BTC-USDT"]}, stale_after_ns=10**15)
    hub = Hub(engine, 10, {"alpha": "x"}, Limits(max_buffer_messages=20))
    fast, slow = hub.open(), hub.open()
    sub = b'{"op":"subscribe","id":1,"channels":["book.BTC-USDT","bbo.BTC-USDT","trades.BTC-USDT"],"depth":5}'
    mirrors = {fast: Mirror(), slow: Mirror()}
    for session in mirrors:
        hub.receive(session, sub, 1)
    hub.publish(engine.ingest("alpha", [BookSnapshot("BTC-USDT", [(D("100"), D("1"))], [], 1)], 1), 1)

    def drain(session: Any) -> list[dict[str, Any]]:
        msgs = [orjson.loads(f) for f in session.drain()]
        for m in msgs:
            mirrors[session].apply(m)
        return msgs

    drain(slow)
    for i in range(100):  # the slow session never drains; the fast one does
        price = D(100) - D(i % 7)
        delta = BookDelta("BTC-USDT", [(price, D(i + 1))], [], 10 + i)
        hub.publish(engine.ingest("alpha", [delta], 10 + i), 10 + i)
        drain(fast)
    assert slow.behind_since is not None
    assert hub.stats.conflations == 1
    assert len(slow.outbox) <= 21
    drain(slow)  # the writer empties what was kept, then catches up
    hub.catch_up(slow, 1000)
    caught = drain(slow)
    snapshot = next(m for m in caught if m["channel"] == "book.BTC-USDT")
    assert snapshot["type"] == "snapshot"
    assert snapshot["conflated"] is True
    assert next(m for m in caught if m["channel"] == "bbo.BTC-USDT").get("conflated") is True
    book = engine.consolidated["BTC-USDT"]
    want = [(text(p), text(s), {v: text(x) for v, x in a.items()}) for p, s, a in book.top_bids(5)]
    for session in (fast, slow):
        assert mirrors[session].books["book.BTC-USDT"].top("bids") == want  # and Mirror checked every seq


# -- over sockets -------------------------------------------------------------------------------


async def raw_stalled_client(port: int, request: bytes) -> socket.socket:
    """A client that completes the handshake, subscribes, then never reads again."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await anyio.to_thread.run_sync(sock.recv, 1024)  # 101 Switching Protocols
    mask = b"\x00\x00\x00\x00"
    header = (
        bytes([0x81, 0x80 | 126]) + len(request).to_bytes(2, "big")
        if len(request) > 125
        else bytes([0x81, 0x80 | len(request)])
    )
    sock.sendall(header + mask + request)
    return sock


@pytest.mark.slow
async def test_stalled_clients_are_closed_1013_and_fast_ones_keep_up(tmp_path: Path) -> None:
    toml = VENUE + "[server]\nmax_buffer_bytes = 4096\nmax_buffer_messages = 50\nslow_client_timeout = 0.5\n"
    async with running_daemon(tmp_path, toml) as (daemon, addresses):
        feed = await scripted_plugin.feed("alpha")
        feed.publish([BookSnapshot("BTC-USDT", [(D("100"), D("1"))], [(D("101"), D("1"))], feed.now_ns())])
        sub = b'{"op":"subscribe","id":1,"channels":["book.BTC-USDT","trades.BTC-USDT"],"depth":50}'
        stalled = [await raw_stalled_client(addresses.api_port, sub) for _ in range(5)]
        async with connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream") as ws, anyio.create_task_group() as tg:
            mirror = Mirror()
            conflated: list[dict[str, Any]] = []
            pong = anyio.Event()

            async def read() -> None:
                async for data in ws:
                    msg = orjson.loads(data)
                    mirror.apply(msg)  # raises on any seq gap
                    if msg.get("conflated"):
                        conflated.append(msg)
                    if msg["type"] == "pong":
                        pong.set()

            await ws.send(sub.decode())
            tg.start_soon(read)
            with anyio.fail_after(30):
                i = 0
                while (
                    daemon.metrics.registry.get_sample_value("crossbook_clients_closed_total", {"reason": "slow"}) != 5
                ):
                    i += 1
                    levels = [(D(100) - D(k) / 10, D(i % 50 + 1) + D(k)) for k in range(50)]
                    feed.publish([BookDelta("BTC-USDT", levels, [], feed.now_ns())])
                    await anyio.lowlevel.checkpoint()
            await ws.send('{"op":"ping","id":9}')  # its pong comes after every update before it
            with anyio.fail_after(10):
                await pong.wait()
            tg.cancel_scope.cancel()
        book = daemon.engine.consolidated["BTC-USDT"]
        want = [(text(p), text(s), {v: text(x) for v, x in a.items()}) for p, s, a in book.top_bids(50)]
        assert mirror.books["book.BTC-USDT"].top("bids") == want
        assert conflated == []  # the fast client never fell behind
        assert await metric(daemon, "crossbook_conflations_total", at_least=5) >= 5
        for sock in stalled:
            sock.close()


@pytest.mark.slow
async def test_connection_channel_frame_and_rate_limits(tmp_path: Path) -> None:
    toml = VENUE + (
        "[server]\nmax_connections_per_ip = 2\nmax_channels_per_connection = 2\n"
        "max_frame_bytes = 1024\nmax_ops_per_second = 20\n"
    )
    async with running_daemon(tmp_path, toml) as (daemon, addresses):
        url = f"ws://127.0.0.1:{addresses.api_port}/v1/stream"
        async with connect(url) as one, connect(url) as two:
            with pytest.raises(InvalidStatus) as refused:
                await connect(url)
            assert refused.value.response.status_code == 429
            # channels
            await one.send('{"op":"subscribe","id":1,"channels":["book.BTC-USDT","bbo.BTC-USDT","status"]}')
            reply = orjson.loads(await one.recv())
            assert reply["code"] == "too_many_channels"
            # frame size: closed with 1009
            await two.send("x" * 2000)
            with pytest.raises(ConnectionClosed) as closed:
                await two.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
            # over the request rate: rate_limited errors; far over it: closed with 1008
            for i in range(40):
                await one.send(orjson.dumps({"op": "ping", "id": i}).decode())
            replies = [orjson.loads(await one.recv()) for _ in range(40)]
            assert {r["type"] for r in replies} == {"pong", "error"}
            assert {r["code"] for r in replies if r["type"] == "error"} == {"rate_limited"}
            assert [r["id"] for r in replies] == list(range(40))  # a refused request is answered too

            async def flood() -> None:
                for i in range(10_000):
                    await one.send(orjson.dumps({"op": "subscribe", "id": i, "channels": ["status"]}).decode())
                while True:  # the replies sent before the close come first
                    await one.recv()

            with pytest.raises(ConnectionClosed) as flooded:
                await flood()
            assert flooded.value.rcvd is not None
            assert flooded.value.rcvd.code == 1008
        assert await metric(daemon, "crossbook_handshakes_rejected_total", {"reason": "too_many_per_ip"}) == 1
        assert await metric(daemon, "crossbook_clients_closed_total", {"reason": "frame_too_big"}) == 1
        assert await metric(daemon, "crossbook_clients_closed_total", {"reason": "policy"}) == 1


async def test_bearer_tokens_and_origins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# API tokens\ns3cret-token-1\n\nother-token-2\n")
    toml = VENUE + f'[server]\ntokens_file = "{tokens}"\nallowed_origins = ["https://ok.example"]\n'
    async with running_daemon(tmp_path, toml) as (daemon, addresses):
        url = f"ws://127.0.0.1:{addresses.api_port}/v1/stream"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(InvalidStatus) as refused:
                await connect(url, additional_headers=headers)
            assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as refused:
            await connect(url + "?token=s3cret-token-1", origin="https://evil.example")  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        async with connect(url, additional_headers={"Authorization": "Bearer other-token-2"}) as ws:
            await ws.send('{"op":"ping","id":1}')
            assert orjson.loads(await ws.recv())["type"] == "pong"
        async with connect(url + "?token=s3cret-token-1", origin="https://ok.example") as ws:  # type: ignore[arg-type]
            await ws.send('{"op":"ping","id":1}')
            assert orjson.loads(await ws.recv())["type"] == "pong"
        registry = daemon.metrics.registry
        assert registry.get_sample_value("crossbook_handshakes_rejected_total", {"reason": "unauthorized"}) == 2
        assert registry.get_sample_value("crossbook_handshakes_rejected_total", {"reason": "origin"}) == 1
        exposition = generate_latest(registry).decode()
    for secret in ("s3cret-token-1", "other-token-2", "wrong"):
        assert secret not in caplog.text
        assert secret not in exposition


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize(
    ("query", "seconds"),
    [
        ("", None),
        ("batch=1", None),
        ("linger_ms=1", 0.001),
        ("batch=1&linger_ms=1000", 1.0),
        ("linger_ms=0250", 0.25),
        ("linger_ms=01000", 1.0),
    ],
)
def test_linger_ms_is_read_in_whole_milliseconds(query: str, seconds: float | None) -> None:
    assert linger_seconds(query) == seconds


@pytest.mark.parametrize(
    "query",
    ["linger_ms=0", "linger_ms=1001", "linger_ms=99999999", "linger_ms=000", "linger_ms=" + "0" * 5000 + "1001",
     "linger_ms=", "linger_ms=1.5", "linger_ms=-1", "linger_ms=%D9%A1", "linger_ms=5&linger_ms=6", "linger_ms=ten"],
)  # fmt: skip
async def test_a_bad_linger_ms_is_refused_before_the_upgrade(query: str, tmp_path: Path) -> None:
    async with running_daemon(tmp_path, VENUE) as (daemon, addresses):
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream?{query}")
        assert refused.value.response.status_code == 400
        assert b"linger_ms must be one whole number of milliseconds from 1 to 1000" in refused.value.response.body
        registry = daemon.metrics.registry
        assert registry.get_sample_value("crossbook_handshakes_rejected_total", {"reason": "bad_query"}) == 1
        async with connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream?linger_ms=1") as ws:
            await ws.send('{"op":"ping","id":1}')
            assert orjson.loads(await ws.recv())["type"] == "pong"


async def test_tls(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    toml = VENUE + f'[server]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    async with running_daemon(tmp_path, toml) as (_, addresses):
        context = ssl.create_default_context(cafile=str(cert))
        async with connect(f"wss://127.0.0.1:{addresses.api_port}/v1/stream", ssl=context) as ws:
            await ws.send('{"op":"ping","id":1}')
            assert orjson.loads(await ws.recv())["type"] == "pong"
        with pytest.raises((OSError, TimeoutError, WebSocketException)):
            async with connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream", open_timeout=2) as ws:
                await ws.recv()


async def test_permessage_deflate(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, VENUE + '[server]\ncompression = "deflate"\n') as (_, addresses):
        async with connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream", compression="deflate") as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
            await ws.send('{"op":"ping","id":1}')
            assert orjson.loads(await ws.recv())["type"] == "pong"
        async with connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream", compression=None) as ws:
            await ws.send('{"op":"ping","id":2}')
            assert orjson.loads(await ws.recv())["id"] == 2


async def test_kernel_send_buffer_is_bounded(tmp_path: Path) -> None:
    toml = VENUE + "[server]\nsend_buffer_bytes = 32768\n"
    async with (
        running_daemon(tmp_path, toml) as (daemon, addresses),
        connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream") as ws,
    ):
        await ws.send('{"op":"ping","id":1}')
        await ws.recv()
        (server_side,) = daemon.server.connections.values()
        sock = server_side.ws.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 2 * 32768  # Linux doubles it


async def test_a_stalled_client_that_resets_its_connection_ends_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client whose socket is full (its writer waits for the socket to drain) and that then
    resets the connection: counted as closed, nothing fails."""
    toml = VENUE + "[server]\nsend_buffer_bytes = 4096\nslow_client_timeout = 60\n"
    async with running_daemon(tmp_path, toml) as (daemon, addresses):
        feed = await scripted_plugin.feed("alpha")
        feed.publish([BookSnapshot("BTC-USDT", [(D("100"), D("1"))], [(D("101"), D("1"))], feed.now_ns())])
        sock = await raw_stalled_client(addresses.api_port, b'{"op":"subscribe","id":1,"channels":["book.BTC-USDT"]}')
        with anyio.fail_after(20):
            i = 0
            while not any(conn.ws.paused for conn in daemon.server.connections.values()):
                i += 1
                levels = [(D(100) - D(k) / 10, D(i % 50 + 1) + D(k)) for k in range(50)]
                feed.publish([BookDelta("BTC-USDT", levels, [], feed.now_ns())])
                await anyio.lowlevel.checkpoint()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # linger 0: a reset
        for _ in range(3):  # wake its writer: it finds the connection gone
            feed.publish([BookDelta("BTC-USDT", [(D(99), D(i))], [], feed.now_ns())])
            await anyio.lowlevel.checkpoint()
        assert await metric(daemon, "crossbook_clients_closed_total", {"reason": "client"}) == 1
        assert daemon.metrics.registry.get_sample_value("crossbook_clients") == 0
    assert "connection handler failed" not in caplog.text
