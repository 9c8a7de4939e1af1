"""Keeps one venue's connector running: restart with capped exponential backoff and full jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import anyio

from crossbook.service.config import Venue
from crossbook.toolkit.connector import Feed
from crossbook.toolkit.retry import HEALTHY_AFTER, backoff

log = logging.getLogger("crossbook.supervisor")


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
