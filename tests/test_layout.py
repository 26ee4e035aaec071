"""The package's layering: no import cycles (imports inside functions included), small modules,
function-local imports only for heavy optional dependencies, ``__all__`` everywhere."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lattice_samplers"
HEAVY = ("torch", "matplotlib", "dask", "distributed")
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import in ``path``; ``from pkg import
    name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    found.append((full if full in MODULES else child.module, inner))
            visit(child, inner)

    visit(tree, False)
    return found


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _graph(include_local: bool) -> dict[str, set[str]]:
    return {
        name: {
            m for m, local in deps if m in MODULES and m != name and (include_local or not local)
        }
        for name, deps in IMPORTS.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
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
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def _heavy_modules() -> set[str]:
    """Package modules that import torch, matplotlib or Dask at module level, directly or
    through other package modules."""
    top = _graph(include_local=False)
    heavy = {
        name
        for name, deps in IMPORTS.items()
        if any(not local and m.split(".")[0] in HEAVY for m, local in deps)
    }
    changed = True
    while changed:
        changed = False
        for name, deps in top.items():
            if name not in heavy and deps & heavy:
                heavy.add(name)
                changed = True
    return heavy


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    assert _cycles(_graph(include_local=True)) == []


def test_the_cycle_check_can_fail() -> None:
    """Negative control: a planted back edge (a kernel importing the run driver) is found."""
    graph = _graph(include_local=True)
    graph["lattice_samplers.kernels.common"] = graph["lattice_samplers.kernels.common"] | {
        "lattice_samplers.driver.loop"
    }
    assert _cycles(graph)


def test_function_local_imports_are_only_lazy_heavy_loads_or_cli_dispatch() -> None:
    heavy = _heavy_modules()
    offenders = [
        f"{name} imports {m} inside a function"
        for name, deps in IMPORTS.items()
        for m, local in deps
        if local and m in MODULES and m not in heavy and name != "lattice_samplers.cli"
    ]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name: str) -> None:
    n = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines (limit {MAX_LINES})"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_public_modules_declare_all(name: str) -> None:
    if name.rsplit(".", 1)[-1].startswith("_") and not name.endswith("__init__"):
        pytest.skip("private module")
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    declared = any(
        getattr(t, "id", None) == "__all__"
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
    )
    if MODULES[name].name == "__init__.py" and not any(
        isinstance(n, ast.ImportFrom | ast.Import) for n in tree.body
    ):
        pytest.skip("namespace-only package")
    assert declared, f"{name} has no __all__"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_all_names_exist(name: str) -> None:
    if any(m.split(".")[0] in HEAVY for m, local in IMPORTS[name] if not local):
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
    assert missing == []


#: Folders that only the layers above them may import: a module under one of the keys may not
#: import (even inside a function) any package module under the listed folders.
BELOW = {
    "lattice_samplers.kernels": ("samplers", "flows", "driver", "specs", "workflows", "scan",
                                 "commands", "cli", "testing"),
    "lattice_samplers.samplers": ("driver", "specs", "workflows", "scan", "commands", "cli",
                                  "testing"),
    "lattice_samplers.flows": ("driver", "specs", "workflows", "scan", "commands", "cli",
                               "testing"),
    "lattice_samplers.driver": ("specs", "workflows", "scan", "commands", "cli", "testing"),
    "lattice_samplers.specs": ("workflows", "scan", "commands", "cli", "testing"),
    "lattice_samplers.workflows": ("scan", "commands", "cli", "testing"),
}  # fmt: skip


def _upward(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for low, banned in BELOW.items():
        tops = tuple(f"lattice_samplers.{b}" for b in banned)
        for name, deps in graph.items():
            if name == low or name.startswith(low + "."):
                found += [f"{name} -> {d}" for d in deps if d.startswith(tops)]
    return sorted(found)


def test_dependencies_point_down_the_layers() -> None:
    assert _upward(_graph(include_local=True)) == []


def test_the_layer_check_can_fail() -> None:
    """Negative control: a planted upward edge (a flow module importing a workflow) is found."""
    graph = _graph(include_local=True)
    graph["lattice_samplers.flows.model"] = graph["lattice_samplers.flows.model"] | {
        "lattice_samplers.workflows.train.session"
    }
    assert _upward(graph) == [
        "lattice_samplers.flows.model -> lattice_samplers.workflows.train.session"
    ]
