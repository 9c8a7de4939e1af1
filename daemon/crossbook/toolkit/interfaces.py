"""The Protocols a connector plugin implements: a venue's wire protocol (:class:`VenueProtocol`,
with :class:`RestSnapshots` for REST snapshots) and a book's :class:`SequenceRule`.

They live apart from :mod:`crossbook.toolkit.venue` and :mod:`crossbook.toolkit.sync`, which re-export them,
because those are compiled in a compiled build (``CROSSBOOK_COMPILE=1``) and mypyc compiles a
Protocol into a trait that no interpreted class may subclass; this module stays interpreted, so a
plugin may subclass them in either build.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from crossbook.toolkit.sync import Verdict
    from crossbook.toolkit.venue import BookUpdate, ConnectionState, HttpRequest, Output, SnapshotSource, Stream


class VenueProtocol(Protocol):
    """A venue's wire protocol, sans I/O. One instance per configured venue."""

    snapshot_source: SnapshotSource
    ping_interval: float | None
    """Seconds between WebSocket protocol pings (``None``: the venue pings us)."""
    idle_timeout: float
    """Seconds without any frame before the connection is declared stalled and replaced."""

    def streams(self, symbols: Sequence[str]) -> list[Stream]:
        """Split symbols over connections within the venue's per-connection limits."""

    def parse(self, conn: ConnectionState, frame: str | bytes, recv_ns: int) -> list[Output]:
        """Turn one received frame into outputs. Raise ``ValueError`` for a frame it cannot read."""

    def resubscribe(self, symbols: Sequence[str]) -> list[str] | None:
        """Frames that make the venue send these symbols' books afresh, or ``None`` to reconnect.
        All the symbols one frame or one gap put out of sync come in one call: a venue that takes
        several symbols a message needs few messages (Coinbase allows 8 a second)."""

    def app_ping(self) -> str | None:
        """An application-level ping frame to send every ``ping_interval`` (``None``: protocol ping)."""


class RestSnapshots(Protocol):
    """What a venue whose ``snapshot_source`` is ``REST`` implements too."""

    def snapshot_request(self, symbol: str) -> HttpRequest:
        """The REST request of ``symbol``'s snapshot."""

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        """A REST snapshot body as an update with ``snapshot=True`` and ``last`` set."""


class SequenceRule(Protocol):
    def first(self, snapshot_last: int | None, upd: BookUpdate) -> Verdict:
        """The first update after a REST snapshot whose id is ``snapshot_last``."""

    def next(self, last: int | None, upd: BookUpdate) -> Verdict:
        """An update after one already applied (or after an in-stream snapshot)."""
