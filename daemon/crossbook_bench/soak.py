"""Soak: ``python -m crossbook_bench.soak [--seconds S] [--clients N] [--slow M] [--lingering L]``.

Runs the daemon (a child process) against two fake Binance venues on loopback that inject faults
(dropped connections, lost messages, garbage frames, stalls, REST 429s), with hundreds of
WebSocket clients, some of them slow, some having their writes held (``?linger_ms=``), for a
bounded time. It prints: messages delivered, gaps
seen by clients (must be 0: conflations are announced and do not count), books served wrong
(clients' venue books compared with the venues' truth at quiet checkpoints; must be 0), and the
daemon's RSS and open file descriptors over time (growth must level off).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson

from crossbook.client import Mirror, SequenceGap
from crossbook.core.exact import text
from crossbook.testing.fakevenue import FakeVenue
from crossbook.testing.market import FakeMarket

SYMBOLS = ["BTC-USDT", "ETH-USDT"]
VENUES = ("bn-a", "bn-b")
FAULTS = ("drop", "gap", "garbage", "stall", "rest_429")
DEPTH = 10
LINGER_MS = 20
"""What the lingering clients ask for."""
FAULT_SETTLE = 6.0
"""Seconds after a fault before a venue's books are checked against the truth."""


class Gate:
    """Open: the market and the faults run; closed: they wait (quiet checkpoints)."""

    def __init__(self) -> None:
        self._open = anyio.Event()
        self._open.set()

    async def wait(self) -> None:
        await self._open.wait()

    def close(self) -> None:
        if self._open.is_set():
            self._open = anyio.Event()

    def open(self) -> None:
        self._open.set()


@dataclass
class Client:
    mirror: Mirror = field(default_factory=Mirror)
    states: dict[str, str] = field(default_factory=dict)
    """BTC-USDT book state per venue, from the status channel."""


@dataclass
class Figures:
    delivered: int = 0
    gaps: int = 0
    conflations: int = 0
    checks: int = 0
    wrong: int = 0
    closed: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    fault_ended: dict[str, float] = field(default_factory=dict)
    """Per venue, when its last fault ended (monotonic): a check skips a venue faulted just before,
    since a lost message shows only when the next one arrives."""
    faulting: anyio.Lock = field(default_factory=anyio.Lock)
    rss_mib: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)


class Daemon:
    def __init__(self, config: Path) -> None:
        self.lines: list[str] = []
        self.api = 0
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crossbook", "run", "--config", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("CROSSBOOK_")},
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.lines) < 10_000:
                self.lines.append(line)
            if m := re.search(r"API listening on ws://[\d.]+:(\d+)/", line):
                self.api = int(m.group(1))
                self.ready.set()

    def sample(self, figures: Figures) -> None:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        rss = re.search(r"VmRSS:\s+(\d+)", status)
        figures.rss_mib.append(int(rss.group(1)) / 1024 if rss else float("nan"))
        figures.fds.append(len(os.listdir(f"/proc/{self.proc.pid}/fd")))


async def run(seconds: float, clients: int, slow: int, rate: float, seed: int, lingering: int = 0) -> Figures:
    """The first ``slow`` clients are slow, the next ``lingering`` ones have their writes held."""
    rng = random.Random(seed)
    figures = Figures(faults=dict.fromkeys(FAULTS, 0))
    markets = {v: FakeMarket(SYMBOLS, seed=i + 1, mid=100_000 + 3 * i) for i, v in enumerate(VENUES)}
    from crossbook_binance.fake import BinanceDialect

    fakes = {v: FakeVenue(BinanceDialect(m), m) for v, m in markets.items()}
    gate = Gate()
    async with fakes["bn-a"].running(), fakes["bn-b"].running():
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "soak.toml"
            config.write_text(
                "[server]\nport = 0\nslow_client_timeout = 5.0\nmax_connections_per_ip = 10000\n"
                "max_buffer_messages = 2000\n[metrics]\nport = 0\n[consolidated]\nstale_after = 10.0\n"
                + "".join(
                    f'[venues.{v}]\nconnector = "binance"\nsymbols = {orjson.dumps(SYMBOLS).decode()}\n'
                    f'ws_url = "{f.ws_url}"\nrest_url = "{f.rest_url}"\nidle_timeout = 2.0\ntrades = false\n'
                    for v, f in fakes.items()
                )
            )
            daemon = Daemon(config)
            try:
                if not daemon.ready.wait(30):
                    raise RuntimeError("daemon did not start:\n" + "".join(daemon.lines))
                daemon.sample(figures)
                watched: list[Client] = []
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_market, fakes, rate, gate)
                    tg.start_soon(_faults, fakes, rng, figures, gate)
                    for i in range(clients):
                        client = Client()
                        if i >= slow:
                            watched.append(client)
                        query = f"?linger_ms={LINGER_MS}" if slow <= i < slow + lingering else ""
                        tg.start_soon(_client, daemon.api, client, i < slow, figures, query)
                    deadline = time.monotonic() + seconds
                    next_check = time.monotonic() + 15
                    next_sample = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        await anyio.sleep(1)
                        if time.monotonic() >= next_sample:
                            daemon.sample(figures)
                            next_sample += 10
                        if time.monotonic() >= next_check:
                            await _check(watched, markets, gate, figures)
                            next_check = time.monotonic() + 30
                    await _check(watched, markets, gate, figures)
                    daemon.sample(figures)
                    tg.cancel_scope.cancel()
            finally:
                daemon.proc.terminate()
                daemon.proc.wait(10)
    return figures


