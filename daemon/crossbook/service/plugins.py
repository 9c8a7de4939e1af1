"""Building the plugin manager and collecting what plugins register.

Order: entry points of group ``crossbook`` (built-ins included), then the modules named in the
config's ``plugins``, minus ``disabled_plugins``. Any plugin that fails to import or register
stops start-up with its name and the exception: the daemon never runs without a venue it was
configured for.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable

import pluggy

from crossbook.toolkit import hookspecs
from crossbook.toolkit.registry import ConnectorRegistry

ENTRY_POINT_GROUP = "crossbook"


class PluginError(Exception):
    """A plugin could not be loaded or failed while registering."""


def make_plugin_manager(
    modules: Iterable[str] = (), disabled: Iterable[str] = ()
) -> tuple[pluggy.PluginManager, dict[str, tuple[str | None, str | None]]]:
    """Return the plugin manager and, per plugin name, its (distribution, version)."""
    pm = pluggy.PluginManager("crossbook")
    pm.add_hookspecs(hookspecs)
    entry_points = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    modules = list(modules)
    known = [ep.name for ep in entry_points] + modules
    for name in disabled:
        if name not in known:  # a typo would leave the plugin meant to be blocked running
            raise PluginError(f"disabled_plugins: no plugin named {name!r} (plugins: {', '.join(known)})")
        pm.set_blocked(name)
    dists: dict[str, tuple[str | None, str | None]] = {}
    for ep in entry_points:
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        dist = ep.dist
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            where = f" from {dist.name} {dist.version}" if dist else ""
            raise PluginError(f"plugin {ep.name!r}{where} failed to load: {exc!r}") from exc
        dists[ep.name] = (dist.name, dist.version) if dist else (None, None)
    for modname in modules:
        if pm.is_blocked(modname) or pm.has_plugin(modname):
            continue
        try:
            pm.register(importlib.import_module(modname), name=modname)
        except Exception as exc:
            raise PluginError(f"plugin {modname!r} failed to load: {exc!r}") from exc
        dists[modname] = (None, None)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_name(exc.plugin)!r}: {exc}") from exc
    return pm, dists


def collect_connectors(pm: pluggy.PluginManager, dists: dict[str, tuple[str | None, str | None]]) -> ConnectorRegistry:
    """Call every plugin's ``crossbook_add_connectors`` in load order, telling the registry who is
    registering (so a duplicate connector id is blamed on the plugin loaded later)."""
    registry = ConnectorRegistry()
    for impl in pm.hook.crossbook_add_connectors.get_hookimpls():
        registry._registering(impl.plugin_name, *dists.get(impl.plugin_name, (None, None)))
        try:
            impl.function(registry=registry)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            raise PluginError(f"plugin {impl.plugin_name!r} failed to register connectors: {problem}") from exc
    return registry


def load_connectors(modules: Iterable[str] = (), disabled: Iterable[str] = ()) -> ConnectorRegistry:
    pm, dists = make_plugin_manager(modules, disabled)
    return collect_connectors(pm, dists)
