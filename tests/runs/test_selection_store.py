"""Selection in the run store: the selected epoch's figures, the "selected on test (optimistic)" label in `runs show`,
`runs list` and the exports, an early stop's note, and the migration of a version-2 store."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gist_engine.cli import main
from gist_engine.config import load_run_config
from gist_engine.runs import RunManager, RunStore, read_export
from gist_engine.runs import store as store_module
from gist_engine.runs.records import snapshot
from gist_engine.runs.workers import new_run_row

OPTIMISTIC = "selected on test (optimistic)"


def digits(**train) -> dict:
    """32 training and 16 test digits, 20 validation digits held out of the train split."""
    return {"backbone": "test_vit", "image_size": 32, "method": "lora",
            "data": {"dataset": "digits", "train_size": 32, "test_size": 16, "val_size": 20},
            "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "device": "cpu", **train}}


@pytest.fixture(scope="module")
def store_runs(tmp_path_factory) -> tuple:
    """A run selected on test (validation evaluated for its early stop, which never comes), one selected on
    validation that stalls (lr 1e-9) and stops early."""
    root = tmp_path_factory.mktemp("store")
    with RunManager(root, torch_threads=0) as mgr:
        on_test = mgr.submit(digits(select_on="test", early_stop_patience=5), name="on-test")
        stalled = mgr.submit(digits(lr=1e-9, epochs=6, early_stop_patience=1), name="stalled")
        snaps = {name: mgr.wait(rid, timeout=300) for name, rid in (("test", on_test), ("stalled", stalled))}
        frames = {name: mgr.evaluations(s.id) for name, s in snaps.items()}
    return root, snaps, frames


def test_the_store_holds_the_selected_epochs_figures(store_runs):
    _, snaps, frames = store_runs
    snap, evals = snaps["test"], frames["test"]
    assert snap.status == "completed", snap.error
    tests, vals = evals[evals["split"] == "test"], evals[evals["split"] == "val"]
    assert len(tests) == len(vals) == 3 and (vals["n"] == 20).all()
    best = tests.iloc[int(tests["acc_cls"].to_numpy().argmax())]  # the first of equals
    assert (snap.selected_on, snap.selection, snap.selected_epoch) == ("test", OPTIMISTIC, best["epoch"])
    assert snap.acc_cls == best["acc_cls"] == snap.best_acc_cls
    assert snap.val_acc == vals[vals["step"] == best["step"]]["acc_cls"].item()
    result = json.loads((snap.run_dir / "result.json").read_text())  # the trainer's own result agrees
    assert (result["acc_cls"], result["selected_epoch"], result["val_acc"], result["selected_on"]) == (
        snap.acc_cls, snap.selected_epoch, snap.val_acc, "test")


def test_an_early_stop_is_recorded_as_completed_with_its_note(store_runs):
    _, snaps, frames = store_runs
    snap, evals = snaps["stalled"], frames["stalled"]
    vals = evals[evals["split"] == "val"]
    assert snap.status == "completed" and snap.error is None and snap.selected_on == "val"
    assert vals["epoch"].tolist() == [1.0, 2.0] and snap.step == 2 * 2
    assert snap.note.startswith("early stop after 1 evaluations without a validation gain")
    assert (snap.selected_epoch, snap.val_acc) == (1.0, vals["acc_cls"].iloc[0])
    assert snap.selection == "selected on validation"


def test_runs_show_list_and_exports_label_a_selection_on_test(store_runs, capsys, tmp_path):
    root, snaps, _ = store_runs
    run_id = snaps["test"].id
    cli = ["runs", "--root", str(root)]
    assert main([*cli, "show", run_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["selected_on"], shown["selection"], shown["selected_epoch"]) == (
        "test", OPTIMISTIC, snaps["test"].selected_epoch)
    assert main([*cli, "show", run_id]) == 0
    assert f"{OPTIMISTIC} at epoch" in capsys.readouterr().out
    assert main([*cli, "show", snaps["stalled"].id]) == 0
    assert "note: early stop after 1 evaluations" in capsys.readouterr().out
    assert main([*cli, "list"]) == 0
    assert "test (optimistic)" in capsys.readouterr().out
    for fmt in ("csv", "parquet"):
        assert main([*cli, "export", run_id, "--to", fmt, "--out", str(tmp_path / fmt)]) == 0
        out = tmp_path / fmt / f"{run_id}.{fmt}"
        frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert set(frame["selection"]) == {OPTIMISTIC}
        back = read_export(out)
        assert len(back["evaluations"]) == len(back["validations"]) == 3
        assert "selection" not in back["metrics"] and json.loads(
            out.with_name(out.name + ".json").read_text())["selection"] == OPTIMISTIC
    capsys.readouterr()
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    assert main([*cli, "export", run_id, "--to", "mlflow", "--out", str(tmp_path / "mlruns")]) == 0
    mid = capsys.readouterr().out.split()[-1]
    logged = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri()).get_run(mid).data
    assert logged.tags["gist_studio.selection"] == OPTIMISTIC
    assert logged.metrics["acc_cls"] == pytest.approx(snaps["test"].acc_cls) and "val_acc_cls" in logged.metrics


def test_a_version_2_store_migrates_its_runs_to_last_epoch_selection(tmp_path, monkeypatch):
    assert store_module.SCHEMA_VERSION >= 3
    path = tmp_path / store_module.DB_NAME
    with monkeypatch.context() as m:  # a store written by the release before selection existed
        m.setattr(store_module, "SCHEMA_VERSION", 2)
        store = RunStore(path)
        assert store.version == 2
        row = new_run_row(load_run_config({"backbone": "test_vit"}), None, "{}", ("tok", 1, "host"), 0.0)
        store.insert_runs([row])
        last = {"step": 8, "epoch": 2.0, "acc_cls": 0.5, "acc_gist": 0.4, "agreement": 0.9}
        with store.write() as c:
            c.execute("UPDATE runs SET status = 'completed', last_eval = ?, acc_cls = 0.5 WHERE id = ?",
                      (json.dumps(last), row["id"]))
        store.close()
    store = RunStore(path)
    assert store.version == store_module.SCHEMA_VERSION
    snap = snapshot(store.run_row(row["id"]), tmp_path)
    assert (snap.selected_on, snap.selection, snap.selected_epoch, snap.acc_cls) == ("last", "last epoch", 2.0, 0.5)
    assert snap.val_acc is None and snap.note is None
    store.close()
