"""The README tells the truth: its plugin example works and CI runs its test command."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from crossbook.service import scaffold
from crossbook.service.plugins import load_connectors

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(b.strip() for b in code_blocks("sh") if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The README's plugin, installed as its pyproject says: a package plus a dist-info whose
    entry points come from the README's ``pyproject.toml`` block (what pip would write)."""
    source = next(b for b in code_blocks("python") if "crossbook_add_connectors" in b)
    project = tomllib.loads(next(b for b in code_blocks("toml") if "[project.entry-points.crossbook]" in b))
    package = tmp_path / "crossbook_example"
    package.mkdir()
    (package / "__init__.py").write_text(source)
    name, version = project["project"]["name"], project["project"]["version"]
    dist = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    eps = project["project"]["entry-points"]["crossbook"]
    (dist / "entry_points.txt").write_text("[crossbook]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "crossbook_example", raising=False)
    return tmp_path


def test_example_plugin_registers_through_its_entry_point(example_plugin: Path) -> None:
    spec = load_connectors().get("example")
    assert spec is not None
    assert spec.plugin == "example"
    assert (spec.distribution, spec.version) == ("crossbook-example", "0.1.0")


def test_the_readme_shows_the_scaffolds_plugin() -> None:
    """The minimal plugin in the README is what ``crossbook plugin new example`` writes, which
    tests/system/test_scaffold.py installs, tests and type-checks."""
    files = scaffold.render("example")
    blocks = code_blocks("python") + code_blocks("toml")
    for name in (
        "crossbook_example/__init__.py",
        "crossbook_example/fake.py",
        "tests/test_conformance.py",
        "pyproject.toml",
    ):
        assert files[name] in blocks, f"the README's {name} is not the scaffold's"
