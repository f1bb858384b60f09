"""The package's import graph runs one way: no cycle between modules, none between packages.

Every `import` of a hazardwatch module counts, at module level or inside a function (a
deferred import is still a dependency); imports under `if TYPE_CHECKING:` do not, since
they never run and only name a type for the checker (records.ScoredFrame names the
prompt bank that way, as the hand-off's decoders do). Packages are `hazardwatch.X` (a
subpackage, or a top-level module such as `records` or `metrics`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "service" / "hazardwatch"


def module_name(path: Path) -> str:
    parts = ("hazardwatch", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: imports(path, known) - {name} for name, path in paths.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def packages(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = {}
    for name, targets in edges.items():
        out.setdefault(top(name), set()).update(top(t) for t in targets if top(t) != top(name))
    return out


def describe(found: Iterable[list[str]]) -> str:
    return "; ".join(" <-> ".join(c) for c in found)


def test_no_module_imports_itself_through_others() -> None:
    found = cycles(graph())
    assert not found, f"import cycles between modules: {describe(found)}"


def test_no_package_depends_on_itself_through_others() -> None:
    found = cycles(packages(graph()))
    assert not found, f"import cycles between packages: {describe(found)}"


def test_the_checker_sees_a_cycle_and_sees_through_type_checking() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = graph()
    assert "hazardwatch.capture.reader" in edges["hazardwatch.capture.fleet"]
    # records names the prompt bank only for the type checker: no edge.
    assert "hazardwatch.scoring.bank" not in edges["hazardwatch.records"]
    assert "hazardwatch.records" in edges["hazardwatch.scoring.bank"]


def test_only_the_hand_off_reads_the_wire_format() -> None:
    """The envelope of gated and scored frames is the hand-off's business: scoring decodes
    pixels (images.py) and the spool stores event records as their own JSON, neither
    through the codec. And a module is sized to one concern: none but the settings
    schema runs much past 500 lines."""
    edges = graph()
    readers = sorted(n for n, targets in edges.items() if "hazardwatch.handoff.codec" in targets)
    assert all(n.startswith("hazardwatch.handoff.") for n in readers), readers
    sizes = {
        module_name(p): len(p.read_text().splitlines())
        for p in PACKAGE.rglob("*.py")
        if p.name != "schema.py"
    }
    assert not {n: lines for n, lines in sizes.items() if lines > 600}, sizes
