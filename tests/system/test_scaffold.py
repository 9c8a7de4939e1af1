"""``crossbook plugin new``: the package it writes installs, passes its own conformance test and
``mypy --strict``, and ``crossbook venues`` lists it, as the README says."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

import crossbook
from crossbook.service import scaffold

BIN = Path(sys.executable).parent


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_new_plugin_installs_passes_conformance_and_mypy_strict_and_is_listed(tmp_path: Path) -> None:
    started = time.monotonic()
    out = run(BIN / "crossbook", "plugin", "new", "gemini", "--dir", tmp_path)
    root = tmp_path / "crossbook-gemini"
    assert f"wrote {root}/" in out
    # A venv of its own that sees this one's packages (crossbook and its dependencies, pip,
    # setuptools), as --system-site-packages would see the system's: cheap, and no download.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    ours = sysconfig.get_paths()["purelib"]
    (Path(site) / "parent.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "-e", root)  # builds as a user's pip does
    run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", root, cwd=root)
    listed = run(python, "-m", "crossbook", "venues")
    assert any(line.split()[:3] == ["gemini", "gemini", "crossbook-gemini"] for line in listed.splitlines()), listed
    took = time.monotonic() - started
    # crossbook is installed editable here: mypy is given its source (the README's one step).
    source = str(Path(crossbook.__file__).parents[1])
    checked = run(python, "-m", "mypy", "--strict", ".", cwd=root, env={"MYPYPATH": source, "PATH": str(venv / "bin")})
    assert "Success" in checked
    print(f"crossbook plugin new -> passing conformance -> listed: {took:.1f} s")


def test_the_names_in_a_new_plugin(tmp_path: Path) -> None:
    files = scaffold.render("my-venue")
    assert set(files) == {
        "pyproject.toml",
        "crossbook_my_venue/__init__.py",
        "crossbook_my_venue/fake.py",
        "crossbook_my_venue/py.typed",
        "tests/test_conformance.py",
    }
    assert 'name = "crossbook-my-venue"' in files["pyproject.toml"]
    assert 'my-venue = "crossbook_my_venue"' in files["pyproject.toml"]
    assert '"my-venue",\n        config_model=MyVenueConfig' in files["crossbook_my_venue/__init__.py"]
    assert "class MyVenueDialect" in files["crossbook_my_venue/fake.py"]
    assert "example" not in "".join(files.values()).lower()


@pytest.mark.parametrize("name", ["Gemini", "1x", "no.dots", "", "a b"])
def test_a_name_that_is_no_connector_id_is_refused(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [BIN / "crossbook", "plugin", "new", name, "--dir", tmp_path], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("crossbook: ")
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "crossbook-gemini").mkdir()
    with pytest.raises(scaffold.ScaffoldError, match="exists already"):
        scaffold.write("gemini", tmp_path)
