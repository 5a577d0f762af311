"""The house rules of DESIGN.md §7 that a program can check, read off the source with `ast`.

capture → stores ← analyze with no import circle, small modules and functions, private
names kept private, the Zarr format known only to `stores`, and a sorted `__all__` per
package. A failure names the module and the rule it breaks.
"""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("stores", "capture", "analyze")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _target(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an `import from` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if MODULES[module].name != "__init__.py":
        package = package[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def _imports(module: str):
    """(imported module, imported name or None) for every import in `module`, at any depth."""
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            target = _target(module, node)
            for alias in node.names:
                yield target, alias.name


def _graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (a name that is a submodule counts as one)."""
    graph = {name: set() for name in MODULES}
    for module in MODULES:
        for target, name in _imports(module):
            if name and f"{target}.{name}" in MODULES:
                graph[module].add(f"{target}.{name}")
            elif target in MODULES and target != module:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_modules_are_small():
    long = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in long.items() if n > MAX_MODULE_LINES} == {}


def test_functions_are_short():
    long = {}
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{module}:{node.lineno} {node.name}"] = n
    assert long == {}


def test_private_names_stay_in_their_module():
    crossing = [f"{module} imports {target}.{name}" for module in MODULES
                for target, name in _imports(module)
                if name and name.startswith("_") and not name.startswith("__")
                and target in MODULES and target != module]
    assert crossing == []


def test_only_stores_knows_zarr():
    users = sorted(module for module in MODULES if not module.startswith("stores")
                   for target, _ in _imports(module) if target.split(".")[0] == "zarr")
    assert users == []


@pytest.mark.parametrize("package", PACKAGES)
def test_public_api_is_sorted_and_exists(package):
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(names)
    assert [name for name in names if not hasattr(module, name)] == []


def test_every_package_is_installed():
    """pyproject lists its packages by hand: a new subpackage must join the list, or a
    non-editable install leaves it out."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for package in PACKAGES
             for p in (REPO / package).rglob("__init__.py")}
    assert found == listed
