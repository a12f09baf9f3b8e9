"""No cycles: the import graph of `src/cptlaw`, read statically, has no cycle and keeps its layers.

Every `import` / `from ... import` anywhere in a file counts (module level, function-local, `TYPE_CHECKING`
blocks), relative imports resolved. `from pkg import name` is an edge to `pkg.name` when that is a module of
ours, else to `pkg` (its `__init__`). The implicit import of parent packages (`import a.b.c` runs
`a/__init__` and `a/b/__init__`) is not an edge: a package `__init__` re-exporting its own modules would
otherwise look like a cycle with each of them.

Checked on two graphs: modules (one node per file) and packages (`cptlaw.data`, `cptlaw.lm`, `cptlaw.laws`,
`cptlaw.decide`, `cptlaw.stages`, and every top-level module, `cptlaw/__init__` included, as its own node).
Layers: `cptlaw.data` imports nothing of `cptlaw.lm`; `cptlaw.laws` imports only the standard library,
numpy, scipy, sympy, `cptlaw.errors` and `cptlaw.laws.*`; `cptlaw.errors` imports no torch.

`tests/test_dvc_deps.py` reuses `import_graph` for the import closure of each DVC stage.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TOP = "cptlaw"
PACKAGES = ("cptlaw.data", "cptlaw.lm", "cptlaw.laws", "cptlaw.decide", "cptlaw.stages")
LAWS_THIRD_PARTY = {"numpy", "scipy", "sympy"}


@dataclass
class Module:
    name: str
    path: Path
    internal: dict[str, int] = field(default_factory=dict)  # imported module of ours -> first line
    external: dict[str, int] = field(default_factory=dict)  # top-level name of anything else -> first line
    unresolved: dict[str, int] = field(default_factory=dict)  # `cptlaw.x` (module or name) that is not there

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _bound_names(tree: ast.Module) -> set[str] | None:
    """Names a module binds at its top level (None: it has a module `__getattr__`, anything goes)."""
    names: set[str] = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            for attr in ("body", "orelse", "finalbody", "handlers"):
                todo += getattr(node, attr, [])
        elif isinstance(node, ast.ExceptHandler):
            todo += node.body
    return None if "__getattr__" in names else names


@cache
def import_graph() -> dict[str, Module]:
    """Every module under src/cptlaw with its imports (read with `ast`, nothing imported)."""
    modules = {_module_name(p): Module(_module_name(p), p) for p in sorted((SRC / TOP).rglob("*.py"))}
    trees = {
        n: ast.parse(m.path.read_text(encoding="utf-8"), filename=str(m.path)) for n, m in modules.items()
    }
    bound = {n: _bound_names(t) for n, t in trees.items()}
    for mod in modules.values():
        package = mod.name if mod.path.name == "__init__.py" else mod.name.rpartition(".")[0]
        for node in ast.walk(trees[mod.name]):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] != TOP:
                        mod.external.setdefault(a.name.split(".")[0], node.lineno)
                    elif a.name not in modules:
                        mod.unresolved.setdefault(a.name, node.lineno)
                    elif a.name != mod.name:
                        mod.internal.setdefault(a.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(
                        parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else [])
                    )
                else:
                    base = node.module or ""
                if base.split(".")[0] != TOP:
                    mod.external.setdefault(base.split(".")[0], node.lineno)
                    continue
                if base not in modules:
                    mod.unresolved.setdefault(base, node.lineno)
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in modules:
                        target = sub
                    elif a.name == "*" or bound[base] is None or a.name in bound[base]:
                        target = base
                    else:
                        mod.unresolved.setdefault(f"{base}.{a.name}", node.lineno)
                        continue
                    if target != mod.name:
                        mod.internal.setdefault(target, node.lineno)
    return modules


def package_of(module: str) -> str:
    """The node of `module` in the package graph."""
    for pkg in PACKAGES:
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return module


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle path (first node repeated at the end) per strongly connected component that has a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:  # Tarjan; the graphs are small (< 200 nodes)
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)

    cycles = []
    for comp in sccs:
        members = set(comp)
        start = min(comp)
        if len(comp) == 1 and start not in graph.get(start, ()):
            continue
        # shortest path start -> ... -> start inside the component (BFS)
        prev: dict[str, str] = {}
        frontier, seen, end = [start], {start}, None
        while frontier and end is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, ())):
                    if w == start:
                        end = v
                        break
                    if w in members and w not in seen:
                        seen.add(w)
                        prev[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            frontier = nxt
        path = [start]
        v = end
        while v != start:
            path.insert(1, v)
            v = prev[v]
        cycles.append([*path, start])
    return sorted(cycles)


def _edge_line(a: str, b: str, graph: dict[str, Module]) -> str:
    """Where module `a` imports module `b` (for messages)."""
    return f"{graph[a].rel}:{graph[a].internal[b]}"


def module_edges() -> dict[str, set[str]]:
    return {name: set(m.internal) for name, m in import_graph().items()}


def package_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, m in import_graph().items():
        src = package_of(name)
        edges.setdefault(src, set())
        edges[src] |= {package_of(t) for t in m.internal if package_of(t) != src}
    return edges


def _describe(cycles: list[list[str]], graph: dict[str, Module], packages: bool) -> str:
    lines = []
    for cyc in cycles:
        hops = []
        for a, b in zip(cyc, cyc[1:], strict=False):
            if packages:  # one import that makes the hop a -> b
                where = next(
                    f"{m.rel}:{m.internal[t]} imports {t}"
                    for n, m in sorted(graph.items())
                    if package_of(n) == a
                    for t in sorted(m.internal)
                    if package_of(t) == b
                )
            else:
                where = _edge_line(a, b, graph)
            hops.append(f"  {a} -> {b}  ({where})")
        lines.append("import cycle: " + " -> ".join(cyc) + "\n" + "\n".join(hops))
    return "\n".join(lines)


def test_every_internal_import_resolves():
    """An import of a `cptlaw` module or name that is not there (moved/deleted) is a bug, and hides edges."""
    bad = [
        f"{m.rel}:{line}: imports {target}, which is neither a module under src/cptlaw nor a name one defines"
        for m in import_graph().values()
        for target, line in sorted(m.unresolved.items())
    ]
    assert not bad, "\n".join(bad)


def test_no_module_cycles():
    cycles = find_cycles(module_edges())
    assert not cycles, "module-level import cycles:\n" + _describe(cycles, import_graph(), packages=False)


def test_no_package_cycles():
    cycles = find_cycles(package_edges())
    assert not cycles, "package-level import cycles:\n" + _describe(cycles, import_graph(), packages=True)


def test_data_does_not_import_lm():
    bad = [
        f"{m.rel}:{line}: cptlaw.data imports {t} (cptlaw.lm builds on cptlaw.data, not the reverse)"
        for name, m in sorted(import_graph().items())
        if package_of(name) == "cptlaw.data"
        for t, line in sorted(m.internal.items())
        if package_of(t) == "cptlaw.lm"
    ]
    assert not bad, "\n".join(bad)


def test_laws_imports_only_numeric_stack_and_errors():
    """cptlaw.laws is the pure-math layer: no torch, mlflow, pandas, nor any other part of cptlaw."""
    bad = []
    for name, m in sorted(import_graph().items()):
        if package_of(name) != "cptlaw.laws":
            continue
        for t, line in sorted(m.internal.items()):
            if t != "cptlaw.errors" and package_of(t) != "cptlaw.laws":
                bad.append(f"{m.rel}:{line}: cptlaw.laws imports {t}")
        for t, line in sorted(m.external.items()):
            if t not in sys.stdlib_module_names and t != "__future__" and t not in LAWS_THIRD_PARTY:
                bad.append(f"{m.rel}:{line}: cptlaw.laws imports {t} (allowed: stdlib, numpy, scipy, sympy)")
    assert not bad, "\n".join(bad)


def test_errors_imports_no_torch():
    m = import_graph()["cptlaw.errors"]
    bad = [f"{m.rel}:{line}: imports {t}" for t, line in m.external.items() if t == "torch"]
    assert not bad, "\n".join(bad)


def test_cycle_finder_names_the_path():
    """The checker itself: a planted cycle is found and reported as a path."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["d", "d"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
