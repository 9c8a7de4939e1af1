"""Configuration: lookup order, environment overrides, and every way a config is refused.

A refusal names the file, the key path and what was expected; the daemon never starts on a
config it would have to guess about.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent

import pytest

from crossbook.service import config
from crossbook.service.config import EMBEDDED, Config, ConfigError, load
from crossbook.service.plugins import load_connectors
from crossbook.toolkit.registry import ConnectorRegistry
from crossbook_sim.connector import SimConfig

ROOT = Path(__file__).parents[2]
VENUE = '[venues.sim-a]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\n'


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``CROSSBOOK_*`` variable of the test run leaks in, and no /etc file is found."""
    for key in list(os.environ):
        if key.upper().startswith("CROSSBOOK_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "etc" / "crossbook.toml")


@pytest.fixture(scope="module")
def registry() -> ConnectorRegistry:
    return load_connectors()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path, environ: Mapping[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, environ={} if environ is None else environ)
    return str(info.value)


def venue_refusal(path: Path, registry: ConnectorRegistry) -> str:
    loaded = load(path, environ={})  # the settings are fine: the connector's model refuses
    with pytest.raises(ConfigError) as info:
        loaded.venues(registry)
    return str(info.value)


def assert_names(message: str, source: Path | str, key: str, expected: str) -> None:
    """Every line names the source; one line is ``<source>: <key>: ...<expected>...``."""
    lines = message.splitlines()
    assert lines
    assert all(line.startswith(f"{source}: ") for line in lines), message
    hits = [line for line in lines if line.startswith(f"{source}: {key}: ")]
    assert hits, f"no line for {key!r} in:\n{message}"
    assert any(expected in line for line in hits), f"{expected!r} not said about {key!r} in:\n{message}"


# -- the embedded default and the shipped demo ------------------------------------------------


def test_embedded_default_validates_with_three_sim_venues(registry: ConnectorRegistry) -> None:
    loaded = load(environ={})
    assert loaded.source == EMBEDDED
    venues = loaded.venues(registry)
    assert sorted(venues) == ["sim-a", "sim-b", "sim-c"]
    for name, venue in venues.items():
        assert venue.name == name
        assert venue.spec.id == "sim"
        assert venue.symbols == ("BTC-USDT", "ETH-USDT")
        assert isinstance(venue.config, SimConfig)
    assert loaded.settings.plugins == []
    assert loaded.settings.disabled_plugins == []


def test_demo_config_is_the_embedded_default() -> None:
    demo = load(ROOT / "config" / "demo.toml", environ={})
    assert demo.source == str(ROOT / "config" / "demo.toml")
    assert demo.settings == load(environ={}).settings


# -- valid files ------------------------------------------------------------------------------


def test_full_file_is_read(tmp_path: Path, registry: ConnectorRegistry) -> None:
    path = write(
        tmp_path / "c.toml",
        dedent("""
        plugins = []
        disabled_plugins = ["binance"]
        [server]
        host = "0.0.0.0"
        port = 9100
        [metrics]
        host = "::1"
        port = 0
        [consolidated]
        depth = 20
        stale_after = 2.5
        [venues.left]
        connector = "sim"
        symbols = ["BTC-USDT", "ETH-USDT-PERP"]
        rate = 100.0
        tick = "0.5"
        seed = 7
        """),
    )
    loaded = load(path, environ={})
    s = loaded.settings
    assert loaded.source == str(path)
    assert (s.server.host, s.server.port) == ("0.0.0.0", 9100)
    assert (s.metrics.host, s.metrics.port) == ("::1", 0)
    assert (s.consolidated.depth, s.consolidated.stale_after) == (20, 2.5)
    assert s.disabled_plugins == ["binance"]
    venue = loaded.venues(registry)["left"]
    assert venue.symbols == ("BTC-USDT", "ETH-USDT-PERP")
    assert venue.config == SimConfig(rate=100.0, tick="0.5", seed=7)


def test_connector_defaults_to_the_table_name(tmp_path: Path, registry: ConnectorRegistry) -> None:
    path = write(tmp_path / "c.toml", '[venues.sim]\nsymbols = ["BTC-USDT"]\nlevels = 5\n')
    venue = load(path, environ={}).venues(registry)["sim"]
    assert venue.spec.id == "sim"
    assert isinstance(venue.config, SimConfig)
    assert venue.config.levels == 5


def test_two_venues_may_share_a_connector(tmp_path: Path, registry: ConnectorRegistry) -> None:
    path = write(tmp_path / "c.toml", VENUE + VENUE.replace("sim-a", "sim-b").replace("BTC-USDT", "ETH-USDT"))
    venues = load(path, environ={}).venues(registry)
    assert {n: v.symbols for n, v in venues.items()} == {"sim-a": ("BTC-USDT",), "sim-b": ("ETH-USDT",)}


# -- refusals by the settings -----------------------------------------------------------------

SETTINGS_REFUSALS = [
    ("port-range", "[server]\nport = 70000\n" + VENUE, "server.port", "less than or equal to 65535"),
    ("port-type", '[server]\nport = "http"\n' + VENUE, "server.port", "valid integer"),
    ("server-unknown-key", "[server]\nprot = 80\n" + VENUE, "server.prot", "unknown key"),
    ("top-unknown-key", "bogus = 1\n" + VENUE, "bogus", "unknown key"),
    ("metrics-port", "[metrics]\nport = -1\n" + VENUE, "metrics.port", "greater than or equal to 0"),
    ("metrics-host-type", "[metrics]\nhost = 1\n" + VENUE, "metrics.host", "valid string"),
    ("metrics-unknown-key", "[metrics]\npath = '/m'\n" + VENUE, "metrics.path", "unknown key"),
    ("depth", "[consolidated]\ndepth = 0\n" + VENUE, "consolidated.depth", "greater than or equal to 1"),
    ("stale-after", '[consolidated]\nstale_after = "soon"\n' + VENUE, "consolidated.stale_after", "valid number"),
    ("plugins-type", 'plugins = "mymod"\n' + VENUE, "plugins", "valid list"),
    ("disabled-item-type", "disabled_plugins = [1]\n" + VENUE, "disabled_plugins.0", "valid string"),
    ("tls-half", '[server]\ncert_file = "/x.pem"\n' + VENUE, "server", "cert_file and key_file go together"),
    ("symbol-case", '[venues.sim-a]\nsymbols = ["btc-usdt"]\n', "venues.sim-a.symbols", "'btc-usdt' is not a symbol"),
    ("symbol-shape", '[venues.sim-a]\nsymbols = ["BTCUSDT"]\n', "venues.sim-a.symbols", "'BTCUSDT' is not a symbol"),
    ("symbols-string", '[venues.sim-a]\nsymbols = "BTC-USDT"\n', "venues.sim-a.symbols", "valid list"),
    ("symbols-empty", "[venues.sim-a]\nsymbols = []\n", "venues.sim-a.symbols", "at least 1 item"),
    (
        "symbols-dupe",
        '[venues.sim-a]\nsymbols = ["BTC-USDT", "ETH-USDT", "BTC-USDT"]\n',
        "venues.sim-a.symbols",
        "duplicate symbols: BTC-USDT",
    ),
    ("symbols-missing", '[venues.sim-a]\nconnector = "sim"\n', "venues.sim-a.symbols", "required key is missing"),
    ("connector-type", '[venues.x]\nconnector = 5\nsymbols = ["BTC-USDT"]\n', "venues.x.connector", "valid string"),
    ("venue-name-case", '[venues.Sim-A]\nsymbols = ["BTC-USDT"]\n', "venues", "'Sim-A' must match"),
    ("venue-name-dot", '[venues."a.b"]\nsymbols = ["BTC-USDT"]\n', "venues", "'a.b' must match"),
    ("venue-name-dash", '[venues."-a"]\nsymbols = ["BTC-USDT"]\n', "venues", "'-a' must match"),
    ("venue-not-table", "venues = { sim-a = 1 }\n", "venues.sim-a", "valid dictionary"),
    ("venues-missing", "[server]\nport = 1\n", "venues", "required key is missing"),
    ("venues-empty", "venues = {}\n", "venues", "at least 1 item"),
]


@pytest.mark.parametrize(
    ("text", "key", "expected"), [case[1:] for case in SETTINGS_REFUSALS], ids=[case[0] for case in SETTINGS_REFUSALS]
)
def test_settings_refusal_names_file_and_key(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path / "crossbook.toml", text)
    assert_names(refusal(path), path, key, expected)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        'bogus = 1\n[server]\nport = "x"\n[consolidated]\ndepth = 0\n[venues.sim-a]\nsymbols = ["btc"]\n',
    )
    message = refusal(path)
    assert_names(message, path, "bogus", "unknown key")
    assert_names(message, path, "server.port", "valid integer")
    assert_names(message, path, "consolidated.depth", "greater than or equal to 1")
    assert_names(message, path, "venues.sim-a.symbols", "'btc' is not a symbol")
    assert len(message.splitlines()) == 4


