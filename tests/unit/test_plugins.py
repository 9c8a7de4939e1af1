"""Plugins: entry points and config-named modules, and every way a plugin is refused.

Out-of-tree plugins are modules written to a temporary directory put on ``sys.path``; each test
uses fresh module names and forgets them afterwards.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crossbook import __version__
from crossbook.service.config import ConfigError, load
from crossbook.service.plugins import PluginError, collect_connectors, load_connectors, make_plugin_manager
from crossbook.toolkit import hookspecs
from crossbook.toolkit.connector import ConnectorConfig, Feed
from crossbook.toolkit.registry import ConnectorRegistry, RegistryError
from crossbook.toolkit.sequence import AfterTimestamp, Consecutive, FirstLastIds, PrevLinked, SequenceRule, Unsequenced
from crossbook.toolkit.venue import RestSnapshots, VenueProtocol

ROOT = Path(__file__).parents[2]

MakePlugin = Callable[[str], str]


def connector_plugin(cid: str, description: str = "A test connector") -> str:
    return f"""
from crossbook.toolkit.connector import ConnectorConfig
from crossbook.toolkit.hookspecs import hookimpl


class Config(ConnectorConfig):
    speed: int = 1


def factory(venue, symbols, config):
    raise AssertionError("never started by these tests")


@hookimpl
def crossbook_add_connectors(registry):
    registry.add({cid!r}, config_model=Config, factory=factory, description={description!r})
"""


def hook_body(body: str) -> str:
    return f"""
from crossbook.toolkit.hookspecs import hookimpl


@hookimpl
def crossbook_add_connectors(registry):
    {body}
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("CROSSBOOK_"):
            monkeypatch.delenv(key)
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.fixture
def make_plugin(tmp_path: Path) -> Iterator[MakePlugin]:
    """Write a plugin module under a fresh name; returns the name."""
    made: list[str] = []

    def make(source: str) -> str:
        name = f"cbtest_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        importlib.invalidate_caches()
        made.append(name)
        return name

    yield make
    for name in made:
        sys.modules.pop(name, None)


def refused(modules: list[str], disabled: list[str] | None = None) -> str:
    with pytest.raises(PluginError) as info:
        load_connectors(modules, disabled or [])
    return str(info.value)


# -- built-ins --------------------------------------------------------------------------------


def test_builtin_sim_comes_from_its_entry_point() -> None:
    spec = load_connectors().get("sim")
    assert spec is not None
    assert spec.plugin == "sim"
    assert (spec.distribution, spec.version) == ("crossbook", __version__)
    assert spec.description.startswith("Simulated venue")


def test_plugin_manager_loads_entry_points_then_modules(make_plugin: MakePlugin) -> None:
    mod = make_plugin(connector_plugin("mine"))
    pm, dists = make_plugin_manager([mod])
    names = [name for name, _ in pm.list_name_plugin()]
    assert "sim" in names
    assert names[-1] == mod
    assert dists["sim"] == ("crossbook", __version__)
    assert dists[mod] == (None, None)


# -- out-of-tree module plugins ---------------------------------------------------------------


def test_module_plugin_named_in_config(tmp_path: Path, make_plugin: MakePlugin) -> None:
    mod = make_plugin(connector_plugin("mine", "Mine, all mine"))
    path = tmp_path / "c.toml"
    path.write_text(f'plugins = ["{mod}"]\n[venues.v]\nconnector = "mine"\nsymbols = ["BTC-USDT"]\nspeed = 5\n')
    loaded = load(path, environ={})
    registry = load_connectors(loaded.settings.plugins, loaded.settings.disabled_plugins)
    spec = registry.get("mine")
    assert spec is not None
    assert (spec.plugin, spec.distribution, spec.version, spec.description) == (mod, None, None, "Mine, all mine")
    assert "sim" in registry  # built-ins still load alongside
    venue = loaded.venues(registry)["v"]
    assert venue.spec is spec
    assert venue.config.model_dump() == {"speed": 5}


def test_module_plugin_config_model_checks_its_keys(tmp_path: Path, make_plugin: MakePlugin) -> None:
    mod = make_plugin(connector_plugin("mine"))
    path = tmp_path / "c.toml"
    path.write_text(f'plugins = ["{mod}"]\n[venues.v]\nconnector = "mine"\nsymbols = ["BTC-USDT"]\nspeed = "x"\n')
    loaded = load(path, environ={})
    with pytest.raises(ConfigError) as info:
        loaded.venues(load_connectors(loaded.settings.plugins))
    assert str(info.value).startswith(f"{path}: venues.v.speed: ")


