"""Conformance: any streaming connector through the standard scenarios against its fake venue.

    report = await run_conformance(subject)
    assert report.failures == {}, str(report)

Each scenario runs on a fresh fake venue and connector, and a failure reads as a sentence: the
scenario, what was awaited, for which symbol, and what happened instead.

- ``sync``: books built from snapshot and updates equal the venue's;
- ``gap``: a lost message makes that symbol (only) resync and come back with the right book
  (skipped for a venue with neither sequence ids nor checksums: a loss cannot be seen);
- ``checksum``: a corrupt checksum makes the symbol resync (venues with checksums);
- ``drop``: a dropped connection reconnects and every book resyncs;
- ``stall``: a silent connection is replaced within the idle timeout;
- ``garbage``: garbage, truncated and too deeply nested frames are counted and skipped, books stay
  right;
- ``trades``: trades come out normalized (symbol, price, size, the aggressor's side, id), once;
- ``rest_429``: a 429 with Retry-After pauses snapshot requests, no storm (REST venues);
- ``planned_reconnect``: a venue-requested reconnect switches connections without a book
  leaving ``live``, and a trade both connections carry is published once (venues that ask).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from crossbook.core.model import BookState, Side, Trade
from crossbook.testing.fakevenue import Dialect, FakeConnection, FakeVenue
from crossbook.testing.feed import EngineFeed
from crossbook.testing.market import FakeMarket
from crossbook.toolkit.clock import Clock
from crossbook.toolkit.connector import Connector, ConnectorConfig
from crossbook.toolkit.sequence import AfterTimestamp, Unsequenced
from crossbook.toolkit.streaming import StreamingConnector
from crossbook.toolkit.venue import SnapshotSource

IDLE_TIMEOUT = 1.0
SCENARIOS = ("sync", "gap", "checksum", "drop", "stall", "garbage", "trades", "rest_429", "planned_reconnect")


class Unmet(AssertionError):
    """What a scenario waited for did not happen; the message says what happened instead."""


@dataclass
class Subject:
    """A connector and its fake venue, as the scenarios need them.

    A field left at ``None`` is worked out from the connector itself: the kit builds it once with
    ``config`` (no I/O happens) and reads its protocol and a symbol's book sync. Set a field to
    say otherwise, for a connector that is not a
    :class:`~crossbook.plugin.StreamingConnector` or a venue the defaults misjudge.
    """

    venue: str
    """The venue name the connector runs under (any valid name)."""
    factory: Callable[[str, tuple[str, ...], Any], Connector]
    """The connector's factory, as registered: ``factory(venue, symbols, config)``."""
    config_model: type[ConnectorConfig]
    """The connector's config model: ``config`` is validated with it."""
    dialect: Callable[[FakeMarket], Dialect]
    """Builds the fake venue's side for a generated market (its ``__init__``, usually)."""
    config: Callable[[FakeVenue], dict[str, Any]]
    """Connector keys pointing it at the fake venue (``{"ws_url": fake.ws_url}``, and
    ``fake.rest_url`` for REST snapshots); the kit adds ``idle_timeout``."""
    symbols: Sequence[str] = ("BTC-USDT", "ETH-USDT")
    """At least two (``gap`` checks that only the symbol that lost a message resyncs)."""
    rest_snapshots: bool | None = None
    """Snapshots come over REST (runs ``rest_429``). Default: the protocol's ``snapshot_source``."""
    checksums: bool | None = None
    """The venue sends checksums the connector verifies (runs ``checksum``). Default: whether the
    book sync has a ``checksum``."""
    detects_gaps: bool | None = None
    """A lost message can be seen (runs ``gap``). Default: the sequence rule checks ids (it is not
    ``Unsequenced`` or ``AfterTimestamp``) or checksums are verified. A parser that checks a
    sequence number of its own (per connection, say) and puts out ``Resync`` says True."""
    gap_reasons: tuple[str, ...] | None = None
    """The resync reasons a lost message may show as. Default: ``gap``, and ``checksum`` where
    checksums are verified."""
    depth: int | None = None
    """Levels a side the connector keeps (a subscribed depth): books are compared that deep.
    Default: the book sync's ``depth`` (None: whole books)."""
    planned_reconnects: bool | None = None
    """The venue asks for reconnects (runs ``planned_reconnect``). Default: whether the dialect
    has a reconnect frame."""
    resync_reconnects: bool | None = None
    """Resyncing one symbol takes a new connection (``resubscribe()`` returns None), so ``gap``
    allows a reconnect. Default: what the protocol's ``resubscribe`` returns."""
    trades: bool = True
    """The connector publishes trades (runs ``trades``)."""
    market_levels: int = 30
    """Levels a side of the generated market."""


