"""A clock for tests that moves only when told: timers and deadlines of the toolkit's I/O layer
(idle timeouts, the handover deadline, backoff, REST pacing) then fire exactly when a test says."""

from __future__ import annotations

import anyio


class ManualClock:
    """A :class:`~crossbook.toolkit.clock.Clock` whose time stands still until :meth:`advance`.

    Give it to a :class:`~crossbook.plugin.StreamingConnector` (its ``clock``) before it runs.
    """

    def __init__(self, wall_ns: int = 1_700_000_000_000_000_000, monotonic: float = 1000.0) -> None:
        self._wall_ns = wall_ns
        self._monotonic = monotonic
        self._moved = anyio.Event()

    def time_ns(self) -> int:
        return self._wall_ns

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move time on; whatever waits for it wakes."""
        self._monotonic += seconds
        self._wall_ns += int(seconds * 1e9)
        self._moved.set()
        self._moved = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        until = self._monotonic + seconds
        while self._monotonic < until:
            await self._moved.wait()

    async def wait(self, event: anyio.Event, limit: float | None) -> bool:
        until = None if limit is None else self._monotonic + limit
        while not event.is_set() and (until is None or self._monotonic < until):
            async with anyio.create_task_group() as tg:

                async def either(which: anyio.Event) -> None:
                    await which.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(either, event)
                tg.start_soon(either, self._moved)
        return event.is_set()
