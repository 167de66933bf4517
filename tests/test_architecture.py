"""The package's shape: no import cycles, no import placed inside a function to reach the package's own modules,
and the engine never imports the app's toolkit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gist_engine"


def module_name(path: Path) -> str:
    """gist_engine/runs/store.py -> gist_engine.runs.store; a package's __init__.py -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(node: ast.ImportFrom, current: str, is_package: bool) -> list[str]:
    """The absolute names an ImportFrom may refer to: the module itself and, for `from pkg import name`, pkg.name."""
    if node.level:
        base = current.split(".") if is_package else current.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    submodules = [f"{target}.{alias.name}" for alias in node.names]
    return [*submodules, target]


def imports(path: Path, name: str, known: set[str]) -> tuple[set[str], list[tuple[int, str]]]:
    """(modules of the package that `path` imports at any depth, [(line, module)] of those imported inside a
    function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    in_function: list[tuple[int, str]] = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(sub) for f in functions for sub in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            # `from pkg import mod` imports the module mod (pkg itself is only its parent, imported anyway);
            # `from pkg import name` imports pkg
            *submodules, target = resolve(node, name, is_package)
            found = [t for t in submodules if t in known] or ([target] if target in known else [])
        else:
            continue
        targets.update(found)
        if id(node) in inside:
            in_function += [(node.lineno, t) for t in found]
    return targets - {name}, in_function


def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[int, str]]]]:
    mods = modules()
    known = set(mods)
    edges, local = {}, {}
    for name, path in mods.items():
        edges[name], local[name] = imports(path, name, known)
    return edges, local


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read() -> None:
    edges, _ = graph()
    assert "gist_engine.model" in edges
    assert any(edges.values()), "no import between the package's modules was found: the walker is broken"


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    found = cycles(graph()[0])
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_package_import_inside_a_function() -> None:
    """Every module of the package is imported at the top of the module that needs it (lazy imports are for heavy
    optional dependencies only)."""
    _, local = graph()
    found = [f"{name}:{line} imports {target}" for name, items in local.items() for line, target in items]
    assert not found, "imports of the package's own modules inside functions: " + "; ".join(found)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_never_imports_streamlit(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "streamlit" not in names


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_says_what_it_is_for(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc and doc.strip(), f"{path} has no module docstring"


STORE_MODULES = {"gist_engine.runs.store", "gist_engine.studies.store"}  # the only modules that execute SQL
SQL_CALLS = {"execute", "executemany", "executescript", "read_sql", "read_sql_query", "read_sql_table"}


def sql_calls(path: Path) -> list[tuple[int, str]]:
    """[(line, method)] of every call of a method named like an SQL execution (`c.execute(...)`, `pd.read_sql`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.func.attr) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS]


def test_sql_calls_are_found(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f(c):\n    c.execute('SELECT 1')\n    c.cursor().executemany('X', [])\n    g(c.execute)\n")
    assert sql_calls(module) == [(2, "execute"), (3, "executemany")]
    assert sql_calls(PACKAGE / "runs" / "store.py")  # the store's own queries are seen


def test_only_the_store_modules_execute_sql() -> None:
    """Every query lives in `runs/store.py` (runs, metrics, evaluations, groups) or `studies/store.py` (studies)."""
    found = {name: calls for name, path in modules().items() if name not in STORE_MODULES
             for calls in [sql_calls(path)] if calls}
    assert found == {}, f"SQL executed outside the store modules (move it into a RunStore/StudyStore method): {found}"