def test_module_listed_twice_loads_once(make_plugin: MakePlugin) -> None:
    mod = make_plugin(connector_plugin("mine"))
    assert load_connectors([mod, mod]).get("mine") is not None


def test_module_without_hooks_is_harmless(make_plugin: MakePlugin) -> None:
    mod = make_plugin("VALUE = 1\n")
    assert {spec.id for spec in load_connectors([mod])} == {spec.id for spec in load_connectors()}


# -- refusals ---------------------------------------------------------------------------------


def test_plugin_that_raises_at_import(make_plugin: MakePlugin) -> None:
    mod = make_plugin('raise RuntimeError("kaboom at import")\n')
    message = refused([mod])
    assert message.startswith(f"plugin {mod!r} failed to load: ")
    assert "RuntimeError" in message
    assert "kaboom at import" in message


def test_plugin_module_that_does_not_exist() -> None:
    name = f"cbtest_missing_{uuid.uuid4().hex[:8]}"
    message = refused([name])
    assert message.startswith(f"plugin {name!r} failed to load: ")
    assert "ModuleNotFoundError" in message


def test_plugin_that_raises_in_its_hook(make_plugin: MakePlugin) -> None:
    mod = make_plugin(hook_body('raise ValueError("no venue today")'))
    assert refused([mod]) == f"plugin {mod!r} failed to register connectors: ValueError: no venue today"


def test_duplicate_connector_id_names_both_plugins(make_plugin: MakePlugin) -> None:
    first = make_plugin(connector_plugin("dup"))
    second = make_plugin(connector_plugin("dup"))
    message = refused([first, second])
    assert message.startswith(f"plugin {second!r} failed to register connectors: ")
    assert f"connector 'dup' registered twice: by plugin {first!r} and by plugin {second!r}" in message


def test_plugin_duplicating_a_builtin_is_blamed_not_the_builtin(make_plugin: MakePlugin) -> None:
    mod = make_plugin(connector_plugin("sim"))
    message = refused([mod])
    assert message.startswith(f"plugin {mod!r} failed to register connectors: ")
    assert f"by plugin 'sim' and by plugin {mod!r}" in message


def test_misspelled_hook_is_refused(make_plugin: MakePlugin) -> None:
    mod = make_plugin(connector_plugin("mine").replace("def crossbook_add_connectors", "def crossbook_add_connector"))
    message = refused([mod])
    assert message.startswith(f"plugin {mod!r}: unknown hook 'crossbook_add_connector'")


def test_misnamed_hook_argument_is_refused(make_plugin: MakePlugin) -> None:
    mod = make_plugin(connector_plugin("mine").replace("(registry)", "(reg)").replace("registry.add", "reg.add"))
    message = refused([mod])
    assert message.startswith(f"plugin {mod!r} failed to load: ")
    assert "'reg'" in message


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            'registry.add("Bad Id", config_model=ConnectorConfig, factory=print, description="")',
            "connector id 'Bad Id' must match",
        ),
        (
            'registry.add("ok", config_model=BaseModel, factory=print, description="")',
            "connector 'ok': config_model must subclass crossbook ConnectorConfig",
        ),
        (
            'registry.add("ok", config_model=ConnectorConfig, factory=42, description="")',
            "connector 'ok': factory must be callable",
        ),
    ],
    ids=["id", "config-model", "factory"],
)
def test_invalid_registration_is_refused(make_plugin: MakePlugin, call: str, expected: str) -> None:
    imports = "from pydantic import BaseModel\nfrom crossbook.toolkit.connector import ConnectorConfig\n"
    mod = make_plugin(imports + hook_body(call))
    assert refused([mod]).startswith(f"plugin {mod!r} failed to register connectors: RegistryError: {expected}")


# -- disabled plugins -------------------------------------------------------------------------


def test_disabled_builtin_is_not_registered() -> None:
    registry = load_connectors(disabled=["sim"])
    assert "sim" not in registry
    assert len(registry) == len(load_connectors()) - 1


