"""Tuned studies on the local backend: per-arm trials on validation (seeded search, ASHA), final runs, the verdict."""

from __future__ import annotations

import pytest

from gist_engine.runs import RunManager
from gist_engine.runs.pairs import PairedResult
from gist_engine.studies import StudyError, StudyStore, get_study, load_study_spec, run_study, tune
from gist_engine.studies.tune import Asha, random_trials
from tests.studies.helpers import BASE
from tests.studies.tuning import (
    ToyData,
    needs_selection,
    protocol_for_this_trainer,
    reads,
    stand_in_callbacks,
    tuned_spec,
)


def _run(root, spec=None, **kwargs):
    with protocol_for_this_trainer():
        return run_study(spec or tuned_spec(), root, "local", data_loader=ToyData(root / "reads.log"),
                         callbacks=stand_in_callbacks, torch_threads=0, **kwargs)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    return root, _run(root)


def test_each_arm_is_tuned_then_its_choice_trains_over_the_seeds(tuned):
    root, study_id = tuned
    info = get_study(study_id, root)
    assert info.status == "completed" and info.planned == 8  # 2 trials x 2 arms + 2 seeds x 2 arms
    with StudyStore(root) as s:
        trials, finals = s.attempts(study_id, "trial"), s.attempts(study_id, "final")
        curves = s.val_curves([t["run_id"] for t in trials])
    assert sorted((t["arm"], t["trial"], t["seed"]) for t in trials) == [
        ("gist", 0, 0), ("gist", 1, 0), ("plain", 0, 0), ("plain", 1, 0)]  # trials use the study's first seed
    proposals = random_trials(tune.parse_tune(tuned_spec()["tune"]).space, 2,
                              tune.search_seed(load_study_spec(tuned_spec()).to_dict(), "{}"))
    for t in trials:  # both arms are offered the same seeded candidates
        assert t["params"] == proposals[t["trial"]]
        assert t["outcome"] in ("completed", "pruned") and curves[t["run_id"]]
    for arm in ("plain", "gist"):
        mine = [t for t in trials if t["arm"] == arm]
        best = max(mine, key=lambda t: (max(a for _, a in curves[t["run_id"]]), -t["trial"]))
        arm_finals = [f for f in finals if f["arm"] == arm]
        assert sorted(f["seed"] for f in arm_finals) == [0, 1]
        mgr = RunManager(root, start=False)
        try:
            for f in arm_finals:  # the final runs train the arm's best trial's values on the full train split
                assert f["params"] == best["params"] and f["status"] == "completed"
                cfg = mgr.get(f["run_id"]).config_dict
                assert cfg["train"]["lr"] == best["params"]["train.lr"]
                assert cfg["train"]["weight_decay"] == best["params"]["train.weight_decay"]
                assert cfg["data"]["val_size"] == 0 and cfg["gist"]["enabled"] == (arm == "gist")
            for t in mine:
                assert mgr.get(t["run_id"]).config_dict["data"]["val_size"] == 32
        finally:
            mgr.shutdown()


def test_asha_stops_a_trial_below_the_rung_and_records_it_as_pruned(tuned):
    root, study_id = tuned
    with StudyStore(root) as s:
        trials = s.attempts(study_id, "trial")
        curves = s.val_curves([t["run_id"] for t in trials])
    for arm in ("plain", "gist"):
        first, second = sorted((t for t in trials if t["arm"] == arm), key=lambda t: t["trial"])
        assert first["outcome"] == "completed"  # the first trial has nobody to compare with at its rung
        pruned = curves[second["run_id"]][0][1] < curves[first["run_id"]][0][1]
        assert (second["outcome"] == "pruned") == pruned, (arm, curves)
        if pruned:
            assert second["status"] == "stopped" and "stopped by ASHA after epoch 1" in second["error"]
            assert len(curves[second["run_id"]]) == 1


def test_the_verdict_pairs_the_final_runs(tuned):
    from gist_engine.studies.results import study_verdicts

    root, study_id = tuned
    verdict = study_verdicts(study_id, root)[0]
    assert isinstance(verdict, PairedResult) and verdict.n == 2
    with StudyStore(root) as s:
        finals = {f["run_id"] for f in s.attempts(study_id, "final")}
    assert {p.plain.id for p in verdict.pairs} | {p.gist.id for p in verdict.pairs} == finals


@needs_selection
def test_the_test_split_is_never_read_before_the_final_runs(tuned):
    root, _ = tuned
    log = reads(root / "reads.log")
    first_final = next(i for i, (name, _) in enumerate(log) if "-seed" in name)
    assert not [r for r in log if r[1] == "test" and "-trial" in r[0]]
    assert all("-trial" in name for name, _ in log[:first_final])


