"""The package's import graph has no circle (issue 22 item 7).

Walks every module of ``tinyfw/`` and ``augment/`` with ``ast`` and collects their imports of
each other: module-level imports AND imports inside functions (a deferred import still makes the
two modules depend on each other, it only hides the circle from Python at load time), including
any under ``if TYPE_CHECKING``. ``from a import b`` counts as an edge to ``a.b`` when that is a
module, else to ``a``; the parent packages a dotted import also runs (their ``__init__``) are not
counted as edges of their own.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tinyfw", "augment")


def modules() -> Dict[str, Path]:
    out: Dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> Dict[str, Set[str]]:
    """module -> the package modules it imports (anywhere in its body)."""
    mods = modules()
    graph: Dict[str, Set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(mod, is_pkg, node)
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
            for t in targets:
                while t and t not in mods:  # `import tinyfw.a.b.c` of a name: its module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import circle (``[a, b, ..., a]``), or ``[]``."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(m: str) -> List[str]:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return []


def test_the_walk_sees_function_level_imports():
    graph = import_graph()
    assert "tinyfw.cache" in graph and "augment.augmenter" in graph
    # tinyfw/cache.py imports tinyfw.dist only inside functions
    assert "tinyfw.dist" in graph["tinyfw.cache"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import circle: " + " -> ".join(cycle)


def test_fingerprint_imports_nothing_of_the_package():
    """The comparison helpers sit on the lowest floor: they import no tinyfw module."""
    assert import_graph()["tinyfw.fingerprint"] == set()
