"""Which build runs: the native extension modules, or the pure-Python twin proven equal to them.

The install builds the native modules where it can (see ``CROSSBOOK_NATIVE_BUILD``).
``CROSSBOOK_PURE=1`` runs the pure twin from a native install without a rebuild. A native module
older than a source beside it (an editable checkout edited since its last build) is refused:
the pure twin runs, and a warning says to rebuild.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from types import ModuleType

log = logging.getLogger("crossbook")
PURE = os.environ.get("CROSSBOOK_PURE", "").lower() in ("1", "true", "yes")
"""The pure twin runs, whatever is built."""
why_pure: dict[str, str] = {}
"""Per native module that does not run: why."""


def stale(module: ModuleType) -> Path | None:
    """A source newer than the built module, if its sources are beside it (an editable install)."""
    built = Path(str(module.__file__))
    sources = [*built.parent.glob("*.pyx"), *built.parent.glob("*.pxi"), *built.parent.parent.glob("*/*.pxd")]
    return next((s for s in sources if s.stat().st_mtime > built.stat().st_mtime), None)


def load(name: str) -> ModuleType | None:
    """The native module ``name`` (``crossbook.core._native``), or None where the pure twin runs."""
    if PURE:
        why_pure[name] = "CROSSBOOK_PURE is set"
        return None
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        why_pure[name] = f"not built ({exc})"
        return None
    source = stale(module)
    if source is not None:
        why_pure[name] = f"{source} changed since it was built: rebuild it (pip install -e .)"
        log.warning("the native %s is stale, the pure-Python twin runs: %s", name, why_pure[name])
        return None
    return module
