"""The command line: ``--version``, ``venues``, ``check-config`` exit codes and messages.

A few runs go through ``python -m crossbook`` in a child process (what a user or systemd runs);
the rest call :func:`crossbook.service.cli.main` in-process.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crossbook import __version__
from crossbook import build as crossbook_build
from crossbook.service import cli, config

VENUE = '[venues.sim-a]\nconnector = "sim"\nsymbols = ["BTC-USDT"]\n'
GOOD = "[server]\nport = 9100\n" + VENUE
BAD_PORT = '[server]\nport = "http"\n' + VENUE


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CROSSBOOK_")}
    env.pop("JOURNAL_STREAM", None)
    return {**env, **extra}


def crossbook(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossbook", *args],
        cwd=cwd,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- child process ----------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    done = crossbook("--version", cwd=tmp_path)
    build = crossbook_build()
    assert (done.returncode, done.stdout, done.stderr) == (0, f"crossbook {__version__} ({build})\n", "")


def test_the_daemon_collects_young_garbage_less_often_and_skips_what_start_up_made() -> None:
    thresholds = gc.get_threshold()
    try:
        cli.tune_gc()
        assert gc.get_threshold() == (cli.GC_YOUNG_THRESHOLD, *thresholds[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_venues_lists_connector_plugin_distribution_description(tmp_path: Path) -> None:
    done = crossbook("venues", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"CONNECTOR +PLUGIN +DISTRIBUTION +DESCRIPTION", lines[0])
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == sorted(rows)
    assert re.fullmatch(rf"sim +sim +crossbook {re.escape(__version__)} +Simulated venue: .+", rows["sim"])
    described_at = lines[0].index("DESCRIPTION")  # columns are aligned
    assert all(line[described_at - 2 : described_at] == "  " for line in lines[1:])
    assert rows["sim"][described_at:].startswith("Simulated venue")


def test_check_config_ok_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", GOOD)
    done = crossbook("check-config", "--config", str(path), cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{path}: OK (1 venues)\n", "")


def test_check_config_refusal_exits_1_with_message_on_stderr(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", BAD_PORT)
    done = crossbook("check-config", "--config", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"crossbook: {path}: server.port: ")


def test_check_config_validates_connector_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", VENUE + "rate = -5\n")
    done = crossbook("check-config", "--config", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"crossbook: {path}: venues.sim-a.rate: ")


def test_config_option_beats_environment_variable(tmp_path: Path) -> None:
    good = write(tmp_path / "good.toml", GOOD)
    bad = write(tmp_path / "bad.toml", BAD_PORT)
    done = crossbook("check-config", "--config", str(good), cwd=tmp_path, CROSSBOOK_CONFIG=str(bad))
    assert (done.returncode, done.stdout) == (0, f"{good}: OK (1 venues)\n")
    done = crossbook("check-config", cwd=tmp_path, CROSSBOOK_CONFIG=str(bad))
    assert done.returncode == 1
    assert done.stderr.startswith(f"crossbook: {bad}: server.port: ")


def test_environment_override_is_validated(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", GOOD)
    done = crossbook("check-config", "--config", str(path), cwd=tmp_path, CROSSBOOK_METRICS__PORT="-1")
    assert done.returncode == 1
    assert done.stderr.startswith(f"crossbook: {path}: metrics.port: ")


# -- in-process -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_logging: None) -> None:
    """No CROSSBOOK_* variables, no /etc file, and the loggers main() sets up restored afterwards."""
    for key in list(os.environ):
        if key.upper().startswith("CROSSBOOK_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "etc" / "crossbook.toml")


@pytest.fixture
def make_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(source: str) -> str:
        name = f"cbtest_cli_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        importlib.invalidate_caches()
        made.append(name)
        return name

    yield make
    for name in made:
        sys.modules.pop(name, None)


def plugin_source(cid: str, hook_line: str = "") -> str:
    return f"""
from crossbook.toolkit.connector import ConnectorConfig
from crossbook.toolkit.hookspecs import hookimpl


class Config(ConnectorConfig):
    pass


@hookimpl
def crossbook_add_connectors(registry):
    {hook_line}
    registry.add({cid!r}, config_model=Config, factory=print, description="Made in a test")
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_embedded_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "check-config") == (0, "embedded default: OK (3 venues)\n", "")


def test_check_config_reads_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "c.toml", GOOD)
    monkeypatch.setenv("CROSSBOOK_CONFIG", str(path))
    assert run(capsys, "check-config") == (0, f"{path}: OK (1 venues)\n", "")


