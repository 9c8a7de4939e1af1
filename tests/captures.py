"""Where the recorded captures are; tests skip without them, except under CI where they must exist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crossbook.testing.captures import captures_dir

CAPTURES = captures_dir(Path(__file__))


def capture(relative: str) -> Path:
    path = CAPTURES / relative
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"capture {path} is missing (required under CI)")
        pytest.skip(f"capture {path} not present")
    return path
