"""The pages tell the story honestly: Compare's verdict and counts, Live's phases and end state, Resume/Rerun, and
the chart helpers (smoothing, the loss decomposition) they draw with."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from pathlib import Path

import fmt
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("streamlit")
import charts
from streamlit.testing.v1 import AppTest

import gist_engine as ge
from tests.app import fakes as app_fakes

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> app_fakes.FakeRunManager:
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    return app_fakes.FakeRunManager(tmp_path)


def open_page(manager, page: str, **query: str | list[str]) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["gist_manager"] = manager
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "error", "warning", "success")
                     for e in at.get(kind))


def noisy_group(fake: app_fakes.FakeRunManager, deltas: list[float]) -> str:
    """A 3-seed group whose GIST - plain deltas are `deltas` (accuracy, 0..1)."""
    gid = fake.add_group(seeds=len(deltas))
    for run in fake.list(group_id=gid):
        acc = 0.80 + (deltas[run.seed] if run.gist_enabled else 0.0)
        fake.runs[run.id] = dataclasses.replace(run, acc_cls=acc, best_acc_cls=acc)
    return gid


def values(v) -> list:
    """A plotly trace's x or y as a list (plotly 6 writes numpy arrays as base64 typed arrays)."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def spec(at: AppTest, title_part: str) -> dict:
    for chart in at.get("plotly_chart"):
        figure = json.loads(chart.proto.spec)
        if title_part in json.dumps(figure["layout"].get("title", "")):
            return figure
    raise AssertionError(f"no chart titled with {title_part!r}")


# ------------------------------------------------------------------------------------------------- Compare
def test_compare_headline_shows_ci_p_and_not_significant_for_a_noisy_group(fake) -> None:
    gid = noisy_group(fake, [0.01, -0.02, 0.005])
    at = open_page(fake, "views/compare.py", group=gid)
    metrics = {m.label: m.value for m in at.metric}
    d = ge.paired_delta([0.80] * 3, [0.81, 0.78, 0.805])
    assert metrics["GIST − plain"] == f"{100 * d['mean']:+.2f} points"
    assert metrics["95% CI (points)"] == f"[{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]"
    assert metrics["p-value"] == f"{d['p_value']:.3g}" and metrics["Seeds paired"] == "3"
    said = texts(at)
    assert f"Not significant with 3 seeds (p = {d['p_value']:.3g})" in said and "includes 0" in said
    assert "Too short to conclude: each run trained 1 epoch" in said and "Gist token starts random" in said


def test_compare_with_two_seeds_shows_the_clipped_interval_with_its_note(fake) -> None:
    gid = noisy_group(fake, [0.10, -0.08])  # 2 seeds, deltas far apart: the bare t-interval is about ±114 points
    at = open_page(fake, "views/compare.py", group=gid)
    metrics = {m.label: m.value for m in at.metric}
    d = ge.paired_delta([0.80] * 2, [0.90, 0.72])
    assert (d["ci_low"], d["ci_high"]) == (-1.0, 1.0) and d["clipped"]
    assert metrics["95% CI (points)"] == "[-100.00, +100.00]" and metrics["Seeds paired"] == "2"
    assert "2 seeds cannot bound the interval usefully" in texts(at)


def test_compare_any_runs_pairs_them_and_names_the_ones_without_a_partner(fake) -> None:
    gid = noisy_group(fake, [0.01, -0.02, 0.005])
    members = fake.list(group_id=gid)
    lone = fake.add({"backbone": "test_vit", "image_size": 32, "method": "linear", "data": {"dataset": "digits"},
                     "train": {"seed": 7}, "gist": {"enabled": False}})
    at = open_page(fake, "views/compare.py", runs=[r.id for r in members] + [lone])
    d = ge.paired_delta([0.80] * 3, [0.81, 0.78, 0.805])
    assert {m.label: m.value for m in at.metric}["GIST − plain"] == f"{100 * d['mean']:+.2f} points"
    assert f"Without a partner (shown in the curves only): {lone}" in texts(at)


