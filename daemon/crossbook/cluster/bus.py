"""The bus contract (sans-I/O): crossbook's per-venue books on NATS subjects, encoded and decoded.

Subjects (``v1``; a reader of them keeps working as long as ``v1`` is published):

- ``crossbook.v1.book.<venue>.<symbol>``: one book's sequenced stream. Every message is a JSON
  object with ``ep`` (the publishing leader's epoch), ``seq`` (1, 2, 3... per book and epoch),
  ``k`` (kind) and ``ts`` (local receive time of the venue message, ns), ``vts`` (the venue's
  time, or null) and by kind: ``book`` (the whole book: ``bids``, ``asks``), ``delta`` (absolute
  new sizes, ``"0"`` removes), ``trade`` (``price``, ``size``, ``side``, ``id``) or ``status``
  (``state``: ``connecting``, ``syncing``, ``live``, ``down``; ``reason``). Levels are
  ``[price, size]`` pairs of exact decimal text, never JSON numbers.
- ``crossbook.v1.beat.<venue>``: the leader's heartbeat, every :data:`BEAT_INTERVAL`: ``ep``,
  ``node``, ``heard`` (when the venue last sent anything, ns, or null) and ``seqs`` (each
  book's last ``seq``), so a reader sees a lost tail and a silent leader.
- ``crossbook.v1.snap.<venue>.<symbol>``: request-reply; the reply is the book as it stands
  after ``seq`` of epoch ``ep``: ``state``, ``bids``, ``asks``, ``heard``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from crossbook.core.book import BookView
from crossbook.core.exact import BadNumber, levels, parse, text
from crossbook.core.model import BookDelta, BookSnapshot, BookState, Event, Level, Side, Trade, VenueStatus

PREFIX = "crossbook.v1"
BEAT_INTERVAL = 0.25
"""Seconds between a leader's heartbeats."""
TOKEN_RE = re.compile(r"^[!-~]+$")
STATES = {s.label: s for s in (BookState.CONNECTING, BookState.SYNCING, BookState.LIVE, BookState.DOWN)}
SIDES = {s.value: s for s in Side}


class BusError(ValueError):
    """A bus message that is not what the contract says (a counted, logged skip)."""


def subject_token(name: str) -> bool:
    """Whether ``name`` can be one token of a NATS subject."""
    return bool(TOKEN_RE.match(name)) and not any(c in name for c in ".*>")


def book_subject(venue: str, symbol: str) -> str:
    return f"{PREFIX}.book.{venue}.{symbol}"


def venue_books(venue: str) -> str:
    """The wildcard subject of every book stream of ``venue``."""
    return f"{PREFIX}.book.{venue}.*"


def beat_subject(venue: str) -> str:
    return f"{PREFIX}.beat.{venue}"


def snap_subject(venue: str, symbol: str) -> str:
    return f"{PREFIX}.snap.{venue}.{symbol}"


def symbol_of(subject: str) -> str:
    return subject.rpartition(".")[2]


# -- encoding (the leader) ------------------------------------------------------------------


def _side(side: list[Level]) -> list[list[str]]:
    return [[text(p), text(s)] for p, s in side]


def encode(ep: int, seq: int, event: Event) -> bytes:
    """One book stream message for ``event`` (a :class:`VenueStatus` for one symbol)."""
    head: dict[str, Any] = {"ep": ep, "seq": seq, "ts": event.recv_ns}
    if isinstance(event, BookDelta | BookSnapshot):
        head |= {"k": "delta" if isinstance(event, BookDelta) else "book", "vts": event.venue_ns}
        head |= {"bids": _side(event.bids), "asks": _side(event.asks)}
    elif isinstance(event, Trade):
        head |= {"k": "trade", "vts": event.venue_ns, "price": text(event.price), "size": text(event.size)}
        head |= {"side": event.side.value, "id": event.trade_id}
    else:
        head |= {"k": "status", "vts": None, "state": event.state.label, "reason": event.reason}
    return orjson.dumps(head)


def encode_beat(ep: int, node: str, heard: int | None, seqs: dict[str, int]) -> bytes:
    return orjson.dumps({"ep": ep, "node": node, "heard": heard, "seqs": seqs})


