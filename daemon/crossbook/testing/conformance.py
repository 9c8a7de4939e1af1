"""A conformance helper: runs any streaming connector through the standard fault scenarios
against its fake venue and reports what failed.

    report = await run_conformance(subject)
    assert report.failures == {}, report

Scenarios (each on a fresh fake venue and connector):

- ``sync``: books built from snapshot + deltas equal the venue's;
- ``gap``: a lost message makes that symbol (only) resync and come back with the right book;
- ``checksum``: a corrupt checksum makes the symbol resync (venues with checksums);
- ``drop``: a dropped connection reconnects and every book resyncs;
- ``stall``: a silent connection is replaced within the idle timeout;
- ``garbage``: garbage, truncated and too deeply nested frames are counted and skipped, books stay
  right;
- ``rest_429``: a 429 with Retry-After pauses snapshot requests, no storm (REST venues);
- ``planned_reconnect``: a venue-requested reconnect switches connections without a book
  leaving ``live`` (venues that request reconnects).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from crossbook.core.model import BookState
from crossbook.testing.fakevenue import Dialect, FakeConnection, FakeVenue
from crossbook.testing.feed import EngineFeed
from crossbook.testing.market import FakeMarket
from crossbook.toolkit.clock import Clock
from crossbook.toolkit.connector import Connector, ConnectorConfig
from crossbook.toolkit.streaming import StreamingConnector

IDLE_TIMEOUT = 1.0
SCENARIOS = ("sync", "gap", "checksum", "drop", "stall", "garbage", "rest_429", "planned_reconnect")


@dataclass
class Subject:
    """A connector and its fake venue, as the conformance suite needs them."""

    venue: str
    factory: Callable[[str, tuple[str, ...], Any], Connector]
    config_model: type[ConnectorConfig]
    dialect: Callable[[FakeMarket], Dialect]
    config: Callable[[FakeVenue], dict[str, Any]]
    """Connector keys pointing it at the fake (``ws_url``, ``rest_url``...); the suite adds
    ``idle_timeout``."""
    symbols: Sequence[str] = ("BTC-USDT", "ETH-USDT")
    rest_snapshots: bool = False
    detects_gaps: bool = True
    """False for a venue with neither sequence numbers nor checksums (a loss cannot be seen)."""
    gap_reasons: tuple[str, ...] = ("gap",)
    """Resync reasons a lost message may show as (Kraken finds losses by checksum)."""
    checksums: bool = False
    depth: int | None = None
    """Levels a side the connector keeps (subscribed depth), if limited."""
    planned_reconnects: bool = False
    resync_reconnects: bool = False
    """True for a venue that cannot resync one symbol on an open connection."""
    market_levels: int = 30


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"passed: {', '.join(self.passed) or '-'}"]
        lines += [f"FAILED {name}: {why}" for name, why in self.failures.items()]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


@dataclass
class Rig:
    subject: Subject
    fake: FakeVenue
    market: FakeMarket
    feed: EngineFeed

    def in_sync(self, symbol: str) -> bool:
        if self.feed.state(symbol) is not BookState.LIVE:
            return False
        book, truth, n = self.feed.book(symbol), self.market.books[symbol], self.subject.depth or 10**9
        return book.top_bids(n) == truth.top_bids(n) and book.top_asks(n) == truth.top_asks(n)

    async def converge(self, symbols: Sequence[str] | None = None, limit: float = 10.0) -> None:
        """Move the market until the connector's books equal it (within ``limit`` seconds)."""
        symbols = list(symbols or self.subject.symbols)
        with anyio.fail_after(limit):
            while not all(self.in_sync(s) for s in symbols):
                for s in symbols:
                    await self.fake.step(s)
                with anyio.move_on_after(0.05):
                    await self.feed.wait_for(lambda: all(self.in_sync(s) for s in symbols))

    async def handing_over(self, rest_delay: float, connections: int = 2) -> list[FakeConnection]:
        """Ask for a planned reconnect whose new connections' REST snapshots wait ``rest_delay``
        seconds (old and new then stay open together); returns the ``connections`` open
        connections, oldest first."""
        self.fake.rest_delay = rest_delay
        await self.fake.request_reconnect()
        await self.until(lambda: len(self.fake.connections) == connections)
        return list(self.fake.connections)

    async def until(self, condition: Callable[[], bool], limit: float = 10.0) -> None:
        """Until ``condition()`` (within ``limit`` seconds), moving the market meanwhile."""
        with anyio.fail_after(limit):
            while not condition():
                for s in self.subject.symbols:
                    await self.fake.step(s)
                with anyio.move_on_after(0.05):
                    await self.feed.wait_for(condition)


@contextlib.asynccontextmanager
async def rig(subject: Subject, clock: Clock | None = None, **extra: Any) -> AsyncIterator[Rig]:
    """The subject's connector running against its fake venue (``extra``: connector keys; a
    ``clock`` replaces a streaming connector's)."""
    market = FakeMarket(list(subject.symbols), levels=subject.market_levels)
    fake = FakeVenue(subject.dialect(market), market)
    async with fake.running():
        settings = {**subject.config(fake), "idle_timeout": IDLE_TIMEOUT, **extra}
        connector = subject.factory(
            subject.venue, tuple(subject.symbols), subject.config_model.model_validate(settings)
        )
        if clock is not None:
            assert isinstance(connector, StreamingConnector), "only a streaming connector's clock can be replaced"
            connector.clock = clock
        feed = EngineFeed(subject.venue, subject.symbols)
        async with anyio.create_task_group() as tg:
            tg.start_soon(connector.run, feed)
            with anyio.fail_after(10):
                await fake.wait_connections(1)
            yield Rig(subject, fake, market, feed)
            tg.cancel_scope.cancel()


