"""The sim connector's run loop: paces the simulated markets and publishes through the feed."""

from __future__ import annotations

import random
from decimal import Decimal

import anyio
from pydantic import Field, field_validator

from crossbook.plugin import BookState, ConnectorConfig, Feed, VenueStatus
from crossbook_sim.market import SimBook, shared_mid, stable_hash

MAX_BATCH = 2000
"""Most messages produced between two checkpoints, so a fast sim never starves the loop."""


class SimConfig(ConnectorConfig):
    rate: float = Field(20.0, ge=0, le=10_000_000)
    """Book update messages per second per symbol (raise it to drive benchmarks); 0 freezes the
    books after their snapshots (no updates, no trades), for tests that compare views of them."""
    trade_rate: float = Field(1.0, ge=0)
    """Trades per second per symbol."""
    levels: int = Field(200, ge=1, le=10_000)
    """Levels per side."""
    tick: str | None = None
    """Tick size (default: venue-specific, derived from the venue name)."""
    seed: int = 0
    """Seed of the shared mid and of this venue's randomness."""

    @field_validator("tick")
    @classmethod
    def _tick(cls, tick: str | None) -> str | None:
        if tick is not None:
            try:
                ok = Decimal(tick) > 0
            except ArithmeticError:
                ok = False
            if not ok:
                raise ValueError(f"tick must be a positive decimal string, got {tick!r}")
        return tick


class SimConnector:
    def __init__(self, venue: str, symbols: tuple[str, ...], config: SimConfig) -> None:
        self.venue = venue
        self.symbols = symbols
        self.config = config

    async def run(self, feed: Feed) -> None:
        cfg = self.config
        rng = random.Random(stable_hash(self.venue) ^ cfg.seed)
        tick = Decimal(cfg.tick) if cfg.tick else None
        books = [
            SimBook(self.venue, s, levels=cfg.levels, tick=tick, rng=rng, mid=shared_mid(s, cfg.seed))
            for s in self.symbols
        ]
        feed.publish([VenueStatus(None, BookState.CONNECTING, feed.now_ns())])
        for book in books:
            feed.publish([VenueStatus(book.symbol, BookState.SYNCING, feed.now_ns())])
            feed.publish([book.snapshot(feed.now_ns())])
        if not cfg.rate:
            await anyio.sleep_forever()
        interval_ns = 1e9 / (cfg.rate * len(books))
        trade_chance = cfg.trade_rate / cfg.rate
        start = feed.now_ns()
        done = 0
        while True:
            now = feed.now_ns()
            due = min(int((now - start) / interval_ns) - done, MAX_BATCH)
            for _ in range(due):
                book = books[done % len(books)]
                done += 1
                feed.publish([book.step(now)])
                if trade_chance and rng.random() < trade_chance:
                    feed.publish([book.trade(now)])
            wait = (start + (done + 1) * interval_ns - feed.now_ns()) / 1e9
            await anyio.sleep(max(wait, 0.0))
