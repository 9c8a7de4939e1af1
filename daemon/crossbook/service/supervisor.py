"""Keeps one venue's connector running: restart with capped exponential backoff and full jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import anyio

from crossbook.service.config import Venue
from crossbook.toolkit.connector import Feed

log = logging.getLogger("crossbook.supervisor")

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
HEALTHY_AFTER = 60.0
"""A connector that ran this long before failing starts its backoff afresh."""


def backoff(attempt: int, rng: random.Random, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(attempt, 30)))


async def supervise(
    venue: Venue,
    feed: Feed,
    on_stop: Callable[[str], None],
    rng: random.Random | None = None,
) -> None:
    """Run the venue's connector forever; ``on_stop(reason)`` marks its books down and counts it."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            connector = venue.spec.factory(venue.name, venue.symbols, venue.config)
            await connector.run(feed)
            log.error("venue %s: connector %r returned; restarting", venue.name, venue.spec.id)
        except Exception:
            log.exception("venue %s: connector %r failed; restarting", venue.name, venue.spec.id)
        on_stop("crash")
        if time.monotonic() - started > HEALTHY_AFTER:
            attempt = 0
        delay = backoff(attempt, rng)
        attempt += 1
        log.info("venue %s: restart %d in %.2fs", venue.name, attempt, delay)
        await anyio.sleep(delay)
