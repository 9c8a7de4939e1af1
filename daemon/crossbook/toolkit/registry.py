"""The registry plugins fill with connectors (see :func:`crossbook.toolkit.hookspecs.crossbook_add_connectors`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from crossbook.toolkit.connector import ConnectorConfig, ConnectorFactory

CONNECTOR_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class RegistryError(Exception):
    """A plugin registered something invalid or twice."""


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    id: str
    config_model: type[ConnectorConfig]
    factory: ConnectorFactory
    description: str
    plugin: str
    distribution: str | None = None
    version: str | None = None


class ConnectorRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, ConnectorSpec] = {}
        self._plugin = "?"
        self._dist: tuple[str | None, str | None] = (None, None)

    def _registering(self, plugin: str, distribution: str | None, version: str | None) -> None:
        """Set by the plugin manager before it calls each plugin's hook."""
        self._plugin = plugin
        self._dist = (distribution, version)

    def add(
        self,
        id: str,
        *,
        config_model: type[ConnectorConfig],
        factory: ConnectorFactory,
        description: str,
    ) -> None:
        """Register a connector; see the hook's docstring for what each argument means."""
        if not CONNECTOR_ID_RE.match(id):
            raise RegistryError(f"connector id {id!r} must match {CONNECTOR_ID_RE.pattern}")
        if not (isinstance(config_model, type) and issubclass(config_model, ConnectorConfig)):
            raise RegistryError(f"connector {id!r}: config_model must subclass crossbook ConnectorConfig")
        if not callable(factory):
            raise RegistryError(f"connector {id!r}: factory must be callable")
        old = self._specs.get(id)
        if old is not None:
            raise RegistryError(
                f"connector {id!r} registered twice: by plugin {old.plugin!r} and by plugin {self._plugin!r}"
            )
        self._specs[id] = ConnectorSpec(id, config_model, factory, description, self._plugin, *self._dist)

    def get(self, id: str) -> ConnectorSpec | None:
        return self._specs.get(id)

    def __contains__(self, id: object) -> bool:
        return id in self._specs

    def __iter__(self) -> Iterator[ConnectorSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.id))

    def __len__(self) -> int:
        return len(self._specs)
