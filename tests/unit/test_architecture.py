"""The tree is the architecture: the import rules between crossbook's layers, checked on the source.

Every ``import`` counts, also inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "daemon" / "crossbook"
PLUGINS = ROOT / "plugins"

ALLOWED = {
    "core": {"core"},
    "toolkit": {"core", "toolkit"},
    "api": {"core", "api"},
    "cluster": {"core", "toolkit", "cluster"},
    "service": {"core", "toolkit", "api", "cluster", "service", "client"},
    "plugin": {"core", "toolkit"},
    "testing": {"core", "toolkit", "plugin", "testing"},
    "client": set(),
    "__init__": {"core"},
    "__main__": {"service"},
}
"""What each part of crossbook may import of crossbook: service -> api/toolkit -> core."""
VENUES = re.compile(r"binance|coinbase|kraken|okx|bybit|bitstamp", re.IGNORECASE)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, by absolute name (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule imported by name
    return out


def graph() -> dict[str, set[str]]:
    """crossbook's modules and the crossbook modules each imports."""
    modules = {module_name(p, PACKAGE.parent): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path, name) if m in modules} for name, path in modules.items()}


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if part(target) != part(module) and part(target) not in ALLOWED[part(module)] and target != "crossbook"
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(edges[module]):
            if target != "crossbook":
                visit(target, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_product_imports_no_plugin_and_no_tool() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {m}"
        for path in PACKAGE.rglob("*.py")
        for m in imports(path, module_name(path, PACKAGE.parent))
        if m.split(".")[0] != "crossbook" and m.startswith("crossbook")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_core_names_no_venue() -> None:
    named = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in (PACKAGE / "core").rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if VENUES.search(line)
    ]
    assert not named, "\n".join(named)


def test_built_in_connectors_import_only_the_plugin_facade() -> None:
    """A built-in connector imports crossbook only through ``crossbook.plugin``, as a third-party
    one does; its fake venue, which tests and the benchmark use, may use the test kit too."""
    wrong = []
    for path in PLUGINS.rglob("*.py"):
        allowed = {"crossbook.plugin", "crossbook.testing"} if path.name == "fake.py" else {"crossbook.plugin"}
        for m in imports(path, module_name(path, PLUGINS)):
            if m.split(".")[0] == "crossbook" and not any(m == a or m.startswith(a + ".") for a in allowed):
                wrong.append(f"{path.relative_to(ROOT)} imports {m}")
    assert not wrong, "\n".join(sorted(set(wrong)))
