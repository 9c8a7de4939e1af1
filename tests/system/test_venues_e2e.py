"""The daemon with real-protocol fake venues on loopback: per-venue books equal the venues',
the consolidated book equals their sum, and a venue killed mid-stream leaves and re-enters."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import anyio
import orjson
import pytest
from anyio.abc import TaskStatus
from websockets.asyncio.client import connect

from crossbook.client import Mirror
from crossbook.core.exact import text
from crossbook.core.model import BookState
from crossbook.testing.fakevenue import FakeVenue
from crossbook.testing.market import FakeMarket
from crossbook_binance.fake import BinanceDialect
from support import running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def venue_view(market: FakeMarket, depth: int) -> dict[str, list[tuple[str, str, None]]]:
    book = market.books["BTC-USDT"]
    return {
        "bids": [(text(p), text(s), None) for p, s in book.top_bids(depth)],
        "asks": [(text(p), text(s), None) for p, s in book.top_asks(depth)],
    }


def consolidated_view(markets: dict[str, FakeMarket], depth: int) -> dict[str, list[tuple[str, str, dict[str, str]]]]:
    out: dict[str, list[tuple[str, str, dict[str, str]]]] = {}
    for side in ("bids", "asks"):
        levels: dict[Decimal, dict[str, Decimal]] = {}
        for venue, market in markets.items():
            book = market.books["BTC-USDT"]
            for price, size in book.bids() if side == "bids" else book.asks():
                levels.setdefault(price, {})[venue] = size
        ordered = sorted(levels.items(), reverse=side == "bids")[:depth]
        out[side] = [
            (text(p), text(sum(v.values(), Decimal(0))), {k: text(x) for k, x in v.items()}) for p, v in ordered
        ]
    return out


async def serve_until(fake: FakeVenue, stop: anyio.Event, *, task_status: TaskStatus[None]) -> None:
    async with fake.running():
        task_status.started()
        await stop.wait()


async def test_fake_venues_through_the_daemon(tmp_path: Path) -> None:
    markets = {"bn-a": FakeMarket(["BTC-USDT"], seed=1), "bn-b": FakeMarket(["BTC-USDT"], seed=2, mid=100_003)}
    fakes = {v: FakeVenue(BinanceDialect(m), m) for v, m in markets.items()}
    kill_b = anyio.Event()
    async with fakes["bn-a"].running(), anyio.create_task_group() as venues:
        await venues.start(serve_until, fakes["bn-b"], kill_b)
        toml = "".join(
            f'[venues.{v}]\nconnector = "binance"\nsymbols = ["BTC-USDT"]\nws_url = "{f.ws_url}"\n'
            f'rest_url = "{f.rest_url}"\ntrades = false\n'
            for v, f in fakes.items()
        )
        async with (
            running_daemon(tmp_path, toml) as (daemon, addresses),
            connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream") as ws,
        ):
            mirror = Mirror()
            channels = ["book.BTC-USDT", "book.BTC-USDT.bn-a", "book.BTC-USDT.bn-b"]
            await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "channels": channels, "depth": 10}).decode())

            def view(channel: str) -> dict[str, list[tuple[str, str, dict[str, str] | None]]]:
                book = mirror.books.get(channel)
                return {"bids": book.top("bids"), "asks": book.top("asks")} if book else {}

            async def until(check: Callable[[], bool], live: list[str]) -> None:
                """Move the live venues' markets and read frames until ``check()`` holds."""
                with anyio.fail_after(20):
                    while not check():
                        for venue in live:
                            await fakes[venue].step("BTC-USDT")
                        with anyio.move_on_after(0.05):
                            while not check():
                                mirror.apply(orjson.loads(await ws.recv()))

            await until(
                lambda: (
                    view("book.BTC-USDT.bn-a") == venue_view(markets["bn-a"], 10)
                    and view("book.BTC-USDT.bn-b") == venue_view(markets["bn-b"], 10)
                    and view("book.BTC-USDT") == consolidated_view(markets, 10)
                ),
                ["bn-a", "bn-b"],
            )
            kill_b.set()  # bn-b dies mid-stream: it leaves the consolidated book at once
            await until(lambda: daemon.engine.state("BTC-USDT", "bn-b") is not BookState.LIVE, ["bn-a"])
            await until(
                lambda: (
                    view("book.BTC-USDT") == consolidated_view({"bn-a": markets["bn-a"]}, 10)
                    and view("book.BTC-USDT.bn-b") == {"bids": [], "asks": []}
                ),
                ["bn-a"],
            )
            await venues.start(serve_until, fakes["bn-b"], anyio.Event())  # back on the same port
            await until(
                lambda: (
                    daemon.engine.state("BTC-USDT", "bn-b") is BookState.LIVE
                    and view("book.BTC-USDT") == consolidated_view(markets, 10)
                ),
                ["bn-a", "bn-b"],
            )
        venues.cancel_scope.cancel()
