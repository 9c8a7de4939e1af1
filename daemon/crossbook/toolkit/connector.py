"""What a connector is, seen from the daemon.

A connector turns one venue's feed into normalized events for a set of symbols. The daemon builds
one per configured venue with the factory its plugin registered and runs it in a task that it
supervises: if ``run`` raises, the venue's books go down and the connector is built again and
restarted after a capped, jittered exponential backoff. A connector publishes through its
:class:`Feed` and never touches books, sockets of the API, or metrics itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from crossbook.core.model import Event


class ConnectorConfig(BaseModel):
    """Base of a connector's own settings: the keys of its ``[venues.<name>]`` table beyond
    ``connector`` and ``symbols``. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Feed(Protocol):
    """The daemon's side of a running connector."""

    venue: str
    symbols: tuple[str, ...]

    def now_ns(self) -> int:
        """Local wall-clock time in ns: stamp ``recv_ns`` of events with it on receipt."""

    def publish(self, events: Sequence[Event]) -> None:
        """Hand over the events of one venue message. Never blocks; call once per message. The
        books change at once; subscribers are told once the connector waits (for the venue, say),
        in one update per channel for every message published since, by it and by others."""

    def heard(self) -> None:
        """Say the venue sent something without events (heartbeat, ack): it is not silent."""

    def skip(self, reason: str) -> None:
        """Count and log (rate-limited) something unusable from the venue, e.g. a garbage frame."""


class Connector(Protocol):
    async def run(self, feed: Feed) -> None:
        """Stream the venue until cancelled. Raise on failure; returning also counts as a stop."""


ConnectorFactory = Callable[[str, tuple[str, ...], Any], Connector]
"""``factory(venue, symbols, config)``: ``config`` is an instance of the connector's config model."""
