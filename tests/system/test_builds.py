"""Two builds, one behaviour: the core, venue and API tests pass on the pure-Python twin as well,
run from this (native) install through the runtime switch ``CROSSBOOK_PURE=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import crossbook

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_core_venue_and_api_tests_pass_on_the_pure_twin() -> None:
    if not crossbook.compiled():
        pytest.skip(f"this run is on the pure twin already ({crossbook.build()})")
    tests = ["tests/unit", "tests/venues", "tests/system/test_api_e2e.py", "tests/system/test_status_order.py"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    command += ["--ignore=tests/unit/test_lint.py", "--ignore=tests/unit/test_native.py"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "CROSSBOOK_PURE": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]


def sanitizer_libraries() -> list[str]:
    """gcc's AddressSanitizer and UndefinedBehaviorSanitizer runtimes (preloaded: python is not
    built with them), or none where gcc does not ship them."""
    try:
        found = [
            subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
            for lib in ("libasan.so", "libubsan.so")
        ]
    except FileNotFoundError:
        return []
    return found if all(Path(lib).is_absolute() and Path(lib).exists() for lib in found) else []


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_native_differential_and_fuzz_tests_pass_under_sanitizers(tmp_path: Path) -> None:
    """A memory error in the extension fails here instead of hiding: the extension built with
    ``-fsanitize=address,undefined`` (``CROSSBOOK_NATIVE_BUILD=asan``) runs the differential
    tests, the fuzzers and the book tests."""
    libraries = sanitizer_libraries()
    if not libraries:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc's libasan/libubsan are missing")
        pytest.skip("gcc's libasan/libubsan are missing")
    source, target = tmp_path / "source", tmp_path / "asan"
    tree = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(tree, cwd=ROOT, capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    env = {**os.environ, "CROSSBOOK_NATIVE_BUILD": "asan"}
    env.pop("CROSSBOOK_PURE", None)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)]
    built = subprocess.run(pip, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    env |= {
        "PYTHONPATH": str(target),
        "LD_PRELOAD": " ".join(libraries),
        "ASAN_OPTIONS": "detect_leaks=0",  # CPython's own allocations are not ours to judge
        "UBSAN_OPTIONS": "print_stacktrace=1",
    }
    which = [sys.executable, "-c", "import crossbook; print(crossbook.__file__, crossbook.compiled())"]
    seen = subprocess.run(which, cwd=ROOT, env=env, capture_output=True, text=True)
    assert seen.stdout.split() == [str(target / "crossbook" / "__init__.py"), "True"], seen.stdout + seen.stderr
    tests = ["test_native.py", "test_native_api.py", "test_fuzz.py", "test_book.py", "test_consolidated.py"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(f"tests/unit/{t}" for t in tests)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert " passed" in done.stdout.splitlines()[-1]
    assert "skipped" not in done.stdout.splitlines()[-1], done.stdout[-3000:]
