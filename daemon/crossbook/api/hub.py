"""Subscriptions and fan-out (sans-I/O).

The hub turns the engine's :class:`~crossbook.core.changes.Changes` into channel messages and
queues them on each :class:`~crossbook.api.channels.Subscriber`'s outbox; the I/O layer only
drains outboxes. Book channels are grouped by depth: each group keeps the view it last sent and
sends the difference (:mod:`crossbook.api.views`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from crossbook.api import fields, views, wire
from crossbook.api.channels import (
    BboChannel,
    BookChannel,
    Channel,
    Limits,
    Stats,
    StatusChannel,
    Sub,
    Subscriber,
    TradesChannel,
    read_name,
)
from crossbook.api.wire import Request, RequestError
from crossbook.core.changes import Changes
from crossbook.core.engine import Engine
from crossbook.core.model import BookState

DEFAULT_DEPTH = 20
NOT_LIVE = set(BookState) - {BookState.LIVE, BookState.STALE}


def _nothing_held() -> None:
    pass


def _age(last_ns: int | None, now_ns: int) -> float | None:
    """Seconds from ``last_ns`` to ``now_ns`` to the millisecond (None: never)."""
    return None if last_ns is None else round(max(0, now_ns - last_ns) / 1e9, 3)


class Hub:
    def __init__(
        self, engine: Engine, max_depth: int, venue_connectors: Mapping[str, str], limits: Limits | None = None
    ) -> None:
        self.engine = engine
        self.limits = limits or Limits()
        self.max_depth = max_depth
        self.default_depth = min(DEFAULT_DEPTH, max_depth)
        self.venue_connectors = dict(venue_connectors)
        self.subscribers: set[Subscriber] = set()
        self.stats = Stats()
        self._books: dict[tuple[str, str | None], dict[int, BookChannel]] = {}
        self._bbo: dict[str, BboChannel] = {}
        self._trades: dict[str, TradesChannel] = {}
        self._status = StatusChannel("status", self.stats)
        self.publish_held: Callable[[], None] = _nothing_held
        """Publishes what the daemon holds back to publish later (messages read together make one
        update). Called before a request, a catch-up or a prune is handled, so what they send is
        never ahead of the channels' last messages, nor sent before them."""

    # -- connections --------------------------------------------------------------------------

    def open(self) -> Subscriber:
        subscriber = Subscriber(self.limits)
        self.subscribers.add(subscriber)
        return subscriber

    def close(self, subscriber: Subscriber) -> None:
        for sub in list(subscriber.subs.values()):
            self._drop(subscriber, sub.channel)
        subscriber.subs.clear()
        self.subscribers.discard(subscriber)

    def receive(self, subscriber: Subscriber, data: str | bytes, now_ns: int) -> str | None:
        """Handle one client frame; replies and snapshots go to the subscriber's outbox.

        Returns why the connection must be closed (policy violation), or ``None``.
        """
        rate = self.limits.max_ops_per_second
        allowed = subscriber.spend_request(now_ns, rate)
        if allowed is None:
            return f"more than {rate:g} requests a second, sustained"
        if not allowed:
            limited = wire.error("rate_limited", f"at most {rate:g} requests a second", wire.request_id(data))
            self._reply(subscriber, limited)
            return None
        # Not before a refused request, whose error reads no book: a flood over the rate cannot
        # force an update per venue message.
        self.publish_held()
        try:
            req = wire.parse_request(data, self.max_depth)
            if req.op == "subscribe":
                self._subscribe(subscriber, req, now_ns)
            elif req.op == "unsubscribe":
                self._unsubscribe(subscriber, req)
            elif req.op == "ping":
                self._reply(subscriber, wire.encode({"type": "pong", "id": req.id}))
            else:
                self._reply(subscriber, wire.encode(self.listing(req.id, now_ns)))
        except RequestError as exc:
            self._reply(subscriber, wire.error(exc.code, exc.message, exc.request_id))
        return None

    def _reply(self, subscriber: Subscriber, message: bytes) -> None:
        subscriber.push(None, message)
        self.stats.sent["reply"] += 1

    def channel_names(self) -> list[str]:
        names = ["status"]
        for symbol in self.engine.symbols:
            names += [f"book.{symbol}", f"bbo.{symbol}", f"trades.{symbol}"]
            names += [f"book.{symbol}.{v}" for v, syms in self.engine.venue_symbols.items() if symbol in syms]
        return names

    def listing(self, request_id: Any, now_ns: int) -> dict[str, Any]:
        engine = self.engine
        venues = [
            {
                "venue": venue,
                "connector": self.venue_connectors.get(venue, venue),
                "symbols": [
                    {"symbol": s, "state": engine.state(s, venue).label, "resyncs": engine.books[(s, venue)].resyncs}
                    for s in symbols
                ],
                "last_message_age": _age(engine.last_message_ns[venue], now_ns),
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
        parts = read_name(name)
        if parts is None:
            return False
        if parts.kind == "status":
            return True
        if parts.venue is not None:
            return (parts.symbol, parts.venue) in self.engine.books
        return parts.symbol in self.engine.consolidated

    def _resolve(self, name: str, depth: int) -> Channel:
        """Find or create the channel object for a known channel name."""
        parts = read_name(name)
        assert parts is not None
        kind, symbol, venue = parts
        if kind == "status":
            return self._status
        if kind == "book":
            groups = self._books.setdefault((symbol, venue), {})
            channel = groups.get(depth)
            if channel is None:
                if venue is None:
                    self.engine.watch(symbol)
                channel = groups[depth] = BookChannel(name, self.stats, symbol, venue, depth)
                self._update(channel, True)
                self._update(channel, False)
            return channel
        if kind == "bbo":
            bbo = self._bbo.get(symbol)
            if bbo is None:
                self.engine.watch(symbol)
                bbo = self._bbo[symbol] = BboChannel(name, self.stats, symbol)
                bbo.last = views.encode_bbo(self.engine.consolidated[symbol])
            return bbo
        trades = self._trades.get(symbol)
        if trades is None:
            trades = self._trades[symbol] = TradesChannel(name, self.stats, symbol)
        return trades

    def _subscribe(self, subscriber: Subscriber, req: Request, now_ns: int) -> None:
        depth = req.depth or self.default_depth
        unknown = [c for c in req.channels if not self._known(c)]
        if unknown:
            raise RequestError("unknown_channel", f"unknown channel(s): {', '.join(unknown)}", req.id)
        new = sum(1 for c in req.channels if c not in subscriber.subs)
        if len(subscriber.subs) + new > self.limits.max_channels:
            limit = self.limits.max_channels
            raise RequestError("too_many_channels", f"at most {limit} channels per connection", req.id)
        self._reply(
            subscriber,
            wire.encode({"type": "ack", "op": "subscribe", "id": req.id, "channels": req.channels}),
        )
        # The status snapshot goes first: the books that follow name only venues it calls live.
        for name in sorted(req.channels, key=lambda name: name != "status"):
            channel = self._resolve(name, depth)
            sub = subscriber.subs.get(name)
            if sub is not None:
                if sub.channel is channel:
                    continue
                self._drop(subscriber, sub.channel)  # a new depth: move groups, seq goes on
                sub.channel = channel
            else:
                sub = subscriber.subs[name] = Sub(channel)
            channel.subs[subscriber] = sub
            self._first(subscriber, channel, now_ns)

    def _unsubscribe(self, subscriber: Subscriber, req: Request) -> None:
        missing = [c for c in req.channels if c not in subscriber.subs]
        if missing:
            raise RequestError("not_subscribed", f"not subscribed to: {', '.join(missing)}", req.id)
        for name in req.channels:
            self._drop(subscriber, subscriber.subs.pop(name).channel)
        self._reply(
            subscriber,
            wire.encode({"type": "ack", "op": "unsubscribe", "id": req.id, "channels": req.channels}),
        )

    def _drop(self, subscriber: Subscriber, channel: Channel) -> None:
        channel.subs.pop(subscriber, None)
        if channel.subs:
            return
        if isinstance(channel, BookChannel):
            groups = self._books[(channel.symbol, channel.venue)]
            del groups[channel.depth]
            if not groups:
                del self._books[(channel.symbol, channel.venue)]
        elif isinstance(channel, BboChannel):
            del self._bbo[channel.symbol]
        elif isinstance(channel, TradesChannel):
            self._trades.pop(channel.symbol, None)

    def catch_up(self, subscriber: Subscriber, now_ns: int) -> None:
        """A subscriber that fell behind has drained its outbox: send every channel it missed
        messages on its current state (books: a snapshot marked ``conflated``; bbo and status:
        the latest values; trades: a ``conflated`` notice with how many were dropped)."""
        if subscriber.behind_since is None:
            return
        self.publish_held()
        subscriber.behind_since = None
        missed = [sub for sub in subscriber.subs.values() if sub.missed]
        status = subscriber.subs.get("status")
        told = status in missed
        for sub in missed:
            sub.missed = False
        # In an order that keeps every channel agreeing with the statuses at each message: the
        # venues now live, the consolidated books and bbos (which name only those), the venues now
        # stale (whose own books keep their levels), the venues' own books, then the rest.
        if told:
            self._status_snapshot(subscriber, now_ns, True, {BookState.LIVE})
        for sub in missed:
            channel = sub.channel
            if isinstance(channel, BboChannel) or (isinstance(channel, BookChannel) and channel.venue is None):
                self._first(subscriber, channel, now_ns, conflated=True)
            elif isinstance(channel, TradesChannel):
                notice = wire.channel_body({"ts": now_ns, "dropped": sub.dropped})
                channel.send_one(subscriber, "conflated", notice, keep=True)  # its count is not to be lost
                sub.dropped = 0
        if told:
            self._status_snapshot(subscriber, now_ns, True, {BookState.STALE})
        for sub in missed:
            if isinstance(sub.channel, BookChannel) and sub.channel.venue is not None:
                self._first(subscriber, sub.channel, now_ns, conflated=True)
        if told:
            self._status_snapshot(subscriber, now_ns, True, NOT_LIVE)

    def _first(self, subscriber: Subscriber, channel: Channel, now_ns: int, conflated: bool = False) -> None:
        """What a new subscriber gets first (or a conflated one on catching up): the current state."""
        if isinstance(channel, BookChannel):
            # The views equal the books' top levels whenever the hub is called: read the books.
            bids, asks = self._top(channel, True), self._top(channel, False)
            channel.send_one(subscriber, "snapshot", wire.book_body(now_ns, bids, asks, conflated))
        elif isinstance(channel, BboChannel):
            assert channel.last is not None
            channel.send_one(subscriber, "bbo", wire.bbo_body(now_ns, channel.last, conflated))
        elif isinstance(channel, StatusChannel):
            self._status_snapshot(subscriber, now_ns, conflated)

    def _status_snapshot(
        self, subscriber: Subscriber, now_ns: int, conflated: bool, states: set[BookState] | None = None
    ) -> None:
        """Every book's state (``states``: of the books in one of these only)."""
        extra = {"conflated": True} if conflated else {}
        for (symbol, venue), vb in sorted(self.engine.books.items()):
            if states is None or vb.state in states:
                status = fields.status(venue, symbol, vb.state.label, None, now_ns)
                self._status.send_one(subscriber, "status", wire.channel_body(status | extra))

    def prune(self) -> set[Subscriber]:
        """Drop subscriptions to channels that no longer exist (after a reload), telling each
        subscriber; returns the subscribers told."""
        self.publish_held()
        touched: set[Subscriber] = set()
        for subscriber in self.subscribers:
            gone = [name for name in subscriber.subs if not self._known(name)]
            for name in gone:
                self._drop(subscriber, subscriber.subs.pop(name).channel)
                reason = "removed from the configuration"
                self._reply(subscriber, wire.encode({"type": "unsubscribed", "channel": name, "reason": reason}))
                touched.add(subscriber)
        return touched

    def conflate_all(self, now_ns: int) -> set[Subscriber]:
        """Start every subscriber afresh, as one that fell behind (after a failed publish, which
        may have told some subscribers and not others): each channel's view is its book's again,
        and each subscription gets the current state when its subscriber's writer catches it up.
        Returns every subscriber."""
        for groups in self._books.values():
            for channel in groups.values():
                self._update(channel, True)
                self._update(channel, False)
        for bbo in self._bbo.values():
            bbo.last = views.encode_bbo(self.engine.consolidated[bbo.symbol])
        for subscriber in self.subscribers:
            if subscriber.behind_since is None:
                subscriber.fall_behind(now_ns)
            for sub in subscriber.subs.values():
                sub.missed = True
        return set(self.subscribers)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, changes: Changes, ts: int) -> set[Subscriber]:
        """Queue the messages for what changed; returns the subscribers that got frames. ``ts`` is
        the receive time of the message behind ``changes`` (a book that merged messages changed
        earlier, or first, has its own: :attr:`Changes.since`)."""
        touched: set[Subscriber] = set()
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
                trades.send("trade", wire.channel_body(fields.trade(venue, trade)), touched, self.limits, ts)
        self._statuses_changed(changes, False, touched, ts)
        return touched

    def trades_gap(self, venue: str, symbol: str, ts: int) -> set[Subscriber]:
        """Tell ``trades.<symbol>`` that ``venue``'s trades may have been lost before ``ts`` (a
        cluster edge lost part of the venue's stream); returns the subscribers told."""
        touched: set[Subscriber] = set()
        trades = self._trades.get(symbol)
        if trades is not None:
            trades.send("gap", wire.channel_body({"venue": venue, "ts": ts}), touched, self.limits, ts)
        return touched

    def _statuses_changed(self, changes: Changes, live: bool, touched: set[Subscriber], ts: int) -> None:
        """Send the status changes to ``live`` (before the book messages, which may add those
        venues), or the others (after them, as they may remove them). A batch holds a book's
        ``live`` before any other state of it (:class:`~crossbook.core.engine.Batch`), so each
        book's statuses keep their order."""
        if not self._status.subs:
            return
        for st in changes.statuses:
            if (st.state is BookState.LIVE) is live:
                self._status.send("status", wire.channel_body(fields.status_change(st)), touched, self.limits, ts)

    def _top(self, channel: BookChannel, bids: bool) -> bytes:
        """The top ``depth`` levels of one side of the channel's book, encoded."""
        if channel.venue is None:
            return views.encode_consolidated(self.engine.consolidated[channel.symbol], channel.depth, bids)
        return views.encode_venue(self.engine.book(channel.symbol, channel.venue), channel.depth, bids)

    def _update(self, channel: BookChannel, bids: bool) -> bytes:
        """Bring one side's view to its book's top ``depth`` levels; returns what changed, encoded."""
        view = channel.bids if bids else channel.asks
        if channel.venue is None:
            return view.diff_consolidated(self.engine.consolidated[channel.symbol], channel.depth, bids)
        return view.diff_venue(self.engine.book(channel.symbol, channel.venue), channel.depth, bids)

    def _book_delta(
        self,
        channel: BookChannel,
        ts: int,
        touched: set[Subscriber],
        reach: tuple[Decimal | None, Decimal | None] | None,
    ) -> None:
        """Send what changed in the channel's view; a side whose changes all lie below its view
        (``reach``) cannot have changed and is not even looked at."""
        empty = views.EMPTY
        if reach is None:
            dbids, dasks = self._update(channel, True), self._update(channel, False)
        else:
            depth = channel.depth
            dbids = self._update(channel, True) if channel.bids.may_change(depth, reach[0], True) else empty
            dasks = self._update(channel, False) if channel.asks.may_change(depth, reach[1], False) else empty
        if dbids != empty or dasks != empty:
            channel.send("delta", wire.book_body(ts, dbids, dasks), touched, self.limits, ts)

    def _bbo_update(self, channel: BboChannel, ts: int, touched: set[Subscriber]) -> None:
        bbo = views.encode_bbo(self.engine.consolidated[channel.symbol])
        if bbo != channel.last:
            channel.last = bbo
            channel.send("bbo", wire.bbo_body(ts, bbo), touched, self.limits, ts)
