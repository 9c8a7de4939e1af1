"""Subscriptions and fan-out (sans-I/O).

The hub turns the engine's :class:`~crossbook.core.engine.Changes` into channel messages and queues
them on each subscribed :class:`Session`'s outbox; the I/O layer only drains outboxes. Book
channels are grouped by depth: each group keeps the view it last sent (top ``depth`` levels a
side) and sends the difference, so a delta applied to the subscriber's book always gives exactly
the server's top ``depth`` at that ``seq``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from crossbook.api import wire as protocol
from crossbook.api.wire import Request, RequestError
from crossbook.core.consolidated import BBO, Attribution
from crossbook.core.engine import Changes, Engine, StatusChange
from crossbook.core.exact import ZERO, text
from crossbook.core.model import BookState, Trade

DEFAULT_DEPTH = 20
ABUSE_SECONDS = 5
"""A client over its request rate by this many seconds' worth of requests is disconnected."""

View = dict[Decimal, int | Decimal]
"""price -> what tells that a level changed: a consolidated level's version (see
:class:`~crossbook.core.consolidated.AggLevel`), a venue level's size. Best first."""
Change = tuple[Decimal, Decimal, Attribution | None]
"""(price, size, attribution; None for a venue book's level)"""


@dataclass
class Stats:
    """Plain counters the metrics export (no metrics library in the sans-I/O core)."""

    sent: Counter[str] = field(default_factory=Counter)
    """Messages queued to clients, by kind (channel message types and ``reply``)."""
    conflations: int = 0
    """Times a session fell behind and had its queued channel messages conflated."""


@dataclass
class Limits:
    """Per-connection limits (the ``[server]`` config)."""

    max_buffer_bytes: int = 1024 * 1024
    max_buffer_messages: int = 2000
    max_channels: int = 1000
    max_ops_per_second: float = 50.0


class Session:
    """One API connection's state: its subscriptions and the frames waiting to be sent.

    The outbox is bounded: a session that would exceed its limits falls behind. Its queued
    channel messages are dropped (their seq numbers given back), new ones are not queued, and
    when it has drained its outbox :meth:`Hub.catch_up` sends each channel's current state.
    """

    __slots__ = ("__weakref__", "behind_since", "op_stamp", "op_tokens", "outbox", "queued_bytes", "senders", "subs")

    def __init__(self, limits: Limits) -> None:
        self.outbox: deque[bytes] = deque()
        """The frames to send."""
        self.senders: deque[Sub | None] = deque()
        """Beside each frame, the subscription a channel message belongs to (None for a reply). Two
        deques, not one of pairs: a queued message then makes no object the cyclic garbage
        collector tracks, and with many subscribers behind, such pairs set off full collections
        that took half the daemon's time."""
        self.queued_bytes = 0
        self.subs: dict[str, Sub] = {}
        self.behind_since: int | None = None
        """When the session fell behind (ns), until it catches up."""
        self.op_tokens = limits.max_ops_per_second
        self.op_stamp = 0

    def push(self, sub: Sub | None, frame: bytes) -> None:
        self.outbox.append(frame)
        self.senders.append(sub)
        self.queued_bytes += len(frame)

    def frames(self) -> list[bytes]:
        return list(self.outbox)

    def drain(self) -> list[bytes]:
        """Take every queued frame (what a writer would send)."""
        out = self.frames()
        self.outbox.clear()
        self.senders.clear()
        self.queued_bytes = 0
        return out


class Sub:
    __slots__ = ("channel", "dropped", "missed", "seq")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.seq = 0
        self.missed = False
        """Messages were dropped while the session was behind: send the current state."""
        self.dropped = 0
        """Trade messages dropped (they cannot be conflated, only announced)."""


