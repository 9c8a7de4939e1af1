"""Built-in ``binance`` (spot) and ``binance-futures`` (USD-M) connectors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from crossbook.plugin import (
    ConnectorRegistry,
    FirstLastIds,
    PrevLinked,
    SequenceRule,
    StreamingConfig,
    StreamingConnector,
    hookimpl,
)
from crossbook_binance.protocol import FUTURES_LIMITS, BinanceProtocol

MAX_CONNECTION_AGE = 23.5 * 3600
"""Binance closes connections after 24 h: switch to a new one before, without a gap."""


class BinanceConfig(StreamingConfig):
    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    update_speed: Literal["100ms", "1000ms"] = "100ms"
    snapshot_limit: int = Field(1000, ge=1, le=5000)
    trades: bool = True
    streams_per_connection: int = Field(200, ge=1, le=1024)
    snapshot_weight_per_minute: float = Field(1200.0, gt=0)


class BinanceFuturesConfig(StreamingConfig):
    ws_url: str = "wss://fstream.binance.com/public"
    """Book streams (since 2026 under ``/public``; the legacy ``wss://fstream.binance.com`` also works)."""
    trades_ws_url: str | None = "wss://fstream.binance.com/market"
    """Trade streams (since 2026 under ``/market``); ``None`` puts them on ``ws_url``."""
    rest_url: str = "https://fapi.binance.com"
    update_speed: Literal["0ms", "100ms", "250ms", "500ms"] = "100ms"
    snapshot_limit: int = 1000
    trades: bool = True
    streams_per_connection: int = Field(200, ge=1, le=1024)
    snapshot_weight_per_minute: float = Field(1200.0, gt=0)

    @field_validator("snapshot_limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if value not in FUTURES_LIMITS:
            raise ValueError(f"must be one of {', '.join(map(str, FUTURES_LIMITS))}")
        return value


def spot(venue: str, symbols: tuple[str, ...], config: BinanceConfig) -> StreamingConnector:
    return _connector(venue, symbols, config, BinanceProtocol(symbols, **_protocol_keys(config)), FirstLastIds())


def futures(venue: str, symbols: tuple[str, ...], config: BinanceFuturesConfig) -> StreamingConnector:
    keys = _protocol_keys(config) | {"futures": True, "trades_ws_url": config.trades_ws_url}
    return _connector(venue, symbols, config, BinanceProtocol(symbols, **keys), PrevLinked())


def _protocol_keys(config: BinanceConfig | BinanceFuturesConfig) -> dict[str, Any]:
    return {
        "ws_url": config.ws_url,
        "rest_url": config.rest_url,
        "update_speed": config.update_speed,
        "snapshot_limit": config.snapshot_limit,
        "trades": config.trades,
        "streams_per_connection": config.streams_per_connection,
    }


def _connector(
    venue: str,
    symbols: tuple[str, ...],
    config: BinanceConfig | BinanceFuturesConfig,
    protocol: BinanceProtocol,
    rule: SequenceRule,
) -> StreamingConnector:
    return StreamingConnector.build(
        venue,
        symbols,
        config,
        protocol,
        rule,
        max_connection_age=MAX_CONNECTION_AGE,
        snapshot_limit=config.snapshot_limit,
    )


@hookimpl
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    registry.add(
        "binance",
        config_model=BinanceConfig,
        factory=spot,
        description="Binance spot: diff depth + REST snapshot (U/u), trades",
    )
    registry.add(
        "binance-futures",
        config_model=BinanceFuturesConfig,
        factory=futures,
        description="Binance USD-M futures: diff depth + REST snapshot (pu chaining), trades",
    )
