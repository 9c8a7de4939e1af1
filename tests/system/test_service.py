"""Running as a service: systemd's notify protocol over a real datagram socket, journald and
JSON log lines, and live reload (SIGHUP) that keeps unchanged subscriptions."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from websockets.asyncio.client import connect

import scripted_plugin
from crossbook.client import Mirror
from crossbook.core.model import BookSnapshot, BookState
from support import daemon_process, reloader, running_daemon

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def messages_until(sock: socket.socket, wanted: str) -> list[dict[str, str]]:
    """Datagrams received until one holds ``wanted`` (e.g. ``READY=1``)."""
    out: list[dict[str, str]] = []
    while True:
        data = sock.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in data.splitlines())
        out.append(fields)
        if "=" in wanted and fields.get(wanted.split("=")[0]) == wanted.split("=")[1]:
            return out


def test_notify_protocol(notify_socket: tuple[socket.socket, str], tmp_path: Path) -> None:
    sock, path = notify_socket
    config = tmp_path / "c.toml"
    config.write_text('[venues.sim-a]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\n')
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000", "CROSSBOOK_CONFIG": str(config)}
    with daemon_process(env=env) as daemon:
        ready = messages_until(sock, "READY=1")[-1]
        assert "books live" in ready["STATUS"]
        assert messages_until(sock, "WATCHDOG=1")
        config.write_text('[venues.sim-a]\nconnector = "sim"\nsymbols = ["BTC-USDT", "ETH-USDT"]\n')
        daemon.proc.send_signal(signal.SIGHUP)
        seen = messages_until(sock, "RELOADING=1")
        assert "MONOTONIC_USEC" in seen[-1]
        after = messages_until(sock, "READY=1")[-1]
        assert after["STATUS"].split()[0].endswith("/2")  # two books now
        daemon.proc.send_signal(signal.SIGTERM)
        assert messages_until(sock, "STOPPING=1")
        assert daemon.proc.wait(10) == 0
    assert "reloaded" in daemon.log


def test_broken_config_on_sighup_keeps_the_running_one(
    notify_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, path = notify_socket
    config = tmp_path / "c.toml"
    config.write_text('[venues.sim-a]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\n')
    with daemon_process(env={"NOTIFY_SOCKET": path, "CROSSBOOK_CONFIG": str(config)}) as daemon:
        messages_until(sock, "READY=1")
        config.write_text('[venues.sim-a]\nconnector = "sim"\nsymbols = ["btc"]\n')
        daemon.proc.send_signal(signal.SIGHUP)
        messages_until(sock, "READY=1")
        assert daemon.proc.poll() is None
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
    assert "reload refused, the running configuration stays" in daemon.log
    assert "venues.sim-a.symbols" in daemon.log


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_journald_lines_have_priorities_and_no_timestamps(fmt: str) -> None:
    with daemon_process("--log-format", fmt, env={"JOURNAL_STREAM": "8:1234"}) as daemon:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
    first = daemon.lines[0]
    if fmt == "text":
        assert first.startswith("<6>INFO crossbook: config: embedded default")
    else:
        assert json.loads(first) == {
            "level": "info",
            "logger": "crossbook",
            "message": "config: embedded default; venues: sim-a, sim-b, sim-c",
        }


@pytest.mark.usefixtures("restored_logging")
def test_log_formats_in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from crossbook.service import logs

    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    logs.setup(0, "text")
    logging.getLogger("crossbook.test").warning("hello %s", "there")
    logs.setup(0, "json")
    logging.getLogger("crossbook.test").info("second")
    monkeypatch.delenv("JOURNAL_STREAM")
    logs.setup(0, "json")
    logging.getLogger("crossbook.test").info("third")
    logs.setup(0, "text")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "<4>WARNING crossbook.test: hello there"
    assert json.loads(lines[1]) == {"level": "info", "logger": "crossbook.test", "message": "second"}
    third = json.loads(lines[2])
    assert third["message"] == "third"
    assert isinstance(third["ts"], float)


TOML = """
plugins = ["scripted_plugin"]
[venues.alpha]
connector = "scripted"
symbols = ["BTC-USDT", "ETH-USDT"]
{extra}
"""


@pytest.mark.anyio
async def test_reload_adds_and_removes_without_dropping_unchanged_subscribers(tmp_path: Path) -> None:
    beta = '[venues.beta]\nconnector = "scripted"\nsymbols = ["BTC-USDT", "SOL-USDT"]\n'
    async with running_daemon(tmp_path, TOML.format(extra=beta)) as (daemon, addresses):
        path = tmp_path / "crossbook.toml"
        base = path.read_text()
        daemon.reloader = reloader(path)
        alpha = await scripted_plugin.feed("alpha")
        alpha.publish([BookSnapshot("BTC-USDT", [(Decimal(100), Decimal(1))], [], alpha.now_ns())])
        async with connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream") as ws:
            mirror = Mirror()
            channels = ["book.BTC-USDT.alpha", "book.BTC-USDT.beta", "bbo.SOL-USDT", "book.BTC-USDT"]
            await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "channels": channels}).decode())

            async def read_until(check: Any) -> list[dict[str, Any]]:
                got: list[dict[str, Any]] = []
                with anyio.fail_after(10):
                    while not check(got):
                        msg = orjson.loads(await ws.recv())
                        mirror.apply(msg)
                        got.append(msg)
                return got

            await read_until(lambda got: {m.get("channel") for m in got} >= set(channels))
            seq_before = mirror.seq["book.BTC-USDT.alpha"]
            # a broken config is refused
            path.write_text(base.replace('symbols = ["BTC-USDT", "SOL-USDT"]', 'symbols = "BTC"'))
            assert daemon.reload() is False
            # beta goes, gamma comes; alpha is unchanged
            path.write_text(
                base.replace("[venues.beta]", "[venues.gamma]").replace('"BTC-USDT", "SOL-USDT"', '"BTC-USDT"')
            )
            assert daemon.reload() is True
            got = await read_until(lambda got: sum(m["type"] == "unsubscribed" for m in got) == 2)
            gone = {m["channel"] for m in got if m["type"] == "unsubscribed"}
            assert gone == {"book.BTC-USDT.beta", "bbo.SOL-USDT"}
            assert set(daemon.engine.venue_symbols) == {"alpha", "gamma"}
            assert "SOL-USDT" not in daemon.engine.consolidated
            gamma = await scripted_plugin.feed("gamma")
            assert daemon.engine.state("BTC-USDT", "gamma") is BookState.CONNECTING
            alpha.publish([BookSnapshot("BTC-USDT", [(Decimal(101), Decimal(1))], [], alpha.now_ns())])
            await read_until(lambda got: mirror.seq["book.BTC-USDT.alpha"] > seq_before)
            assert mirror.books["book.BTC-USDT.alpha"].top("bids") == [("101", "1", None)]
            assert gamma.venue == "gamma"
