"""The package's imports point one way: the KFP layer and the launchers on top, the library below.

Walks every module's imports (module level and inside functions; ``if TYPE_CHECKING``
blocks are annotations, not imports) and fails on an import cycle, on a lower layer
importing ``driftlab.pipelines`` / ``driftlab.components``, or on a component module
that imports more than the standard library and ``kfp`` at module level.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KFP_LAYER = ("driftlab.components", "driftlab.pipelines")
# Allowed to import the KFP layer: the layer itself, the launchers (compile, run, submit) and the CLI.
UPPER = KFP_LAYER + ("driftlab.launch", "driftlab.cli")


def module_files() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "driftlab").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for folder, package in (("components", "driftlab.components"), ("pipelines", "driftlab.pipelines")):
        for path in (ROOT / folder).glob("*.py"):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


MODULES = module_files()


def _walk(nodes, *, top_only: bool):
    for node in nodes:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        if top_only and not isinstance(node, (ast.If, ast.Try)):
            continue
        yield from _walk(ast.iter_child_nodes(node), top_only=top_only)


def imported(path: Path, *, top_only: bool = False) -> set[str]:
    """Every module ``path`` imports (``from pkg import submodule`` counts as the submodule)."""
    found = set()
    for node in _walk(ast.parse(path.read_text()).body, top_only=top_only):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
            found |= subs
            if len(subs) < len(node.names):
                found.add(node.module)
    return found


def graph(*, top_only: bool) -> dict[str, set[str]]:
    return {m: {i for i in imported(p, top_only=top_only) if i in MODULES and i != m} for m, p in MODULES.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    sys.setrecursionlimit(10_000)
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_imports_it_should():
    # Control: known edges are found, so an empty result below means something.
    g = graph(top_only=False)
    assert "driftlab.stages" in g["driftlab.components.tune"], "a component body imports the stage functions"
    assert "driftlab.pipelines.driftlab_pipeline" in g["driftlab.launch.local"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


@pytest.mark.parametrize("top_only", [True, False], ids=["module level", "any level"])
def test_no_import_cycles(top_only):
    assert cycles(graph(top_only=top_only)) == []


def test_the_library_never_imports_the_kfp_layer():
    offenders = [f"{m} -> {i}" for m, deps in graph(top_only=False).items() if not m.startswith(UPPER)
                 for i in deps if i.startswith(KFP_LAYER)]
    assert offenders == [], "lower layers import the KFP layer: " + ", ".join(offenders)


def test_components_import_only_the_standard_library_and_kfp_at_module_level():
    stdlib = set(sys.stdlib_module_names)
    for name, path in MODULES.items():
        if not name.startswith("driftlab.components."):
            continue
        for module in imported(path, top_only=True):
            top = module.split(".")[0]
            ok = top in stdlib or top == "kfp" or module.startswith("driftlab.components")
            assert ok, f"{name} imports {module} at module level; import it inside the component body"


def test_pyproject_lists_every_package_folder():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert listed == folders, f"pyproject.toml [tool.setuptools] packages differs: {sorted(listed ^ folders)}"