def resolve(subject: Subject) -> Subject:
    """The subject with every ``None`` worked out from its connector (see :class:`Subject`)."""
    market = FakeMarket(list(subject.symbols), levels=subject.market_levels)
    dialect = subject.dialect(market)
    settings = {**subject.config(FakeVenue(dialect, market)), "idle_timeout": IDLE_TIMEOUT}
    connector = subject.factory(subject.venue, tuple(subject.symbols), subject.config_model.model_validate(settings))
    found: dict[str, Any] = {"planned_reconnects": dialect.reconnect_frame() is not None}
    if isinstance(connector, StreamingConnector):
        protocol, sync = connector.protocol, connector.make_sync(subject.symbols[0])
        sequenced = not isinstance(sync.rule, Unsequenced | AfterTimestamp)
        checksums = sync.checksum is not None
        found |= {
            "rest_snapshots": protocol.snapshot_source is SnapshotSource.REST,
            "checksums": checksums,
            "detects_gaps": sequenced or checksums,
            "gap_reasons": ("gap", "checksum") if checksums else ("gap",),
            "depth": sync.depth,
            "resync_reconnects": protocol.resubscribe(list(subject.symbols)) is None,
        }
    else:
        found |= {"rest_snapshots": False, "checksums": False, "detects_gaps": True, "gap_reasons": ("gap",)}
        found |= {"resync_reconnects": True}
    given = {f.name: getattr(subject, f.name) for f in dataclasses.fields(subject)}
    return dataclasses.replace(subject, **{k: v for k, v in found.items() if given[k] is None})


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"passed: {', '.join(self.passed) or '-'}"]
        lines += [f"FAILED {name}: {why}" for name, why in self.failures.items()]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


@dataclass
class Rig:
    """A connector running against its fake venue, and the ways to wait for it."""

    subject: Subject
    fake: FakeVenue
    market: FakeMarket
    feed: EngineFeed

    def in_sync(self, symbol: str) -> bool:
        if self.feed.state(symbol) is not BookState.LIVE:
            return False
        book, truth, n = self.feed.book(symbol), self.market.books[symbol], self.subject.depth or 10**9
        return book.top_bids(n) == truth.top_bids(n) and book.top_asks(n) == truth.top_asks(n)

    def describe(self, symbol: str) -> str:
        """How a symbol's book stands, in words."""
        state = self.feed.state(symbol)
        resyncs = Counter(s.reason for s in self.feed.statuses(symbol) if s.state is BookState.SYNCING and s.reason)
        since = f" (resyncs: {', '.join(f'{why} {n}' for why, n in resyncs.items())})" if resyncs else ""
        if state is not BookState.LIVE:
            return f"{symbol} is {state.label}{since}"
        if self.in_sync(symbol):
            return f"{symbol} is live and equals the venue's book{since}"
        return f"{symbol} is live but differs from the venue's book{since}"

    async def converge(self, symbols: Sequence[str] | None = None, limit: float = 10.0, what: str = "") -> None:
        """Move the market until the connector's books equal it (within ``limit`` seconds)."""
        symbols = list(symbols or self.subject.symbols)
        with self._waiting(limit, what or f"{' and '.join(symbols)} to equal the venue's book", symbols):
            while not all(self.in_sync(s) for s in symbols):
                for s in symbols:
                    await self.fake.step(s)
                with anyio.move_on_after(0.05):
                    await self.feed.wait_for(lambda: all(self.in_sync(s) for s in symbols))

    async def until(
        self, condition: Callable[[], bool], limit: float = 10.0, what: str = "", otherwise: Callable[[], str] = str
    ) -> None:
        """Until ``condition()`` (within ``limit`` seconds), moving the market meanwhile. On a
        timeout, :class:`Unmet` says it waited for ``what`` and, from ``otherwise()``, what
        happened instead (by default, how every book stands)."""
        with self._waiting(limit, what or "the condition", self.subject.symbols, otherwise):
            while not condition():
                for s in self.subject.symbols:
                    await self.fake.step(s)
                with anyio.move_on_after(0.05):
                    await self.feed.wait_for(condition)

    @contextlib.contextmanager
    def _waiting(
        self, limit: float, what: str, symbols: Sequence[str], otherwise: Callable[[], str] = str
    ) -> Iterator[None]:
        with anyio.move_on_after(limit) as scope:
            yield
        if scope.cancelled_caught:
            instead = otherwise() or "; ".join(self.describe(s) for s in symbols)
            raise Unmet(f"waited {limit:g} s for {what}; {instead}")

    async def handing_over(self, rest_delay: float, connections: int = 2) -> list[FakeConnection]:
        """Ask for a planned reconnect whose new connections' REST snapshots wait ``rest_delay``
        seconds (old and new then stay open together); returns the ``connections`` open
        connections, oldest first."""
        self.fake.rest_delay = rest_delay
        await self.fake.request_reconnect()
        await self.until(
            lambda: len(self.fake.connections) == connections,
            what=f"{connections} connections after a reconnect request",
            otherwise=lambda: f"{len(self.fake.connections)} are open",
        )
        return list(self.fake.connections)


