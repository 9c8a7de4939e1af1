"""Configuration: TOML file plus ``CROSSBOOK_*`` environment overrides, validated before start.

The file is ``--config PATH``, else ``$CROSSBOOK_CONFIG``, else ``/etc/crossbook/crossbook.toml``,
else the embedded default (three simulated venues). Environment variables override the file
(``CROSSBOOK_SERVER__PORT=9000``). Every venue's connector-specific keys are validated by the
connector's own model, so a bad config is refused, naming the file and the key, before anything
starts.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from crossbook.cluster.bus import subject_token
from crossbook.core.model import SYMBOL_RE
from crossbook.toolkit.connector import ConnectorConfig
from crossbook.toolkit.registry import ConnectorRegistry, ConnectorSpec

SYSTEM_CONFIG = Path("/etc/crossbook/crossbook.toml")
ENV_CONFIG = "CROSSBOOK_CONFIG"
EMBEDDED = "embedded default"
VENUE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the source, the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Strict):
    """WebSocket API and HTTP health endpoints, with the limits that let it face the internet."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    max_connections: int = Field(10_000, ge=1)
    """Open API connections at most; more are refused with HTTP 503 before the upgrade."""
    max_connections_per_ip: int = Field(200, ge=1)
    """Open connections from one IP address at most; more are refused with HTTP 429."""
    max_channels_per_connection: int = Field(1000, ge=1)
    """More is a ``too_many_channels`` error."""
    max_frame_bytes: int = Field(65_536, ge=256)
    """Largest client frame; a larger one closes the connection with 1009."""
    max_ops_per_second: float = Field(50.0, gt=0)
    """Client requests per second; over it, ``rate_limited`` errors; far over it, close 1008."""
    max_buffer_bytes: int = Field(1024 * 1024, ge=1024)
    """Outgoing bytes queued per connection before it is conflated."""
    max_buffer_messages: int = Field(2000, ge=10)
    """Outgoing messages queued per connection before it is conflated."""
    send_buffer_bytes: int = Field(65_536, ge=4096)
    """Kernel send buffer per connection (SO_SNDBUF). Small, so a stalled client's data waits in
    the bounded, conflating queue instead of the kernel, where stalled clients would cost as much
    as fast ones and delay them."""
    slow_client_timeout: float = Field(10.0, gt=0)
    """A connection still behind this many seconds after falling behind is closed with 1013."""
    handshake_timeout: float = Field(10.0, gt=0)
    ping_interval: float = Field(20.0, gt=0)
    """Seconds between WebSocket pings to each client."""
    ping_timeout: float = Field(20.0, gt=0)
    """A client that does not answer a ping within this is closed (1011)."""
    compression: Literal["none", "deflate"] = "none"
    """permessage-deflate costs CPU per client per message; off unless bandwidth matters more."""
    tokens_file: Path | None = None
    """Bearer tokens, one per line (``#`` comments): when set, every stream connection needs one."""
    allowed_origins: list[str] = []
    """Browser ``Origin`` values allowed (empty: any); requests without ``Origin`` are not browsers."""
    cert_file: Path | None = None
    """TLS certificate chain (PEM); with ``key_file``, the API serves wss:// and https://."""
    key_file: Path | None = None

    @model_validator(mode="after")
    def _files(self) -> ServerConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        for path in (self.tokens_file, self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        if self.tokens_file is not None and not read_tokens(self.tokens_file):
            raise ValueError(f"{self.tokens_file} holds no token")
        return self


def read_tokens(path: Path) -> list[str]:
    """Tokens from a tokens file: one per line, blank lines and ``#`` comments ignored."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class MetricsConfig(_Strict):
    """Prometheus exposition, on its own listener."""

    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)


class ConsolidatedConfig(_Strict):
    depth: int = Field(50, ge=1, le=1000)
    """Levels per side kept and served for consolidated books (and the largest subscribe depth)."""
    stale_after: float = Field(5.0, gt=0)
    """Seconds without a message before a venue is excluded from consolidation."""


class ClusterConfig(_Strict):
    """Scale-out over NATS (README "Cluster"); with ``role = "all"`` NATS is never imported."""

    role: Literal["all", "ingest", "edge"] = "all"
    """``ingest`` runs the connectors and publishes the books; ``edge`` serves them from the bus."""
    nats_url: list[str] = Field(["nats://127.0.0.1:4222"], min_length=1)
    node: str = Field(default_factory=socket.gethostname, min_length=1)
    """This node's name, unique in the cluster (default: the host name)."""
    user: str | None = None
    password: str | None = Field(None, repr=False)
    """With ``user``: NATS user and password (never logged)."""
    creds_file: Path | None = None
    """A NATS credentials file (JWT and NKey seed), instead of a user and password."""
    tls_ca_file: Path | None = None
    """CA that signed the NATS server's certificate (with ``tls://`` URLs)."""
    tls_cert_file: Path | None = None
    """Client certificate and key, when the NATS server verifies clients."""
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _auth(self) -> ClusterConfig:
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        if self.user is not None and self.creds_file is not None:
            raise ValueError("a user and password, or a creds_file, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        for path in (self.creds_file, self.tls_ca_file, self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return self


class RecordConfig(_Strict):
    """Record every venue input to zstd files, for ``crossbook replay`` (on when ``dir`` is set)."""

    dir: Path | None = None
    """The folder the files go to (created if missing)."""
    max_file_bytes: int = Field(256 * 2**20, ge=2**16)
    """A file this large (compressed) is closed and a new one started."""
    max_file_seconds: float = Field(3600.0, gt=0)
    """A file this old is closed and a new one started."""
    flush_interval: float = Field(1.0, gt=0)
    """Seconds at most between writes: what a crash (``kill -9``) can lose."""


class VenueConfig(BaseModel):
    """A ``[venues.<name>]`` table; keys other than these belong to the connector."""

    model_config = ConfigDict(extra="allow")

    connector: str | None = None
    symbols: list[str] = Field(min_length=1)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if not SYMBOL_RE.match(symbol):
                raise ValueError(f"{symbol!r} is not a symbol like 'BTC-USDT' or 'BTC-USDT-PERP' (upper case)")
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate symbols: {', '.join(dupes)}")
        return symbols

    def connector_keys(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("crossbook_config_environ", default=None)
"""The environment :func:`load` was given, read by :class:`Settings` instead of ``os.environ``."""


class _EnvironSource(EnvSettingsSource):
    """``CROSSBOOK_*`` overrides read from a given mapping rather than ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self.case_sensitive:
            return dict(self.environ)
        return {key.lower(): value for key, value in self.environ.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSBOOK_", env_nested_delimiter="__", extra="forbid")

    plugins: list[str] = []
    """Extra plugin modules to load by import path (unpackaged plugins)."""
    disabled_plugins: list[str] = []
    """Entry-point plugin names to block."""
    server: ServerConfig = ServerConfig()
    metrics: MetricsConfig = MetricsConfig()
    consolidated: ConsolidatedConfig = ConsolidatedConfig()
    record: RecordConfig = RecordConfig()
    cluster: ClusterConfig = ClusterConfig()
    venues: dict[str, VenueConfig] = Field(min_length=1)

    @field_validator("venues")
    @classmethod
    def _venue_names(cls, venues: dict[str, VenueConfig]) -> dict[str, VenueConfig]:
        for name in venues:
            if not VENUE_RE.match(name):
                raise ValueError(f"venue name {name!r} must match {VENUE_RE.pattern} (lower case, no dots)")
        return venues

    @model_validator(mode="after")
    def _subject_tokens(self) -> Settings:
        if self.cluster.role != "all":  # names travel in NATS subjects
            for name, venue in self.venues.items():
                for token in (name, *venue.symbols):
                    if not subject_token(token):
                        raise ValueError(f"venues.{name}: {token!r} cannot be a NATS subject token")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        if environ is not None:
            env_settings = _EnvironSource(settings_cls, environ)
        return env_settings, init_settings  # the environment overrides the file


@dataclass(frozen=True)
class Venue:
    """A configured venue, ready to start: its connector and validated connector config."""

    name: str
    symbols: tuple[str, ...]
    spec: ConnectorSpec
    config: ConnectorConfig


@dataclass(frozen=True)
class Config:
    settings: Settings
    source: str
    """Path of the file in use, or ``embedded default``."""

    def venues(self, registry: ConnectorRegistry) -> dict[str, Venue]:
        """Resolve every venue's connector and validate its keys with the connector's model."""
        out: dict[str, Venue] = {}
        problems: list[str] = []
        for name, venue in self.settings.venues.items():
            cid = venue.connector or name
            spec = registry.get(cid)
            if spec is None:
                known = ", ".join(s.id for s in registry) or "none"
                problems.append(f"venues.{name}.connector: unknown connector {cid!r} (known: {known})")
                continue
            if self.settings.cluster.role == "edge":  # an edge builds no connector: keys unread
                out[name] = Venue(name, tuple(venue.symbols), spec, spec.config_model.model_construct())
                continue
            try:
                config = spec.config_model.model_validate(venue.connector_keys())
            except ValidationError as exc:
                problems += _describe(exc, f"venues.{name}")
                continue
            out[name] = Venue(name, tuple(venue.symbols), spec, config)
        if problems:
            raise ConfigError(f"{self.source}: " + f"\n{self.source}: ".join(problems))
        return out


def locate(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """Find the config: returns (TOML text, source name)."""
    candidates: list[Path] = []
    if path is not None:
        candidates = [Path(path)]
    elif environ.get(ENV_CONFIG):
        candidates = [Path(environ[ENV_CONFIG])]
    elif SYSTEM_CONFIG.exists():
        candidates = [SYSTEM_CONFIG]
    for candidate in candidates:
        try:
            return candidate.read_text(encoding="utf-8"), str(candidate)
        except OSError as exc:
            raise ConfigError(f"{candidate}: cannot read config: {exc.strerror or exc}") from None
    return resources.files("crossbook.service").joinpath("default.toml").read_text(encoding="utf-8"), EMBEDDED


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the settings (connector keys are checked by :meth:`Config.venues`)."""
    environ = os.environ if environ is None else environ
    text, source = locate(path, environ)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    token = _ENVIRON.set(environ)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + f"\n{source}: ".join(_describe(exc, environ=environ))) from None
    finally:
        _ENVIRON.reset(token)
    return Config(settings, source)


def _describe(exc: ValidationError, prefix: str = "", environ: Mapping[str, str] | None = None) -> list[str]:
    out = []
    for err in exc.errors():
        key = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        if err["type"] == "extra_forbidden":
            line = f"{key}: unknown key"
        elif err["type"] == "missing":
            line = f"{key}: required key is missing"
        else:
            line = f"{key}: {err['msg']} (got {err['input']!r})"
        variable = "CROSSBOOK_" + key.upper().replace(".", "__")
        if environ is not None and variable in environ:
            line += f" [set by ${variable}]"
        out.append(line)
    return out
