"""``crossbook plugin new NAME``: a ready connector plugin package to start from, green.

The template is a working plugin for a venue called ``example`` (a protocol, its registration, a
fake venue and a conformance test); the new package is that template with the name replaced.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from crossbook.toolkit.registry import CONNECTOR_ID_RE

TEMPLATE = "plugin_template"
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "__init__.py.tmpl": "crossbook_example/__init__.py",
    "fake.py.tmpl": "crossbook_example/fake.py",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
}
"""Template file -> where it goes in the new package (``example`` is replaced there too)."""


class ScaffoldError(Exception):
    """The plugin cannot be written (a bad name, or its folder exists)."""


def names(name: str) -> dict[str, str]:
    """The template's spellings of ``example`` and the new name's."""
    if not CONNECTOR_ID_RE.match(name):
        raise ScaffoldError(f"{name!r} is no connector id: it must match {CONNECTOR_ID_RE.pattern}")
    snake = name.replace("-", "_")
    camel = "".join(part.capitalize() for part in re.split(r"[-_]", name))
    if not snake.isidentifier() or not camel.isidentifier():
        raise ScaffoldError(f"{name!r} does not make a Python module name (start it with a letter)")
    return {"example": snake, "Example": camel, "crossbook-example": f"crossbook-{name}", "connector": name}


def render(name: str) -> dict[str, str]:
    """The new package's files: relative path -> text."""
    spell = names(name)
    template = resources.files("crossbook.service").joinpath(TEMPLATE)
    out: dict[str, str] = {}
    for source, target in FILES.items():
        text = template.joinpath(source).read_text(encoding="utf-8")
        text = text.replace("crossbook-example", spell["crossbook-example"])
        text = text.replace('"example"', f'"{spell["connector"]}"').replace("example =", f"{spell['connector']} =")
        text = text.replace("Example", spell["Example"]).replace("example", spell["example"])
        out[target.replace("example", spell["example"])] = text
    out[f"crossbook_{spell['example']}/py.typed"] = ""
    return out


def write(name: str, parent: Path) -> Path:
    """Write the package ``crossbook-NAME`` into ``parent``; returns its folder."""
    files = render(name)
    root = parent / f"crossbook-{name}"
    if root.exists():
        raise ScaffoldError(f"{root} exists already")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
