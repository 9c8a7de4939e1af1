"""The built-in ``sim`` connector: simulated venues, no network.

Registered through the ``crossbook`` entry point exactly as a third-party plugin would be.
"""

from __future__ import annotations

from crossbook.plugin import ConnectorRegistry, hookimpl
from crossbook_sim.connector import SimConfig, SimConnector


@hookimpl
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    registry.add(
        "sim",
        config_model=SimConfig,
        factory=SimConnector,
        description="Simulated venue: random-walk market shared across sim venues, no network",
    )
