"""Studies on the local backend: a 2 x 2 grid x 2 seeds, its table, retries, and re-running that runs nothing."""

from __future__ import annotations

import json
import math

import pytest

from gist_engine import cli
from gist_engine.runs import RunManager
from gist_engine.studies import (
    FEW_SEEDS_NOTE,
    StudyError,
    StudyStore,
    create_study,
    export_study,
    get_study,
    list_studies,
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
    assert seen[-1] == (16, 16) and seen[0][1] == 16
    return root, study_id


def test_a_study_runs_every_cell_paired_and_reads_back_as_the_table(local_study):
    root, study_id = local_study
    info = get_study(study_id, root)
    assert (info.status, info.backend, info.cells, info.planned) == ("completed", "local", 4, 16)
    assert info.counts == {"completed": 16, "pending": 0} and info.settled == 16
    runs = study_runs(study_id, root)
    assert len(runs) == 16 and set(runs["status"]) == {"completed"} and set(runs["attempts"]) == {1}
    # each cell is one paired group of the run store (the app's Compare page), both arms per seed
    mgr = RunManager(root, start=False)
    try:
        groups = {mgr.get(rid).group_id for rid in runs["run_id"]}
        assert len(groups) == 4
        for gid in groups:
            res = mgr.group_results(gid)
            assert [r["seed"] for r in res["seeds"]] == [0, 1]
    finally:
        mgr.shutdown()
    res = study_results(study_id, root)
    assert list(res["gist.temperature"]) == [1, 1, 3, 3] and list(res["method_args.rank"]) == [2, 4, 2, 4]
    assert list(res["n"]) == [2, 2, 2, 2] and list(res["completed"]) == [4, 4, 4, 4]
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
        attempts = len(s.attempts(study_id))
    assert run_study(spec(), root, "local", **LOCAL) == study_id  # the same spec continues the same study
    with StudyStore(root) as s:
        assert len(s.attempts(study_id)) == attempts == 16
    assert run_metrics(root) == before and len(list_studies(root)) == 1


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
    assert "completed on local; 2 cell(s), 4 run(s): 4 completed" in out
    assert cli.main(["study", "show", study_id, "--root", root, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == study_id and [c["gist.temperature"] for c in shown["cells"]] == [1, 3]
    assert cli.main(["study", "export", study_id, "--to", "md", "--root", root]) == 0
    assert capsys.readouterr().out.startswith("| gist.temperature | GIST - plain |")
    assert cli.main(["study", "list", "--root", root]) == 0
    assert study_id in capsys.readouterr().out
    assert cli.main(["study", "resume", study_id, "--root", root]) == 0  # nothing left to run
    assert "4 completed" in capsys.readouterr().out
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