@contextlib.asynccontextmanager
async def rig(subject: Subject, clock: Clock | None = None, **extra: Any) -> AsyncIterator[Rig]:
    """The subject's connector running against its fake venue (``extra``: connector keys; a
    ``clock`` replaces a streaming connector's)."""
    market = FakeMarket(list(subject.symbols), levels=subject.market_levels)
    fake = FakeVenue(subject.dialect(market), market)
    async with fake.running():
        settings = {**subject.config(fake), "idle_timeout": IDLE_TIMEOUT, **extra}
        connector = subject.factory(
            subject.venue, tuple(subject.symbols), subject.config_model.model_validate(settings)
        )
        if clock is not None:
            assert isinstance(connector, StreamingConnector), "only a streaming connector's clock can be replaced"
            connector.clock = clock
        feed = EngineFeed(subject.venue, subject.symbols)
        async with anyio.create_task_group() as tg:
            tg.start_soon(connector.run, feed)
            with anyio.move_on_after(10) as scope:
                await fake.wait_connections(1)
            if scope.cancelled_caught:
                raise Unmet("waited 10 s for the connector to connect to the fake venue; it did not")
            yield Rig(subject, fake, market, feed)
            tg.cancel_scope.cancel()


async def _sync(r: Rig) -> None:
    await r.converge(what="every book to equal the venue's after subscribing")


async def _gap(r: Rig) -> None:
    await r.converge()
    first, other = r.subject.symbols[0], r.subject.symbols[1:]
    before = {s: len(r.feed.statuses(s)) for s in other}
    connects = r.fake.connects
    reasons = r.subject.gap_reasons or ("gap",)

    def resynced() -> bool:
        return sum(r.feed.resyncs(reason) for reason in reasons) >= 1

    # A venue without sequence numbers sees a loss only if it touched what its checksum covers:
    # lose messages until one does.
    with r._waiting(20, f"{first} to resync ({' or '.join(reasons)}) after lost messages", [first]):
        while not resynced():
            await r.fake.step(first, skip=True)
            for _ in range(3):
                await r.fake.step(first)
            with anyio.move_on_after(0.1):
                await r.feed.wait_for(resynced)
    await r.converge(what=f"{first} to equal the venue's book again after its resync")
    resynced_too = [s for s in other if len(r.feed.statuses(s)) != before[s]]
    if resynced_too:
        raise Unmet(f"only {first} lost a message, but {', '.join(resynced_too)} resynced too")
    if not r.subject.resync_reconnects and r.fake.connects != connects:
        raise Unmet(f"the connection was dropped to resync {first} alone (its protocol can resubscribe)")


