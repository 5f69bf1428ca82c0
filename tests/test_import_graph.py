"""The import graph of capsim's modules: no cycles among module-level imports, none among packages
(capsim.scenario, capsim.serving.batchjob, capsim.serving.dataplane, ...: a package that imports
another may not be imported back by it, through any of their modules), and autoscaling sees fleets
through a protocol (capsim.autoscale.view.ScalableFleet), never by importing serving.

The graph is read with `ast`, without importing anything: an edge is an `import` or `from ... import`
run when the module is imported (at its top level, also inside top-level `if`/`try`/`with`), not one
inside a function (deferred on purpose, e.g. the CLI's lazy imports) nor one under `if TYPE_CHECKING:`
(annotations only). Importing `a.b.c` also runs the packages `a` and `a.b`; those implicit edges are
left out, or every module would sit on a cycle through `capsim/__init__.py`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CAPSIM = Path(__file__).resolve().parents[1] / "capsim"


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name → file, for every .py file under `package_dir` (packages by their __init__)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(statements: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported."""
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The known modules an import statement names (`from X import Y` names X.Y when Y is a module)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    base = node.module or ""
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    found = set()
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in known:
            found.add(submodule)
        elif base in known:
            found.add(base)
    return found


def import_graph(package_dir: Path, *, module_level_only: bool = True) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports (module-level imports only unless told)."""
    modules = module_files(package_dir)
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        statements = (
            _module_level(tree.body)
            if module_level_only
            else (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        )
        edges: set[str] = set()
        for node in statements:
            edges |= _targets(node, name, path.name == "__init__.py", known)
        graph[name] = edges - {name}
    return graph


def package_of(module: str, path: Path, top: str) -> str:
    """The package `module` belongs to: its folder's package. Modules directly under the top package
    (capsim.engine, capsim.rng, capsim.errors, ...) stand alone: the design's layers name them one
    by one, and as one package they would put every subpackage on a cycle through capsim.engine."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return module if package == top else package


def package_graph(package_dir: Path) -> tuple[dict[str, set[str]], dict[tuple[str, str], tuple[str, str]]]:
    """Package → the packages its modules import at module level, and for each package edge one
    module edge that makes it (to name it in a failure)."""
    modules = module_files(package_dir)
    packages = {m: package_of(m, path, package_dir.name) for m, path in modules.items()}
    graph: dict[str, set[str]] = {p: set() for p in packages.values()}
    witness: dict[tuple[str, str], tuple[str, str]] = {}
    for module, targets in import_graph(package_dir).items():
        for target in sorted(targets):
            edge = (packages[module], packages[target])
            if edge[0] != edge[1]:
                graph[edge[0]].add(edge[1])
                witness.setdefault(edge, (module, target))
    return graph, witness


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        state[root] = 1
        stack = [iter(sorted(graph[root]))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child):], child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph.get(child, ()))))
    return None


def test_capsim_has_no_import_cycles() -> None:
    graph = import_graph(CAPSIM)
    assert len(graph) > 100 and sum(map(len, graph.values())) > 200  # the reader found the imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_capsim_packages_have_no_import_cycles() -> None:
    graph, witness = package_graph(CAPSIM)
    assert {"capsim.scenario", "capsim.serving.batchjob", "capsim.serving.dataplane", "capsim.plan"} <= set(graph)
    assert "capsim.serving.batchjob" in graph["capsim.scenario"]  # the schema is composed from each mode's spec
    cycle = find_cycle(graph)
    edges = [" imports ".join(witness[edge]) for edge in zip(cycle or [], (cycle or [])[1:], strict=False)]
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or []) + " (" + "; ".join(edges) + ")"


def test_the_schema_reads_the_balancer_registry_without_the_compiled_loop() -> None:
    # scenario.schema validates serving.load_balancer against dataplane/balancers.py (adding a
    # balancer stays one function there); loading a scenario must not import numba or the loop.
    code = ("import sys, capsim.scenario.schema as s; assert 'round_robin' in s.BALANCERS; "
            "print(sorted(m for m in ('numba', 'capsim.serving.dataplane.kernel') if m in sys.modules))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          cwd=CAPSIM.parent, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_autoscale_imports_nothing_from_serving() -> None:
    graph = import_graph(CAPSIM, module_level_only=False)  # not even deferred or for annotations
    wrong = {(m, t) for m, targets in graph.items() if m.startswith("capsim.autoscale")
             for t in targets if t == "capsim.serving" or t.startswith("capsim.serving.")}  # fmt: skip
    assert not wrong, f"autoscale imports serving: {sorted(wrong)}"
    assert "capsim.autoscale.view" in graph["capsim.autoscale.controller"]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "pkg"


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        ({"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import f\n", "pkg/b.py": "from pkg import a\n"},
         ["pkg.a", "pkg.b", "pkg.a"]),
        ({"pkg/__init__.py": "", "pkg/sub/__init__.py": "from .x import y\n",
          "pkg/sub/x.py": "try:\n    from ..c import z\nexcept ImportError:\n    pass\n",
          "pkg/c.py": "import pkg.sub\n"},
         ["pkg.c", "pkg.sub", "pkg.sub.x", "pkg.c"]),
        # Deferred and annotation-only imports do not run at import time: no cycle.
        ({"pkg/__init__.py": "",
          "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n",
          "pkg/b.py": "def f():\n    from pkg import a\nimport pkg.a\n"},
         None),
    ],
)  # fmt: skip
def test_cycle_finder(tmp_path: Path, files: dict[str, str], cycle: list[str] | None) -> None:
    assert find_cycle(import_graph(_write(tmp_path, files))) == cycle


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        # No module imports itself back, but the packages a and b import each other.
        ({"pkg/__init__.py": "", "pkg/a/__init__.py": "", "pkg/a/x.py": "from pkg.b.y import f\n",
          "pkg/a/w.py": "", "pkg/b/__init__.py": "", "pkg/b/y.py": "", "pkg/b/z.py": "import pkg.a.w\n"},
         ["pkg.a", "pkg.b", "pkg.a"]),
        # Modules directly under the top package stand alone: pkg.m -> pkg.a -> pkg.n is no cycle.
        ({"pkg/__init__.py": "", "pkg/m.py": "from pkg.a.x import f\n", "pkg/n.py": "",
          "pkg/a/__init__.py": "", "pkg/a/x.py": "from pkg import n\n"},
         None),
        # Annotation-only imports make no package edge.
        ({"pkg/__init__.py": "", "pkg/a/__init__.py": "", "pkg/a/x.py": "from pkg.b.y import f\n",
          "pkg/b/__init__.py": "",
          "pkg/b/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a.x\n"},
         None),
    ],
)  # fmt: skip
def test_package_cycle_finder(tmp_path: Path, files: dict[str, str], cycle: list[str] | None) -> None:
    graph, witness = package_graph(_write(tmp_path, files))
    assert find_cycle(graph) == cycle
    if cycle is not None:
        assert witness[("pkg.b", "pkg.a")] == ("pkg.b.z", "pkg.a.w")
