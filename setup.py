"""Optional compiled build: ``CROSSBOOK_COMPILE=1 pip install .`` compiles the sans-I/O hot path
with mypyc (mypy's compiler: the typed modules become C extensions, the same code, checked the
same way). It measured 1.1-1.6x less CPU a frame here with the parse caches warm, ~1.05-1.15x
when a frame's texts miss them as a live stream's do (``Decimal`` construction costs the same).
Without the variable crossbook is pure Python. An editable or in-place compiled build is refused:
an extension module shadows its source, so an edit would not take effect until the next build.

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

SWITCH = {"1": True, "true": True, "yes": True, "": False, "0": False, "false": False, "no": False}
try:
    COMPILE = SWITCH[os.environ.get("CROSSBOOK_COMPILE", "").lower()]
except KeyError:
    sys.exit(f"CROSSBOOK_COMPILE must be one of {', '.join(repr(k) for k in SWITCH)}")


def compiled() -> dict[str, Any]:
    if not COMPILE:
        return {}
    if {"editable_wheel", "develop", "--inplace", "-i"} & set(sys.argv):
        sys.exit("CROSSBOOK_COMPILE=1 needs a regular install (pip install .), not an editable or in-place one")
    if {"egg_info", "dist_info"} & set(sys.argv):
        return {}  # metadata only (or what the build needs: setup_requires says), no compiling
    from mypyc.build import mypycify

    # Compiled from crossbook's own code only: the dependencies' types (the suite's mypy run checks
    # them) would vary with what the build machine has installed, and the project's mypy config
    # names a plugin (pydantic's) that the build environment does not hold.
    options = ["--config-file=", "--no-site-packages", "--ignore-missing-imports"]
    return {"ext_modules": mypycify(options + COMPILED, group_name="crossbook_native")}


setup(
    # setup_requires is how setuptools' PEP 517 backend asks for build dependencies it chooses at build time
    setup_requires=["mypy>=1.10"] if COMPILE else [],
    **compiled(),
)
