"""Run and study statuses: one str enum each, whose members are their stored text, used instead of bare strings."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from gist_engine.status import ACTIVE, ENDED, RESUMABLE, WITH_RESULT, RunStatus, StudyStatus
from gist_engine.studies.store import STUDY_STATUSES

PACKAGE = Path(__file__).resolve().parents[1] / "gist_engine"
# every status's text; "created" is also the creation time's column (runs.created, studies.created), so it is left out
TEXTS = ({s.value for s in RunStatus} | {s.value for s in StudyStatus}) - {StudyStatus.CREATED.value}


def test_members_are_their_stored_text() -> None:
    assert RunStatus.COMPLETED == "completed" and json.dumps(RunStatus.QUEUED) == '"queued"'
    assert RunStatus("interrupted") is RunStatus.INTERRUPTED and "stopped" in RESUMABLE
    assert set(ACTIVE) | set(ENDED) == set(RunStatus) and not set(ACTIVE) & set(ENDED)
    assert set(WITH_RESULT) <= set(ENDED) and set(RESUMABLE) <= set(ENDED)
    assert [RunStatus.QUEUED.active, RunStatus.FAILED.ended, RunStatus.COMPLETED.resumable] == [True, True, False]
    assert tuple(StudyStatus) == STUDY_STATUSES and StudyStatus.INCOMPLETE == "incomplete"


def _bare_statuses(path: Path) -> list[str]:
    """`line: text` of every string constant of `path` that is exactly a status's text (docstrings aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [f"{n.lineno}: {n.value}" for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and n.value in TEXTS and id(n) not in docstrings]


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.name != "status.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_bare_status_strings(path: Path) -> None:
    """The package names statuses by their enum members (gist_engine.status), never as bare strings."""
    assert _bare_statuses(path) == []
