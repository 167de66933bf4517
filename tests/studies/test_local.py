"""Studies on the local backend: a 2 x 2 grid x 2 seeds, its table, retries, and re-running that runs nothing."""

from __future__ import annotations

import json
import math

import pytest

import gist_engine as ge
from gist_engine import cli
from gist_engine.runs import RunManager
from gist_engine.studies import (
    FEW_SEEDS_NOTE,
    StudyError,
    StudyStore,
    create_study,
    delete_study,
    export_study,
    get_study,
    list_studies,
    resume_study,
    run_study,
    study_curve,
    study_matrix,
    study_results,
    study_runs,
)
from gist_engine.studies.results import format_cell
from tests.studies.helpers import FailRuns, run_metrics, spec, toy_data

LOCAL = {"data_loader": toy_data, "torch_threads": 0}


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    """The 2 x 2 x 2-seed study run once on the local backend: (root, study id)."""
    root = tmp_path_factory.mktemp("local")
    seen = []
    study_id = run_study(spec(), root, "local", progress=lambda done, total: seen.append((done, total)), **LOCAL)
    assert seen[-1] == (12, 12) and seen[0][1] == 12  # 4 plain runs (one per rank and seed) + 8 GIST, not 16
    return root, study_id


def test_a_study_runs_every_cell_paired_and_reads_back_as_the_table(local_study):
    root, study_id = local_study
    info = get_study(study_id, root)
    assert (info.status, info.backend, info.cells, info.planned) == ("completed", "local", 4, 12)
    assert info.counts == {"completed": 12, "pending": 0} and info.settled == 12
    runs = study_runs(study_id, root)
    assert len(runs) == 16 and set(runs["status"]) == {"completed"} and set(runs["attempts"]) == {1}
    # the mixed grid shares the plain arm across gist.temperature only: 4 plain runs, each in the 2 cells of its rank
    mgr = RunManager(root, start=False)
    try:
        trained = mgr.list()
        assert len(trained) == 12 and sum(not r.gist_enabled for r in trained) == 4
        plain = runs[runs["arm"] == "plain"]
        assert plain["run_id"].nunique() == 4 and plain["shared"].all()
        assert not runs[runs["arm"] == "gist"]["shared"].any()
        for (rank, _seed), part in plain.groupby(["method_args.rank", "seed"]):
            assert len(part) == 2 and part["run_id"].nunique() == 1 and list(part["gist.temperature"]) == [1, 3]
            assert mgr.get(part["run_id"].iloc[0]).config.method_args.rank == rank
        assert runs[runs["arm"] == "gist"]["run_id"].nunique() == 8
        # a cell's runs opened in Compare ("Any runs") pair the same way: a plain run (recorded at T = 1) with GIST
        # at T = 3, since the plain arm ignores every gist.* key
        cell = runs[runs["cell"] == 2]
        verdict = ge.paired_result([mgr.get(i) for i in cell["run_id"]])
        assert len(verdict.pairs) == 2 and not verdict.unpaired
        assert {p.plain.id for p in verdict.pairs} == set(cell[cell["arm"] == "plain"]["run_id"])
    finally:
        mgr.shutdown()
    res = study_results(study_id, root)
    assert list(res["gist.temperature"]) == [1, 1, 3, 3] and list(res["method_args.rank"]) == [2, 4, 2, 4]
    assert list(res["n"]) == [2, 2, 2, 2] and list(res["completed"]) == [4, 4, 4, 4]
    # cells that differ only in T pair their GIST runs with the same plain runs
    assert res.iloc[0]["plain"] == res.iloc[2]["plain"] and res.iloc[1]["plain"] == res.iloc[3]["plain"]
    assert res.iloc[0]["gist"] != res.iloc[2]["gist"]
    row = res.iloc[0]
    cell = runs[runs["cell"] == 0]
    plain = cell[cell["arm"] == "plain"].sort_values("seed")["acc_cls"].tolist()
    gist = cell[cell["arm"] == "gist"].sort_values("seed")["acc_cls"].tolist()
    assert row["plain"] == plain and row["gist"] == gist
    assert row["delta_mean"] == pytest.approx(sum(g - p for p, g in zip(plain, gist, strict=True)) / 2)
    # a cell's verdict is the one PairedResult: 2 seeds, the t-interval of 1 dof clipped to [-1, 1], with its note
    d = [g - p for p, g in zip(plain, gist, strict=True)]
    half = 12.706204736174704 * abs(d[0] - d[1]) / math.sqrt(2) / math.sqrt(2)  # t(0.975, 1) * std / sqrt(2)
    mean = sum(d) / 2
    assert row["delta_ci_low"] == pytest.approx(max(-1.0, mean - half))
    assert row["delta_ci_high"] == pytest.approx(min(1.0, mean + half))
    assert row["note"] == FEW_SEEDS_NOTE.removeprefix("† ") and format_cell(row).endswith("†")
    assert 0.0 <= row["plain_ci_low"] <= row["plain_mean"] <= row["plain_ci_high"] <= 1.0
    matrix = study_matrix(res)
    assert matrix.shape == (2, 2) and matrix.index.name == "gist.temperature"
    assert matrix.columns.name == "method_args.rank"
    curve = study_curve(res, "gist.temperature")
    assert list(curve["gist.temperature"]) == [1, 3, 1, 3] and "delta_ci_low" in curve