def test_refusal_shows_the_value_it_got(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[server]\nport = 70000\n" + VENUE)
    assert "(got 70000)" in refusal(path)


# -- refusals by the connector's model (what check-config adds to a plain load) ---------------

VENUE_REFUSALS = [
    (
        "unknown-connector",
        '[venues.x]\nconnector = "nope"\nsymbols = ["BTC-USDT"]\n',
        "venues.x.connector",
        "unknown connector 'nope'",
    ),
    ("connector-from-name", '[venues.x]\nsymbols = ["BTC-USDT"]\n', "venues.x.connector", "unknown connector 'x'"),
    ("rate-range", VENUE + "rate = -1\n", "venues.sim-a.rate", "greater than or equal to 0"),
    ("rate-type", VENUE + 'rate = "fast"\n', "venues.sim-a.rate", "valid number"),
    ("levels-range", VENUE + "levels = 0\n", "venues.sim-a.levels", "greater than or equal to 1"),
    ("tick-value", VENUE + 'tick = "-1"\n', "venues.sim-a.tick", "positive decimal"),
    ("unknown-connector-key", VENUE + "speed = 3\n", "venues.sim-a.speed", "unknown key"),
]


@pytest.mark.parametrize(
    ("text", "key", "expected"), [case[1:] for case in VENUE_REFUSALS], ids=[case[0] for case in VENUE_REFUSALS]
)
def test_connector_refusal_names_file_and_key(
    tmp_path: Path, registry: ConnectorRegistry, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path / "crossbook.toml", text)
    assert_names(venue_refusal(path, registry), path, key, expected)


def test_unknown_connector_lists_the_known_ones(tmp_path: Path, registry: ConnectorRegistry) -> None:
    path = write(tmp_path / "c.toml", '[venues.x]\nconnector = "nope"\nsymbols = ["BTC-USDT"]\n')
    known = venue_refusal(path, registry).partition("(known: ")[2].rstrip(")").split(", ")
    assert known == [spec.id for spec in registry]
    assert "sim" in known


def test_unknown_connector_with_empty_registry_says_none(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", VENUE)
    message = venue_refusal(path, ConnectorRegistry())
    assert_names(message, path, "venues.sim-a.connector", "unknown connector 'sim' (known: none)")


def test_every_venue_problem_is_reported_at_once(tmp_path: Path, registry: ConnectorRegistry) -> None:
    text = VENUE + "rate = -1\n" + '[venues.x]\nconnector = "nope"\nsymbols = ["BTC-USDT"]\n'
    path = write(tmp_path / "c.toml", text)
    message = venue_refusal(path, registry)
    assert_names(message, path, "venues.sim-a.rate", "greater than or equal to 0")
    assert_names(message, path, "venues.x.connector", "unknown connector 'nope'")
    assert len(message.splitlines()) == 2


def test_embedded_default_refusal_names_embedded_default() -> None:
    loaded = load(environ={})
    with pytest.raises(ConfigError) as info:
        loaded.venues(ConnectorRegistry())
    assert_names(str(info.value), EMBEDDED, "venues.sim-a.connector", "unknown connector 'sim'")


# -- file problems ----------------------------------------------------------------------------


def test_duplicate_venue_table_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", VENUE + "\n" + VENUE)
    message = refusal(path)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "'venues', 'sim-a'" in message
    assert "twice" in message
    assert "line 5" in message


def test_invalid_toml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", VENUE + "rate = \n")
    message = refusal(path)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 4" in message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = refusal(missing)
    assert message.startswith(f"{missing}: cannot read config: ")
    assert "No such file" in message


def test_directory_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path)
    assert message.startswith(f"{tmp_path}: cannot read config: ")


# -- lookup order -----------------------------------------------------------------------------


def port_file(path: Path, port: int) -> Path:
    return write(path, f"[server]\nport = {port}\n" + VENUE)


@pytest.fixture
def three_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A --config file (port 1001), a $CROSSBOOK_CONFIG file (1002) and an /etc file (1003)."""
    cli = port_file(tmp_path / "cli.toml", 1001)
    env = port_file(tmp_path / "env.toml", 1002)
    system = port_file(tmp_path / "etc" / "crossbook.toml", 1003)
    assert system == config.SYSTEM_CONFIG
    return cli, env, system


def served(loaded: Config) -> tuple[str, int]:
    return loaded.source, loaded.settings.server.port


def test_cli_path_beats_environment_variable(three_files: tuple[Path, Path, Path]) -> None:
    cli, env, _ = three_files
    assert served(load(cli, environ={"CROSSBOOK_CONFIG": str(env)})) == (str(cli), 1001)


def test_environment_variable_beats_system_file(three_files: tuple[Path, Path, Path]) -> None:
    _, env, _ = three_files
    assert served(load(None, environ={"CROSSBOOK_CONFIG": str(env)})) == (str(env), 1002)


def test_system_file_beats_embedded_default(three_files: tuple[Path, Path, Path]) -> None:
    _, _, system = three_files
    assert served(load(None, environ={})) == (str(system), 1003)


def test_empty_environment_variable_is_unset(three_files: tuple[Path, Path, Path]) -> None:
    _, _, system = three_files
    assert served(load(None, environ={"CROSSBOOK_CONFIG": ""})) == (str(system), 1003)


def test_embedded_default_when_nothing_else(tmp_path: Path) -> None:
    assert not config.SYSTEM_CONFIG.exists()
    assert served(load(None, environ={})) == (EMBEDDED, 8765)


def test_os_environ_is_the_default_environment(
    three_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, env, _ = three_files
    monkeypatch.setenv("CROSSBOOK_CONFIG", str(env))
    assert served(load()) == (str(env), 1002)


def test_missing_cli_path_does_not_fall_back(three_files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, env, _ = three_files
    missing = tmp_path / "typo.toml"
    message = refusal(missing, environ={"CROSSBOOK_CONFIG": str(env)})
    assert message.startswith(f"{missing}: cannot read config")


def test_missing_env_path_does_not_fall_back(three_files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    missing = tmp_path / "typo.toml"
    with pytest.raises(ConfigError) as info:
        load(None, environ={"CROSSBOOK_CONFIG": str(missing)})
    assert str(info.value).startswith(f"{missing}: cannot read config: ")


# -- environment overrides --------------------------------------------------------------------


@pytest.fixture
def file_1234(tmp_path: Path) -> Path:
    return write(tmp_path / "c.toml", '[server]\nhost = "0.0.0.0"\nport = 1234\n' + VENUE)


def test_environment_overrides_one_nested_key(file_1234: Path) -> None:
    loaded = load(file_1234, environ={"CROSSBOOK_SERVER__PORT": "9000"})
    assert loaded.settings.server.port == 9000
    assert loaded.settings.server.host == "0.0.0.0"  # the rest of [server] still comes from the file
    assert list(loaded.settings.venues) == ["sim-a"]


def test_os_environ_overrides_by_default(file_1234: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSBOOK_SERVER__PORT", "9001")
    assert load(file_1234).settings.server.port == 9001


def test_given_environ_replaces_os_environ(file_1234: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSBOOK_SERVER__PORT", "9001")
    assert load(file_1234, environ={}).settings.server.port == 1234
    assert load(file_1234, environ={"CROSSBOOK_SERVER__PORT": "9002"}).settings.server.port == 9002


def test_environment_overrides_embedded_default() -> None:
    loaded = load(environ={"CROSSBOOK_METRICS__PORT": "0", "CROSSBOOK_CONSOLIDATED__STALE_AFTER": "2.5"})
    assert loaded.source == EMBEDDED
    assert loaded.settings.metrics.port == 0
    assert loaded.settings.consolidated.stale_after == 2.5
    assert len(loaded.settings.venues) == 3


def test_environment_sets_lists_as_json(file_1234: Path) -> None:
    environ = {"CROSSBOOK_DISABLED_PLUGINS": '["binance"]', "CROSSBOOK_PLUGINS": '["a.b", "c"]'}
    settings = load(file_1234, environ=environ).settings
    assert settings.disabled_plugins == ["binance"]
    assert settings.plugins == ["a.b", "c"]


def test_bad_environment_value_is_refused_by_key(file_1234: Path) -> None:
    message = refusal(file_1234, environ={"CROSSBOOK_SERVER__PORT": "http"})
    assert_names(message, file_1234, "server.port", "valid integer")


def test_unknown_environment_key_is_refused(file_1234: Path) -> None:
    message = refusal(file_1234, environ={"CROSSBOOK_SERVER__PROT": "80"})
    assert_names(message, file_1234, "server.prot", "unknown key")


def test_crossbook_variables_that_are_not_settings_are_ignored(file_1234: Path) -> None:
    environ = {"CROSSBOOK_CONFIG": str(file_1234), "CROSSBOOK_LOG_FORMAT": "json", "OTHER__PORT": "1"}
    assert served(load(None, environ=environ)) == (str(file_1234), 1234)


def test_real_venue_example_config_validates() -> None:
    """config/crossbook.toml uses every built-in real-venue connector, and validates."""
    example = load(Path(__file__).parents[2] / "config" / "crossbook.toml", environ={})
    venues = example.venues(load_connectors())
    assert {v.spec.id for v in venues.values()} == {
        "binance",
        "binance-futures",
        "coinbase",
        "kraken",
        "okx",
        "bybit",
        "bitstamp",
    }
