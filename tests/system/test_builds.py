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
