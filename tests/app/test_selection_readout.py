"""The app labels a run whose epoch the test split chose: "selected on test (optimistic)" on Live and Runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

from tests.app import fakes as app_fakes
from tests.app.test_app import open_page


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> app_fakes.FakeRunManager:
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    return app_fakes.seeded(tmp_path)


def test_live_and_runs_pages_label_a_selection_on_test(fake) -> None:
    run_id = next(s.id for s in fake.list() if s.status == "completed")
    note = "early stop after 2 evaluations without a validation gain (best validation accuracy 61.00% at epoch 2)"
    fake.runs[run_id] = replace(fake.get(run_id), selected_on="test", selection="selected on test (optimistic)",
                                selected_epoch=2.0, val_acc=0.61, note=note)
    at = open_page(fake, "views/live.py", run=run_id)
    metrics = {m.label: m.value for m in at.metric}
    assert "Test accuracy, selected on test (optimistic)" in metrics and metrics["Validation accuracy"] == "61.00%"
    assert any(note in c.value for c in at.caption)
    at = open_page(fake, "views/runs.py")
    table = at.dataframe[0].value
    assert table.set_index("id").loc[run_id, "selected on"] == "test (optimistic)"


def test_the_accuracy_chart_draws_the_validation_curve() -> None:
    import charts
    import pandas as pd

    rows = [{"step": s, "epoch": e, "acc_cls": a, "acc_gist": None, "agreement": None, "n": n, "per_class": {},
             "split": split} for s, e, a, n, split in ((4, 1, 0.5, 32, "test"), (4, 1, 0.55, 24, "val"),
                                                      (8, 2, 0.6, 24, "val"))]
    fig = charts.accuracy_figure(pd.DataFrame(rows))
    val = next(t for t in fig.data if t.name == "accuracy, CLS head (validation)")
    assert list(val.x) == [4, 8] and list(val.y) == pytest.approx([55.0, 60.0])
    assert "validation (squares)" in fig.layout.title.text
