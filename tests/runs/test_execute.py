"""The one execution path: a local worker and a Ray task train through `execute.execute_run`, which writes
`result.json` atomically and turns every failure into the run's final status."""

from __future__ import annotations

import errno
import json

import pytest

from gist_engine.runs import execute
from gist_engine.studies.ray_backend import train_events
from tests.runs.helpers import config


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """Every call of `execute_run` (the real one runs), with its run folder and recording callbacks."""
    seen: list[dict] = []
    real = execute.execute_run

    def spy(cfg, run_dir, **kwargs):
        outcome = real(cfg, run_dir, **kwargs)
        seen.append({"run_dir": run_dir, "callbacks": [type(c).__name__ for c in kwargs["callbacks"]],
                     "outcome": outcome})
        return outcome

    monkeypatch.setattr(execute, "execute_run", spy)
    return seen


def test_a_local_run_and_a_ray_task_go_through_the_same_execution_function(manager_factory, toy, tmp_path, calls):
    mgr = manager_factory()
    run_id = mgr.submit(config("local"))
    snap = mgr.wait(run_id, timeout=60)
    assert snap.status == "completed", snap.error
    ray_dir = tmp_path / "runs" / "ray-task"
    batches = list(train_events(config("ray"), str(ray_dir), resume=False, data_loader=lambda cfg: toy))
    end = batches[-1][-1]
    assert end[0] == "end" and end[1]["status"] == "completed" and "history" not in end[1]  # the driver has it
    assert [c["run_dir"] for c in calls] == [snap.run_dir, ray_dir]
    assert [c["callbacks"] for c in calls] == [["StoreWriter"], ["_Events"]]  # only the recorder differs
    for c in calls:  # both results written by execute_run, history included
        result = json.loads((c["run_dir"] / execute.RESULT_NAME).read_text())
        assert result["status"] == "completed" and len(result["history"]["steps"]) == 8
        assert not list(c["run_dir"].glob("*.tmp"))


def test_a_bad_config_fails_with_its_message_and_no_result(tmp_path, toy):
    outcome = execute.execute_run({"method": "no-such-method"}, tmp_path / "runs" / "x", data_loader=lambda c: toy)
    assert outcome.status == "failed" and outcome.result is None and "no-such-method" in outcome.error
    assert "Traceback" not in outcome.error and not (tmp_path / "runs" / "x").exists()


def test_a_full_disk_at_result_json_fails_the_run_naming_the_data_directory(tmp_path, toy, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(execute, "write_result", full)
    outcome = execute.execute_run(config("full"), tmp_path / "runs" / "r", data_loader=lambda c: toy, root=tmp_path)
    assert (outcome.status, outcome.error) == ("failed", f"disk full: free space in {tmp_path} and rerun")
    assert outcome.to_event()["status"] == "failed"


def test_a_run_stopped_for_a_shutdown_ends_interrupted(tmp_path, toy):
    outcome = execute.execute_run(config("stop"), tmp_path / "runs" / "s", data_loader=lambda c: toy,
                                  stop_reason=lambda: "interrupted")
    assert (outcome.status, outcome.error) == ("interrupted", execute.INTERRUPTED_ERROR)


def test_write_result_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    folder = tmp_path / "r"
    execute.write_result(folder, {"a": 1})
    execute.write_result(folder, {"a": 2})
    assert json.loads((folder / "result.json").read_text()) == {"a": 2} and [p.name for p in folder.iterdir()] == [
        "result.json"]