def test_running_a_finished_study_again_runs_nothing(local_study):
    root, study_id = local_study
    before = run_metrics(root)
    with StudyStore(root) as s:
        attempts, ended = len(s.attempts(study_id)), s.get(study_id)
    assert run_study(spec(), root, "local", **LOCAL) == study_id  # the same spec continues the same study
    with StudyStore(root) as s:
        assert len(s.attempts(study_id)) == attempts == 12
        again = s.get(study_id)
    assert run_metrics(root) == before and len(list_studies(root)) == 1
    # nothing ran: the study keeps the times of the session that ran it (an export's wall time stays true)
    assert (again.status, again.started, again.finished) == (ended.status, ended.started, ended.finished)


def test_a_study_whose_driver_is_alive_is_not_started_twice(tmp_path):
    study_id = create_study(spec(), tmp_path, "local")
    with StudyStore(tmp_path) as s:
        s.set_status(study_id, "running")  # a live driver: this process, heartbeat fresh
        with pytest.raises(StudyError, match="already running"):
            run_study(study_id, tmp_path, "local", **LOCAL)
        assert s.get(study_id).status == "running" and not s.attempts(study_id)  # untouched, nothing submitted
        s.set_status(study_id, "interrupted")


def test_exports(local_study, tmp_path):
    root, study_id = local_study
    csv = export_study(study_id, "csv", tmp_path / "t.csv", root)
    assert csv.splitlines()[0].startswith("cell,label,gist.temperature,method_args.rank,seeds,plain,gist,n")
    assert (tmp_path / "t.csv").read_text() == csv and len(csv.splitlines()) == 5
    assert csv.splitlines()[0].split(",").count("note") == 1 and "2 seeds cannot bound" in csv
    md = export_study(study_id, "md", root=root)
    assert md.startswith("| gist.temperature | method_args.rank=2 | method_args.rank=4 |")
    assert FEW_SEEDS_NOTE in md and "†" in md.splitlines()[2]
    tex = export_study(study_id, "latex", root=root, rows="method_args.rank", cols="gist.temperature")
    assert "\\begin{tabular}" in tex and "method\\_args.rank" in tex


