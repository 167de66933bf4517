"""A study cell stopped in one call: its queued and running runs stop, the other cells go on, resume continues it."""

from __future__ import annotations

import pytest

from gist_engine.runs import RunManager
from gist_engine.studies import StudyError, get_study, resume_study, start_study, stop_study_cell, study_runs
from tests.runs.helpers import Slow, wait_for
from tests.studies.helpers import spec, toy_data


def test_stop_study_cell_stops_that_cells_runs_only_and_the_study_resumes_them(tmp_path):
    mgr = RunManager(tmp_path, torch_threads=0, data_loader=toy_data, heartbeat_every=0.2,
                     callbacks=lambda cfg, run_dir: [Slow(0.01)])
    try:
        unshared = spec("cells", grid={"method_args.rank": [2, 4]})  # 2 cells x 2 seeds x 2 arms, each its own runs
        job = start_study(unshared, mgr, "local")
        wait_for(lambda: len(study_runs(job.study_id, mgr).dropna(subset=["run_id"])) == 8, what="the 8 runs")
        runs = study_runs(job.study_id, mgr)
        cell0 = runs[runs["cell"] == 0]
        stopped = stop_study_cell(job.study_id, 0, mgr)
        assert sorted(stopped) == sorted(r for r, s in zip(cell0["run_id"], cell0["status"], strict=True)
                                         if s in ("queued", "running"))
        assert stopped, "the first cell had runs waiting or training"
        job.wait(120)
        after = study_runs(job.study_id, mgr)
        assert set(after[after["cell"] == 0]["status"]) <= {"stopped", "completed"}
        assert "stopped" in set(after[after["cell"] == 0]["status"])
        assert set(after[after["cell"] == 1]["status"]) == {"completed"}  # the other cell went on
        assert get_study(job.study_id, mgr).status == "incomplete"
        with pytest.raises(StudyError, match="has no cell 7; its cells are 0, 1"):
            stop_study_cell(job.study_id, 7, mgr)
        with pytest.raises(StudyError):
            stop_study_cell("s-not-a-study", 0, mgr)
        resume_study(job.study_id, mgr, "local")  # the stopped runs continue from their training state
        assert set(study_runs(job.study_id, mgr)["status"]) == {"completed"}
    finally:
        mgr.shutdown(timeout=30)
