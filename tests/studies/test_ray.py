"""Studies on Ray (a local Ray the test starts): the same runs and table as the local backend, a killed worker."""

from __future__ import annotations

import json

import pytest

from gist_engine.runs import RunManager
from gist_engine.studies import StudyStore, get_study, run_study, study_results, study_runs
from tests.studies.helpers import FailRuns, run_metrics, spec, toy_data

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install .[ray])")
pytestmark = pytest.mark.slow  # starts a Ray of 2 CPUs: ~75 s on 2 cores

KILLED = "[gist.temperature=*, method_args.rank=4]-plain-seed1"  # a plain run both temperatures share


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """The same 2 x 2 x 2-seed study on the local backend and on Ray (one worker SIGKILLed at step 6 of its
    first attempt): (local root, local id, ray root, ray id, latencies)."""
    local_root, ray_root = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("ray")
    local_id = run_study(spec(), local_root, "local", data_loader=toy_data, torch_threads=0)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        ray_id = run_study(spec(), ray_root, "ray", data_loader=toy_data, callbacks=FailRuns(KILLED, how="kill"))
    finally:
        ray.shutdown()
    return local_root, local_id, ray_root, ray_id


def test_ray_runs_the_same_runs_and_table_as_local(studies):
    local_root, local_id, ray_root, ray_id = studies
    info = get_study(ray_id, ray_root)
    assert (info.status, info.backend, info.counts) == ("completed", "ray", {"completed": 12, "pending": 0})
    local, remote = run_metrics(local_root), run_metrics(ray_root)
    assert sorted(local) == sorted(remote) and len(local) == 12
    for name in local:  # every step's loss terms and the accuracies, written by the driver from the streams
        assert remote[name] == local[name], name
    cols = ["label", "seeds", "plain", "gist", "n", "delta_mean", "delta_ci_low", "delta_ci_high", "p_value"]
    a, b = study_results(local_id, local_root)[cols], study_results(ray_id, ray_root)[cols]
    assert a.to_dict("records") == b.to_dict("records")


def test_a_killed_worker_is_retried_from_its_checkpoint_and_recorded(studies):
    _, _, ray_root, ray_id = studies
    with StudyStore(ray_root) as s:
        rows = [r for r in s.attempts(ray_id) if r["attempt"] > 1 or r["outcome"] != "completed"]
    assert [(r["attempt"], r["outcome"], r["backend"]) for r in rows] == [(1, "lost", "ray"), (2, "completed", "ray")]
    assert rows[0]["run_id"] == rows[1]["run_id"] and "Ray worker died" in rows[0]["error"]
    runs = study_runs(ray_id, ray_root)
    killed = runs[runs["attempts"] == 2]  # the shared plain run: retried once, in both cells it serves
    assert len(killed) == 2 and killed["run_id"].nunique() == 1 and set(killed["status"]) == {"completed"}
    assert list(killed["gist.temperature"]) == [1, 3] and set(killed["shared"]) == {True}
    mgr = RunManager(ray_root, start=False)
    try:
        snap = mgr.get(rows[0]["run_id"])
        assert snap.name.endswith(KILLED) and snap.resumed == 1 and snap.step == snap.total_steps == 8
        assert (snap.run_dir / "failed-once").read_text() == "6"  # it died at step 6, after epoch 1's state
        assert (snap.run_dir / "result.json").exists() and snap.has_checkpoint
    finally:
        mgr.shutdown()


def test_every_ray_run_wrote_its_result_on_its_worker_through_the_one_execution_path(studies):
    """`result.json` comes from `runs.execute.execute_run` on the Ray worker (with the per-step history, which the
    driver's end event never carries), as a local run's does."""
    _, _, ray_root, _ = studies
    results = sorted((ray_root / "runs").glob("*/result.json"))
    # 12 runs: 4 cells x 2 seeds of GIST, and 1 plain run per LoRA rank and seed (shared across the temperatures)
    assert len(results) == len(list((ray_root / "runs").iterdir())) == 12
    assert not list((ray_root / "runs").glob("*/*.tmp")) and not list((ray_root / "runs").glob("*/.*"))
    for path in results:
        result = json.loads(path.read_text())
        assert result["status"] == "completed" and result["history"]["steps"][-1]["step"] == 8, path