def test_resume_after_a_killed_driver_reruns_no_settled_trial(tmp_path):
    calls = {"n": 0}

    def stop_after_first_trial() -> bool:  # the driver "dies" once the first trial has settled
        with StudyStore(tmp_path) as s:
            rows = s.attempts(study_id_box[0], "trial") if study_id_box else []
        calls["n"] += 1
        return any(r["status"] == "completed" for r in rows)

    study_id_box: list[str] = []
    spec = tuned_spec("resumed")
    from gist_engine.studies import create_study

    study_id_box.append(create_study(spec, tmp_path))
    _run(tmp_path, study_id_box[0], should_stop=stop_after_first_trial)
    with StudyStore(tmp_path) as s:
        before = {(t["arm"], t["trial"]): t["run_id"] for t in s.attempts(study_id_box[0], "trial")
                  if t["status"] == "completed"}
    assert get_study(study_id_box[0], tmp_path).status == "interrupted" and before
    _run(tmp_path, study_id_box[0])
    info = get_study(study_id_box[0], tmp_path)
    assert info.status == "completed"
    with StudyStore(tmp_path) as s:
        trials = s.attempts(study_id_box[0], "trial")
    for key, run_id in before.items():  # settled trials kept, each linked once
        mine = [t for t in trials if (t["arm"], t["trial"]) == key]
        assert [t["run_id"] for t in mine] == [run_id] and mine[0]["attempt"] == 1
    assert len({(t["arm"], t["trial"]) for t in trials}) == 4


def test_a_gist_only_space_leaves_the_plain_arm_untuned(tmp_path):
    spec = tuned_spec("gistonly", tune={"space": {"gist.temperature": {"uniform": [1.0, 5.0]}}, "trials": 2,
                                        "scheduler": "none", "val_size": 32})
    assert load_study_spec(spec).planned == 2 + 4  # GIST's 2 trials, no plain trial, 2 seeds x 2 arms
    study_id = _run(tmp_path, spec)
    with StudyStore(tmp_path) as s:
        trials, finals = s.attempts(study_id, "trial"), s.attempts(study_id, "final")
    assert {t["arm"] for t in trials} == {"gist"} and len(trials) == 2
    assert {f["arm"]: f["params"] for f in finals}["plain"] == {}  # the plain arm trains its base config


