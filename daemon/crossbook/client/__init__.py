"""The Python client of crossbook's API, and the reference check of what a connection receives.

``connect`` opens a connection that keeps its subscriptions across reconnects; ``subscribe``
yields each channel's messages typed (``crossbook.client.messages``), keeps a :class:`LocalBook`
per book channel, and starts a channel again from a fresh snapshot on a ``seq`` gap or a
reconnect. :class:`Mirror` checks a whole connection's messages against the API's rules.
"""

from crossbook.client.book import LocalBook
from crossbook.client.connection import Client, SubscriptionError, connect
from crossbook.client.messages import (
    Ack,
    Bbo,
    BboSide,
    Conflated,
    Delta,
    Error,
    Level,
    Listing,
    Pong,
    ProtocolError,
    Resync,
    Snapshot,
    Status,
    Trade,
    Unsubscribed,
)
from crossbook.client.mirror import BookMirror, Mirror, SequenceGap, StatusDisagrees

__all__ = [
    "Ack",
    "Bbo",
    "BboSide",
    "BookMirror",
    "Client",
    "Conflated",
    "Delta",
    "Error",
    "Level",
    "Listing",
    "LocalBook",
    "Mirror",
    "Pong",
    "ProtocolError",
    "Resync",
    "SequenceGap",
    "Snapshot",
    "Status",
    "StatusDisagrees",
    "SubscriptionError",
    "Trade",
    "Unsubscribed",
    "connect",
]