def test_a_failed_run_is_retried_from_its_checkpoint_and_one_that_keeps_failing_is_left(tmp_path):
    small = spec("retry", grid={"method_args.rank": [2, 4]}, seeds=1)
    # rank=2's GIST run fails once at step 6 (after the epoch-1 training state), rank=4's plain run always fails
    fail = {"[method_args.rank=2]-gist": FailRuns("[method_args.rank=2]-gist"),
            "[method_args.rank=4]-plain": FailRuns("[method_args.rank=4]-plain", step=2, always=True)}
    study_id = run_study(small, tmp_path, "local", callbacks=lambda cfg, d: [
        cb for part, f in fail.items() for cb in f(cfg, d)], **LOCAL)
    info = get_study(study_id, tmp_path)
    assert info.status == "incomplete" and info.counts == {"completed": 3, "failed": 1, "pending": 0}
    with StudyStore(tmp_path) as s:
        rows = s.attempts(study_id)
    by_run = {}
    for r in rows:
        by_run.setdefault((r["cell"], r["arm"]), []).append(r)
    retried = by_run[(0, "gist")]
    assert [(r["attempt"], r["outcome"]) for r in retried] == [(1, "failed"), (2, "completed")]
    assert retried[0]["run_id"] == retried[1]["run_id"]  # resumed under the same id, from its training state
    gave_up = by_run[(1, "plain")]
    assert [(r["attempt"], r["outcome"]) for r in gave_up] == [(1, "failed"), (2, "failed")]  # retries: 1
    mgr = RunManager(tmp_path, start=False)
    try:
        snap = mgr.get(retried[1]["run_id"])
        assert snap.status == "completed" and snap.resumed == 1 and snap.step == 8
    finally:
        mgr.shutdown()
    res = study_results(study_id, tmp_path)
    assert list(res["n"]) == [1, 0] and list(res["failed"]) == [0, 1]


def test_the_budget_pairs_each_cell_with_the_shared_plain_runs_at_every_epoch(local_study):
    root, study_id = local_study
    budget, res = ge.study_budget(study_id, root), study_results(study_id, root)
    assert list(budget["cell"]) == [0, 0, 1, 1, 2, 2, 3, 3] and list(budget["epoch"]) == [1.0, 2.0] * 4
    last = budget[budget["epoch"] == 2.0].reset_index(drop=True)
    for col in ("n", "plain", "gist", "delta_mean", "delta_ci_low", "p_value"):
        assert list(last[col]) == list(res[col]), col  # the last evaluation is the study's final verdict
    first = budget[budget["epoch"] == 1.0].reset_index(drop=True)
    assert first.loc[0, "plain"] == first.loc[2, "plain"]  # cells 0 and 2 differ in T only: one plain arm