class Channel:
    """Subscribers of one channel (of one depth, for books) and how to reach them."""

    __slots__ = ("heads", "name", "stats", "subs")

    def __init__(self, name: str, stats: Stats) -> None:
        self.name = name
        self.stats = stats
        self.subs: dict[Session, Sub] = {}
        self.heads: dict[str, bytes] = {}

    def head(self, kind: str) -> bytes:
        head = self.heads.get(kind)
        if head is None:
            head = self.heads[kind] = protocol.channel_head(kind, self.name)
        return head

    def send_one(self, session: Session, kind: str, fields: dict[str, Any]) -> None:
        sub = self.subs[session]
        sub.seq += 1
        session.push(sub, protocol.frame(self.head(kind), sub.seq, protocol.channel_body(fields)))
        self.stats.sent[kind] += 1

    def send(self, kind: str, fields: dict[str, Any], touched: set[Session], limits: Limits, now_ns: int) -> None:
        """Queue one message for every subscriber: the fan-out hot loop (one ``seq`` splice and one
        append a subscriber; ``touched`` gets every subscriber, a behind one only wakes its writer)."""
        head = self.head(kind)
        body = protocol.channel_body(fields)
        max_bytes, max_messages = limits.max_buffer_bytes, limits.max_buffer_messages
        late = 0
        for session, sub in self.subs.items():
            if session.behind_since is not None:
                late += 1
                sub.missed = True
                if kind == "trade":
                    sub.dropped += 1
                continue
            sub.seq = seq = sub.seq + 1
            data = b"%b%d%b" % (head, seq, body)  # protocol.frame, inlined
            outbox = session.outbox
            outbox.append(data)
            session.senders.append(sub)
            session.queued_bytes = queued = session.queued_bytes + len(data)
            if queued > max_bytes or len(outbox) > max_messages:
                fall_behind(session, now_ns)
                self.stats.conflations += 1
        touched.update(self.subs)
        self.stats.sent[kind] += len(self.subs) - late


def fall_behind(session: Session, now_ns: int) -> None:
    """Drop the session's queued channel messages (giving their seq numbers back) and stop
    queueing until it catches up; replies stay queued."""
    session.behind_since = now_ns
    replies: deque[bytes] = deque()
    for sub, data in zip(session.senders, session.outbox, strict=True):
        if sub is None:
            replies.append(data)
            continue
        sub.seq -= 1
        sub.missed = True
        session.queued_bytes -= len(data)
        if data.startswith(b'{"type":"trade"'):
            sub.dropped += 1
    session.outbox = replies
    session.senders = deque([None] * len(replies))


class BookChannel(Channel):
    __slots__ = ("asks", "bids", "depth", "symbol", "venue")

    def __init__(self, name: str, stats: Stats, symbol: str, venue: str | None, depth: int) -> None:
        super().__init__(name, stats)
        self.symbol = symbol
        self.venue = venue
        self.depth = depth
        self.bids: View = {}
        self.asks: View = {}


class BboChannel(Channel):
    __slots__ = ("last", "symbol")

    def __init__(self, name: str, stats: Stats, symbol: str) -> None:
        super().__init__(name, stats)
        self.symbol = symbol
        self.last: BBO | None = None


def _nothing_held() -> None:
    pass


