"""Imports among `migrate` modules go one way: no module imports itself back through others.

Reads every module under migrate/ with `ast` (no import side effects):
module-level and function-level imports count, imports under
`if TYPE_CHECKING:` do not (they never run). An edge goes to the module
named (`from migrate.plan import Plan` -> migrate.plan; `from migrate
import cli` -> migrate.cli when that is a module). See /work/shared/LAYERS.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "migrate"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every module `tree` imports (absolute names), skipping `if TYPE_CHECKING:` bodies.

    `from pkg import sub` imports the module pkg.sub when there is one, else a name from pkg.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the migrate modules it imports."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        names = _imports(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py", set(paths))
        graph[module] = {name for name in names if name in paths and name != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(cycles)


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "migrate.patterns" in graph["migrate.plan.model"]  # module level, from-import
    assert "migrate.plan" in graph["migrate.cli"]  # inside a function
    assert "migrate.plan.values" in graph["migrate.plan.loader"]
    assert "migrate.errors" in graph["migrate.plan.loader"]


def test_the_cycle_finder_finds_a_planted_circle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_migrate_modules():
    cycles = import_cycles(import_graph())
    assert cycles == [], "import circles (move the shared code one layer down, see LAYERS.md): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_the_plan_model_imports_no_stage_and_no_pure_function_above_it():
    graph = import_graph()
    plan_modules = [name for name in graph if name == "migrate.plan" or name.startswith("migrate.plan.")]
    for module in plan_modules:
        assert not graph[module] & {"migrate.rewrite", "migrate.filters", "migrate.inventory", "migrate.transfer", "migrate.verify"}, module


MAX_MODULE_LINES = 600  # issue 13: `migrate/` readable at a glance


def test_no_module_is_over_600_lines():
    """A module that outgrows this is split by what it does (as transfer_multipart.py, verify_checks.py, uploads.py were)."""
    sizes = {str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines()) for path in PACKAGE.rglob("*.py")}
    assert len(sizes) > 50 and sizes["migrate/transfer.py"] > 100  # the walk sees the package
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines: {too_long}"
