"""Optional compiled build: ``CROSSBOOK_COMPILE=1 pip install .`` compiles the sans-I/O hot path
with mypyc (mypy's compiler: the typed modules become C extensions, the same code, checked the
same way). It measured 1.5x less CPU a frame here. Without the variable, or for an editable
install, crossbook stays pure Python: an extension module shadows its source, so an edit would
not take effect until the next build.

Everything else about the package is in ``pyproject.toml``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup

COMPILED = [
    "daemon/crossbook/exact.py",
    "daemon/crossbook/model.py",
    "daemon/crossbook/venue.py",
    "daemon/crossbook/book.py",
    "daemon/crossbook/sync.py",
    "daemon/crossbook/consolidated.py",
    "daemon/crossbook/engine.py",
    "daemon/crossbook/protocol.py",
    "daemon/crossbook/hub.py",
    "daemon/crossbook/floor.py",
    "plugins/crossbook_binance/protocol.py",
    "plugins/crossbook_bitstamp/protocol.py",
    "plugins/crossbook_bybit/protocol.py",
    "plugins/crossbook_coinbase/protocol.py",
    "plugins/crossbook_kraken/protocol.py",
    "plugins/crossbook_okx/protocol.py",
]
"""The modules every venue frame passes through (parse, sync, books, consolidation, the API's
encoding), and the floor the benchmark compares them with. The I/O edges stay interpreted."""

COMPILE = os.environ.get("CROSSBOOK_COMPILE") == "1"


def compiled() -> dict[str, Any]:
    if not COMPILE:
        return {}
    if "editable_wheel" in sys.argv:
        sys.exit("CROSSBOOK_COMPILE=1 needs a regular install (pip install .), not an editable one")
    try:
        from mypyc.build import mypycify
    except ModuleNotFoundError:
        if "egg_info" in sys.argv:  # the backend asks what the build needs: setup_requires says
            return {}
        raise

    # Compiled from crossbook's own code only: the dependencies' types (the suite's mypy run checks
    # them) would vary with what the build machine has installed, and the project's mypy config
    # names a plugin (pydantic's) that the build environment does not hold.
    options = ["--config-file=", "--no-site-packages", "--ignore-missing-imports", "--python-version=3.11"]
    return {"ext_modules": mypycify(options + COMPILED, group_name="crossbook_native")}


setup(
    # setup_requires is how setuptools' PEP 517 backend asks for build dependencies it chooses at build time
    setup_requires=["mypy>=1.10"] if COMPILE else [],
    **compiled(),
)
