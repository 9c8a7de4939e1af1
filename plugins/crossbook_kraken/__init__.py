"""Built-in ``kraken`` connector: Kraken spot WebSocket v2 ``book`` (CRC32-checked) and ``trade``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crossbook.plugin import ConnectorRegistry, StreamingConfig, StreamingConnector, Unsequenced, hookimpl
from crossbook_kraken.protocol import KrakenProtocol, checksum


class KrakenConfig(StreamingConfig):
    ws_url: str = "wss://ws.kraken.com/v2"
    depth: Literal[10, 25, 100, 500, 1000] = 100
    """Levels a side subscribed (Kraken refuses any other value); books are truncated to it."""
    trades: bool = True
    symbols_per_connection: int = Field(50, ge=1, le=500)


def factory(venue: str, symbols: tuple[str, ...], config: KrakenConfig) -> StreamingConnector:
    protocol = KrakenProtocol(
        symbols,
        ws_url=config.ws_url,
        depth=config.depth,
        trades=config.trades,
        symbols_per_connection=config.symbols_per_connection,
    )
    return StreamingConnector.build(
        venue, symbols, config, protocol, Unsequenced(), depth=config.depth, checksum=checksum
    )


@hookimpl
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    registry.add(
        "kraken",
        config_model=KrakenConfig,
        factory=factory,
        description="Kraken spot WebSocket v2: book with CRC32 checksums (per-symbol resubscribe), trades",
    )
