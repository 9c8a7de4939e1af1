"""An out-of-tree plugin for tests, loaded through ``plugins = ["scripted_plugin"]``.

Its ``scripted`` connector publishes nothing by itself: the test holds the feed (``FEEDS[venue]``)
and plays the venue, so it knows exactly what the daemon was told. With ``crash = true`` the
connector raises at once, every time, to exercise the restart path.
"""

from __future__ import annotations

import anyio

from crossbook.toolkit.connector import ConnectorConfig, Feed
from crossbook.toolkit.hookspecs import hookimpl
from crossbook.toolkit.registry import ConnectorRegistry

FEEDS: dict[str, Feed] = {}
STARTS: dict[str, int] = {}
_changed: anyio.Event | None = None


def _notify() -> None:
    global _changed
    if _changed is not None:
        _changed.set()
    _changed = None


async def _wait_change() -> None:
    global _changed
    if _changed is None:
        _changed = anyio.Event()
    await _changed.wait()


async def feed(venue: str) -> Feed:
    """The feed of a running scripted venue, once its connector has started."""
    while venue not in FEEDS:
        await _wait_change()
    return FEEDS[venue]


async def wait_starts(venue: str, count: int) -> None:
    """Until the venue's connector has been started ``count`` times."""
    while STARTS.get(venue, 0) < count:
        await _wait_change()


class ScriptedConfig(ConnectorConfig):
    crash: bool = False


class ScriptedConnector:
    def __init__(self, venue: str, symbols: tuple[str, ...], config: ScriptedConfig) -> None:
        self.venue = venue
        self.config = config

    async def run(self, feed: Feed) -> None:
        STARTS[self.venue] = STARTS.get(self.venue, 0) + 1
        _notify()
        if self.config.crash:
            raise RuntimeError(f"scripted crash of {self.venue}")
        FEEDS[self.venue] = feed
        _notify()
        try:
            await anyio.sleep_forever()
        finally:
            FEEDS.pop(self.venue, None)


@hookimpl
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    registry.add(
        "scripted",
        config_model=ScriptedConfig,
        factory=ScriptedConnector,
        description="Test connector driven by the test itself",
    )