def _levels(levels: list[Change]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for price, size, venues in levels:
        if venues is None:
            out.append([text(price), text(size)])
        elif len(venues) == 1:  # most levels: no comprehension
            name, share = venues[0]
            out.append([text(price), text(size), {name: text(share)}])
        else:
            out.append([text(price), text(size), {v: text(s) for v, s in venues}])
    return out


def _bbo_side(side: tuple[Decimal, Decimal, tuple[str, ...]] | None) -> list[Any] | None:
    return None if side is None else [text(side[0]), text(side[1]), list(side[2])]


class Hub:
    def __init__(
        self, engine: Engine, max_depth: int, venue_connectors: Mapping[str, str], limits: Limits | None = None
    ) -> None:
        self.engine = engine
        self.limits = limits or Limits()

        self.max_depth = max_depth
        self.default_depth = min(DEFAULT_DEPTH, max_depth)
        self.venue_connectors = dict(venue_connectors)
        self.sessions: set[Session] = set()
        self.stats = Stats()
        self._books: dict[tuple[str, str | None], dict[int, BookChannel]] = {}
        self._bbo: dict[str, BboChannel] = {}
        self._trades: dict[str, Channel] = {}
        self._status = Channel("status", self.stats)
        self.publish_held: Callable[[], None] = _nothing_held
        """Publishes what the daemon holds back to publish later (messages read together make one
        update). Called before a request, a catch-up or a prune is handled, so what they send is
        never ahead of the channels' last messages, nor sent before them."""

    # -- connections --------------------------------------------------------------------------

    def open(self) -> Session:
        session = Session(self.limits)
        self.sessions.add(session)
        return session

    def close(self, session: Session) -> None:
        for sub in list(session.subs.values()):
            self._drop(session, sub.channel)
        session.subs.clear()
        self.sessions.discard(session)

    def receive(self, session: Session, data: str | bytes, now_ns: int) -> str | None:
        """Handle one client frame; replies and snapshots go to ``session.outbox``.

        Returns why the connection must be closed (policy violation), or ``None``.
        """
        rate = self.limits.max_ops_per_second
        session.op_tokens = min(rate, session.op_tokens + (now_ns - session.op_stamp) * rate / 1e9)
        session.op_stamp = now_ns
        session.op_tokens -= 1
        if session.op_tokens < 0:
            if session.op_tokens < -ABUSE_SECONDS * rate:
                return f"more than {rate:g} requests a second, sustained"
            limited = protocol.error("rate_limited", f"at most {rate:g} requests a second", protocol.request_id(data))
            self._reply(session, limited)
            return None
        # Not before a refused request, whose error reads no book: a flood over the rate cannot
        # force an update per venue message.
        self.publish_held()
        try:
            req = protocol.parse_request(data, self.max_depth)
            if req.op == "subscribe":
                self._subscribe(session, req, now_ns)
            elif req.op == "unsubscribe":
                self._unsubscribe(session, req)
            elif req.op == "ping":
                self._reply(session, protocol.encode({"type": "pong", "id": req.id}))
            else:
                self._reply(session, protocol.encode(self.listing(req.id)))
        except RequestError as exc:
            self._reply(session, protocol.error(exc.code, exc.message, exc.request_id))
        return None

    def _reply(self, session: Session, message: bytes) -> None:
        session.push(None, message)
        self.stats.sent["reply"] += 1

    def channel_names(self) -> list[str]:
        names = ["status"]
        for symbol in self.engine.symbols:
            names += [f"book.{symbol}", f"bbo.{symbol}", f"trades.{symbol}"]
            names += [f"book.{symbol}.{v}" for v, syms in self.engine.venue_symbols.items() if symbol in syms]
        return names

    def listing(self, request_id: Any) -> dict[str, Any]:
        engine = self.engine
        venues = [
            {
                "venue": venue,
                "connector": self.venue_connectors.get(venue, venue),
                "symbols": [{"symbol": s, "state": engine.state(s, venue).label} for s in symbols],
            }
            for venue, symbols in engine.venue_symbols.items()
        ]
        return {
            "type": "list",
            "id": request_id,
            "venues": venues,
            "symbols": engine.symbols,
            "channels": self.channel_names(),
            "max_depth": self.max_depth,
        }

    # -- subscriptions ------------------------------------------------------------------------

    def _known(self, name: str) -> bool:
        if name == "status":
            return True
        kind, _, rest = name.partition(".")
        if kind == "book":
            symbol, dot, venue = rest.partition(".")
            # ``book.SYM.`` (empty venue) is not ``book.SYM``: it would share that channel's subscription.
            return (symbol, venue) in self.engine.books if dot else symbol in self.engine.consolidated
        return kind in ("bbo", "trades") and rest in self.engine.consolidated

    def _resolve(self, name: str, depth: int) -> Channel:
        """Find or create the channel object for a known channel name."""
        if name == "status":
            return self._status
        kind, _, rest = name.partition(".")
        if kind == "book":
            symbol, _, venue = rest.partition(".")
            key = (symbol, venue or None)
            groups = self._books.setdefault(key, {})
            channel = groups.get(depth)
            if channel is None:
                if not venue:
                    self.engine.watch(symbol)
                channel = groups[depth] = BookChannel(name, self.stats, symbol, venue or None, depth)
                self._update(channel, True)
                self._update(channel, False)
            return channel
        if kind == "bbo":
            bbo = self._bbo.get(rest)
            if bbo is None:
                self.engine.watch(rest)
                bbo = self._bbo[rest] = BboChannel(name, self.stats, rest)
                bbo.last = self.engine.consolidated[rest].bbo()
            return bbo
        trades = self._trades.get(rest)
        if trades is None:
            trades = self._trades[rest] = Channel(name, self.stats)
        return trades

    def _subscribe(self, session: Session, req: Request, now_ns: int) -> None:
        depth = req.depth or self.default_depth
        unknown = [c for c in req.channels if not self._known(c)]
        if unknown:
            raise RequestError("unknown_channel", f"unknown channel(s): {', '.join(unknown)}", req.id)
        new = sum(1 for c in req.channels if c not in session.subs)
        if len(session.subs) + new > self.limits.max_channels:
            limit = self.limits.max_channels
            raise RequestError("too_many_channels", f"at most {limit} channels per connection", req.id)
        self._reply(
            session,
            protocol.encode({"type": "ack", "op": "subscribe", "id": req.id, "channels": req.channels}),
        )
        # The status snapshot goes first: the books that follow name only venues it calls live.
        for name in sorted(req.channels, key=lambda name: name != "status"):
            channel = self._resolve(name, depth)
            sub = session.subs.get(name)
            if sub is not None:
                if sub.channel is channel:
                    continue
                self._drop(session, sub.channel)  # a new depth: move groups, seq goes on
                sub.channel = channel
            else:
                sub = session.subs[name] = Sub(channel)
            channel.subs[session] = sub
            self._first(session, channel, now_ns)

    def _unsubscribe(self, session: Session, req: Request) -> None:
        missing = [c for c in req.channels if c not in session.subs]
        if missing:
            raise RequestError("not_subscribed", f"not subscribed to: {', '.join(missing)}", req.id)
        for name in req.channels:
            self._drop(session, session.subs.pop(name).channel)
        self._reply(
            session,
            protocol.encode({"type": "ack", "op": "unsubscribe", "id": req.id, "channels": req.channels}),
        )

    def _drop(self, session: Session, channel: Channel) -> None:
        channel.subs.pop(session, None)
        if channel.subs:
            return
        if isinstance(channel, BookChannel):
            groups = self._books[(channel.symbol, channel.venue)]
            del groups[channel.depth]
            if not groups:
                del self._books[(channel.symbol, channel.venue)]
        elif isinstance(channel, BboChannel):
            del self._bbo[channel.symbol]
        elif channel is not self._status:
            self._trades.pop(channel.name.partition(".")[2], None)

    def catch_up(self, session: Session, now_ns: int) -> None:
        """A session that fell behind has drained its outbox: send every channel it missed
        messages on its current state (books: a snapshot marked ``conflated``; bbo and status:
        the latest values; trades: a ``conflated`` notice with how many were dropped)."""
        if session.behind_since is None:
            return
        self.publish_held()
        session.behind_since = None
        missed = [sub for sub in session.subs.values() if sub.missed]
        status = session.subs.get("status")
        told = status in missed
        for sub in missed:
            sub.missed = False
        # In an order that keeps every channel agreeing with the statuses at each message: the
        # venues now live, the consolidated books and bbos (which name only those), the venues now
        # stale (whose own books keep their levels), the venues' own books, then the rest.
        if told:
            self._status_snapshot(session, now_ns, True, {BookState.LIVE})
        for sub in missed:
            channel = sub.channel
            if isinstance(channel, BboChannel) or (isinstance(channel, BookChannel) and channel.venue is None):
                self._first(session, channel, now_ns, conflated=True)
            elif not isinstance(channel, BookChannel) and sub is not status:
                channel.send_one(session, "conflated", {"ts": now_ns, "dropped": sub.dropped})
                sub.dropped = 0
        if told:
            self._status_snapshot(session, now_ns, True, {BookState.STALE})
        for sub in missed:
            if isinstance(sub.channel, BookChannel) and sub.channel.venue is not None:
                self._first(session, sub.channel, now_ns, conflated=True)
        if told:
            self._status_snapshot(session, now_ns, True, set(BookState) - {BookState.LIVE, BookState.STALE})

    def _first(self, session: Session, channel: Channel, now_ns: int, conflated: bool = False) -> None:
        """What a new subscriber gets first (or a conflated one on catching up): the current state."""
        extra = {"conflated": True} if conflated else {}
        if isinstance(channel, BookChannel):
            # The views equal the books' top levels whenever the hub is called: read the books.
            bids, asks = _levels(self._top(channel, True)), _levels(self._top(channel, False))
            fields = {"ts": now_ns, "bids": bids, "asks": asks}
            channel.send_one(session, "snapshot", fields | extra)
        elif isinstance(channel, BboChannel):
            assert channel.last is not None
            channel.send_one(session, "bbo", self._bbo_fields(channel.last, now_ns) | extra)
        elif channel is self._status:
            self._status_snapshot(session, now_ns, conflated)

    def _status_snapshot(
        self, session: Session, now_ns: int, conflated: bool, states: set[BookState] | None = None
    ) -> None:
        """Every book's state (``states``: of the books in one of these only)."""
        extra = {"conflated": True} if conflated else {}
        for (symbol, venue), vb in sorted(self.engine.books.items()):
            if states is None or vb.state in states:
                fields = self._status_fields(venue, symbol, vb.state.label, None, now_ns)
                self._status.send_one(session, "status", fields | extra)

    def prune(self) -> set[Session]:
        """Drop subscriptions to channels that no longer exist (after a reload), telling each
        subscriber; returns the sessions told."""
        self.publish_held()
        touched: set[Session] = set()
        for session in self.sessions:
            gone = [name for name in session.subs if not self._known(name)]
            for name in gone:
                self._drop(session, session.subs.pop(name).channel)
                reason = "removed from the configuration"
                self._reply(session, protocol.encode({"type": "unsubscribed", "channel": name, "reason": reason}))
                touched.add(session)
        return touched

    def conflate_all(self, now_ns: int) -> set[Session]:
        """Start every subscriber afresh, as one that fell behind (after a failed publish, which
        may have told some subscribers and not others): each channel's view is its book's again,
        and each subscription gets the current state when its session's writer catches it up.
        Returns every session."""
        for groups in self._books.values():
            for channel in groups.values():
                self._update(channel, True)
                self._update(channel, False)
        for bbo in self._bbo.values():
            bbo.last = self.engine.consolidated[bbo.symbol].bbo()
        for session in self.sessions:
            if session.behind_since is None:
                fall_behind(session, now_ns)
            for sub in session.subs.values():
                sub.missed = True
        return set(self.sessions)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, changes: Changes, ts: int) -> set[Session]:
        """Queue the messages for what changed; returns the sessions that got frames. ``ts`` is
        the receive time of the message behind ``changes`` (a book that merged messages changed
        earlier, or first, has its own: :attr:`Changes.since`)."""
        touched: set[Session] = set()
        self._statuses_changed(changes, True, touched, ts)
        since = changes.since
        for key in changes.books:
            key_ts = since.get(key, ts)
            groups = self._books.get(key)
            if groups:
                reach = changes.reach(key)
                for channel in groups.values():
                    self._book_delta(channel, key_ts, touched, reach)
            if key[1] is None:
                bbo = self._bbo.get(key[0])
                if bbo is not None:
                    self._bbo_update(bbo, key_ts, touched)
        for venue, trade in changes.trades:
            trades = self._trades.get(trade.symbol)
            if trades is not None:
                trades.send("trade", self._trade_fields(venue, trade), touched, self.limits, ts)
        self._statuses_changed(changes, False, touched, ts)
        return touched

    def _statuses_changed(self, changes: Changes, live: bool, touched: set[Session], ts: int) -> None:
        """Send the status changes to ``live`` (before the book messages, which may add those
        venues), or the others (after them, as they may remove them). A batch holds a book's
        ``live`` before any other state of it (:class:`~crossbook.core.engine.Batch`), so each book's
        statuses keep their order."""
        if not self._status.subs:
            return
        for st in changes.statuses:
            if (st.state is BookState.LIVE) is live:
                self._status.send("status", self._status_change_fields(st), touched, self.limits, ts)

    def _top(self, channel: BookChannel, bids: bool) -> list[Change]:
        """The top ``depth`` levels of one side of the channel's book."""
        n = channel.depth
        if channel.venue is None:
            cb = self.engine.consolidated[channel.symbol]
            return [(p, lv.total, lv.venues) for p, lv in (cb.view_bids(n) if bids else cb.view_asks(n))]
        book = self.engine.book(channel.symbol, channel.venue)
        return [(p, s, None) for p, s in (book.top_bids(n) if bids else book.top_asks(n))]

    def _update(self, channel: BookChannel, bids: bool) -> list[Change]:
        """Bring one side's view to its book's top ``depth`` levels; returns what changed, in one
        pass over the top levels with no copy of them."""
        old = channel.bids if bids else channel.asks
        new: View = {}
        out: list[Change] = []
        n = channel.depth
        gone: Attribution | None
        if channel.venue is None:
            cb = self.engine.consolidated[channel.symbol]
            for p, lv in cb.view_bids(n) if bids else cb.view_asks(n):
                version = new[p] = lv.version
                if old.get(p) != version:
                    out.append((p, lv.total, lv.venues))
            gone = ()
        else:
            book = self.engine.book(channel.symbol, channel.venue)
            for p, size in book.top_bids(n) if bids else book.top_asks(n):
                new[p] = size
                if old.get(p) != size:
                    out.append((p, size, None))
            gone = None
        out.extend([(p, ZERO, gone) for p in old if p not in new])
        if bids:
            channel.bids = new
        else:
            channel.asks = new
        return out

    def _book_delta(
        self, channel: BookChannel, ts: int, touched: set[Session], reach: tuple[Decimal | None, Decimal | None] | None
    ) -> None:
        """Send what changed in the channel's view; a side whose changes all lie below its view
        (``reach``) cannot have changed and is not even looked at."""
        dbids: list[Change] = []
        dasks: list[Change] = []
        old = channel.bids
        if reach is None or (reach[0] is not None and (len(old) < channel.depth or reach[0] >= next(reversed(old)))):
            dbids = self._update(channel, True)
        old = channel.asks
        if reach is None or (reach[1] is not None and (len(old) < channel.depth or reach[1] <= next(reversed(old)))):
            dasks = self._update(channel, False)
        if dbids or dasks:
            channel.send("delta", {"ts": ts, "bids": _levels(dbids), "asks": _levels(dasks)}, touched, self.limits, ts)

    def _bbo_update(self, channel: BboChannel, ts: int, touched: set[Session]) -> None:
        bbo = self.engine.consolidated[channel.symbol].bbo()
        if bbo != channel.last:
            channel.last = bbo
            channel.send("bbo", self._bbo_fields(bbo, ts), touched, self.limits, ts)

    @staticmethod
    def _bbo_fields(bbo: BBO, ts: int) -> dict[str, Any]:
        return {
            "ts": ts,
            "bid": _bbo_side(bbo.bid),
            "ask": _bbo_side(bbo.ask),
            "crossed": bbo.crossed,
            "locked": bbo.locked,
        }

    @staticmethod
    def _trade_fields(venue: str, trade: Trade) -> dict[str, Any]:
        return {
            "venue": venue,
            "price": text(trade.price),
            "size": text(trade.size),
            "side": trade.side.value,
            "id": trade.trade_id,
            "ts": trade.venue_ns if trade.venue_ns is not None else trade.recv_ns,
            "recv_ts": trade.recv_ns,
        }

    @staticmethod
    def _status_fields(venue: str, symbol: str, state: str, reason: str | None, ts: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"venue": venue, "symbol": symbol, "state": state, "ts": ts}
        if reason:
            fields["reason"] = reason
        return fields

    def _status_change_fields(self, st: StatusChange) -> dict[str, Any]:
        return self._status_fields(st.venue, st.symbol, st.state.label, st.reason, st.ts)
