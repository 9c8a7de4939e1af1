"""REST snapshots for one venue: one shared scheduler so resyncs never get the host banned.

Every symbol's snapshot request goes through one queue per venue: requests are spent from a
weight budget per minute (the venue's request-weight limit), a 429 or 418 pauses the whole venue
for ``Retry-After`` (or a doubling pause when absent), and failures retry with backoff. A symbol
is queued at most once, however often it asks.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import anyio
import httpx

from crossbook.toolkit.clock import SYSTEM_CLOCK, Clock
from crossbook.toolkit.retry import backoff
from crossbook.toolkit.venue import HttpRequest

log = logging.getLogger("crossbook.rest")

BANNED = (418, 429)


class WeightBudget:
    """A token bucket of request weight refilled continuously at ``per_minute``."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.tokens = per_minute
        self.stamp = now

    def wait_time(self, weight: float, now: float) -> float:
        """Seconds until ``weight`` can be spent (0: spend it now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= weight:
            self.tokens -= weight
            return 0.0
        return (weight - self.tokens) / self.rate


def retry_after(response: httpx.Response, now: float) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            return None


class SnapshotScheduler:
    def __init__(
        self,
        venue: str,
        fetch: Callable[[str], HttpRequest],
        deliver: Callable[[str, bytes, int], None],
        *,
        weight_per_minute: float,
        timeout: float = 10.0,
        rng: random.Random | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.venue = venue
        self.fetch = fetch
        self.deliver = deliver
        self.timeout = timeout
        self.rng = rng or random.Random()
        self.clock = clock
        self.budget = WeightBudget(weight_per_minute, clock.monotonic())
        self.pending: OrderedDict[str, tuple[int, float]] = OrderedDict()
        """Symbol -> (failed attempts so far, monotonic time before which not to retry)."""
        self._wakeup = anyio.Event()
        self.paused_until = 0.0
        self.ban_pause = 1.0
        self.requests = 0
        """Requests sent (for tests and metrics)."""

    def request(self, symbol: str) -> None:
        """Queue a snapshot of ``symbol`` (once, however often it is asked)."""
        if symbol not in self.pending:
            self.pending[symbol] = (0, 0.0)
            self._wakeup.set()

    def cancel(self, symbol: str) -> None:
        self.pending.pop(symbol, None)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                wait, item = self._next(self.clock.monotonic())
                if item is None:
                    self._wakeup = anyio.Event()
                    await self.clock.wait(self._wakeup, wait)
                    continue
                await self._one(client, *item)

    def _next(self, now: float) -> tuple[float | None, tuple[str, int, HttpRequest] | None]:
        """What to request now, or how long to wait (``None``: until a request arrives)."""
        if not self.pending:
            return None, None
        if now < self.paused_until:
            return self.paused_until - now, None
        due = next(((s, a) for s, (a, not_before) in self.pending.items() if not_before <= now), None)
        if due is None:
            return min(nb for _, nb in self.pending.values()) - now, None
        req = self.fetch(due[0])
        wait = self.budget.wait_time(req.weight, now)
        if wait:
            return wait, None
        return 0.0, (due[0], due[1], req)

    async def _one(self, client: httpx.AsyncClient, symbol: str, attempts: int, req: HttpRequest) -> None:
        self.requests += 1
        try:
            response = await client.get(req.url, params=req.params)
        except httpx.HTTPError as exc:
            self._retry(symbol, attempts, f"{type(exc).__name__}: {exc}")
            return
        now = self.clock.monotonic()
        if response.status_code in BANNED:
            pause = retry_after(response, self.clock.time_ns() / 1e9)
            if pause is None:
                pause = self.ban_pause
                self.ban_pause = min(self.ban_pause * 2, 300.0)
            self.paused_until = now + pause
            log.warning(
                "venue %s: REST %d; pausing all snapshot requests for %.1fs", self.venue, response.status_code, pause
            )
            return
        self.ban_pause = 1.0
        if response.status_code != 200:
            self._retry(symbol, attempts, f"HTTP {response.status_code}")
            return
        if self.pending.pop(symbol, None) is None:
            return  # cancelled while in flight
        self.deliver(symbol, response.content, self.clock.time_ns())

    def _retry(self, symbol: str, attempts: int, why: str) -> None:
        if symbol not in self.pending:
            return
        delay = backoff(attempts, self.rng)
        log.warning("venue %s: snapshot of %s failed (%s); retry in %.2fs", self.venue, symbol, why, delay)
        del self.pending[symbol]
        self.pending[symbol] = (attempts + 1, self.clock.monotonic() + delay)  # to the back of the queue
