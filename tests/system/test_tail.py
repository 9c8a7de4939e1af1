"""``crossbook tail`` as a person runs it: in a terminal (tmux), and piped as JSON lines.

The daemon runs on sim venues frozen after their snapshots (``rate = 0``), so the ladder on the
screen and the API's ``bbo`` describe the same market and the comparison cannot race it.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from crossbook.client import Bbo, connect
from support import DaemonProcess, daemon_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

FROZEN = """
[consolidated]
stale_after = 3600
""" + "".join(f'[venues.sim-{v}]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\nrate = 0\nlevels = 30\n' for v in "abc")
POLL = 0.1
"""Seconds between two looks at something that has no event to wait on (a tmux pane, /readyz)."""


def tmux_binary() -> str:
    found = shutil.which("tmux")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required under CI (Debian package 'tmux')")
        pytest.skip("tmux not installed (Debian package 'tmux')")
    return found


@pytest.fixture
def frozen_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    config = tmp_path / "frozen.toml"
    config.write_text(FROZEN)
    with daemon_process("--config", str(config)) as daemon:
        deadline = time.monotonic() + 20
        while httpx.get(f"http://127.0.0.1:{daemon.api_port}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the sim venues never went live:\n" + daemon.log
            time.sleep(POLL)
        yield daemon


def stream_url(daemon: DaemonProcess) -> str:
    return f"ws://127.0.0.1:{daemon.api_port}/v1/stream"


def api_bbo(daemon: DaemonProcess) -> Bbo:
    async def first_bbo() -> Bbo:
        async with connect(stream_url(daemon)) as client:
            async for msg in client.subscribe("bbo.BTC-USDT"):
                assert isinstance(msg, Bbo)
                return msg
        raise AssertionError("no bbo")

    return anyio.run(first_bbo)


def ladder_top(screen: str) -> list[str] | None:
    """The cells of the ladder's first row (bid venues, bid size, bid, ask, ask size, ask venues)."""
    lines = screen.splitlines()
    header = next((i for i, line in enumerate(lines) if "bid size" in line), None)
    if header is None:
        return None
    for line in lines[header + 1 :]:
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 6 and cells[2]:
            return cells
    return None


def test_the_ladder_in_a_terminal_shows_the_apis_best_prices(frozen_daemon: DaemonProcess, tmp_path: Path) -> None:
    tmux = tmux_binary()
    bbo = api_bbo(frozen_daemon)
    assert bbo.bid is not None
    assert bbo.ask is not None
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g remain-on-exit on\n")  # a crashed tail leaves its traceback to read
    base = [tmux, "-S", str(tmp_path / "tmux.sock"), "-f", str(conf)]
    command = f"{sys.executable} -m crossbook tail book.BTC-USDT status --depth 5 --url {stream_url(frozen_daemon)}"
    subprocess.run([*base, "new-session", "-d", "-s", "tail", "-x", "180", "-y", "40", command], check=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            screen = subprocess.run(
                [*base, "capture-pane", "-p", "-t", "tail"], capture_output=True, text=True, check=True
            ).stdout
            top = ladder_top(screen)
            if top is not None:
                break
            assert time.monotonic() < deadline, "no ladder on the screen:\n" + screen
            time.sleep(POLL)
    finally:
        subprocess.run([*base, "kill-server"], check=False)
    bid_venues, bid_size, bid, ask, ask_size, ask_venues = top
    assert (Decimal(bid), Decimal(bid_size)) == (bbo.bid.price, bbo.bid.size), screen
    assert (Decimal(ask), Decimal(ask_size)) == (bbo.ask.price, bbo.ask.size), screen
    assert {v.split(":")[0] for v in bid_venues.split()} == set(bbo.bid.venues), screen
    assert {v.split(":")[0] for v in ask_venues.split()} == set(bbo.ask.venues), screen
    assert "seq 1" in screen  # frozen: the snapshot and nothing after it
    for venue in ("sim-a", "sim-b", "sim-c"):
        assert f"status {venue} BTC-USDT live" in screen  # status as lines above the ladder


def test_json_lines_are_the_apis_messages(frozen_daemon: DaemonProcess) -> None:
    bbo = api_bbo(frozen_daemon)
    assert bbo.bid is not None
    args = ["tail", "book.BTC-USDT", "status", "--depth", "3", "--json", "--url", stream_url(frozen_daemon)]
    proc = subprocess.Popen([sys.executable, "-m", "crossbook", *args], stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        messages: list[dict[str, Any]] = [orjson.loads(lines.get(timeout=20)) for _ in range(4)]
    finally:
        proc.kill()
        proc.wait(10)
    statuses, snapshot = messages[:3], messages[3]  # the status snapshot goes first
    assert [(m["type"], m["venue"], m["state"], m["seq"]) for m in statuses] == [
        ("status", f"sim-{v}", "live", i) for i, v in enumerate("abc", 1)
    ]
    assert (snapshot["type"], snapshot["channel"], snapshot["seq"]) == ("snapshot", "book.BTC-USDT", 1)
    assert len(snapshot["bids"]) == len(snapshot["asks"]) == 3
    best = snapshot["bids"][0]
    assert isinstance(best[0], str)  # exact text, as the server sent it
    assert (Decimal(best[0]), Decimal(best[1]), sorted(best[2])) == (bbo.bid.price, bbo.bid.size, bbo.bid.venues)
    refused = subprocess.run(
        [sys.executable, "-m", "crossbook", "tail", "book.NOPE", "--json", "--url", stream_url(frozen_daemon)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == "crossbook tail: unknown_channel: unknown channel(s): book.NOPE\n"
