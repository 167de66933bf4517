"""The CLI's log: -q shows errors only, the default INFO, -v DEBUG; the engine's records reach stderr."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from gist_engine.cli import main
from gist_engine.runs import SCHEMA_VERSION


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gist_engine", *args], capture_output=True, text=True, timeout=300)


def test_quiet_prints_no_log_lines_and_verbose_shows_debug_lines():
    quiet = run_cli("-q", "list")
    assert quiet.returncode == 0 and "Backbones:" in quiet.stdout
    assert quiet.stderr == ""
    verbose = run_cli("--verbose", "list")
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert "DEBUG gist_engine.cli: command list" in verbose.stderr


def test_the_levels_reach_the_engine_loggers(tmp_path, capsys):
    assert main(["-q", "runs", "--root", str(tmp_path / "a"), "list"]) == 0
    assert capsys.readouterr().err == "" and not logging.getLogger("gist_engine.runs").isEnabledFor(logging.WARNING)
    assert main(["runs", "--root", str(tmp_path / "b"), "list"]) == 0
    assert capsys.readouterr().err == ""  # a new store's creation is a DEBUG line
    assert logging.getLogger("gist_engine.runs.manager").isEnabledFor(logging.INFO)
    assert main(["-v", "runs", "--root", str(tmp_path / "c"), "list"]) == 0
    err = capsys.readouterr().err
    store = tmp_path / "c" / "runs.sqlite3"
    assert f"DEBUG gist_engine.runs.store: run store {store}: schema version 0 -> {SCHEMA_VERSION}" in err
    logging.getLogger("gist_engine.runs.manager").error("an error")
    assert capsys.readouterr().err == "ERROR gist_engine.runs.manager: an error\n"


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-q", "-v", "list"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
