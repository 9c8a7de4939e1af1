"""Capped exponential backoff with full jitter: every reconnect, restart and retry waits this."""

from __future__ import annotations

import random

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
HEALTHY_AFTER = 60.0
"""A connection or connector that ran this long before failing starts its backoff afresh."""


def backoff(attempt: int, rng: random.Random, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(attempt, 30)))
