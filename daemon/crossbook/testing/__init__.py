"""The venue test kit, for built-in and third-party connectors alike.

- :class:`Replay`: feed recorded frames through a connector's sans-I/O parts (protocol and book
  syncs) without a network, and look at the events and books that come out;
- :class:`FakeVenue`: a venue's wire protocol (WebSocket and REST on one loopback port), spoken
  by a :class:`Dialect` the connector's author writes, driven by a generated :class:`FakeMarket`,
  with faults;
- :func:`run_conformance`: any connector through the standard scenarios against its fake venue;
- :mod:`crossbook.testing.captures`: readers for the capture formats in ``shared/captures``.
"""

from __future__ import annotations

from crossbook.core.book import L2Book
from crossbook.testing.clock import ManualClock
from crossbook.testing.conformance import Report, Subject, run_conformance
from crossbook.testing.fakevenue import Dialect, FakeConnection, FakeVenue, levels_text
from crossbook.testing.feed import EngineFeed
from crossbook.testing.market import FakeMarket
from crossbook.testing.replay import Replay

__all__ = [
    "Dialect",
    "EngineFeed",
    "FakeConnection",
    "FakeMarket",
    "FakeVenue",
    "L2Book",
    "ManualClock",
    "Replay",
    "Report",
    "Subject",
    "levels_text",
    "run_conformance",
]
