"""Built-in ``bitstamp`` connector: ``diff_order_book`` + REST snapshots, ``live_trades``."""

from __future__ import annotations

from pydantic import Field

from crossbook.plugin import AfterTimestamp, ConnectorRegistry, StreamingConfig, StreamingConnector, hookimpl
from crossbook_bitstamp.protocol import BitstampProtocol


class BitstampConfig(StreamingConfig):
    ws_url: str = "wss://ws.bitstamp.net"
    rest_url: str = "https://www.bitstamp.net"
    """Snapshots are ``GET {rest_url}/api/v2/order_book/{pair}/``."""
    trades: bool = True
    symbols_per_connection: int = Field(100, ge=1, le=500)
    heartbeat_interval: float = Field(10.0, gt=0)
    """Seconds between ``bts:heartbeat`` application pings."""
    resnapshot_interval: float = Field(300.0, ge=0)
    """Seconds between re-snapshots of every book (0: never). Bitstamp has no sequence numbers
    nor checksums, so a lost diff is invisible: rebuilding each book from a fresh REST snapshot
    bounds how long one can stay wrong. It is done as a planned reconnect: a new connection
    builds the books privately and each replaces the old one the moment it is live, so
    subscribers see a diff, never a gap."""
    snapshot_weight_per_minute: float = Field(120.0, gt=0)
    """REST snapshots a minute (each weighs 1); Bitstamp allows far more, this keeps resyncs polite."""


def factory(venue: str, symbols: tuple[str, ...], config: BitstampConfig) -> StreamingConnector:
    protocol = BitstampProtocol(
        symbols,
        ws_url=config.ws_url,
        rest_url=config.rest_url,
        trades=config.trades,
        symbols_per_connection=config.symbols_per_connection,
        heartbeat_interval=config.heartbeat_interval,
    )
    return StreamingConnector.build(
        venue, symbols, config, protocol, AfterTimestamp(), max_connection_age=config.resnapshot_interval or None
    )


@hookimpl
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    registry.add(
        "bitstamp",
        config_model=BitstampConfig,
        factory=factory,
        description="Bitstamp: diff_order_book + REST snapshot (microtimestamp), periodic re-snapshot, trades",
    )
