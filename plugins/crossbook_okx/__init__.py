"""Built-in ``okx`` connector: OKX v5 ``books`` (REST or in-stream snapshots, seqId chaining,
checksum when non-zero) and ``trades``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crossbook.plugin import ConnectorRegistry, StreamingConfig, StreamingConnector, hookimpl
from crossbook_okx.protocol import OkxProtocol, SeqIdsOrChecksum, checksum


class OkxConfig(StreamingConfig):
    ws_url: str = "wss://ws.okx.com:8443/ws/v5/public"
    rest_url: str = "https://www.okx.com"
    snapshot: Literal["rest", "stream"] = "rest"
    """``rest``: align updates on ``GET /api/v5/market/books`` (OKX is retiring the in-stream
    snapshot); ``stream``: use the in-stream snapshot."""
    snapshot_depth: int = Field(400, ge=1, le=400)
    trades: bool = True
    symbols_per_connection: int = Field(100, ge=1, le=500)
    snapshot_weight_per_minute: float = Field(600.0, gt=0)
    """OKX allows 40 book requests per 2 s per IP; each counts 1 here."""


def factory(venue: str, symbols: tuple[str, ...], config: OkxConfig) -> StreamingConnector:
    protocol = OkxProtocol(
        symbols,
        ws_url=config.ws_url,
        rest_url=config.rest_url,
        snapshot=config.snapshot,
        trades=config.trades,
        symbols_per_connection=config.symbols_per_connection,
        snapshot_depth=config.snapshot_depth,
    )
    return StreamingConnector.build(venue, symbols, config, protocol, SeqIdsOrChecksum(), checksum=checksum)


@hookimpl
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    registry.add(
        "okx",
        config_model=OkxConfig,
        factory=factory,
        description="OKX v5: books with REST (or in-stream) snapshots, seqId chaining, checksum when sent; trades",
    )