@pytest.mark.parametrize("block, message", [
    ({"space": {"train.lr": {"gaussian": [0, 1]}}}, "unknown distribution 'gaussian'"),
    ({"space": {"train.lr": {"loguniform": [0.0, 0.1]}}}, "loguniform needs 0 < low"),
    ({"space": {"train.lr": {"uniform": [0.1, 0.01]}}}, "needs low < high"),
    ({"space": {"train.lr": {"randint": [1, 2.5]}}}, "randint takes integers"),
    ({"space": {"train.learning_rate": {"uniform": [0.01, 0.1]}}}, "unknown config key 'train.learning_rate'"),
    ({"space": {"train.lr": {"uniform": [0.01, 50.0]}}}, "value 50.0: train.lr"),
    ({"space": {"gist.enabled": {"choice": [True, False]}}}, "set by the tuning protocol"),
    ({"space": {"train.lr": {"uniform": [0.01, 0.1]}}, "scheduler": "pbt"}, "tune.scheduler: 'pbt'"),
    ({"space": {"train.lr": {"uniform": [0.01, 0.1]}}, "trials": 0}, "tune.trials"),
    ({"space": {"train.lr": {"uniform": [0.01, 0.1]}}, "reduction_factor": 1}, "tune.reduction_factor"),
    ({"space": {}}, "tune.space: give at least one"),
    ({"spaces": {}}, "unknown tune key 'spaces'"),
])
def test_a_bad_tune_block_is_refused_by_name(block, message):
    with pytest.raises(StudyError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_study_spec({"name": "bad", "base": BASE, "tune": block})


def test_the_size_cap_counts_the_trials():
    spec = {"name": "big", "base": BASE, "grid": {"train.batch_size": [8, 16]}, "seeds": 3,
            "tune": {"space": {"train.lr": {"uniform": [0.01, 0.1]}}, "trials": 1000}}
    with pytest.raises(StudyError, match=r"plans 4,012 runs .*\+ 4,000 trials\), more than the cap of 4,000"):
        load_study_spec(spec, max_runs=4000)
    assert load_study_spec(spec, max_runs=5000).planned == 4012


def test_asha_follows_the_rungs_of_ray_tunes_rule():
    asha = Asha(grace_period=1, reduction_factor=3, max_epochs=10)  # rungs at 1, 3, 9 epochs
    assert [m for m, _ in asha.rungs] == [9, 3, 1]
    assert not asha.on_result("a", 1, 0.5)  # first at the rung: no cutoff
    assert asha.on_result("b", 1, 0.4)  # below the 67th percentile of [0.5]
    assert not asha.on_result("c", 1, 0.6)
    assert not asha.on_result("a", 2, 0.1)  # between rungs: nothing to compare
    assert not asha.on_result("a", 3, 0.7)
    assert asha.on_result("c", 3, 0.65)


def test_study_show_and_the_exports_carry_the_choices(tuned, capsys):
    import json

    from gist_engine import cli
    from gist_engine.studies import export_study
    from gist_engine.studies.results import study_tuning

    root, study_id = tuned
    assert cli.main(["study", "show", study_id, "--root", str(root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["selection"] == {"final": "last epoch", "trials": "selected on validation"}
    tuning = {t["arm"]: t for t in shown["tuning"]}
    assert tuning == {t["arm"]: t for t in study_tuning(study_id, root)}
    for arm in ("plain", "gist"):
        t = tuning[arm]
        assert set(t["values"]) == {"train.lr", "train.weight_decay"} and 0 <= t["val_acc"] <= 1
        assert [c["trial"] for c in t["curve"]] == [0, 1] and t["curve"][0]["epochs"][0][0] == 1.0
        assert t["val_acc"] == max(c["val_acc"] for c in t["curve"])
    assert cli.main(["study", "show", study_id, "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "tuning (2 trials per arm and cell, random search, scheduler asha" in text
    assert f"train.lr={tuning['gist']['values']['train.lr']:.4g}" in text
    csv = export_study(study_id, "csv", root=root)
    assert "gist_chosen" in csv.splitlines()[0] and "plain_val_acc" in csv.splitlines()[0]
    assert csv.splitlines()[1].endswith(",2")  # gist_trials: a count, not 2.0
    assert "each arm tuned on validation, chosen:" in export_study(study_id, "md", root=root)


def test_a_gallery_bundle_carries_each_arms_choice_and_imports_it(tuned, tmp_path):
    """A tuned study exported as a gallery bundle: its manifest's `tuning` rows (the chosen values and validation
    accuracy per arm, without curves) are what `study_tuning` says; imported, the study reads the same choices."""
    import gist_engine as ge
    from gist_engine.runs import RunReader
    from gist_engine.studies.recording import export_study_bundle
    from gist_engine.studies.results import study_tuning

    root, study_id = tuned
    reader = RunReader(root)
    try:
        bundle = export_study_bundle(reader, study_id, tmp_path / "gallery" / "tuned-entry", "tuned-entry")
    finally:
        reader.close()
    listed = {b["name"]: b for b in ge.list_gallery(tmp_path / "gallery")}["tuned-entry"]
    expected = [{k: v for k, v in t.items() if k != "curve"} for t in study_tuning(study_id, root)]
    assert listed["tuning"] == expected and all(set(t["values"]) == {"train.lr", "train.weight_decay"}
                                                for t in listed["tuning"])
    target = RunReader(tmp_path / "store")
    try:
        ge.import_gallery_entry(target, bundle)
        imported = ge.list_studies(target)[0].id
        assert [t["values"] for t in study_tuning(imported, target)] == [t["values"] for t in expected]
    finally:
        target.close()


def test_select_on_test_is_labelled_optimistic():
    from gist_engine.studies.results import study_selection
    from gist_engine.studies.spec import StudySpec

    spec = StudySpec(name="release", base={"train": {"select_on": "test"}}, grid={"gist.temperature": [1, 3]})
    assert study_selection(spec) == {"final": "selected on test (optimistic)", "trials": None}
    swept = StudySpec(name="sweep", base={}, grid={"train.select_on": ["last", "test"]})
    assert study_selection(swept)["final"] == "last epoch; selected on test (optimistic)"


def test_optuna_search_runs_without_ray_and_resumes_from_its_history(tmp_path):
    pytest.importorskip("optuna", reason="optuna is not installed (pip install .[tune])")
    from gist_engine.studies.tune import OptunaSearch, parse_tune

    space = parse_tune({"space": TUNE_SPACE}).space
    first = OptunaSearch(space, seed=7)
    asked = [first.ask() for _ in range(1)]
    first.tell(asked[0], 0.5)
    again = OptunaSearch(space, seed=7)
    assert again.ask() == asked[0]  # the same seed proposes the same first trial
    resumed = OptunaSearch(space, seed=7, history=[(asked[0], 0.5)])
    assert len(resumed.study.trials) == 1 and resumed.study.best_value == 0.5
    spec = tuned_spec("optuna", tune={**tuned_spec()["tune"], "search": "optuna", "scheduler": "none"})
    study_id = _run(tmp_path, spec)
    with StudyStore(tmp_path) as s:
        trials = s.attempts(study_id, "trial")
    assert get_study(study_id, tmp_path).status == "completed" and len(trials) == 4
    assert all(1e-3 <= t["params"]["train.lr"] <= 3e-2 for t in trials)


TUNE_SPACE = {"train.lr": {"loguniform": [1.0e-3, 3.0e-2]}, "train.weight_decay": {"choice": [0.0, 0.05]}}
