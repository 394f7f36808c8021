"""crossjepa's modules import each other without a cycle, counting imports inside functions too: a cycle
hidden in a function still ties the two modules together and breaks when one of them moves to module level."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "crossjepa"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the crossjepa modules it imports (anywhere in its file), by name as the import system sees
    them: `from a import b` counts a, and a.b when that is a module."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        # Importing a.b.c runs a and a.b first, but those are its parents, not dependencies to follow here:
        # a package's __init__ importing its own submodules is not a cycle.
        graph[module] = {t for t in targets if t in files and t != module and not module.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "crossjepa.atomic" in graph["crossjepa.train.checkpoint"]  # from ..atomic import ...
    assert "crossjepa.models" in graph["crossjepa.train.checkpoint"]  # inside load_pretrained
    assert "crossjepa.data.packed" in graph["crossjepa.data.formats"]  # `from .. import packed` in an __init__
    assert "crossjepa.data.dali_loader" in graph["crossjepa.data.backends"]  # inside make_loader


def test_find_cycle_reports_the_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_crossjepa_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
