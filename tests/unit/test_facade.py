"""What a plugin imports: ``crossbook.plugin`` and ``crossbook.testing`` export the pinned names,
with their pinned meanings."""

from __future__ import annotations

from decimal import Decimal

import crossbook.plugin
import crossbook.testing
from crossbook.plugin import BookUpdate, parse

PLUGIN = [
    "hookimpl",
    "ConnectorRegistry",
    "ConnectorConfig",
    "StreamingConfig",
    "StreamingConnector",
    "VenueProtocol",
    "RestSnapshots",
    "HttpRequest",
    "ConnectionState",
    "Stream",
    "SnapshotSource",
    "Output",
    "BookUpdate",
    "Trade",
    "Side",
    "Level",
    "Send",
    "Resync",
    "Reconnect",
    "Rejected",
    "Heard",
    "HEARD",
    "BookSync",
    "SequenceRule",
    "Verdict",
    "FirstLastIds",
    "PrevLinked",
    "Consecutive",
    "AfterTimestamp",
    "Unsequenced",
    "PARSE_ERRORS",
    "parse",
]
TESTING = [
    "Subject",
    "run_conformance",
    "Dialect",
    "FakeVenue",
    "FakeMarket",
    "FakeConnection",
    "Replay",
    "levels_text",
]


def test_the_plugin_facade_exports_the_pinned_names() -> None:
    assert set(PLUGIN) <= set(crossbook.plugin.__all__)
    assert all(hasattr(crossbook.plugin, name) for name in crossbook.plugin.__all__)


def test_the_test_kit_exports_the_pinned_names() -> None:
    assert set(TESTING) <= set(crossbook.testing.__all__)
    assert all(hasattr(crossbook.testing, name) for name in crossbook.testing.__all__)


def test_pinned_meanings() -> None:
    assert parse("65000.10") == Decimal("65000.10")
    assert isinstance(parse("1"), Decimal)
    update = BookUpdate("BTC-USD", [(Decimal(1), Decimal(2))], [], 0)
    assert update.bids == [(Decimal(1), Decimal(2))]
