"""Built-in ``bybit`` connector: Bybit v5 spot or linear ``orderbook`` (u+1 continuity,
snapshot resets) and ``publicTrade``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from crossbook.plugin import ConnectorRegistry, Consecutive, StreamingConfig, StreamingConnector, hookimpl
from crossbook_bybit.protocol import URLS, BybitProtocol


class BybitConfig(StreamingConfig):
    category: Literal["spot", "linear"] = "spot"
    """``spot`` (symbols like ``BTC-USDT``) or ``linear`` perpetuals (``BTC-USDT-PERP``)."""
    ws_url: str = ""
    """Default: the category's public stream (``wss://stream.bybit.com/v5/public/<category>``)."""
    depth: Literal[1, 50, 200, 1000] = 200
    trades: bool = True
    symbols_per_connection: int = Field(50, ge=1, le=500)

    @model_validator(mode="after")
    def _default_url(self) -> BybitConfig:
        if not self.ws_url:
            object.__setattr__(self, "ws_url", URLS[self.category])
        return self


def factory(venue: str, symbols: tuple[str, ...], config: BybitConfig) -> StreamingConnector:
    protocol = BybitProtocol(
        symbols,
        ws_url=config.ws_url,
        category=config.category,
        depth=config.depth,
        trades=config.trades,
        symbols_per_connection=config.symbols_per_connection,
    )
    return StreamingConnector.build(venue, symbols, config, protocol, Consecutive())


@hookimpl
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    registry.add(
        "bybit",
        config_model=BybitConfig,
        factory=factory,
        description="Bybit v5 spot or linear: orderbook snapshots/deltas with u+1 continuity, trades",
    )
