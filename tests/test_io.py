"""The atomic-write helpers: the target appears whole or not at all, and nothing temporary is left behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gist_engine._io import atomic_dir, atomic_path, write_text_atomic


def test_a_written_file_replaces_the_old_one_with_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's private 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_folder_appears_whole_and_replaces_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not target.exists()  # readers never see the folder half filled
    assert (target / "a.txt").read_text() == "a"
    with pytest.raises(OSError), atomic_dir(target) as tmp:  # an existing folder stays unless replace=True
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    with pytest.raises(RuntimeError), atomic_dir(target, replace=True) as tmp:
        (tmp / "c.txt").write_text("c")
        raise RuntimeError("the writer failed")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
