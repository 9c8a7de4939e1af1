"""The JSON fields of the API's channel messages (sans-I/O): exact decimal text, never floats."""

from __future__ import annotations

from typing import Any

from crossbook.core.changes import StatusChange
from crossbook.core.exact import text
from crossbook.core.model import Trade


def trade(venue: str, value: Trade) -> dict[str, Any]:
    return {
        "venue": venue,
        "price": text(value.price),
        "size": text(value.size),
        "side": value.side.value,
        "id": value.trade_id,
        "ts": value.venue_ns if value.venue_ns is not None else value.recv_ns,
        "recv_ts": value.recv_ns,
    }


def status(venue: str, symbol: str, state: str, reason: str | None, ts: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"venue": venue, "symbol": symbol, "state": state, "ts": ts}
    if reason:
        fields["reason"] = reason
    return fields


def status_change(change: StatusChange) -> dict[str, Any]:
    return status(change.venue, change.symbol, change.state.label, change.reason, change.ts)