async def _checksum(r: Rig) -> None:
    await r.converge()
    first = r.subject.symbols[0]
    await r.fake.step(first, corrupt=True)
    await r.until(lambda: r.feed.resyncs("checksum") >= 1, what=f"{first} to resync after a corrupt checksum")
    await r.converge(what=f"{first} to equal the venue's book again after its checksum resync")


async def _drop(r: Rig) -> None:
    await r.converge()
    await r.fake.drop()
    every = len(r.subject.symbols)
    await r.until(
        lambda: r.fake.connects >= 2 and r.feed.resyncs("reconnect") >= every,
        what=f"a reconnect after a dropped connection, and {every} books resyncing with reason 'reconnect'",
        otherwise=lambda: f"{r.fake.connects} connects, {r.feed.resyncs('reconnect')} resyncs",
    )
    await r.converge(what="every book to equal the venue's again after the reconnect")


async def _stall(r: Rig) -> None:
    await r.converge()
    r.fake.stalled = True
    first = r.subject.symbols[0]
    started = time.monotonic()
    with r._waiting(IDLE_TIMEOUT * 5, f"{first} to leave live while the venue is silent", [first]):
        await r.feed.wait_for(lambda: r.feed.state(first) is BookState.CONNECTING)
    took = time.monotonic() - started
    if took >= IDLE_TIMEOUT * 1.5:
        raise Unmet(f"the silent connection was replaced after {took:.2f} s (idle timeout {IDLE_TIMEOUT} s)")
    r.fake.stalled = False
    await r.converge(what="every book to equal the venue's after the stall")
    if r.feed.resyncs("stale") < 1:
        raise Unmet("the stalled connection's books resynced, but not with reason 'stale'")


async def _garbage(r: Rig) -> None:
    await r.converge()
    skipped, connects = len(r.feed.skipped), r.fake.connects
    await r.fake.send_all("{garbage")
    await r.fake.send_all('{"truncated": [1, 2')
    await r.fake.send_all("[" * 100_000 + "]" * 100_000)  # deeper than any decoder recurses
    with r._waiting(5, "3 unreadable frames to be counted as skipped", r.subject.symbols):
        await r.feed.wait_for(lambda: len(r.feed.skipped) >= skipped + 3)
    await r.converge(what="every book to stay equal to the venue's after garbage frames")
    if r.fake.connects != connects:
        raise Unmet("a garbage frame dropped the connection")


def _published(r: Rig, since: int = 0) -> list[Trade]:
    return [e for e in r.feed.events[since:] if isinstance(e, Trade)]


async def _trade_round(r: Rig, mark: int, count: int) -> list[Trade]:
    """``count`` trades on the first symbol, alternating sides; waits until each is published."""
    symbol = r.subject.symbols[0]
    sent = [await r.fake.trade(symbol, Side.BUY if i % 2 == 0 else Side.SELL) for i in range(count)]
    ids = {t.trade_id for t in sent}

    def all_out() -> bool:
        return ids <= {t.trade_id for t in _published(r, mark)}

    await r.until(
        all_out,
        what=f"{count} trades sent on {symbol} to be published",
        otherwise=lambda: f"published: {sorted(t.trade_id for t in _published(r, mark))} of {sorted(ids)}",
    )
    return sent


def _check_trades(r: Rig, sent: list[Trade], mark: int) -> None:
    published = _published(r, mark)
    for want in sent:
        got = [t for t in published if t.trade_id == want.trade_id and t.symbol == want.symbol]
        if len(got) != 1:
            raise Unmet(f"trade {want.trade_id} of {want.symbol} was published {len(got)} times, not once")
        (t,) = got
        fields = ("symbol", "price", "size", "side")
        wrong = [f"{f} {getattr(t, f)} (sent {getattr(want, f)})" for f in fields if getattr(t, f) != getattr(want, f)]
        if wrong:
            raise Unmet(f"trade {want.trade_id} came out with {', '.join(wrong)}; side is the aggressor's")
        if t.venue_ns is not None and want.venue_ns is not None and abs(t.venue_ns - want.venue_ns) > 10**9:
            raise Unmet(f"trade {want.trade_id}'s venue time is {t.venue_ns} ns, {want.venue_ns} was sent")


