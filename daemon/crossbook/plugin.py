"""Everything a connector plugin imports from crossbook, in one module.

A plugin registers connectors with a ``@hookimpl`` of ``crossbook_add_connectors``; a streaming
connector is a :class:`VenueProtocol` (parse frames, build requests: sans I/O) run by
:class:`StreamingConnector` with a :class:`BookSync` per symbol that aligns updates by a
:class:`SequenceRule`. The names in ``__all__`` and their meanings are public contracts; anything
else in crossbook is private and may change. The venue test kit is :mod:`crossbook.testing`.
"""

from __future__ import annotations

from crossbook.core.book import BookView, Level
from crossbook.core.exact import BadNumber, json_number, levels, parse
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Event, Side, Trade, VenueStatus
from crossbook.toolkit.connector import Connector, ConnectorConfig, Feed
from crossbook.toolkit.hookspecs import hookimpl
from crossbook.toolkit.registry import ConnectorRegistry
from crossbook.toolkit.sequence import (
    AfterTimestamp,
    Consecutive,
    FirstLastIds,
    PrevLinked,
    SequenceRule,
    Unsequenced,
    Verdict,
)
from crossbook.toolkit.streaming import StreamingConfig, StreamingConnector
from crossbook.toolkit.sync import BookSync, Checksum
from crossbook.toolkit.venue import (
    HEARD,
    PARSE_ERRORS,
    BookUpdate,
    ConnectionState,
    Heard,
    HttpRequest,
    Output,
    Reconnect,
    Rejected,
    RestSnapshots,
    Resync,
    Send,
    SnapshotSource,
    Stream,
    VenueProtocol,
    seq_id,
)

__all__ = [
    "HEARD",
    "PARSE_ERRORS",
    "AfterTimestamp",
    "BadNumber",
    "BookDelta",
    "BookSnapshot",
    "BookState",
    "BookSync",
    "BookUpdate",
    "BookView",
    "Checksum",
    "ConnectionState",
    "Connector",
    "ConnectorConfig",
    "ConnectorRegistry",
    "Consecutive",
    "Event",
    "Feed",
    "FirstLastIds",
    "Heard",
    "HttpRequest",
    "Level",
    "Output",
    "PrevLinked",
    "Reconnect",
    "Rejected",
    "RestSnapshots",
    "Resync",
    "Send",
    "SequenceRule",
    "Side",
    "SnapshotSource",
    "Stream",
    "StreamingConfig",
    "StreamingConnector",
    "Trade",
    "Unsequenced",
    "VenueProtocol",
    "VenueStatus",
    "Verdict",
    "hookimpl",
    "json_number",
    "levels",
    "parse",
    "seq_id",
]