def test_disabled_sim_makes_a_sim_venue_an_unknown_connector(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('disabled_plugins = ["sim"]\n[venues.sim-a]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\n')
    loaded = load(path, environ={})
    registry = load_connectors(loaded.settings.plugins, loaded.settings.disabled_plugins)
    with pytest.raises(ConfigError) as info:
        loaded.venues(registry)
    message = str(info.value)
    assert message.startswith(f"{path}: venues.sim-a.connector: unknown connector 'sim' (known: ")
    assert "sim" not in message.partition("(known: ")[2].rstrip(")").split(", ")


def test_disabling_a_plugin_that_is_not_there_is_refused() -> None:
    """A misspelt name would otherwise leave the plugin meant to be blocked running."""
    message = refused([], ["simm"])
    assert message.startswith("disabled_plugins: no plugin named 'simm' (plugins: ")
    assert "sim" in message.partition("(plugins: ")[2].rstrip(")").split(", ")


def test_disabled_module_plugin_is_never_imported(make_plugin: MakePlugin) -> None:
    mod = make_plugin('raise RuntimeError("must not be imported")\n')
    load_connectors([mod], [mod])
    assert mod not in sys.modules


# -- packaged (entry-point) plugins -----------------------------------------------------------


def install_dist(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """What pip would leave for a package: a dist-info with its entry points."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text("[crossbook]\n" + lines)
    importlib.invalidate_caches()


def test_entry_point_plugin_records_its_distribution(tmp_path: Path, make_plugin: MakePlugin) -> None:
    mod = make_plugin(connector_plugin("packaged"))
    install_dist(tmp_path, f"cbtest-{mod[-6:]}", "1.2.3", {f"ep-{mod}": mod})
    spec = load_connectors().get("packaged")
    assert spec is not None
    assert (spec.plugin, spec.distribution, spec.version) == (f"ep-{mod}", f"cbtest-{mod[-6:]}", "1.2.3")
    assert "packaged" not in load_connectors(disabled=[f"ep-{mod}"])


def test_broken_entry_point_plugin_names_its_distribution(tmp_path: Path, make_plugin: MakePlugin) -> None:
    mod = make_plugin('raise ImportError("needs libfoo")\n')
    install_dist(tmp_path, f"cbtest-{mod[-6:]}", "0.9", {f"ep-{mod}": mod})
    message = refused([])
    assert message.startswith(f"plugin 'ep-{mod}' from cbtest-{mod[-6:]} 0.9 failed to load: ")
    assert "needs libfoo" in message
    load_connectors(disabled=[f"ep-{mod}"])  # blocked: never imported, so no error


# -- the registry itself ----------------------------------------------------------------------


class _Config(ConnectorConfig):
    pass


class _Connector:
    async def run(self, feed: Feed) -> None:
        raise NotImplementedError


def _factory(venue: str, symbols: tuple[str, ...], config: object) -> _Connector:
    return _Connector()


def test_registry_lists_sorted_and_blames_both_plugins() -> None:
    registry = ConnectorRegistry()
    registry._registering("one", "dist-one", "1.0")
    registry.add("zeta", config_model=_Config, factory=_factory, description="z")
    registry.add("alpha", config_model=_Config, factory=_factory, description="a")
    assert [spec.id for spec in registry] == ["alpha", "zeta"]
    assert len(registry) == 2
    assert "alpha" in registry
    assert "beta" not in registry
    assert registry.get("beta") is None
    alpha = registry.get("alpha")
    assert alpha is not None
    assert (alpha.plugin, alpha.distribution, alpha.version) == ("one", "dist-one", "1.0")
    registry._registering("two", None, None)
    with pytest.raises(RegistryError, match="'alpha' registered twice: by plugin 'one' and by plugin 'two'"):
        registry.add("alpha", config_model=_Config, factory=_factory, description="again")
    assert registry.get("alpha") is alpha


def test_collect_connectors_with_no_plugins_is_empty() -> None:
    pm, dists = make_plugin_manager([], ["sim", *(spec.plugin for spec in load_connectors())])
    assert len(collect_connectors(pm, dists)) == 0


# -- documentation ----------------------------------------------------------------------------


def hookspec_names() -> list[str]:
    return [
        name
        for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("crossbook_") and hasattr(obj, "crossbook_spec")
    ]


def test_every_hookspec_is_documented_in_the_readme() -> None:
    names = hookspec_names()
    assert "crossbook_add_connectors" in names
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    undocumented = [name for name in names if name not in readme]
    assert not undocumented, f"hooks missing from README.md: {undocumented}"


@pytest.mark.parametrize(
    "base",
    [VenueProtocol, RestSnapshots, SequenceRule, Unsequenced, AfterTimestamp, FirstLastIds, PrevLinked, Consecutive],
)
def test_a_plugin_may_subclass_the_toolkits_protocols_and_rules(base: type) -> None:
    """A plugin's protocol or rule may inherit the toolkit's defaults."""
    subclass = type(f"Plugin{base.__name__}", (base,), {})
    assert type(subclass()).__mro__[1] is base
