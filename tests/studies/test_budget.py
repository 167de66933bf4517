"""GIST - plain against the training budget: a tiny 3-epoch study read after each epoch, checked by hand."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gist_engine import cli
from gist_engine.studies import (
    FEW_SEEDS_NOTE,
    StudyError,
    export_study,
    format_budget,
    run_study,
    study_budget,
    study_results,
    study_runs,
)
from tests.studies.helpers import BASE, toy_data

LOCAL = {"data_loader": toy_data, "torch_threads": 0}
EPOCHS = 3
SHIPPED_CONFIGS = Path(__file__).resolve().parents[2] / "assets" / "configs"


@pytest.fixture(scope="module")
def budget_study(tmp_path_factory):
    """One cell (LoRA rank 2), 3 epochs evaluated after each, plain and GIST on seeds 0-1: (root, study id)."""
    root = tmp_path_factory.mktemp("budget")
    base = {**BASE, "train": {**BASE["train"], "epochs": EPOCHS, "eval_every": 1, "checkpoint_every": 0}}
    spec = {"name": "tiny-budget", "base": base, "grid": {"method_args.rank": [2]}, "seeds": 2}
    return root, run_study(spec, root, "local", **LOCAL)


def _evaluations(root) -> dict[str, dict[float, float]]:
    """run id -> {epoch: test accuracy}, read from the store's table directly."""
    conn = sqlite3.connect(root / "runs.sqlite3")
    try:
        rows = conn.execute("SELECT run_id, epoch, acc_cls FROM evaluations WHERE split = 'test'").fetchall()
    finally:
        conn.close()
    out: dict[str, dict[float, float]] = {}
    for run_id, epoch, acc in rows:
        out.setdefault(run_id, {})[epoch] = acc
    return out


def _by_hand(plain: list[float], gist: list[float]) -> dict:
    """Mean GIST - plain, its 95% t-interval clipped to [-1, 1], and the paired t-test's p (scipy)."""
    d = np.asarray(gist) - np.asarray(plain)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = stats.t.ppf(0.975, len(d) - 1) * sd / math.sqrt(len(d))
    p = None if sd == 0 else float(stats.ttest_rel(gist, plain).pvalue)
    return {"mean": mean, "low": max(-1.0, mean - half), "high": min(1.0, mean + half), "p": p}


def test_the_verdict_per_epoch_is_the_paired_t_interval_of_the_runs_read_at_that_epoch(budget_study):
    root, study_id = budget_study
    runs = study_runs(study_id, root)
    assert set(runs["status"]) == {"completed"}
    evals = _evaluations(root)
    budget = study_budget(study_id, root)
    assert list(budget["epoch"]) == [1.0, 2.0, 3.0] and list(budget["n"]) == [2, 2, 2]
    assert list(budget["step"]) == [4, 8, 12]  # 64 images at batch 16: 4 steps an epoch
    assert list(budget["method_args.rank"]) == [2, 2, 2] and budget.attrs["metric"] == "acc_cls"
    by_arm = {arm: runs[runs["arm"] == arm].sort_values("seed")["run_id"].tolist() for arm in ("plain", "gist")}
    for _, row in budget.iterrows():
        plain = [evals[r][row["epoch"]] for r in by_arm["plain"]]
        gist = [evals[r][row["epoch"]] for r in by_arm["gist"]]
        want = _by_hand(plain, gist)
        assert row["plain"] == pytest.approx(plain) and row["gist"] == pytest.approx(gist)
        assert row["delta_mean"] == pytest.approx(want["mean"])
        assert row["delta_ci_low"] == pytest.approx(want["low"]) and row["delta_ci_high"] == pytest.approx(want["high"])
        if want["p"] is None:
            assert row["p_value"] is None or math.isnan(row["p_value"])
        else:
            assert row["p_value"] == pytest.approx(want["p"])
        assert row["plain_mean"] == pytest.approx(np.mean(plain)) and row["gist_mean"] == pytest.approx(np.mean(gist))
        assert row["note"]  # 2 seeds: the interval cannot bound the difference usefully
    # the last epoch is the final verdict of the study's table
    final, last = study_results(study_id, root).iloc[0], budget.iloc[-1]
    assert last["delta_mean"] == pytest.approx(final["delta_mean"]) and last["plain"] == pytest.approx(final["plain"])
    # best_acc_cls: the best test accuracy of the evaluations up to each epoch
    best = study_budget(study_id, root, "best_acc_cls")
    for _, row in best.iterrows():
        plain = [max(v for e, v in evals[r].items() if e <= row["epoch"]) for r in by_arm["plain"]]
        gist = [max(v for e, v in evals[r].items() if e <= row["epoch"]) for r in by_arm["gist"]]
        assert row["delta_mean"] == pytest.approx(_by_hand(plain, gist)["mean"])
    with pytest.raises(StudyError, match=r"acc_gist.*cannot be compared"):
        study_budget(study_id, root, "acc_gist")


