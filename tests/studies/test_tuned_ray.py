"""A tuned study on a local Ray: the same seeded trials as the local backend, a killed trial retried, the verdict."""

from __future__ import annotations

import pytest

from gist_engine.runs.pairs import PairedResult
from gist_engine.studies import StudyStore, get_study, run_study
from gist_engine.studies.results import study_tuning, study_verdicts
from tests.studies.helpers import FailRuns
from tests.studies.tuning import ToyData, protocol_for_this_trainer, stand_in_callbacks, tuned_spec

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install .[ray])")
pytestmark = pytest.mark.slow  # starts a Ray of 2 CPUs


class KillTrialAndStandIn:
    """The stand-in callbacks plus a SIGKILL of the GIST arm's trial 0 at step 6 of its first attempt."""

    def __init__(self) -> None:
        self.kill = FailRuns("-gist-trial0", step=6, how="kill")

    def __call__(self, config, run_dir):
        return [*stand_in_callbacks(config, run_dir), *self.kill(config, run_dir)]


@pytest.mark.parametrize("tune_engine", [True, False], ids=["ray-tune", "ray-tasks"])
def test_a_tuned_study_on_ray_tries_the_same_trials_and_retries_a_killed_one(tmp_path, tune_engine):
    """Ray Tune's Tuner (ASHAScheduler, FailureConfig) runs each arm's trials; or (tune_engine false) each trial is
    a Ray task with the driver's ASHA."""
    local_root, ray_root = tmp_path / "local", tmp_path / "ray"
    with protocol_for_this_trainer():
        local_id = run_study(tuned_spec(), local_root, "local", data_loader=ToyData(local_root / "reads.log"),
                             callbacks=stand_in_callbacks, torch_threads=0)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            ray_id = run_study(tuned_spec(), ray_root, "ray", data_loader=ToyData(ray_root / "reads.log"),
                               callbacks=KillTrialAndStandIn(), tune_engine=tune_engine)
        finally:
            ray.shutdown()
    info = get_study(ray_id, ray_root)
    assert info.status == "completed" and info.backend == "ray"
    local, remote = study_tuning(local_id, local_root), study_tuning(ray_id, ray_root)
    for a, b in zip(local, remote, strict=True):  # the same seeded proposals on both backends, for both arms
        assert [t["values"] for t in a["curve"]] == [t["values"] for t in b["curve"]]
        assert b["values"] is not None and b["settled"] == 2
    with StudyStore(ray_root) as s:
        trials = s.attempts(ray_id, "trial")
    killed = [t for t in trials if t["arm"] == "gist" and t["trial"] == 0]
    assert [(t["attempt"], t["outcome"]) for t in killed] == [(1, "lost"), (2, "completed")]
    assert killed[0]["run_id"] == killed[1]["run_id"]
    assert {t["outcome"] for t in trials if t["attempt"] == 1 and t is not killed[0]} <= {"completed", "pruned"}
    experiments = sorted(p.name for p in (ray_root / "tune").glob("*")) if tune_engine else []
    assert experiments == ([f"{ray_id}-cell0-gist", f"{ray_id}-cell0-plain"] if tune_engine else [])
    verdict = study_verdicts(ray_id, ray_root)[0]
    assert isinstance(verdict, PairedResult) and verdict.n == 2


def test_a_study_stopped_while_ray_tune_tunes_an_arm_ends_interrupted_and_resumes(tmp_path):
    """A stop during a Ray Tune arm ends its experiment (the study's Stopper): trials that had not ended are
    `interrupted` (no run stays queued or running), the study is `interrupted`; `study resume` continues them and
    reruns no settled trial."""
    from gist_engine.status import ACTIVE
    from gist_engine.studies import create_study
    from gist_engine.studies.ray_tune import STOPPED_NOTE

    study_id = create_study(tuned_spec("stopped"), tmp_path)

    def stop_once_a_trial_ended() -> bool:
        with StudyStore(tmp_path) as s:
            return any(t["status"] == "completed" for t in s.attempts(study_id, "trial"))

    with protocol_for_this_trainer():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            progress: list[int] = []
            run_study(study_id, tmp_path, "ray", data_loader=ToyData(tmp_path / "reads.log"),
                      callbacks=stand_in_callbacks, tune_engine=True, should_stop=stop_once_a_trial_ended,
                      progress=lambda settled, planned: progress.append(settled))
            assert max(progress) >= 1  # a trial that ended moved the progress while its arm still tuned
            assert get_study(study_id, tmp_path).status == "interrupted"
            with StudyStore(tmp_path) as s:
                trials = s.attempts(study_id, "trial")
            assert not [t for t in trials if t["status"] in ACTIVE]
            interrupted = [t for t in trials if t["outcome"] == "interrupted"]
            assert interrupted and all(t["error"] == STOPPED_NOTE for t in interrupted), trials
            settled = {(t["arm"], t["trial"]): t["run_id"] for t in trials if t["outcome"] in ("completed", "pruned")}
            assert settled
            run_study(study_id, tmp_path, "ray", data_loader=ToyData(tmp_path / "reads.log"),
                      callbacks=stand_in_callbacks, tune_engine=True)
        finally:
            ray.shutdown()
    assert get_study(study_id, tmp_path).status == "completed"
    with StudyStore(tmp_path) as s:
        trials = s.attempts(study_id, "trial")
    for key, run_id in settled.items():  # settled trials kept, each once
        assert [t["run_id"] for t in trials if (t["arm"], t["trial"]) == key] == [run_id]
    assert len({(t["arm"], t["trial"]) for t in trials}) == 4
    assert isinstance(study_verdicts(study_id, tmp_path)[0], PairedResult)