def test_cli_study_run_show_export_list(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    small = spec("cli", grid={"gist.temperature": [1, 3]}, seeds=1)
    small["base"] = {**small["base"], "data": {"dataset": "digits", "train_size": 64, "test_size": 32}}
    small["base"]["train"] = {**small["base"]["train"], "epochs": 1}
    path.write_text(json.dumps(small))
    root = str(tmp_path / "root")
    assert cli.main(["-q", "study", "run", str(path), "--root", root]) == 0
    out = capsys.readouterr().out
    study_id = out.splitlines()[0].split()[1]
    assert "completed on local; 2 cell(s), 3 run(s): 3 completed" in out  # a GIST-only axis: one plain run
    assert "\n| gist.temperature | GIST - plain |\n|---|---|\n| 1 | " in out  # the matrix's lines, not escaped
    with RunManager(root, start=False) as mgr:
        assert sorted(r.gist_enabled for r in mgr.list()) == [False, True, True]
        plain_id = next(r.id for r in mgr.list() if not r.gist_enabled)
    table = study_runs(study_id, root)
    assert list(table[table["arm"] == "plain"]["run_id"]) == [plain_id, plain_id]
    assert cli.main(["study", "show", study_id, "--root", root, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == study_id and [c["gist.temperature"] for c in shown["cells"]] == [1, 3]
    assert cli.main(["study", "export", study_id, "--to", "md", "--root", root]) == 0
    assert capsys.readouterr().out.startswith("| gist.temperature | GIST - plain |")
    assert cli.main(["study", "list", "--root", root]) == 0
    assert study_id in capsys.readouterr().out
    assert cli.main(["study", "resume", study_id, "--root", root]) == 0  # nothing left to run
    assert "3 completed" in capsys.readouterr().out
    assert cli.main(["study", "show", "s0000000000", "--root", root]) == 2
    assert "no study 's0000000000'" in capsys.readouterr().err
    path.write_text(json.dumps({**small, "grid": {"gist.temperatur": [1]}}))
    assert cli.main(["study", "run", str(path), "--root", root]) == 2
    assert "grid.gist.temperatur" in capsys.readouterr().err


def test_an_unpaired_study_shows_its_one_arm_accuracy_not_empty_differences(tmp_path):
    unpaired = {"name": "one-arm", "base": spec()["base"], "grid": {"gist.temperature": [1, 3]}, "seeds": 2,
                "paired": False}
    study_id = run_study(unpaired, tmp_path, "local", **LOCAL)
    res = study_results(study_id, tmp_path)
    matrix = study_matrix(res)
    assert list(matrix.columns) == ["GIST accuracy (%)"]
    for (_, row), text in zip(res.iterrows(), matrix["GIST accuracy (%)"], strict=True):
        assert text.startswith(f"{100 * row['gist_mean']:.2f} [")  # the arm's mean with its CI, never "-"
    assert "unpaired study" in export_study(study_id, "md", None, tmp_path)


def test_a_shared_plain_run_is_retried_deleted_and_resumed_once_for_all_its_cells(tmp_path):
    small = spec("shared", grid={"gist.temperature": [1, 3]}, seeds=1)
    fail = FailRuns("[gist.temperature=*]-plain")  # the plain run both cells share fails once at step 6
    study_id = run_study(small, tmp_path, "local", callbacks=fail, **LOCAL)
    info = get_study(study_id, tmp_path)
    assert (info.status, info.planned, info.counts) == ("completed", 3, {"completed": 3, "pending": 0})
    plain = study_runs(study_id, tmp_path).query("arm == 'plain'")
    assert plain["run_id"].nunique() == 1 and list(plain["attempts"]) == [2, 2] and list(plain["cell"]) == [0, 1]
    with StudyStore(tmp_path) as s:
        rows = [r for r in s.attempts(study_id) if r["arm"] == "plain"]
    assert [(r["cell"], r["attempt"], r["outcome"]) for r in rows] == [(0, 1, "failed"), (0, 2, "completed")]
    # deleted on the Runs page: both cells miss it; resuming trains it once more, for both
    plain_id = plain["run_id"].iloc[0]
    with RunManager(tmp_path, start=False) as mgr:
        mgr.delete(plain_id)
    assert set(study_runs(study_id, tmp_path).query("arm == 'plain'")["status"]) == {"deleted"}
    assert get_study(study_id, tmp_path).counts == {"completed": 2, "deleted": 1, "pending": 0}
    assert list(study_results(study_id, tmp_path)["n"]) == [0, 0]
    resume_study(study_id, tmp_path, **LOCAL)
    info = get_study(study_id, tmp_path)
    assert (info.status, info.counts) == ("completed", {"completed": 3, "pending": 0})
    plain = study_runs(study_id, tmp_path).query("arm == 'plain'")
    assert plain["run_id"].nunique() == 1 and plain["run_id"].iloc[0] != plain_id and list(plain["attempts"]) == [3, 3]
    res = study_results(study_id, tmp_path)
    assert list(res["n"]) == [1, 1] and res.iloc[0]["plain"] == res.iloc[1]["plain"]
    with RunManager(tmp_path, start=False) as mgr:
        assert len(mgr.list()) == 3
    delete_study(study_id, tmp_path, runs=True)  # the shared run goes once, with the study
    with RunManager(tmp_path, start=False) as mgr:
        assert mgr.list() == [] and list_studies(tmp_path) == []


def test_plain_runs_are_the_same_whatever_their_gist_keys(tmp_path):
    """What sharing rests on: with GIST off, no gist.* key changes a run (same steps, losses and accuracies)."""
    runs = {}
    for name, gist in (("a", {"temperature": 1.0}),
                       ("b", {"temperature": 5.0, "length": 4, "init": 2.0, "dropout": 0.5, "shared_head": False,
                              "ce_weight": 2.0, "loss": "mse", "loss_weight": 3.0})):
        cfg = {**spec()["base"], "name": name, "gist": {**gist, "enabled": False}}
        runs[name] = ge.train(cfg, data=toy_data(None))
    a, b = runs["a"], runs["b"]
    assert (a.status, a.steps) == (b.status, b.steps) == ("completed", 8)
    assert (a.acc_cls, a.best_acc_cls, a.trainable_params) == (b.acc_cls, b.best_acc_cls, b.trainable_params)
    timing = {"images_per_second", "time", "seconds"}
    assert [{k: v for k, v in s.items() if k not in timing} for s in a.history["steps"]] == [
        {k: v for k, v in s.items() if k not in timing} for s in b.history["steps"]]
    assert a.history["evals"] == b.history["evals"]