async def _market(fakes: dict[str, FakeVenue], rate: float, gate: Gate) -> None:
    interval = 1.0 / rate
    while True:
        await gate.wait()
        for fake in fakes.values():
            for symbol in SYMBOLS:
                await fake.step(symbol)
        await anyio.sleep(interval)


async def _faults(fakes: dict[str, FakeVenue], rng: random.Random, figures: Figures, gate: Gate) -> None:
    while True:
        await anyio.sleep(rng.uniform(3, 8))
        await gate.wait()
        venue = rng.choice(VENUES)
        fake = fakes[venue]
        fault = rng.choice(FAULTS)
        figures.faults[fault] += 1
        async with figures.faulting:
            if fault == "drop":
                await fake.drop()
            elif fault == "gap":
                await fake.step(rng.choice(SYMBOLS), skip=True)
            elif fault == "garbage":
                await fake.send_all("{garbage")
            elif fault == "stall":
                fake.stalled = True
                await anyio.sleep(3)
                fake.stalled = False
            else:
                fake.fail_rest(429, retry_after=1.0)
                await fake.drop()
            figures.fault_ended[venue] = time.monotonic()


async def _client(port: int, client: Client, slow: bool, figures: Figures, query: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    channels = ["book.BTC-USDT", "bbo.BTC-USDT", "status"] + [f"book.BTC-USDT.{v}" for v in VENUES]
    request = orjson.dumps({"op": "subscribe", "id": 1, "channels": channels, "depth": DEPTH}).decode()
    while True:
        try:
            async with connect(f"ws://127.0.0.1:{port}/v1/stream{query}", max_size=None) as ws:
                await ws.send(request)
                async for data in ws:
                    msg = orjson.loads(data)
                    figures.delivered += 1
                    if msg.get("conflated") or msg.get("type") == "conflated":
                        figures.conflations += 1
                    if msg.get("type") == "status" and msg.get("symbol") == "BTC-USDT":
                        client.states[msg["venue"]] = msg["state"]
                    try:
                        client.mirror.apply(msg)
                    except SequenceGap:
                        figures.gaps += 1
                    if slow:
                        await anyio.sleep(0.2)
        except (ConnectionClosed, OSError):
            figures.closed += 1
            client.mirror = Mirror()
            client.states.clear()
            await anyio.sleep(1)


async def _check(clients: list[Client], markets: dict[str, FakeMarket], gate: Gate, figures: Figures) -> None:
    """Hold the market still, let everything settle, compare clients' live venue books with the truth."""
    async with figures.faulting:  # never in the middle of a fault
        gate.close()
    try:
        await anyio.sleep(1.5)
        recent = {v for v, at in figures.fault_ended.items() if time.monotonic() - at < FAULT_SETTLE}
        for client in clients:
            for venue, market in markets.items():
                book = client.mirror.books.get(f"book.BTC-USDT.{venue}")
                if book is None or client.states.get(venue) != "live" or venue in recent:
                    continue
                truth = market.books["BTC-USDT"]
                figures.checks += 1
                want_bids = [(text(p), text(s), None) for p, s in truth.top_bids(DEPTH)]
                want_asks = [(text(p), text(s), None) for p, s in truth.top_asks(DEPTH)]
                if book.top("bids") != want_bids or book.top("asks") != want_asks:
                    figures.wrong += 1
    finally:
        gate.open()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossbook_bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--slow", type=int, default=20, help="how many of the clients are slow")
    parser.add_argument(
        "--lingering", type=int, default=20, help=f"how many of the others ask for linger_ms={LINGER_MS}"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="market steps per second per symbol and venue")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures = anyio.run(run, args.seconds, args.clients, args.slow, args.rate, args.seed, args.lingering)
    out: dict[str, Any] = {
        "seconds": round(time.monotonic() - started, 1),
        "clients": args.clients,
        "slow_clients": args.slow,
        "lingering_clients": args.lingering,
        "messages_delivered": figures.delivered,
        "gaps_seen_by_clients": figures.gaps,
        "conflations_announced": figures.conflations,
        "book_checks": figures.checks,
        "books_served_wrong": figures.wrong,
        "client_reconnects": figures.closed,
        "faults_injected": figures.faults,
        "rss_mib_every_minute": [round(x, 1) for x in figures.rss_mib[::6]],
        "fds_every_minute": figures.fds[::6],
        "rss_mib_start": round(figures.rss_mib[0], 1),
        "rss_mib_end": round(figures.rss_mib[-1], 1),
        "rss_mib_max": round(max(figures.rss_mib), 1),
        "fds_start": figures.fds[0],
        "fds_end": figures.fds[-1],
    }
    for key, value in out.items():
        print(f"{key:<24} {value}")
    print(orjson.dumps(out).decode())
    return 0 if figures.gaps == 0 and figures.wrong == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