def test_compare_counts_follow_the_runs_after_a_delete(fake) -> None:
    gid = noisy_group(fake, [0.01, -0.02, 0.005])
    at = open_page(fake, "views/compare.py", group=gid)
    assert "3 seeds paired" in at.selectbox[0].format_func(gid)
    fake.delete(next(r.id for r in fake.list(group_id=gid) if r.seed == 2 and r.gist_enabled))
    at = open_page(fake, "views/compare.py", group=gid)
    label = at.selectbox[0].format_func(gid)
    assert "2 seeds paired of 3" in label and "3 seeds paired" not in label
    assert {m.label: m.value for m in at.metric}["Seeds paired"] == "2"


def test_compare_plots_cross_entropy_for_both_arms_by_default_with_short_legends(fake) -> None:
    gid = fake.add_group(seeds=2)
    at = open_page(fake, "views/compare.py", group=gid)
    loss = spec(at, "Cross-entropy of the CLS head")
    assert sorted(t["name"] for t in loss["data"]) == ["seed 0 · GIST", "seed 0 · plain", "seed 1 · GIST",
                                                       "seed 1 · plain"]
    run = next(r for r in fake.list(group_id=gid) if r.gist_enabled and r.seed == 0)
    ce = fake.metrics(run.id, keys=["ce_cls"])["ce_cls"]
    trace = next(t for t in loss["data"] if t["name"] == "seed 0 · GIST")
    assert np.allclose(values(trace["y"]), charts.ema(ce, 0.6))  # CE of the CLS head, smoothed as the slider says
    assert loss["layout"]["legend"]["x"] > 1, "the legend sits right of the plot, clear of the title and axis titles"
    at.radio[0].set_value("total").run()
    assert spec(at, "Training objective (GIST: its total")
    labels = [b.label for b in at.get("download_button")]
    assert "Accuracy data (CSV)" in labels and "Loss data (CSV)" in labels


def test_compare_shows_accuracy_over_training_from_the_probe(fake) -> None:
    gid = fake.add_group(seeds=1)
    for run in fake.list(group_id=gid):
        metrics, test = fake.frames[run.id]
        probe = pd.DataFrame([{"step": s, "epoch": s / 30, "acc_cls": 0.1 + 0.02 * s * (1.2 if run.gist_enabled
                                                                                         else 1.0),
                               "acc_gist": None, "agreement": None, "n": 64, "per_class": {}, "split": "probe"}
                              for s in (0, 10, 20, 30)])
        fake.frames[run.id] = (metrics, pd.concat([test.assign(split="test", n=40), probe], ignore_index=True))
    at = open_page(fake, "views/compare.py", group=gid)
    acc = spec(at, "CLS-head accuracy on the probe")
    assert {t["name"]: values(t["x"]) for t in acc["data"]} == {"seed 0 · plain": [0, 10, 20, 30],
                                                                "seed 0 · GIST": [0, 10, 20, 30]}


# ------------------------------------------------------------------------------------------------- Live
def test_live_end_state_shows_the_metrics_row(fake) -> None:
    run_id = fake.add(config={"backbone": "test_vit", "image_size": 32, "method": "linear",
                              "data": {"dataset": "digits"}})
    fake.runs[run_id] = dataclasses.replace(fake.runs[run_id], acc_gist=0.656, agreement=0.776)
    at = open_page(fake, "views/live.py", run=run_id)
    metrics = {m.label: m.value for m in at.metric}
    assert list(metrics) == ["Test accuracy", "Gist head", "Agreement", "Wall time"]
    assert metrics["Test accuracy"] == "82.00%" and metrics["Gist head"] == "65.60%"
    assert metrics["Agreement"] == "77.60%" and metrics["Wall time"] == "5.0 s"  # as many decimals as the accuracies
    loss = spec(at, "Training objective = sum of the weighted terms")
    stacked = [t for t in loss["data"] if t.get("yaxis", "y") == "y"]
    assert [t["name"] for t in stacked] == ["CE (CLS head)", "0.5 · CE (Gist head)", "0.75 · KL(cls || gist)",
                                            "0.75 · KL(gist || cls)", "total"]
    # the knowledge interaction readable by default: the two weighted KL terms again, as lines on their own axis
    kl = [t for t in loss["data"] if t.get("yaxis") == "y2"]
    assert [t["name"] for t in kl] == ["0.75 · KL(cls || gist)", "0.75 · KL(gist || cls)"]
    assert all("stackgroup" not in t and t["showlegend"] is False for t in kl)
    assert {t["legendgroup"] for t in kl} <= {t.get("legendgroup") for t in stacked}, "one legend entry toggles both"
    assert loss["layout"]["annotations"][0]["text"].startswith("Knowledge interaction")
    assert loss["layout"]["yaxis2"]["title"]["text"] == "KL" and "range" not in loss["layout"]["yaxis2"]
    metrics = fake.metrics(run_id)
    assert np.allclose(values(kl[0]["y"]), 0.75 * metrics["kl_cls_gist"])  # weighted as in the total
    assert loss["layout"]["xaxis"]["tickformat"] == "d", "integer steps"
    plain = fake.add(config={"backbone": "test_vit", "gist": {"enabled": False}})
    at = open_page(fake, "views/live.py", run=plain)
    assert all(t.get("yaxis", "y") == "y" for t in spec(at, "Training objective (cross-entropy)")["data"])
    assert any("document.title" in h.proto.body for h in at.get("html")), "the browser tab's title"


