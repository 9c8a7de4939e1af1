"""Fuzzing: no client frame and no venue frame makes an exception escape or leaves state
inconsistent."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.api.channels import Limits
from crossbook.api.hub import Hub
from crossbook.core.engine import Engine
from crossbook.core.model import BookSnapshot
from crossbook.testing.replay import Replay
from crossbook.toolkit.sequence import FirstLastIds, PrevLinked
from crossbook.toolkit.streaming import StreamingConnector
from crossbook.toolkit.sync import BookSync
from crossbook.toolkit.venue import PARSE_ERRORS, SnapshotSource
from crossbook_binance.protocol import BinanceProtocol

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
channels = st.sampled_from(
    ["book.BTC-USDT", "book.BTC-USDT.alpha", "bbo.BTC-USDT", "trades.BTC-USDT", "status", "book.X", "bbo.", "", "."]
)
requests = st.fixed_dictionaries(
    {"op": st.sampled_from(["subscribe", "unsubscribe", "ping", "list", "nope", 3])},
    optional={
        "id": json_values,
        "channels": st.lists(channels, max_size=4) | json_values,
        "depth": st.integers(-5, 80) | json_values,
    },
)
frames = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    json_values.map(orjson.dumps),
    requests.map(orjson.dumps),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=30))
@pytest.mark.slow
def test_api_inbound_frames(batch: list[bytes]) -> None:
    engine = Engine({"alpha": ["BTC-USDT"]}, stale_after_ns=10**15)
    hub = Hub(engine, 50, {"alpha": "x"}, Limits(max_ops_per_second=1e9))
    session = hub.open()
    engine.ingest("alpha", [BookSnapshot("BTC-USDT", [(Decimal(1), Decimal(1))], [], 0)], 0)
    for i, frame in enumerate(batch):
        assert hub.receive(session, frame, i) is None
        for data in session.drain():
            msg = orjson.loads(data)
            assert "type" in msg
    for name, sub in session.subs.items():  # consistent: each subscription is in its channel
        assert sub.channel.subs[session] is sub
        assert sub.channel.name == name
    hub.close(session)
    assert not hub.subscribers


depth_msg = st.fixed_dictionaries(
    {
        "e": st.sampled_from(["depthUpdate", "trade", "aggTrade", "serverShutdown", "x"]),
        "s": st.sampled_from(["BTCUSDT", "ETHUSDT", "NOPE", 5]),
    },
    optional={
        "E": st.integers(0, 2**40) | json_values,
        "U": st.integers(0, 100) | json_values,
        "u": st.integers(0, 100) | json_values,
        "pu": st.integers(0, 100) | json_values,
        "b": st.lists(st.lists(st.sampled_from(["1.5", "0", "-1", "NaN", "1e99", "x", "2"]), max_size=3), max_size=3),
        "a": st.lists(st.lists(st.sampled_from(["1.5", "0", "2", "3.25"]), max_size=3), max_size=3) | json_values,
        "p": st.sampled_from(["1", "x"]),
        "q": st.sampled_from(["1", "0.5"]),
        "m": st.booleans(),
        "t": st.integers(-(2**63), 2**63 - 1),
        "T": st.integers(0, 2**40),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.booleans(),
    st.lists(st.one_of(frames, depth_msg.map(lambda d: orjson.dumps({"stream": "s", "data": d}))), max_size=30),
)
@pytest.mark.slow
def test_binance_frames(futures: bool, batch: list[bytes]) -> None:
    symbols = ["BTC-USDT-PERP", "ETH-USDT-PERP"] if futures else ["BTC-USDT", "ETH-USDT"]
    protocol = BinanceProtocol(symbols, ws_url="ws://x", rest_url="http://x", futures=futures)
    rule: Any = PrevLinked() if futures else FirstLastIds()
    rp = Replay(protocol, lambda s: BookSync(s, rule, SnapshotSource.REST), symbols)
    rp.snapshot(symbols[0], b'{"lastUpdateId": 10, "bids": [["1", "1"]], "asks": [["2", "1"]]}', 0)
    for i, frame in enumerate(batch):
        with contextlib.suppress(*PARSE_ERRORS):
            protocol.parse(rp.conn, frame, i)
        rp.frame(frame, i)  # the same path the toolkit takes: errors counted, never raised
    for sync in rp.syncs.values():
        assert not (sync.live and sync.book.crossed())


def test_huge_request_id_is_refused_not_echoed() -> None:
    engine = Engine({"alpha": ["BTC-USDT"]}, stale_after_ns=10**15)
    hub = Hub(engine, 50, {"alpha": "x"})
    session = hub.open()
    hub.receive(session, b'{"op":"ping","id":' + str(2**70).encode() + b"}", 0)
    reply = orjson.loads(session.drain()[0])
    assert reply["code"] == "bad_request"
    assert reply["id"] is None


def streaming_connectors() -> list[str]:
    from crossbook.service.plugins import load_connectors

    return [spec.id for spec in load_connectors() if spec.id != "sim"]


@pytest.mark.parametrize("connector_id", streaming_connectors())
@settings(max_examples=150, deadline=None)
@given(batch=st.lists(st.one_of(frames, json_values.map(lambda v: orjson.dumps({"data": v, "arg": v}))), max_size=20))
@pytest.mark.slow
def test_every_connector_parser(connector_id: str, batch: list[bytes]) -> None:
    """Any frame into any built-in connector's parser: a counted skip or outputs the book syncs
    take without an exception escaping."""
    from crossbook.service.plugins import load_connectors

    spec = load_connectors().get(connector_id)
    assert spec is not None
    symbols = ("BTC-USDT", "ETH-USDT")
    connector = spec.factory(connector_id, symbols, spec.config_model())
    assert isinstance(connector, StreamingConnector)
    rp = Replay(connector.protocol, connector.make_sync, symbols)
    for i, frame in enumerate(batch):
        rp.frame(frame, i)
        rp.frame(frame.decode(errors="replace"), i)
