"""The verdict object against hand computations: 2, 3 and 10 seeds, intervals clipped at 0% and 100%, the runs left
over, and the text the CLI prints."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from gist_engine.runs.pairs import ArmRun, PairedResult, format_table, paired_result
from gist_engine.runs.stats import interval_note

T975 = {1: 12.706204736174704, 2: 4.302652729911275, 9: 2.2621571627409915}  # Student t, 0.975 quantile, by dof


def runs(plain: list[float], gist: list[float], first_seed: int = 0, status: str = "completed") -> list[ArmRun]:
    """A plain and a GIST run per seed, acc_cls = best_acc_cls = the given accuracy (a fraction)."""
    out = []
    for i, (p, g) in enumerate(zip(plain, gist, strict=True)):
        out.append(ArmRun(first_seed + i, False, status, {"acc_cls": p, "best_acc_cls": p}, 1000, f"p{i}"))
        out.append(ArmRun(first_seed + i, True, status, {"acc_cls": g, "best_acc_cls": g, "acc_gist": g - 0.01,
                                                         "agreement": 0.9}, 1384, f"g{i}"))
    return out


def test_two_seeds_by_hand_with_the_note():
    res = paired_result(runs([0.50, 0.60], [0.52, 0.66]))
    d = res.delta("acc_cls")
    # deltas 0.02, 0.06: mean 0.04, std sqrt(((0.02)^2 + (0.02)^2) / 1) = 0.02 * sqrt(2); t = 0.04 / (std / sqrt 2) = 2
    std = 0.02 * math.sqrt(2)
    half = T975[1] * std / math.sqrt(2)
    assert d["n"] == 2 and d["deltas"] == pytest.approx([0.02, 0.06]) and d["mean"] == pytest.approx(0.04)
    assert d["std"] == pytest.approx(std) and (d["ci_low"], d["ci_high"]) == pytest.approx((0.04 - half, 0.04 + half))
    assert d["p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(2.0))  # two-sided p of t = 2, 1 dof
    assert not d["clipped"] and d["note"] == interval_note(2) and "2 seeds cannot bound" in d["note"]
    assert res.extra_params == 384 and res.plain_params == 1000 and res.n == 2
    assert res.unpaired == () and res.replaced == ()
    text = format_table(res)
    assert "2 seeds cannot bound the interval usefully" in text
    assert f"95% CI [{100 * (0.04 - half):+.2f}, {100 * (0.04 + half):+.2f}]" in text
    assert "GIST adds 384 trainable parameters" in text


def test_three_seeds_at_0_and_100_percent_are_clipped():
    plain, gist = [0.0, 0.0, 0.1], [1.0, 1.0, 0.8]  # deltas 1, 1, 0.7
    res = paired_result(runs(plain, gist))
    d = res.delta("acc_cls")
    mean, std = 0.9, math.sqrt((0.1 ** 2 + 0.1 ** 2 + 0.2 ** 2) / 2)
    half = T975[2] * std / math.sqrt(3)
    assert d["mean"] == pytest.approx(mean) and d["std"] == pytest.approx(std)
    assert d["ci_low"] == pytest.approx(mean - half) and mean + half > 1.0
    assert d["ci_high"] == 1.0 and d["clipped"] and d["note"] is None  # [-1, +1] = [-100, +100] points
    t = mean / (std / math.sqrt(3))
    assert d["p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2))  # two-sided p of t with 2 dof
    # each arm's accuracy interval stays in [0, 1]
    p_ci, g_ci = res.arms["plain"]["acc_cls"], res.arms["gist"]["acc_cls"]
    p_std, g_std = float(np.std(plain, ddof=1)), float(np.std(gist, ddof=1))
    assert p_ci.mean == pytest.approx(0.1 / 3) and p_ci.low == 0.0 and p_ci.clipped
    assert p_ci.high == pytest.approx(0.1 / 3 + T975[2] * p_std / math.sqrt(3))
    assert g_ci.mean == pytest.approx(2.8 / 3) and g_ci.high == 1.0 and g_ci.clipped
    assert g_ci.low == pytest.approx(2.8 / 3 - T975[2] * g_std / math.sqrt(3))
    assert res.arms["gist"]["acc_gist"].mean == pytest.approx(2.8 / 3 - 0.01)
    assert "(clipped to the possible range)" in format_table(res)
    # the mirror image: GIST at 0%, plain at 100%: the interval stops at -100 points
    low = paired_result(runs(gist, plain)).delta("acc_cls")
    assert low["ci_low"] == -1.0 and low["ci_high"] == pytest.approx(-mean + half) and low["clipped"]


def test_ten_seeds_by_hand():
    rng = np.random.default_rng(7)
    plain = rng.uniform(0.6, 0.8, 10)
    gist = plain + rng.normal(0.01, 0.02, 10)
    res = paired_result(runs(plain.tolist(), gist.tolist()))
    d = res.delta("best_acc_cls")
    delta = gist - plain
    half = T975[9] * delta.std(ddof=1) / math.sqrt(10)
    assert d["n"] == 10 and d["mean"] == pytest.approx(delta.mean())
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((delta.mean() - half, delta.mean() + half))
    assert d["p_value"] == pytest.approx(stats.ttest_rel(gist, plain).pvalue)
    assert d["note"] is None and not d["clipped"] and res.n == 10
    assert [r["seed"] for r in res.to_dict()["seeds"]] == list(range(10))


def test_unpaired_replaced_and_unfinished_runs_are_reported_not_counted():
    base = runs([0.5, 0.6, 0.7], [0.55, 0.62, 0.8])
    lone = ArmRun(5, False, "completed", {"acc_cls": 0.4, "best_acc_cls": 0.4}, 1000, "lone")
    rerun = ArmRun(2, True, "completed", {"acc_cls": 0.75, "best_acc_cls": 0.75}, 1384, "rerun")  # replaces g2
    running = [ArmRun(6, False, "running", {}, None, "r6p"), ArmRun(6, True, "stopped", {"acc_cls": 0.9}, 1384, "r6g")]
    other = ArmRun(0, True, "completed", {"acc_cls": 0.99}, 1384, "other-config", key="lr=1")
    res = paired_result([*base, lone, rerun, *running, other])
    assert [r.id for r in res.unpaired] == ["lone", "other-config"] and [r.id for r in res.replaced] == ["g2"]
    assert [p.seed for p in res.pairs] == [0, 1, 2, 6]
    d = res.delta("acc_cls")
    assert d["n"] == 3 and d["deltas"] == pytest.approx([0.05, 0.02, 0.05])  # seed 6 (running/stopped) is out
    assert res.pairs[-1].delta("acc_cls") is None
    # the lone plain run counts in its arm's mean; the stopped GIST run does not
    assert res.arms["plain"]["acc_cls"].n == 4 and res.arms["gist"]["acc_cls"].n == 4
    out = res.to_dict()
    assert out["unpaired"] == ["lone", "other-config"] and out["replaced"] == ["g2"]
    assert out["seeds"][-1]["plain_status"] == "running" and out["seeds"][-1]["gist_acc_cls"] is None
    assert "without a partner: lone, other-config" in format_table(res)
    assert "   6  running  stopped" in format_table(res)


def test_snapshots_pair_by_config_and_seed():
    class Snap:
        def __init__(self, run_id, seed, gist, acc, lr=1e-3, status="completed"):
            self.id, self.seed, self.gist_enabled, self.status = run_id, seed, gist, status
            self.acc_cls = self.best_acc_cls = acc
            self.acc_gist = self.agreement = None
            self.last_eval = {"acc_gist": acc - 0.02, "agreement": 0.8} if gist else {}
            self.trainable_params = 100 + 32 * gist
            self.config = {"name": run_id, "train": {"seed": seed, "lr": lr}, "gist": {"enabled": gist}}

    res = paired_result([Snap("a", 0, False, 0.5), Snap("b", 0, True, 0.6), Snap("c", 1, False, 0.5),
                         Snap("d", 1, True, 0.7), Snap("e", 0, True, 0.9, lr=1.0)])
    assert res.delta("acc_cls")["mean"] == pytest.approx(0.15) and [r.id for r in res.unpaired] == ["e"]
    assert res.to_dict()["seeds"][0]["gist_acc_gist"] == pytest.approx(0.58)  # from last_eval


def test_a_plain_run_pairs_with_gist_runs_that_differ_only_in_gist_keys():
    class Snap:
        def __init__(self, run_id, seed, gist, acc, temperature=3.0, lr=1e-3):
            self.id, self.seed, self.gist_enabled, self.status = run_id, seed, gist, "completed"
            self.acc_cls = self.best_acc_cls = acc
            self.acc_gist = self.agreement = self.trainable_params = None
            self.config = {"name": run_id, "train": {"seed": seed, "lr": lr},
                           "gist": {"enabled": gist, "temperature": temperature}}

    # one plain run per seed (recorded at T = 1) serves GIST at T = 3 and T = 5; another lr pairs with nothing
    res = paired_result([Snap("p0", 0, False, 0.5, 1.0), Snap("p1", 1, False, 0.6, 1.0),
                         Snap("g0t3", 0, True, 0.55), Snap("g1t3", 1, True, 0.7),
                         Snap("g0t5", 0, True, 0.45, 5.0), Snap("g1t5", 1, True, 0.6, 5.0),
                         Snap("lr", 0, True, 0.9, lr=1.0)])
    assert [(p.plain.id, p.gist.id) for p in res.pairs] == [("p0", "g0t3"), ("p1", "g1t3"), ("p0", "g0t5"),
                                                              ("p1", "g1t5")]
    assert res.delta("acc_cls")["deltas"] == pytest.approx([0.05, 0.1, -0.05, 0.0])
    assert [r.id for r in res.unpaired] == ["lr"] and not res.replaced
    assert res.arms["plain"]["acc_cls"].n == 2 and res.arms["plain"]["acc_cls"].mean == pytest.approx(0.55)
    # a plain run of the GIST run's own config (a study stored per cell) is preferred over one of another T
    res = paired_result([Snap("p0t1", 0, False, 0.5, 1.0), Snap("p0t3", 0, False, 0.52), Snap("g0t3", 0, True, 0.6)])
    assert [(p.plain.id, p.gist.id) for p in res.pairs] == [("p0t3", "g0t3")] and [r.id for r in res.unpaired] == [
        "p0t1"]


def test_one_seed_and_bad_metrics():
    res = paired_result(runs([0.5], [0.6]))
    d = res.delta("acc_cls")
    assert d["ci_low"] is None and d["p_value"] is None and d["note"] == interval_note(1)
    assert "1 seed: no confidence interval" in format_table(res)
    assert paired_result([]).delta("acc_cls") is None and paired_result([]).n == 0
    with pytest.raises(ValueError, match="acc_gist"):
        paired_result([], metrics=("acc_gist",))
    with pytest.raises(KeyError, match="no delta"):
        paired_result([], metrics=("acc_cls",)).delta("best_acc_cls")


def test_the_verdict_module_imports_no_torch():
    # the package's __init__ imports torch today; the verdict modules themselves must not: load them bare
    code = ("import importlib.util, sys, types\n"
            "pkg = types.ModuleType('gist_engine'); pkg.__path__ = ['gist_engine']; sys.modules['gist_engine'] = pkg\n"
            "runs = types.ModuleType('gist_engine.runs'); runs.__path__ = ['gist_engine/runs']\n"
            "sys.modules['gist_engine.runs'] = runs\n"
            "import gist_engine.runs.pairs\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__file__.rsplit("/tests/", 1)[0])
    assert out.stdout.strip() == "False"


def test_to_dict_is_json_ready():
    res = paired_result(runs([0.5, 0.6, 0.7], [0.55, 0.62, 0.8]))
    assert isinstance(res, PairedResult)
    back = json.loads(json.dumps(res.to_dict()))
    assert back["delta_acc_cls"]["n"] == 3 and back["arms"]["gist"]["acc_cls"]["n"] == 3


def test_points_never_prints_a_negative_zero():
    """A tuned study whose arms tie (both chose the same values) has a delta of -2e-8: it reads '+0.00', not '-0.00'."""
    from gist_engine.runs.pairs import points
    from gist_engine.studies.results import _points

    assert [points(v) for v in (-1.98e-8, 0.0, 0.0123, -0.0123)] == ["+0.00", "+0.00", "+1.23", "-1.23"]
    assert (points(0.9407, signed=False), points(None), _points(None), _points(-1e-9)) == ("94.07", "n/a", "-", "+0.00")
