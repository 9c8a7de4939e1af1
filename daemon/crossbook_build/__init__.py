"""How ``pip install`` builds crossbook's native extension (a build step; crossbook never imports it).

``CROSSBOOK_NATIVE_BUILD`` chooses: ``auto`` (the default) builds it where a C compiler and the
Python headers are, and installs the pure-Python twin alone where they are not; ``require`` fails
the install when it cannot be built (implied by ``CI=true``); ``skip`` never builds it; ``asan``
builds it with AddressSanitizer and UndefinedBehaviorSanitizer, for tests only.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]

POLICIES = ("auto", "require", "skip", "asan")
SANITIZERS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]


def policy() -> str:
    chosen = os.environ.get("CROSSBOOK_NATIVE_BUILD") or ("require" if os.environ.get("CI") == "true" else "auto")
    if chosen not in POLICIES:
        raise SystemExit(f"CROSSBOOK_NATIVE_BUILD must be one of {', '.join(POLICIES)}, not {chosen!r}")
    return chosen


class BuildExt(build_ext):  # type: ignore[misc]
    extensions: list[Any]

    def run(self) -> None:
        chosen = policy()
        if chosen == "skip":
            self.extensions = []
            return
        for ext in self.extensions:
            ext.optional = chosen == "auto"
            ext.extra_compile_args = [*ext.extra_compile_args, "-O2"]
            if chosen == "asan":
                ext.extra_compile_args += SANITIZERS
                ext.extra_link_args = [*ext.extra_link_args, *SANITIZERS]
        super().run()

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if not ext.optional:
                raise
            print(f"crossbook: the native {ext.name} was not built ({exc}); the pure-Python twin runs")
