"""The app imports only gist_engine's public API (`import gist_engine as ge`, names in `ge.__all__`); the engine
never imports streamlit and holds no app code."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import gist_engine as ge

ROOT = Path(__file__).resolve().parents[2]
APP_FILES = sorted((ROOT / "app").rglob("*.py"))
LOCAL = {p.stem for p in (ROOT / "app").glob("*.py")}  # fmt, charts, forms, panels, state, services, ...
# The app draws and reads its own YAML assets; torch & co stay in the engine.
ALLOWED_THIRD_PARTY = {"streamlit", "plotly", "pandas", "numpy", "yaml", "gist_engine"}
STATUS_MODULE = "gist_engine.status"  # `from gist_engine.status import ACTIVE, RunStatus`: no torch, no cycle


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def test_app_files_exist() -> None:
    names = {p.relative_to(ROOT / "app").as_posix() for p in APP_FILES}
    assert {"streamlit_app.py", "state.py", "services.py", "fmt.py", "forms.py", "panels.py", "charts.py",
            "views/launch.py", "views/live.py", "views/compare.py", "views/attention.py", "views/runs.py",
            "views/datasets.py", "views/about.py"} <= names


def test_app_imports_the_engine_only_as_ge() -> None:
    problems = []
    for path in APP_FILES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top == "gist_engine" and (alias.name != "gist_engine" or alias.asname != "ge"):
                        problems.append(f"{_where(path, node)}: `import {alias.name}`; use `import gist_engine as ge`")
                    elif top not in ALLOWED_THIRD_PARTY | LOCAL and top not in sys.stdlib_module_names:
                        problems.append(f"{_where(path, node)}: imports {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    problems.append(f"{_where(path, node)}: relative import")
                elif mod == STATUS_MODULE:
                    continue  # the run statuses and their sets: a module that imports nothing of the package
                elif mod.split(".")[0] == "gist_engine":
                    problems.append(f"{_where(path, node)}: `from {mod} import ...`; use `import gist_engine as ge`")
                elif mod.split(".")[0] not in ALLOWED_THIRD_PARTY | LOCAL and mod.split(".")[0] not in \
                        sys.stdlib_module_names:
                    problems.append(f"{_where(path, node)}: imports {mod}")
    assert not problems, problems


def test_app_uses_only_names_of_the_public_api() -> None:
    used: dict[str, str] = {}
    for path in APP_FILES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ge":
                used.setdefault(node.attr, _where(path, node))
    assert "RunManager" in used and "load_run_config" in used, "the scan found the app's uses of ge"
    missing = [f"ge.{n} ({w})" for n, w in sorted(used.items()) if n not in ge.__all__]
    assert not missing, f"not in gist_engine.__all__: {missing}"
    modules = [f"ge.{n} ({w})" for n, w in sorted(used.items()) if inspect.ismodule(getattr(ge, n))]
    assert not modules, f"engine submodules reached through ge: {modules}"


def test_the_public_api_is_complete() -> None:
    assert all(hasattr(ge, n) for n in ge.__all__)
    assert not [n for n in ge.__all__ if inspect.ismodule(getattr(ge, n))], "__all__ lists names, not modules"


def test_engine_never_imports_streamlit_and_holds_no_app_code() -> None:
    for path in (ROOT / "gist_engine").rglob("*.py"):
        for node in ast.walk(_tree(path)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "streamlit" for n in names), path
    assert importlib.util.find_spec("gist_engine.studio") is None
    code = "import sys, gist_engine; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=300).returncode == 0


PURE = ("fmt", "charts")  # what the pages say and draw: no Streamlit, testable without a browser


def test_pure_modules_import_without_streamlit() -> None:
    """`fmt` and `charts` import (and format a table) in an interpreter where Streamlit cannot be imported."""
    code = ("import sys; sys.modules['streamlit'] = None; sys.path.insert(0, 'app'); "
            + "; ".join(f"import {m}" for m in PURE)
            + "; assert fmt.for_display(fmt.runs_frame([])).empty and fmt.points(0.0123) == '+1.23'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in PURE:
        imported = {a.name.split(".")[0] for node in ast.walk(_tree(ROOT / "app" / f"{name}.py"))
                    if isinstance(node, ast.Import) for a in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(_tree(ROOT / "app" / f"{name}.py"))
                     if isinstance(node, ast.ImportFrom)}
        assert imported.isdisjoint({"streamlit", *(LOCAL - set(PURE))}), f"{name}.py imports {imported}"


def test_run_statuses_are_the_engines() -> None:
    """No run status is written as bare text in the app: statuses and their sets come from `gist_engine.status`
    (a study's own statuses, `ge.STUDY_STATUSES`, compared on a study's info, are not run statuses)."""
    statuses = {s.value for s in ge.RunStatus}
    bare = []
    for path in APP_FILES:
        tree = _tree(path)
        study = {id(c) for node in ast.walk(tree) if isinstance(node, ast.Compare)
                 and ast.unparse(node.left) in ("info.status", "s.status") for c in ast.walk(node)}
        bare += [f"{_where(path, node)}: {node.value!r}" for node in ast.walk(tree)
                 if isinstance(node, ast.Constant) and node.value in statuses and id(node) not in study]
    assert not bare, f"bare run statuses (use gist_engine.status's RunStatus and its sets): {bare}"


def test_pages_are_short_and_documented() -> None:
    for path in APP_FILES:
        tree = _tree(path)
        assert ast.get_docstring(tree), f"{path.name} needs a one-line module docstring"
        if path.parent.name == "views":
            assert len(path.read_text().splitlines()) <= 80, f"{path.name} is long: move its parts to fmt/forms/panels"
