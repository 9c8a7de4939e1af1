"""The compiled build (``CROSSBOOK_COMPILE=1``): the wheel builds with mypyc, and the whole suite
passes on it, so the compiled hot path is held to the same tests as the source."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["pyproject.toml", "setup.py", "README.md", "daemon", "plugins"]


def _run(command: list[str], seconds: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a process group of its own, killed whole past ``seconds``: the inner suite
    starts daemons, which must not outlive it."""
    with subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    ) as proc:
        try:
            out, err = proc.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(command[1:4])} ran over {seconds} s:\n{out[-3000:]}{err[-2000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _toolchain() -> str | None:
    """What a compiled build lacks here, if anything."""
    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        return "no C compiler (Debian package 'gcc')"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Debian package 'python3-dev')"
    return None


@pytest.mark.timeout(1900)
def test_the_suite_passes_on_the_compiled_build(tmp_path: Path) -> None:
    missing = _toolchain()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the compiled build is tested under CI: {missing}")
        pytest.skip(missing)
    # Built from a copy: a build leaves build/ and *.egg-info behind in the tree it builds.
    source = tmp_path / "source"
    source.mkdir()
    for part in SOURCES:
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(ROOT / part, source / part)
    # No build isolation: the suite's own mypy and setuptools build it, with no download.
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    build = _run([*pip, "-w", str(tmp_path), str(source)], 600, env={**os.environ, "CROSSBOOK_COMPILE": "1"})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = tmp_path.glob("crossbook-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # On PYTHONPATH the compiled package comes before the editable install's source paths; the
    # daemon's child processes inherit it.
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import crossbook, crossbook_okx.protocol as o; print(crossbook.compiled(), o.__file__)"
    which = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert which.stdout.startswith(f"True {site}/crossbook_okx/protocol.cpython-"), which.stdout
    others = ["--ignore", __file__, "--ignore", str(ROOT / "tests" / "test_lint.py")]
    suite = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *others], 1200, cwd=ROOT, env=env)
    assert suite.returncode == 0, suite.stdout[-5000:] + suite.stderr[-2000:]
    assert " passed" in suite.stdout.splitlines()[-1], suite.stdout[-2000:]


@pytest.mark.parametrize(
    ("value", "argv", "message"),
    [
        ("maybe", ["--version"], "CROSSBOOK_COMPILE must be one of '1', 'true'"),
        ("1", ["develop"], "not an editable or in-place one"),
        ("true", ["build_ext", "--inplace"], "not an editable or in-place one"),
    ],
)
def test_a_build_that_cannot_be_what_was_asked_stops(value: str, argv: list[str], message: str) -> None:
    """A compiled build that is asked for is built or refused, never quietly pure; an editable or
    in-place one is refused (its extension modules would shadow the sources being edited)."""
    env = {**os.environ, "CROSSBOOK_COMPILE": value}
    done = subprocess.run([sys.executable, "setup.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True)
    assert (done.returncode, message in done.stderr) == (1, True), done.stderr
