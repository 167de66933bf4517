"""README and docs/: short README with exactly the two commands, a config reference that is never stale, live links."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").glob("*.md"))
APP_COMMAND = "pip install -r requirements.txt && streamlit run app/streamlit_app.py"
TEST_COMMAND = "pip install -q -r requirements.txt -r requirements-dev.txt && ruff check . && python -m pytest -q"
# What the README and docs never speak of: the team's work in progress rather than the project.
WORK_IN_PROGRESS = [r"\bissues?\b", r"\bsessions?\b(?!\s+state)", r"\bto be met\b", r"\bnot met\b", r"\bTODO\b",
                    r"\bhelpers? (?:of|in) the team\b", r"(?<![\w&])#\d+\b"]


def _blocks(text: str) -> list[tuple[str, str]]:
    """The fenced code blocks of a Markdown text: (language, code)."""
    blocks, lang, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                blocks.append((lang, "\n".join(lines)))
                lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, "an unclosed code block"
    return blocks


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", ROOT / "docs" / "gen_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short():
    assert len(README.splitlines()) <= 160


def test_readme_has_exactly_the_two_commands():
    blocks = _blocks(README)
    assert [lang for lang, _ in blocks] == ["bash", "bash", "python"]
    assert [code.strip() for lang, code in blocks if lang == "bash"] == [APP_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readme_test_command_last():
    steps = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    last_command = next(i for i, line in enumerate(steps) if TEST_COMMAND in line)
    assert all(not line.startswith(("pip ", "python ", "ruff ", '"$venv')) for line in steps[last_command + 1:])
    assert "gist-engine\" list" in "\n".join(steps[:last_command])


def test_docs_exist_and_readme_links_resolve():
    names = {p.name for p in DOCS}
    assert {"speed.md", "runs.md", "text.md", "app.md", "architecture.md", "adding-a-tuner.md", "config.md"} <= names
    for doc, text in [(ROOT / "README.md", README), *((p, p.read_text(encoding="utf-8")) for p in DOCS)]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


def test_readme_screenshot_exists():
    (image,) = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", README)
    assert (ROOT / image).stat().st_size > 10_000


@pytest.mark.parametrize("path", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_docs_speak_of_the_project_only(path):
    text = path.read_text(encoding="utf-8")
    found = [m.group(0) for pattern in WORK_IN_PROGRESS for m in re.finditer(pattern, text, flags=re.I)]
    assert not found, found


def test_config_reference_is_what_the_script_generates_now():
    gen = _generator()
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8") == gen.render(gen.catalogue()), (
        "docs/config.md is stale: run python docs/gen_config_reference.py")


@pytest.mark.slow
def test_readme_python_api_runs(monkeypatch):
    """The README's ten lines as written (the real offline backbone), with `ge.train` recording its config."""
    import gist_engine as ge

    (code,) = [code for lang, code in _blocks(README) if lang == "python"]
    trained = []
    monkeypatch.setattr(ge, "train", lambda config, **kw: trained.append(config) or "result")
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert isinstance(trained[0], ge.RunConfig) and namespace["result"] == "result"
    assert namespace["terms"]["total"].grad_fn is not None
