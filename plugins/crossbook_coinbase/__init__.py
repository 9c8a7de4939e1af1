"""Built-in ``coinbase`` connector: Coinbase Advanced Trade market data (``level2``, ``market_trades``)."""

from __future__ import annotations

import logging

from pydantic import Field, SecretStr

from crossbook.plugin import ConnectorRegistry, StreamingConfig, StreamingConnector, Unsequenced, hookimpl
from crossbook_coinbase.protocol import CoinbaseProtocol


class CoinbaseConfig(StreamingConfig):
    ws_url: str = "wss://advanced-trade-ws.coinbase.com"
    rest_url: str | None = None
    """Unused: the book snapshot comes on the WebSocket."""
    jwt: SecretStr | None = None
    """A CDP JWT sent in every subscribe (never logged). Coinbase JWTs expire after 2 minutes, so
    a fixed one only helps the first subscriptions; leave unset for the public feed."""
    trades: bool = True
    symbols_per_connection: int = Field(10, ge=1, le=100)
    """Products per connection. ``sequence_num`` is per connection, so a loss resyncs every book
    of its connection: fewer per connection narrows that, more saves connections."""


class Redact(logging.Filter):
    """Keeps secrets sent in frames out of the WebSocket library's debug log of every frame
    (it prints the first 48 and last 24 characters of each, or more when configured)."""

    WINDOW = 8

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def leaks(self, text: str) -> bool:
        for secret in self.secrets:
            step = min(self.WINDOW, len(secret))
            if any(secret[i : i + step] in text for i in range(len(secret) - step + 1)):
                return True
        return False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets and self.leaks(record.getMessage()):
            record.msg, record.args = "a frame carrying a secret (redacted)", ()
        return True


REDACT = Redact()
FRAME_LOGGERS = ("websockets.client",)


def _redact(secret: str) -> None:
    REDACT.secrets.add(secret)
    for name in FRAME_LOGGERS:
        logger = logging.getLogger(name)
        if REDACT not in logger.filters:
            logger.addFilter(REDACT)


def factory(venue: str, symbols: tuple[str, ...], config: CoinbaseConfig) -> StreamingConnector:
    jwt = config.jwt.get_secret_value() if config.jwt else None
    if jwt:
        _redact(jwt)
    protocol = CoinbaseProtocol(
        symbols,
        ws_url=config.ws_url,
        jwt=jwt,
        trades=config.trades,
        symbols_per_connection=config.symbols_per_connection,
    )
    return StreamingConnector.build(venue, symbols, config, protocol, Unsequenced())


@hookimpl
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    registry.add(
        "coinbase",
        config_model=CoinbaseConfig,
        factory=factory,
        description="Coinbase Advanced Trade: level2 with in-stream snapshots (per-connection sequence_num), trades",
    )
