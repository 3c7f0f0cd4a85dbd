"""The import rules docs/architecture.md states, checked on the code: data flows one way, so no
package imports one that imports it back, and each package imports only what the doc allows."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "forge"

# Leaf modules: anyone may import them, and they import no forge package but each other.
LEAVES = {"forge.errors", "forge.console", "forge.proc", "forge.fsio", "forge.elfcheck", "forge.output",
          "forge.config", "forge.cache"}
# Facts modules: constants and pure functions that live with the package they describe but are
# read upstream too (the Workers size verdict: targets/wasm and deploy agree); nodes of their own.
FACTS = {"forge.deploy.platform"}
# package -> the forge packages it may import (besides itself, LEAVES and FACTS).
# The same table is in docs/architecture.md ("Module graph"); keep them in step.
RULES: dict[str, set[str]] = {
    "forge.analysis": set(),
    "forge.workload": set(),
    "forge.sdk": set(),
    "forge.extensions": set(),
    "forge.image": set(),
    "forge.wasm": {"forge.analysis"},
    "forge.pip_python": {"forge.sdk"},
    "forge.deps": {"forge.sdk", "forge.extensions", "forge.pip_python", "forge.workload"},
    "forge.sbom": {"forge.deps"},
    "forge.inclusion": {"forge.workload"},
    "forge.publish": {"forge.image"},
    "forge.verify": {"forge.publish"},
    "forge.prepare": {"forge.analysis", "forge.deps", "forge.inclusion", "forge.sdk", "forge.verify",
                      "forge.workload"},
    "forge.targets": {"forge.extensions", "forge.image", "forge.publish", "forge.sbom", "forge.sdk",
                      "forge.verify", "forge.wasm", "forge.workload"},
    "forge.build": {"forge.deps", "forge.inclusion", "forge.prepare", "forge.sdk", "forge.targets",
                    "forge.workload"},
    "forge.deploy": {"forge.image", "forge.publish", "forge.workload"},
    "forge.bench": {"forge.analysis", "forge.build", "forge.image", "forge.prepare", "forge.publish",
                    "forge.sdk", "forge.wasm", "forge.workload"},
    "forge.ci": {"forge.deploy", "forge.publish"},
    "forge.cli": {"forge.bench", "forge.build", "forge.ci", "forge.deploy", "forge.image", "forge.publish",
                  "forge.sdk", "forge.targets"},
    "forge.__main__": {"forge.cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def module_graph() -> dict[str, set[str]]:
    """module -> forge modules it imports, at the top or inside functions (a lazy import that
    dodges a cycle is still a cycle), except under `if TYPE_CHECKING:`."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            if _type_checking_only(node, parents):
                continue
            for t in targets:
                if t in files and t != name:
                    graph[name].add(t)
        graph.setdefault(name, set())
    return dict(graph)


def package_of(module: str) -> str:
    """forge.x.y -> forge.x (a subpackage's modules count as their package); forge.x -> forge.x;
    a FACTS module is its own node."""
    if module in FACTS:
        return module
    parts = module.split(".")
    return ".".join(parts[:2])


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, targets in module_graph().items():
        graph.setdefault(package_of(a), set())
        for b in targets:
            if package_of(a) != package_of(b) and package_of(b) != "forge":
                graph[package_of(a)].add(package_of(b))
    return dict(graph)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_cycles_between_packages():
    assert cycles(package_graph()) == []


def test_no_cycles_between_modules():
    assert cycles(module_graph()) == []


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_only_what_the_doc_allows(package):
    allowed = RULES[package] | LEAVES | FACTS | {package}
    extra = sorted(package_graph().get(package, set()) - allowed)
    assert extra == [], f"{package} imports {extra}; docs/architecture.md allows {sorted(RULES[package])}"


@pytest.mark.parametrize("leaf", sorted(LEAVES | FACTS))
def test_leaves_and_facts_import_no_package(leaf):
    assert package_graph().get(leaf, set()) <= LEAVES, f"{leaf} imports {sorted(package_graph()[leaf])}"


def test_rules_name_every_package():
    assert set(package_graph()) - LEAVES - FACTS - {"forge"} == set(RULES)


def test_the_doc_shows_the_rules():
    """docs/architecture.md's module-graph table lists the same rules as this test."""
    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("forge"):
            rows[cells[0]] = {x.strip().strip("`") for x in cells[1].split(",")} - {"", "-", "(leaves only)"}
    assert rows == RULES


def test_every_package_is_installed():
    """pyproject's explicit package list names every forge package (a missing one works in the
    editable install and breaks a real one)."""
    import tomllib

    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_module_name(p.parent / "__init__.py") for p in ROOT.rglob("__init__.py")}
    assert packages <= listed
