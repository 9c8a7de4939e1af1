"""The hooks a crossbook plugin can implement. Each docstring is the reference for plugin authors.

A plugin is a module (or object) with functions marked ``@hookimpl`` and named after a spec below.
Packaged plugins register under the entry-point group ``crossbook``; unpackaged ones are named in
the config's ``plugins`` list. Hooks run once at start-up and must do no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from crossbook.toolkit.registry import ConnectorRegistry

hookspec = pluggy.HookspecMarker("crossbook")
hookimpl = pluggy.HookimplMarker("crossbook")


@hookspec
def crossbook_add_connectors(registry: ConnectorRegistry) -> None:
    """Register the venue connectors this plugin provides.

    Call ``registry.add(id, config_model=..., factory=..., description=...)`` once per connector:

    - ``id``: the name a venue's ``connector`` key uses (lower case, e.g. ``"binance"``);
    - ``config_model``: a subclass of :class:`crossbook.toolkit.connector.ConnectorConfig` that validates
      the venue table's connector-specific keys (so ``check-config`` catches mistakes);
    - ``factory``: ``factory(venue, symbols, config) -> Connector``, called when the venue starts
      (and again on each restart); it must not do I/O either;
    - ``description``: one line shown by ``crossbook venues``.

    Registering an id that another plugin already registered is an error naming both plugins.
    """
