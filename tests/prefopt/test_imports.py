"""The library's modules import each other in one direction: no module imports one that imports it back, directly or
through others, at load time or inside a function. Imports under TYPE_CHECKING (annotations only) do not count."""

import ast

from tests.conftest import REPO


def module_imports(path, modules) -> set[str]:
    """The library modules `path` imports; `from package import submodule` is an import of the submodule."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node):
            if isinstance(child, ast.Import):
                found |= {alias.name for alias in child.names}
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                submodules = {f"{child.module}.{alias.name}" for alias in child.names} & set(modules)
                found |= submodules or {child.module}
    return {name for name in found if name in modules}


def test_no_import_circle_in_the_library_and_the_recipes():
    modules = {}
    for folder in ("prefopt", "recipes"):
        for path in (REPO / folder).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph = {name: module_imports(path, modules) - {name} for name, path in modules.items()}

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return trail + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return None

    circles = [" -> ".join(c) for c in map(cycle_from, sorted(graph)) if c]
    assert not circles, circles
