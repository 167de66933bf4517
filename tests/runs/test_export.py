"""Export of runs and groups: CSV and Parquet round trips, MLflow when installed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gist_engine.runs import RunError, read_export
from tests.runs.helpers import config


def test_export_round_trips_csv_and_parquet(manager_factory, tmp_path):
    mgr = manager_factory()
    group_id = mgr.submit_group(config(epochs=2), seeds=2)
    for s in mgr.list():
        mgr.wait(s.id, timeout=60)
    snaps = mgr.list()
    run_id = snaps[0].id
    for fmt in ("csv", "parquet"):
        out = mgr.export(run_id, to=fmt, path=tmp_path / "folder")
        assert out == tmp_path / "folder" / f"{run_id}.{fmt}"
        back = read_export(out)
        pd.testing.assert_frame_equal(back["metrics"], mgr.metrics(run_id), check_exact=False, rtol=1e-12)
        pd.testing.assert_frame_equal(back["evaluations"], mgr.evaluations(run_id).drop(columns="split"),
                                      check_exact=False, rtol=1e-12)
        assert json.loads(out.with_name(out.name + ".json").read_text())["id"] == run_id

        out = mgr.export(group_id, to=fmt, path=tmp_path / f"group.{fmt}")
        back = read_export(out)
        assert set(back["metrics"]["run_id"]) == {s.id for s in snaps}
        for s in snaps:
            mine = back["metrics"][back["metrics"]["run_id"] == s.id].drop(columns="run_id").reset_index(drop=True)
            pd.testing.assert_frame_equal(mine, mgr.metrics(s.id), check_exact=False, rtol=1e-12)
            evals = back["evaluations"][back["evaluations"]["run_id"] == s.id].drop(columns="run_id")
            assert evals["acc_cls"].tolist() == mgr.evaluations(s.id)["acc_cls"].tolist()
        side = json.loads(out.with_name(out.name + ".json").read_text())
        assert side["delta_acc_cls"]["n"] == 2 and [r["seed"] for r in side["seeds"]] == [0, 1]
        assert side["delta_acc_cls"] == pytest.approx(mgr.group_results(group_id)["delta_acc_cls"])
    default = mgr.export(run_id)
    assert default == mgr.root / "exports" / f"{run_id}.csv" and default.is_file()
    try:
        import mlflow  # noqa: F401
    except ImportError:
        with pytest.raises(RunError, match="pip install mlflow"):
            mgr.export(run_id, to="mlflow")


def test_export_to_mlflow_when_installed(manager_factory, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    mgr = manager_factory()
    run_id = mgr.submit(config(epochs=1))
    mgr.wait(run_id, timeout=60)
    mid = mgr.export(run_id, to="mlflow", path=tmp_path / "mlruns")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    history = client.get_metric_history(mid, "total")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert client.get_run(mid).data.params["method"] == "lora"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    again = mgr.export(run_id, to="mlflow")  # the default: a folder beside the CSV exports, not the working dir
    client = MlflowClient(tracking_uri=(mgr.root / "exports" / "mlruns").resolve().as_uri())
    assert client.get_run(again).data.params["method"] == "lora"

    group_id = mgr.submit_group(config(epochs=1), seeds=2)  # a group: a parent run, one nested run per member
    for s in mgr.list():
        mgr.wait(s.id, timeout=60)
    parent = mgr.export(group_id, to="mlflow", path=tmp_path / "mlruns")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    assert client.get_run(parent).data.params["seeds"] == "[0, 1]"
    assert "delta_acc_cls_mean" in client.get_run(parent).data.metrics
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 4  # each seed with GIST off and on