def test_live_shows_a_failed_run_as_failed(fake) -> None:
    run_id = fake.add(status="failed", done=0, error="train_size=1000 but only 16 images are available for it")
    at = open_page(fake, "views/live.py", run=run_id)
    assert any("This run failed: train_size=1000" in e.value for e in at.error)
    said = texts(at)
    assert "Preparing" not in said and "failed before its first step" in said
    assert not at.get("progress")


def test_live_shows_a_full_disk_from_the_manager(fake) -> None:
    full = "disk full: free space in /data and rerun"
    run_id = fake.add(status="failed", done=3, error=full)  # as the live manager shows it before it is written
    fake.store_problem = full
    at = open_page(fake, "views/live.py", run=run_id)
    assert any(e.value == f"The run store takes no writes: {full}" for e in at.error)
    assert any(f"This run failed: {full}" in e.value for e in at.error)


def test_live_says_what_a_running_run_does(fake) -> None:
    run_id = fake.add(status="running", steps=32, done=32)
    run = fake.runs[run_id]
    fake.runs[run_id] = dataclasses.replace(run, phase={"name": "evaluating", "done": 128, "total": 500})
    at = open_page(fake, "views/live.py", run=run_id)
    bar = at.get("progress")[0].proto
    assert bar.text == "Evaluating 500 test images (128 / 500) after step 32" and bar.value == 25
    preparing = fake.add(status="running", steps=32, done=0)
    fake.runs[preparing] = dataclasses.replace(fake.runs[preparing], total_steps=0, progress=0.0)
    at = open_page(fake, "views/live.py", run=preparing)
    assert at.get("progress")[0].proto.text == "Preparing the data and the model"
    assert "step 0 / 0" not in texts(at)


def test_a_stopped_run_offers_resume_and_rerun(fake) -> None:
    run_id = fake.add(status="stopped", done=10)
    at = open_page(fake, "views/live.py", run=run_id)
    buttons = {b.label: b for b in at.button}
    assert buttons["Resume"].disabled, "no training state saved"
    (fake.runs[run_id].run_dir / fmt.STATE_FILE).write_bytes(b"state")
    at = open_page(fake, "views/live.py", run=run_id)
    assert not next(b for b in at.button if b.label == "Resume").disabled
    before = set(fake.runs)
    next(b for b in at.button if b.label == "Rerun").click().run()
    (new,) = set(fake.runs) - before
    assert at.query_params["run"] == new and fake.runs[new].config == fake.runs[run_id].config


# ------------------------------------------------------------------------------------------------- helpers
def test_ema_is_tensorboards_smoothing() -> None:
    x = np.array([1.0, 3.0, np.nan, 2.0, 5.0])
    assert np.array_equal(charts.ema(x, 0.0), x, equal_nan=True)
    assert np.allclose(charts.ema(np.full(6, 2.5), 0.9), 2.5), "debiased: a constant stays constant"
    w, last, want = 0.6, 0.0, []
    for i, v in enumerate([1.0, 3.0, 2.0, 5.0], start=1):
        last = w * last + (1 - w) * v
        want.append(last / (1 - w ** i))
    out = charts.ema(x, w)
    assert math.isnan(out[2]) and np.allclose(out[[0, 1, 3, 4]], want) and out[0] == 1.0
    with pytest.raises(ValueError, match="smoothing"):
        charts.ema(x, 1.0)