async def _sync(r: Rig) -> None:
    await r.converge()


async def _gap(r: Rig) -> None:
    await r.converge()
    first, other = r.subject.symbols[0], r.subject.symbols[1:]
    before = {s: len(r.feed.statuses(s)) for s in other}
    connects = r.fake.connects

    def resynced() -> bool:
        return sum(r.feed.resyncs(reason) for reason in r.subject.gap_reasons) >= 1

    with anyio.fail_after(20):
        # A venue without sequence numbers sees a loss only if it touched what its checksum
        # covers: lose messages until one does.
        while not resynced():
            await r.fake.step(first, skip=True)
            for _ in range(3):
                await r.fake.step(first)
            with anyio.move_on_after(0.1):
                await r.feed.wait_for(resynced)
    await r.converge()
    assert {s: len(r.feed.statuses(s)) for s in other} == before, "another symbol resynced"
    if not r.subject.resync_reconnects:
        assert r.fake.connects == connects, "the connection was dropped to resync one symbol"


async def _checksum(r: Rig) -> None:
    await r.converge()
    await r.fake.step(r.subject.symbols[0], corrupt=True)
    await r.until(lambda: r.feed.resyncs("checksum") >= 1)
    await r.converge()


async def _drop(r: Rig) -> None:
    await r.converge()
    await r.fake.drop()
    await r.until(lambda: r.fake.connects >= 2 and r.feed.resyncs("reconnect") >= len(r.subject.symbols))
    await r.converge()


async def _stall(r: Rig) -> None:
    await r.converge()
    r.fake.stalled = True
    started = time.monotonic()
    with anyio.fail_after(IDLE_TIMEOUT * 5):
        await r.feed.wait_for(lambda: r.feed.state(r.subject.symbols[0]) is BookState.CONNECTING)
    took = time.monotonic() - started
    assert took < IDLE_TIMEOUT * 1.5, f"stall noticed after {took:.2f}s (idle timeout {IDLE_TIMEOUT}s)"
    r.fake.stalled = False
    await r.converge()
    assert r.feed.resyncs("stale") >= 1, "a stall resynced without reason 'stale'"


async def _garbage(r: Rig) -> None:
    await r.converge()
    skipped, connects = len(r.feed.skipped), r.fake.connects
    await r.fake.send_all("{garbage")
    await r.fake.send_all('{"truncated": [1, 2')
    await r.fake.send_all("[" * 100_000 + "]" * 100_000)  # deeper than any decoder recurses
    with anyio.fail_after(5):
        await r.feed.wait_for(lambda: len(r.feed.skipped) >= skipped + 3)
    await r.converge()
    assert r.fake.connects == connects, "a garbage frame dropped the connection"


async def _rest_429(r: Rig) -> None:
    r.fake.fail_rest(429, times=1, retry_after=1.0)
    await r.converge()
    times = [t for t, _ in r.fake.rest_requests]
    assert len(times) >= 2, f"{len(times)} REST requests"
    assert times[1] - times[0] >= 1.0, "retried before Retry-After"
    assert len(times) <= len(r.subject.symbols) + 1, f"{len(times)} REST requests for {len(r.subject.symbols)} symbols"


async def _planned_reconnect(r: Rig) -> None:
    await r.converge()
    mark = len(r.feed.events)
    await r.fake.request_reconnect()
    await r.until(lambda: r.fake.connects >= 2 and len(r.fake.connections) == 1)
    await r.converge()
    left = [e for e in r.feed.statuses() if r.feed.events.index(e) >= mark]
    assert left == [], f"books left live: {left}"


RUNNERS: dict[str, Callable[[Rig], Awaitable[None]]] = {
    "sync": _sync,
    "gap": _gap,
    "checksum": _checksum,
    "drop": _drop,
    "stall": _stall,
    "garbage": _garbage,
    "rest_429": _rest_429,
    "planned_reconnect": _planned_reconnect,
}


def _skip_reason(subject: Subject, name: str) -> str | None:
    if name == "gap" and not subject.detects_gaps:
        return "the venue has neither sequence numbers nor checksums"
    if name == "gap" and len(subject.symbols) < 2:
        return "needs two symbols"
    if name == "checksum" and not subject.checksums:
        return "the venue sends no checksums"
    if name == "rest_429" and not subject.rest_snapshots:
        return "the venue's snapshots come in-stream"
    if name == "planned_reconnect" and not subject.planned_reconnects:
        return "the venue never asks for a reconnect"
    return None


async def run_conformance(subject: Subject, scenarios: Sequence[str] = SCENARIOS) -> Report:
    report = Report()
    for name in scenarios:
        why = _skip_reason(subject, name)
        if why is not None:
            report.skipped[name] = why
            continue
        try:
            async with rig(subject) as r:
                await RUNNERS[name](r)
        except Exception as exc:
            report.failures[name] = f"{type(exc).__name__}: {exc}"
        else:
            report.passed.append(name)
    return report