def test_show_by_epoch_prints_and_exports_the_budget_table(budget_study, capsys):
    root, study_id = budget_study
    budget = study_budget(study_id, root)
    assert cli.main(["study", "show", study_id, "--by-epoch", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out == format_budget(study_id, root) + "\n"
    assert "| epoch | plain (%) | GIST (%) | GIST - plain (points) | p | seeds |" in out
    for _, row in budget.iterrows():  # one line per epoch, the delta in points with its CI and the † of 2 seeds
        line = next(x for x in out.splitlines() if x.startswith(f"| {row['epoch']:g} |"))
        assert f"{100 * row['delta_mean']:+.2f} [{100 * row['delta_ci_low']:+.2f}, " in line and "†" in line
        assert f"{100 * row['plain_mean']:.2f}" in line and line.endswith("| 2 |")
    assert "points of one schedule" in out and FEW_SEEDS_NOTE in out
    assert cli.main(["study", "show", study_id, "--by-epoch", "--json", "--root", str(root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == study_id and shown["metric"] == "acc_cls"
    assert [r["epoch"] for r in shown["epochs"]] == [1.0, 2.0, 3.0]
    assert [r["delta_mean"] for r in shown["epochs"]] == pytest.approx(list(budget["delta_mean"]))
    csv = export_study(study_id, "csv", root=root, by_epoch=True).splitlines()
    assert csv[0].startswith("cell,label,method_args.rank,epoch,step,") and len(csv) == 1 + EPOCHS
    out_file = root / "budget.md"
    assert cli.main(["study", "export", study_id, "--by-epoch", "--to", "md", "-o", str(out_file),
                     "--root", str(root)]) == 0
    assert out_file.read_text().startswith("| epoch | plain (%) |")
    assert "\\begin{table}" in export_study(study_id, "latex", root=root, by_epoch=True)


def test_a_study_without_evaluations_reads_as_an_empty_budget(tmp_path):
    spec = {"name": "no-evals", "base": BASE, "grid": {"method_args.rank": [2]}, "seeds": 1}
    from gist_engine.studies import create_study

    study_id = create_study(spec, tmp_path)
    budget = study_budget(study_id, tmp_path)
    assert budget.empty and "epoch" in budget.columns and "delta_mean" in budget.columns
    assert "no test evaluation of a run yet" in format_budget(study_id, tmp_path)


def test_a_study_bundle_carries_the_budget_table_and_imports_it(budget_study, tmp_path, capsys):
    from gist_engine.runs import RunManager
    from gist_engine.runs.gallery import check_bundle, import_gallery_entry, read_manifest
    from gist_engine.studies import export_study_bundle

    root, study_id = budget_study
    with RunManager(root, start=False) as mgr:
        bundle = export_study_bundle(mgr, study_id, tmp_path / "b", "b")
    recorded, budget = read_manifest(bundle)["budget"], study_budget(study_id, root)
    assert [r["epoch"] for r in recorded] == [1.0, 2.0, 3.0] and [r["step"] for r in recorded] == [4, 8, 12]
    assert [r["delta_mean"] for r in recorded] == pytest.approx(list(budget["delta_mean"]))
    assert [r["delta_ci_low"] for r in recorded] == pytest.approx(list(budget["delta_ci_low"]))
    assert recorded[0]["method_args.rank"] == 2 and recorded[0]["label"] == "method_args.rank=2"
    with RunManager(tmp_path / "fresh", start=False) as mgr:
        assert import_gallery_entry(mgr, bundle)["imported"]
    imported = study_budget(study_id, tmp_path / "fresh")
    assert list(imported["delta_mean"]) == pytest.approx(list(budget["delta_mean"]))
    assert cli.main(["runs", "--root", str(tmp_path / "fresh"), "gallery", "list", "--gallery", str(tmp_path)]) == 0
    by_epoch = ", ".join(f"{e:g}: {100 * d:+.2f}" for e, d in zip(budget["epoch"], budget["delta_mean"], strict=True))
    assert f"method_args.rank=2: GIST - plain after epoch {by_epoch} (points;" in capsys.readouterr().out
    manifest = json.loads((bundle / "manifest.json").read_text())
    for hostile in ("lots", [1, 2], {"epoch": 1}):  # not a list of rows: refused by name before anything is read
        (bundle / "manifest.json").write_text(json.dumps(manifest | {"budget": hostile}))
        with pytest.raises(Exception, match="budget: expected a list of rows"):
            check_bundle(bundle)


def test_recording_into_a_work_dir_continues_its_study(tmp_path):
    """`runs gallery record NAME --work-dir DIR` keeps the runs; the same command again trains nothing new."""
    import yaml

    from gist_engine.runs import RunManager

    smoke = yaml.safe_load((SHIPPED_CONFIGS / "smoke_digits.yaml").read_text())
    smoke["data"] |= {"train_size": 32, "test_size": 16}
    smoke["train"] |= {"epochs": 2, "cpu_threads": 1, "attention_every": 0}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"name": "digits-budget", "base": smoke,
                                                        "grid": {"train.epochs": [2]}, "seeds": 1}))
    (tmp_path / "gallery.yaml").write_text(yaml.safe_dump({"entries": [
        {"name": "digits-budget", "title": "Digits", "description": "d", "study": "tiny.yaml"}]}))
    work = tmp_path / "work"
    args = ["runs", "gallery", "record", "digits-budget", "--gallery", str(tmp_path), "--work-dir", str(work)]
    assert cli.main(args) == 0
    with RunManager(work, start=False) as mgr:
        first = sorted(r.id for r in mgr.list())
    assert len(first) == 2
    assert cli.main(args) == 0
    with RunManager(work, start=False) as mgr:
        assert sorted(r.id for r in mgr.list()) == first  # continued: completed runs are never rerun
    manifest = json.loads((tmp_path / "digits-budget" / "manifest.json").read_text())
    assert [r["epoch"] for r in manifest["budget"]] == [1.0, 2.0] and manifest["budget"][-1]["n"] == 1


GALLERY = Path(__file__).resolve().parents[2] / "assets" / "gallery"


def test_the_recorded_budget_study_holds_the_verdict_after_each_of_its_8_epochs():
    """Red until `python -m gist_engine runs gallery record study-budget` has written the bundle (about 45 minutes on
    2 CPU cores); then it checks that the recording is the spec's: 6 completed runs, 3 paired seeds at every epoch."""
    from gist_engine.runs.gallery import read_manifest

    manifest = read_manifest(GALLERY / "study-budget")
    assert manifest["kind"] == "study" and manifest["study"]["status"] == "completed"
    assert manifest["command"] == "python -m gist_engine runs gallery record study-budget"
    assert len(manifest["runs"]) == 6 and all(r["status"] == "completed" for r in manifest["runs"])
    assert [r["epoch"] for r in manifest["budget"]] == [float(e) for e in range(1, 9)]
    assert all(r["n"] == 3 and r["delta_ci_low"] is not None for r in manifest["budget"])
    assert manifest["budget"][-1]["delta_mean"] == pytest.approx(manifest["results"][0]["delta_mean"])



def test_the_budget_study_is_the_gallery_s_first_entry_with_a_two_sentence_caption():
    import yaml

    from gist_engine.studies import load_study_spec

    entry = yaml.safe_load((GALLERY / "gallery.yaml").read_text())["entries"][0]
    assert entry["name"] == "study-budget" and entry["study"] == "../studies/budget.yaml"
    sentences = [s for s in entry["description"].split(". ") if s.strip()]
    assert len(sentences) == 2 and "one 8-epoch schedule" in entry["description"]
    spec = load_study_spec(GALLERY / entry["study"])
    (cell,) = spec.cells()
    train = cell.config.train
    assert (spec.planned, list(spec.seeds), spec.paired) == (6, [0, 1, 2], True)
    assert (train.epochs, train.eval_every, cell.config.data.train_size, cell.config.data.test_size) == (8, 1, 500, 300)
