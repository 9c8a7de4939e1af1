"""The one clock of the toolkit's I/O layer: every time stamp, timer and deadline comes from it,
so a test can replace it (:class:`crossbook.testing.ManualClock`)."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def time_ns(self) -> int:
        """Wall-clock time in ns since the epoch: what received data is stamped with."""

    def monotonic(self) -> float:
        """Seconds on a clock that never steps: what intervals and deadlines are measured on."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""

    async def wait(self, event: anyio.Event, limit: float | None) -> bool:
        """Wait until ``event`` is set or ``limit`` seconds (None: no limit) have passed;
        returns whether it was set."""


class SystemClock:
    """The machine's clocks and anyio's timers."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def wait(self, event: anyio.Event, limit: float | None) -> bool:
        with anyio.move_on_after(limit):
            await event.wait()
        return event.is_set()


SYSTEM_CLOCK = SystemClock()
