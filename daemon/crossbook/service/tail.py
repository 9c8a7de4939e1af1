"""``crossbook tail``: a terminal view of API channels, on the Python client.

Book channels are ladders redrawn in place (``rich``); other messages are lines above them;
``--json`` prints each message as the server sent it, one a line, for ``jq``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal

import anyio
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from websockets.exceptions import InvalidStatus, InvalidURI

from crossbook.client import (
    Bbo,
    BboSide,
    Client,
    Conflated,
    Delta,
    Level,
    Resync,
    Snapshot,
    Status,
    SubscriptionError,
    Trade,
    Unsubscribed,
    connect,
)
from crossbook.client.connection import Item

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
REDRAW_SECONDS = 0.1
"""Ladders are redrawn at most this often (a busy book changes far more often than a screen can)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    text = "show channels live in the terminal: book ladders redrawn in place, other messages as lines"
    tail = sub.add_parser("tail", help=text, description=text, parents=[common])
    tail.add_argument("channels", nargs="+", metavar="CHANNEL", help="e.g. book.BTC-USDT trades.BTC-USDT status")
    tail.add_argument("--url", default=DEFAULT_URL, help=f"the API's stream URL (default: {DEFAULT_URL})")
    tail.add_argument("--depth", type=int, default=None, help="levels a side of book channels (default: the server's)")
    tail.add_argument("--token", default=None, help="bearer token, when the server has a tokens_file")
    tail.add_argument("--json", action="store_true", help="print every message as received, one JSON object a line")


def run(args: argparse.Namespace) -> int:
    try:
        anyio.run(_json if args.json else _view, args)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # the reader of --json went away (| head): done, as for any filter
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except (OSError, InvalidStatus, InvalidURI) as exc:
        print(f"crossbook tail: cannot connect to {args.url}: {exc}", file=sys.stderr)
        return 1
    except SubscriptionError as exc:
        print(f"crossbook tail: {exc}", file=sys.stderr)
        return 1
    return 0


async def _json(args: argparse.Namespace) -> None:
    out = sys.stdout.buffer
    async with connect(args.url, args.token) as client:
        async for raw in client.subscribe_json(*args.channels, depth=args.depth):
            out.write(raw + b"\n")
            out.flush()


async def _view(args: argparse.Namespace) -> None:
    console = Console(highlight=False)
    books = [c for c in args.channels if c.startswith("book.")]
    async with connect(args.url, args.token) as client:
        view = View(client, books)
        with Live(view.render(), console=console, auto_refresh=False, transient=False) as live:
            refused: SubscriptionError | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(view.redraw, live)
                try:
                    async for msg in client.subscribe(*args.channels, depth=args.depth):
                        line = view.take(msg)
                        if line is not None:
                            console.print(line)
                except SubscriptionError as exc:  # raised here, not wrapped in the task group's group
                    refused = exc
                tg.cancel_scope.cancel()
            if refused is not None:
                raise refused


class View:
    """What the terminal shows: the latest state of each book channel, and a line for the rest."""

    def __init__(self, client: Client, books: list[str]) -> None:
        self.client = client
        self.books = books
        self.dirty = True

    def take(self, msg: Item) -> Text | None:
        """Note a message; returns the line to print for it, if it is not drawn in a ladder."""
        self.dirty = True
        if isinstance(msg, Delta) or (isinstance(msg, Snapshot) and not msg.conflated):
            return None
        return _line(msg)

    async def redraw(self, live: Live) -> None:
        while True:
            if self.dirty:
                self.dirty = False
                live.update(self.render(), refresh=True)
            await anyio.sleep(REDRAW_SECONDS)

    def render(self) -> Group:
        return Group(*(self._ladder(channel) for channel in self.books))

    def _ladder(self, channel: str) -> Table:
        try:
            book = self.client.book(channel)
        except KeyError:  # not subscribed yet
            return Table(title=f"{channel}  (subscribing)", box=box.MINIMAL)
        attributed = channel.count(".") == 1
        title = f"{channel}  seq {book.seq}" if book.seq else f"{channel}  (waiting for a snapshot)"
        table = Table(title=title, box=box.MINIMAL, title_justify="left", expand=False)
        if attributed:
            table.add_column("bid venues", style="green", no_wrap=True, overflow="ellipsis", max_width=40)
        table.add_column("bid size", style="green", justify="right", no_wrap=True)
        table.add_column("bid", style="bold green", justify="right", no_wrap=True)
        table.add_column("ask", style="bold red", justify="left", no_wrap=True)
        table.add_column("ask size", style="red", justify="left", no_wrap=True)
        if attributed:
            table.add_column("ask venues", style="red", no_wrap=True, overflow="ellipsis", max_width=40)
        bids, asks = book.bids, book.asks
        for i in range(max(len(bids), len(asks))):
            bid = bids[i] if i < len(bids) else None
            ask = asks[i] if i < len(asks) else None
            cells = [
                _num(bid.size if bid else None),
                _num(bid.price if bid else None),
                _num(ask.price if ask else None),
                _num(ask.size if ask else None),
            ]
            if attributed:
                cells = [_venues(bid), *cells, _venues(ask)]
            table.add_row(*cells)
        return table


def _num(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _venues(level: Level | None) -> str:
    if level is None or not level.venues:
        return ""
    return " ".join(f"{venue}:{format(size, 'f')}" for venue, size in level.venues.items())


def _side(side: BboSide | None) -> str:
    if side is None:
        return "-"
    return f"{format(side.price, 'f')} ({format(side.size, 'f')} {','.join(side.venues)})"


def _clock(ts: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts / 1e9)) + f".{ts // 1_000_000 % 1000:03d}"


def _line(msg: Trade | Status | Bbo | Conflated | Resync | Unsubscribed | Snapshot) -> Text:
    if isinstance(msg, Trade):
        style = "green" if msg.side == "buy" else "red"
        text = f"{_clock(msg.ts)} {msg.channel} {msg.venue} {msg.side} {_num(msg.size)} @ {_num(msg.price)}"
        return Text(text, style=style)
    if isinstance(msg, Status):
        reason = f" ({msg.reason})" if msg.reason else ""
        return Text(f"{_clock(msg.ts)} status {msg.venue} {msg.symbol} {msg.state}{reason}", style="cyan")
    if isinstance(msg, Bbo):
        flags = " crossed" if msg.crossed else " locked" if msg.locked else ""
        return Text(f"{_clock(msg.ts)} {msg.channel} {_side(msg.bid)} x {_side(msg.ask)}{flags}")
    if isinstance(msg, Conflated):
        return Text(f"{_clock(msg.ts)} {msg.channel}: {msg.dropped} dropped while this reader was slow", style="yellow")
    if isinstance(msg, Resync):
        return Text(f"{msg.channel}: starting again from a fresh snapshot ({msg.reason})", style="yellow")
    if isinstance(msg, Unsubscribed):
        return Text(f"{msg.channel}: unsubscribed by the server ({msg.reason})", style="yellow")
    return Text(f"{msg.channel}: conflated snapshot (this reader was slow)", style="yellow")