def encode_snapshot(ep: int, seq: int, state: BookState, book: BookView, heard: int | None, ts: int) -> bytes:
    bids, asks = book.sides() if state is BookState.LIVE else ([], [])
    return orjson.dumps(
        {"ep": ep, "seq": seq, "state": state.label, "ts": ts, "heard": heard, "bids": _side(bids), "asks": _side(asks)}
    )


# -- decoding (the followers) ---------------------------------------------------------------


@dataclass(slots=True)
class Sequenced:
    """One book stream message: ``event`` at ``seq`` of epoch ``ep``."""

    ep: int
    seq: int
    event: Event


@dataclass(slots=True)
class Beat:
    ep: int
    node: str
    heard: int | None
    seqs: dict[str, int]


@dataclass(slots=True)
class Snapshot:
    """A snapshot reply: the book after ``seq`` of epoch ``ep``."""

    ep: int
    seq: int
    state: BookState
    ts: int
    heard: int | None
    bids: list[Level]
    asks: list[Level]


def _object(payload: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BusError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BusError("not a JSON object")
    return data


def _int(data: dict[str, Any], key: str, low: int = 0, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if type(value) is not int or value < low:
        raise BusError(f"{key}: not an integer >= {low}: {value!r}")
    return value


def _str(data: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if type(value) is not str:
        raise BusError(f"{key}: not a string: {value!r}")
    return value


def _levels(data: dict[str, Any], key: str) -> list[Level]:
    raw = data.get(key)
    if type(raw) is not list or not all(
        type(lv) is list and len(lv) == 2 and type(lv[0]) is str and type(lv[1]) is str for lv in raw
    ):
        raise BusError(f"{key}: not a list of [price, size] text pairs")
    try:
        return levels(raw)
    except BadNumber as exc:
        raise BusError(f"{key}: {exc}") from None


def _state(data: dict[str, Any]) -> BookState:
    state = STATES.get(data.get("state"))  # type: ignore[arg-type]
    if state is None:
        raise BusError(f"state: not one of {', '.join(STATES)}: {data.get('state')!r}")
    return state


def decode(symbol: str, payload: bytes) -> Sequenced:
    """A book stream message of ``symbol``'s book; raises :class:`BusError`."""
    data = _object(payload)
    ep, seq, ts = _int(data, "ep"), _int(data, "seq", 1), _int(data, "ts")
    vts = _int(data, "vts", optional=True)
    kind = data.get("k")
    event: Event
    if kind == "delta":
        event = BookDelta(symbol, _levels(data, "bids"), _levels(data, "asks"), ts, vts)
    elif kind == "book":
        event = BookSnapshot(symbol, _levels(data, "bids"), _levels(data, "asks"), ts, vts)
    elif kind == "trade":
        side = SIDES.get(data.get("side"))  # type: ignore[arg-type]
        if side is None:
            raise BusError(f"side: not buy or sell: {data.get('side')!r}")
        try:
            price, size = parse(_str(data, "price")), parse(_str(data, "size"))
        except BadNumber as exc:
            raise BusError(str(exc)) from None
        event = Trade(symbol, price, size, side, _str(data, "id"), ts, vts)
    elif kind == "status":
        event = VenueStatus(symbol, _state(data), ts, _str(data, "reason", optional=True))
    else:
        raise BusError(f"k: unknown kind {kind!r}")
    return Sequenced(ep, seq, event)


def decode_beat(payload: bytes) -> Beat:
    data = _object(payload)
    seqs = data.get("seqs")
    if not isinstance(seqs, dict) or not all(type(v) is int and v >= 0 for v in seqs.values()):
        raise BusError("seqs: not an object of sequence numbers")
    return Beat(_int(data, "ep"), _str(data, "node"), _int(data, "heard", optional=True), seqs)


def decode_snapshot(payload: bytes) -> Snapshot:
    data = _object(payload)
    return Snapshot(
        _int(data, "ep"),
        _int(data, "seq"),
        _state(data),
        _int(data, "ts"),
        _int(data, "heard", optional=True),
        _levels(data, "bids"),
        _levels(data, "asks"),
    )
