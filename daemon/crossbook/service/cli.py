"""Command line: ``crossbook run | check-config | venues``, ``--version``, ``-v``/``-q``."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from crossbook import __version__, build
from crossbook.service import logs, replay, scaffold, tail
from crossbook.service.config import Config, ConfigError, Venue, load
from crossbook.service.plugins import PluginError, load_connectors
from crossbook.toolkit.registry import ConnectorRegistry, RegistryError

GC_YOUNG_THRESHOLD = 10_000
"""Allocations between young collections of the cyclic garbage collector in the daemon (Python's
default is 700): every venue message allocates lists and tuples that die young, and collecting
them at the default rate costs the daemon ~9% of its CPU at saturation."""

log = logging.getLogger("crossbook")


def _common(defaults: bool) -> argparse.ArgumentParser:
    """Logging options, accepted before and after the command (after it, they must not reset
    what was given before it: hence no defaults there)."""
    common = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    common.add_argument("-v", "--verbose", action="count", default=default(0), help="more logging (debug)")
    common.add_argument("-q", "--quiet", action="count", default=default(0), help="less logging (warnings only)")
    common.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=default(None),
        help="log line format (default: $CROSSBOOK_LOG_FORMAT or text)",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common(defaults=False)
    parser = argparse.ArgumentParser(
        prog="crossbook", description="Consolidated crypto order books over WebSocket", parents=[_common(True)]
    )
    parser.add_argument("--version", action="version", version=f"crossbook {__version__} ({build()})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("run", "run the daemon"), ("check-config", "validate the configuration and exit")):
        cmd = sub.add_parser(name, help=text, description=text, parents=[common])
        cmd.add_argument(
            "--config",
            metavar="PATH",
            help="config file (default: $CROSSBOOK_CONFIG, /etc/crossbook/crossbook.toml, embedded demo)",
        )
    venues = sub.add_parser("venues", help="list the connectors plugins provide", parents=[common])
    venues.add_argument("--config", metavar="PATH", help="config whose plugin settings apply")
    plugin = sub.add_parser("plugin", help="write a connector plugin package", parents=[common])
    actions = plugin.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser(
        "new",
        help="write crossbook-NAME/, a working plugin with a fake venue and a conformance test",
        parents=[common],
    )
    new.add_argument("name", metavar="NAME", help="the connector id, e.g. gemini")
    new.add_argument("--dir", metavar="PATH", default=".", help="where to write it (default: here)")
    replay.add_parser(sub, common)
    tail.add_parser(sub, common)
    return parser


def _prepare(path: str | None) -> tuple[Config, ConnectorRegistry, dict[str, Venue]]:
    config = load(path)
    registry = load_connectors(config.settings.plugins, config.settings.disabled_plugins)
    return config, registry, config.venues(registry)


def _backend_options() -> dict[str, Any]:
    """uvloop (a dependency where it installs), else asyncio's own loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def tune_gc() -> None:
    """Collect what start-up left, freeze the rest (it lives as long as the process: no full
    collection walks it again) and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


def _reload(path: str | None) -> tuple[Config, dict[str, Venue]]:
    config, _registry, venues = _prepare(path)
    return config, venues


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.verbose - args.quiet, args.log_format)
    command = args.command or "run"
    if command == "plugin":
        return _new_plugin(args.name, Path(args.dir))
    if command == "replay":
        return replay.main(args)
    if command == "tail":
        return tail.run(args)
    path = getattr(args, "config", None)
    try:
        if command == "venues":
            config = load(path)
            registry = load_connectors(config.settings.plugins, config.settings.disabled_plugins)
            return _list_venues(registry)
        config, _registry, venues = _prepare(path)
    except (ConfigError, PluginError, RegistryError) as exc:
        print(f"crossbook: {exc}", file=sys.stderr)
        return 1
    if command == "check-config":
        print(f"{config.source}: OK ({len(venues)} venues)")
        return 0
    from crossbook.service.app import Daemon

    tune_gc()
    try:
        anyio.run(Daemon(config, venues, partial(_reload, path)).run, backend_options=_backend_options())
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def _new_plugin(name: str, parent: Path) -> int:
    try:
        root = scaffold.write(name, parent)
    except (scaffold.ScaffoldError, OSError) as exc:
        print(f"crossbook: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {root}/, a plugin package with the connector {name!r}; to see it pass:")
    print(f"  pip install -e {root}")
    print(f"  python -m pytest {root}")
    print("  crossbook venues")
    print("then make its protocol speak your venue (crossbook_*/__init__.py) and its fake (fake.py).")
    return 0


def _list_venues(registry: ConnectorRegistry) -> int:
    rows = [("CONNECTOR", "PLUGIN", "DISTRIBUTION", "DESCRIPTION")]
    for spec in registry:
        dist = f"{spec.distribution} {spec.version}" if spec.distribution else "-"
        rows.append((spec.id, spec.plugin, dist, spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0
