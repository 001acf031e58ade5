"""The library's layering, enforced: each of HM3's levels is a subpackage, a module imports
only from its own layer or the layers below it, there are no import cycles, and a
function-level import is allowed only where it keeps a heavy dependency off a command's
start-up path, saying so in a `# lazy:` comment.

Imports are read from the source (the AST), function-level ones included, so a cycle
hidden inside a function counts as a cycle.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _paths import REPO

SRC = REPO / "src"
PACKAGE = SRC / "hm3"
# Top to bottom; `hm3.<layer>` may import `hm3.<lower layer>` but never upwards.
LAYERS = (
    "cli",
    "report",
    "compare",
    "lower",
    "upper",
    "merge",
    "evaluation",
    "models",
    "checkpoints",
    "core",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path):
    """(imported module, line, inside a function) for every hm3 import of one file."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(child, module, path.name == "__init__.py")
                found.append((target, child.lineno, in_function))
                # `from hm3.x import y` may name the module hm3.x.y
                found.extend(
                    (f"{target}.{alias.name}", child.lineno, in_function)
                    for alias in child.names
                    if _is_module(f"{target}.{alias.name}")
                )
            visit(child, nested)

    visit(tree, False)
    return module, found


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tasks" in path.relative_to(PACKAGE).parts:
            continue  # lm-eval's task utilities, loaded by lm-eval from the YAML folder
        module, found = _imports(path)
        graph[module] = {
            name for name, _, _ in found if name.startswith("hm3.") and _is_module(name)
        }
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lives_in_a_layer():
    loose = [m for m in _graph() if m != "hm3" and _layer(m) is None]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module, targets in _graph().items():
        if _layer(module) is None:
            continue
        rank = LAYERS.index(_layer(module))
        upward += [
            f"{module} -> {t}"
            for t in targets
            if _layer(t) is not None and LAYERS.index(_layer(t)) < rank
        ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-imports."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
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
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    # a package's __init__ re-exporting its own modules is not a cycle of design
    return [c for c in components if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]


def test_no_import_cycles():
    graph = _graph()
    for package in [m for m in graph if (SRC.joinpath(*m.split(".")) / "__init__.py").is_file()]:
        graph[package] = set()  # lazy re-exports of a package's own modules are not edges of design
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def function_level_imports() -> list[tuple[str, int, str, bool]]:
    """(file, line, source line, justified) of every import inside a function in hm3.
    Justified: a `# lazy:` comment on the statement or heading its group of imports."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        imports = {}
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        imports[node.lineno] = node
        starts = {
            n: node.lineno
            for node in imports.values()
            for n in range(node.lineno, node.end_lineno + 1)
        }
        for lineno, node in sorted(imports.items()):
            text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
            above = node.lineno - 1
            while above in starts:  # the previous statement of the group
                above = starts[above] - 1
            heading = lines[above - 1].strip() if above >= 1 else ""
            justified = "# lazy:" in text or heading.startswith("# lazy:")
            found.append((str(path.relative_to(REPO)), lineno, lines[lineno - 1], justified))
    return found


def test_function_level_imports_say_why_they_are_lazy():
    unexplained = [
        f"{f}:{n}: {text.strip()}"
        for f, n, text, justified in function_level_imports()
        if not justified
    ]
    assert not unexplained, (
        "a function-level import must keep a heavy dependency off a start-up path and say so "
        "in a `# lazy:` comment (on it, or heading its group); else import at the top:\n"
        + "\n".join(unexplained)
    )


def test_import_linter_contract_holds():
    """The same layer order as an import-linter contract (pyproject.toml), for editors and CI."""
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    proc = subprocess.run(
        [lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
