"""The app talks to the engine only through `gist_engine`'s public API, and the engine never imports streamlit."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import gist_engine as ge

ROOT = Path(__file__).resolve().parents[1]
APP_FILES = sorted((ROOT / "app").rglob("*.py"))
LOCAL = {p.stem for p in (ROOT / "app").glob("*.py")}  # state, widgets, charts, streamlit_app
ALLOWED_THIRD_PARTY = {"streamlit", "plotly", "pandas", "numpy", "gist_engine"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_app_files_exist() -> None:
    names = {p.relative_to(ROOT / "app").as_posix() for p in APP_FILES}
    assert {"streamlit_app.py", "state.py", "widgets.py", "views/launch.py", "views/live.py", "views/compare.py",
            "views/attention.py", "views/runs.py", "views/datasets.py", "views/about.py"} <= names


def test_app_imports_only_the_public_engine_api() -> None:
    problems = []
    for path in APP_FILES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    problems.append(f"{path.name}: relative import")
                mods = [node.module or ""]
                if node.module == "gist_engine":
                    problems.append(f"{path.name}: use `import gist_engine as ge`, not from-imports")
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if mod.startswith("gist_engine."):
                    problems.append(f"{path.name}: imports the engine submodule {mod}")
                elif top not in ALLOWED_THIRD_PARTY | LOCAL and top not in sys.stdlib_module_names:
                    problems.append(f"{path.name}: imports {mod} (the app draws; torch & co stay in the engine)")
    assert not problems, problems


def test_app_uses_only_exported_engine_names() -> None:
    used = set()
    for path in APP_FILES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ge":
                used.add(("ge", node.attr))
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "ge"
                    and node.value.attr == "studio"):
                used.add(("studio", node.attr))
    missing = [f"ge.{n}" for k, n in used if k == "ge" and n not in ge.__all__]
    missing += [f"ge.studio.{n}" for k, n in used if k == "studio" and n not in ge.studio.__all__]
    assert not missing, f"not in the public API: {missing}"
    assert ("studio", "open_run_manager") in used


def test_engine_never_imports_streamlit() -> None:
    for path in (ROOT / "gist_engine").rglob("*.py"):
        for node in ast.walk(_tree(path)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "streamlit" for n in names), path


def test_pages_are_short_and_documented() -> None:
    for path in APP_FILES:
        tree = _tree(path)
        assert ast.get_docstring(tree), f"{path.name} needs a one-line module docstring"
        if path.parent.name == "views":
            assert len(path.read_text().splitlines()) <= 85, f"{path.name} is long: move helpers to widgets/charts"