def test_check_config_reads_the_system_file(capsys: pytest.CaptureFixture[str]) -> None:
    config.SYSTEM_CONFIG.parent.mkdir()
    write(config.SYSTEM_CONFIG, GOOD)
    assert run(capsys, "check-config") == (0, f"{config.SYSTEM_CONFIG}: OK (1 venues)\n", "")


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    code, out, err = run(capsys, "check-config", "--config", str(missing))
    assert (code, out) == (1, "")
    assert err.startswith(f"crossbook: {missing}: cannot read config: ")


def test_check_config_invalid_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "c.toml", VENUE + VENUE)
    code, out, err = run(capsys, "check-config", "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"crossbook: {path}: invalid TOML: ")


def test_check_config_unknown_connector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "c.toml", '[venues.x]\nconnector = "nope"\nsymbols = ["BTC-USDT"]\n')
    code, out, err = run(capsys, "check-config", "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"crossbook: {path}: venues.x.connector: unknown connector 'nope'")


def test_logging_options_before_and_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "c.toml", GOOD)
    assert run(capsys, "-v", "check-config", "-q", "--config", str(path))[0] == 0
    assert logging.getLogger().level == logging.INFO  # -v and -q cancel out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_venues_lists_a_module_plugin(
    tmp_path: Path, make_plugin: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    mod = make_plugin(plugin_source("mine"))
    path = write(tmp_path / "c.toml", f'plugins = ["{mod}"]\n' + VENUE)
    code, out, err = run(capsys, "venues", "--config", str(path))
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line.split(None, 3) for line in out.splitlines()[1:]}
    assert rows["mine"] == ["mine", mod, "-", "Made in a test"]
    assert "sim" in rows


def test_venues_honours_disabled_plugins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "c.toml", 'disabled_plugins = ["sim"]\n' + VENUE)
    code, out, _ = run(capsys, "venues", "--config", str(path))
    assert code == 0
    assert "sim" not in [line.split()[0] for line in out.splitlines()]
    # ... and the sim venue of that config is then an unknown connector:
    code, out, err = run(capsys, "check-config", "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"crossbook: {path}: venues.sim-a.connector: unknown connector 'sim'")


def test_venues_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "c.toml", BAD_PORT)
    code, out, err = run(capsys, "venues", "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"crossbook: {path}: server.port: ")


@pytest.mark.parametrize("command", ["check-config", "venues"])
def test_plugin_failing_at_import_exits_1(
    tmp_path: Path, make_plugin: Callable[[str], str], capsys: pytest.CaptureFixture[str], command: str
) -> None:
    mod = make_plugin('raise RuntimeError("kaboom")\n')
    path = write(tmp_path / "c.toml", f'plugins = ["{mod}"]\n' + VENUE)
    code, out, err = run(capsys, command, "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"crossbook: plugin {mod!r} failed to load: RuntimeError(")
    assert "kaboom" in err


def test_plugin_raising_in_its_hook_exits_1(
    tmp_path: Path, make_plugin: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    mod = make_plugin(plugin_source("mine", 'raise OSError("disk on fire")'))
    path = write(tmp_path / "c.toml", f'plugins = ["{mod}"]\n' + VENUE)
    code, out, err = run(capsys, "check-config", "--config", str(path))
    assert (code, out) == (1, "")
    assert err == f"crossbook: plugin {mod!r} failed to register connectors: OSError: disk on fire\n"


def test_duplicate_connector_exits_1_naming_both_plugins(
    tmp_path: Path, make_plugin: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = make_plugin(plugin_source("dup")), make_plugin(plugin_source("dup"))
    path = write(tmp_path / "c.toml", f'plugins = ["{first}", "{second}"]\n' + VENUE)
    code, out, err = run(capsys, "venues", "--config", str(path))
    assert (code, out) == (1, "")
    assert f"connector 'dup' registered twice: by plugin {first!r} and by plugin {second!r}" in err


def test_misspelled_hook_exits_1(
    tmp_path: Path, make_plugin: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    mod = make_plugin(plugin_source("mine").replace("crossbook_add_connectors", "crossbook_add_connector"))
    path = write(tmp_path / "c.toml", f'plugins = ["{mod}"]\n' + VENUE)
    code, out, err = run(capsys, "check-config", "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"crossbook: plugin {mod!r}: unknown hook 'crossbook_add_connector'")