def test_a_long_run_is_drawn_with_bounded_points_keeping_its_spike_and_last_step() -> None:
    n = 50_000
    rng = np.random.default_rng(0)
    ce = 2.0 * np.exp(-np.arange(n) / 9000) + 0.05 * rng.random(n)
    metrics = pd.DataFrame({"step": np.arange(1, n + 1), "ce_cls": ce, "ce_gist": ce, "kl_cls_gist": 0.1 * ce,
                            "kl_gist_cls": 0.1 * ce, "interaction": 0.2 * ce})
    metrics.loc[31_337, "ce_cls"] = 40.0  # one spike
    metrics["total"] = metrics.ce_cls + 0.5 * metrics.ce_gist + 0.75 * metrics.interaction
    gist = dataclasses.asdict(ge.GistConfig())
    for options in ({}, {"smoothing": 0.6}, {"raw": True}, {"log": True}):
        fig = charts.loss_figure(metrics, gist, **options)
        xs = [np.asarray(t.x) for t in fig.data]
        assert all(len(x) <= charts.MAX_CURVE_POINTS for x in xs), [len(x) for x in xs]
        assert all(np.array_equal(x, xs[0]) for x in xs), "stacked traces share their steps"
        assert xs[0][-1] == n and 31_338 in xs[0]  # the newest step and the spike's
    total = next(t for t in charts.loss_figure(metrics, gist).data if t.name == "total")
    assert max(total.y) == pytest.approx(metrics["total"].max())
    small = metrics.iloc[:500]
    assert len(charts.loss_figure(small, gist).data[0].x) == 500  # a short run keeps every step
    assert list(charts.thin_rows([1.0, np.nan, 3.0], max_points=4)) == [0, 1, 2]


@pytest.mark.parametrize("loss", ["bkld", "kl", "reverse_kl", "js", "mse", "none"])
def test_loss_contributions_add_up_to_the_total(loss) -> None:
    gist = ge.GistConfig(loss=loss, ce_weight=0.4, loss_weight=0.7, temperature=2.0)
    g = torch.Generator().manual_seed(0)
    rows = []
    for step in range(1, 4):
        terms = ge.gist_loss(torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g),
                             torch.randint(0, 5, (8,), generator=g), gist)
        rows.append({"step": step, **{k: float(v) for k, v in terms.items()}})
    metrics = pd.DataFrame(rows)
    parts = charts.loss_contributions(metrics, dataclasses.asdict(gist))
    assert np.allclose(parts.drop(columns="step").sum(axis=1), metrics["total"], rtol=1e-6)
    plain = charts.loss_contributions(metrics, {**dataclasses.asdict(gist), "enabled": False})
    assert list(plain.columns) == ["step", "CE (CLS head)"]


def test_verdict_words() -> None:
    one = fmt.verdict(ge.paired_delta([0.8], [0.82]), epochs=4)
    assert "One paired seed" in one["statement"] and one["significant"] is None
    sure = fmt.verdict(ge.paired_delta([0.80, 0.81, 0.79, 0.80], [0.85, 0.86, 0.83, 0.85]), epochs=4)
    assert sure["significant"] and sure["statement"].startswith("Significant at the 5% level with 4 seeds")
    assert "GIST is better" in sure["statement"] and not sure["warnings"]
    assert fmt.verdict(None, epochs=1)["warnings"], "one epoch: too short, even before any pair"


def test_the_longer_comparison_preset_is_the_demo_over_4_epochs() -> None:
    demo = yaml.safe_load((ROOT / "assets" / "configs" / "demo_cpu.yaml").read_text())
    longer = yaml.safe_load((ROOT / "assets" / "configs" / "demo_cpu_4epochs.yaml").read_text())
    for cfg in (demo, longer):
        cfg.pop("name")
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in ("epochs", "probe_every")}
    assert demo == longer
    assert ge.load_run_config(ROOT / "assets" / "configs" / "demo_cpu_4epochs.yaml").train.epochs == 4
