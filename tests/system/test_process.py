"""The daemon as users run it: a child process with the embedded default config."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from support import DaemonProcess, daemon_process

pytestmark = pytest.mark.timeout(60)

REQUIRED_METRICS = {
    "crossbook_venue_messages",
    "crossbook_book_state",
    "crossbook_book_updates",
    "crossbook_resyncs",
    "crossbook_connector_restarts",
    "crossbook_clients",
    "crossbook_messages_sent",
    "crossbook_latency_seconds",
    "crossbook_venue_lag_seconds",
    "crossbook_venue_last_message_age_seconds",
    "crossbook_build_info",
}


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(daemon: DaemonProcess, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    status, body = http_get(daemon.api_port, "/readyz")
    while status != 200:
        assert status == 503
        assert json.loads(body)["not_live"]
        assert time.monotonic() < deadline, f"not ready: {body!r}\n{daemon.log}"
        time.sleep(0.05)  # polling an HTTP endpoint; there is no event to await across processes
        status, body = http_get(daemon.api_port, "/readyz")


def test_health_ready_and_unknown_paths() -> None:
    with daemon_process() as daemon:
        assert http_get(daemon.api_port, "/healthz") == (200, b'{"status":"ok"}\n')
        wait_ready(daemon)
        status, body = http_get(daemon.api_port, "/nope")
        assert status == 404
        assert b"/v1/stream" in body
    assert "config: embedded default" in daemon.log


def test_metrics_scrape_parse_and_promtool() -> None:
    with daemon_process() as daemon:
        wait_ready(daemon)

        async def subscribe_for_a_while() -> None:
            async with connect(f"ws://127.0.0.1:{daemon.api_port}/v1/stream") as ws:
                await ws.send('{"op":"subscribe","id":1,"channels":["book.BTC-USDT","bbo.BTC-USDT"]}')
                for _ in range(20):
                    await ws.recv()

        anyio.run(subscribe_for_a_while)
        status, body = http_get(daemon.metrics_port, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families.keys() >= REQUIRED_METRICS
    states = {s.labels["venue"] + "/" + s.labels["symbol"]: s.value for s in families["crossbook_book_state"].samples}
    assert states == {f"sim-{v}/{s}": 4.0 for v in "abc" for s in ("BTC-USDT", "ETH-USDT")}
    sent = {s.labels["kind"]: s.value for s in families["crossbook_messages_sent"].samples if s.name.endswith("_total")}
    assert sent["snapshot"] >= 1
    assert sent["delta"] >= 1
    latency = [s for s in families["crossbook_latency_seconds"].samples if s.name.endswith("_count")]
    assert latency[0].value > 0
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required under CI (Debian package 'prometheus')")
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_sigterm_closes_clients_with_1001_and_exits_0() -> None:
    with daemon_process() as daemon:
        wait_ready(daemon)
        codes: list[int | None] = []

        async def clients() -> None:
            async def one() -> None:
                async with connect(f"ws://127.0.0.1:{daemon.api_port}/v1/stream") as ws:
                    await ws.send('{"op":"subscribe","id":1,"channels":["book.BTC-USDT","trades.BTC-USDT"]}')
                    await ws.recv()
                    try:
                        while True:
                            await ws.recv()
                    except ConnectionClosed as exc:
                        codes.append(exc.rcvd.code if exc.rcvd else None)

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
                await anyio.sleep(0.5)  # let the clients subscribe and receive under load
                started = time.monotonic()
                daemon.proc.send_signal(signal.SIGTERM)
            assert time.monotonic() - started < 5

        anyio.run(clients)
        assert daemon.proc.wait(5) == 0
    assert codes == [1001, 1001, 1001]
    assert "received SIGTERM" in daemon.log


def test_bad_config_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[venues.sim-a]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\nrate = "fast"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "crossbook", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert f"{path}: venues.sim-a.rate:" in proc.stderr