async def _trades(r: Rig) -> None:
    await r.converge()
    mark = len(r.feed.events)
    sent = await _trade_round(r, mark, 4)
    _check_trades(r, sent, mark)


async def _rest_429(r: Rig) -> None:
    r.fake.fail_rest(429, times=1, retry_after=1.0)
    await r.converge(what="every book to equal the venue's after a 429 to the first snapshot request")
    times = [t for t, _ in r.fake.rest_requests]
    symbols = len(r.subject.symbols)
    if len(times) < 2:
        raise Unmet(f"{len(times)} REST request after a 429: it was never retried")
    if times[1] - times[0] < 1.0:
        raise Unmet(f"the request after a 429 with Retry-After: 1 came {times[1] - times[0]:.2f} s later")
    if len(times) > symbols + 1:
        raise Unmet(f"{len(times)} REST requests for {symbols} symbols and one 429: a storm")


async def _planned_reconnect(r: Rig) -> None:
    await r.converge()
    mark = len(r.feed.events)
    trades: list[Trade] = []
    if r.subject.rest_snapshots:  # the new connection's snapshots wait: both connections stay open
        await r.handing_over(rest_delay=0.5)
        if r.subject.trades:
            trades = await _trade_round(r, mark, 2)  # each carried by both connections
        r.fake.rest_delay = 0.0
    else:
        await r.fake.request_reconnect()
    await r.until(
        lambda: r.fake.connects >= 2 and len(r.fake.connections) == 1,
        what="the old connection to end once its books were handed over",
        otherwise=lambda: f"{len(r.fake.connections)} connections are open",
    )
    await r.converge(what="every book to equal the venue's after the planned reconnect")
    left = [f"{s.symbol} went {s.state.label}" for s in r.feed.statuses() if r.feed.events.index(s) >= mark]
    if left:
        raise Unmet(f"a planned reconnect must not take a book out of live, but {', '.join(left)}")
    _check_trades(r, trades, mark)


RUNNERS: dict[str, Callable[[Rig], Awaitable[None]]] = {
    "sync": _sync,
    "gap": _gap,
    "checksum": _checksum,
    "drop": _drop,
    "stall": _stall,
    "garbage": _garbage,
    "trades": _trades,
    "rest_429": _rest_429,
    "planned_reconnect": _planned_reconnect,
}


def _skip_reason(subject: Subject, name: str) -> str | None:
    if name == "gap" and not subject.detects_gaps:
        return "the venue has neither sequence ids nor checksums: a lost message cannot be seen"
    if name == "gap" and len(subject.symbols) < 2:
        return "needs two symbols"
    if name == "checksum" and not subject.checksums:
        return "the venue sends no checksums"
    if name == "trades" and not subject.trades:
        return "the connector publishes no trades"
    if name == "rest_429" and not subject.rest_snapshots:
        return "the venue's snapshots come in-stream"
    if name == "planned_reconnect" and not subject.planned_reconnects:
        return "the venue never asks for a reconnect"
    return None


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def explain(exc: BaseException) -> str:
    """A failure in words: the sentences of what was unmet, else each exception with its type
    (never a bare exception group)."""
    said = [str(e) if isinstance(e, AssertionError) and str(e) else f"{type(e).__name__}: {e}" for e in _leaves(exc)]
    return "; ".join(dict.fromkeys(said))


async def run_conformance(subject: Subject, scenarios: Sequence[str] = SCENARIOS) -> Report:
    """Run the scenarios that apply to the subject (see :class:`Subject` for how that is decided);
    each failure is a sentence in ``Report.failures``."""
    report = Report()
    subject = resolve(subject)
    for name in scenarios:
        why = _skip_reason(subject, name)
        if why is not None:
            report.skipped[name] = why
            continue
        try:
            async with rig(subject) as r:
                await RUNNERS[name](r)
        except Exception as exc:
            report.failures[name] = explain(exc)
        else:
            report.passed.append(name)
    return report
