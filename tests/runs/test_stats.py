"""Paired delta statistics against hand computations."""

import math

import pytest

from gist_engine.runs.stats import ACCURACY_BOUNDS, DELTA_BOUNDS, interval_note, paired_delta, t_interval


def test_paired_delta_by_hand():
    plain, gist = [0.80, 0.82, 0.78], [0.83, 0.84, 0.80]
    d = [0.03, 0.02, 0.02]
    mean = sum(d) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)  # t(0.975, 2)
    t = mean / (std / math.sqrt(3))
    out = paired_delta(plain, gist)
    assert out["mean"] == pytest.approx(mean) and out["std"] == pytest.approx(std)
    assert out["ci_low"] == pytest.approx(mean - half) and out["ci_high"] == pytest.approx(mean + half)
    # two-sided p of t with 2 dof: 1 - t / sqrt(t^2 + 2)
    assert out["p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)


def test_one_seed_and_constant_deltas():
    out = paired_delta([0.5], [0.6])
    assert out["mean"] == pytest.approx(0.1) and out["std"] is None and out["p_value"] is None
    out = paired_delta([0.5, 0.6], [0.6, 0.7])
    assert out["std"] == pytest.approx(0.0, abs=1e-12) and out["p_value"] is None


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="equal-length"):
        paired_delta([0.1, 0.2], [0.3])


def test_t_interval_is_clipped_to_its_bounds_and_says_so():
    # 0%, 0%, 10%: mean 1/30, half-width t(0.975, 2) * std / sqrt(3) reaches below 0
    values = [0.0, 0.0, 0.1]
    mean = 0.1 / 3
    std = math.sqrt(((0 - mean) ** 2 * 2 + (0.1 - mean) ** 2) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)
    bare = t_interval(values)
    assert (bare.low, bare.high) == pytest.approx((mean - half, mean + half)) and not bare.clipped
    ci = t_interval(values, bounds=ACCURACY_BOUNDS)
    assert ci.low == 0.0 and ci.high == pytest.approx(mean + half) and ci.clipped and ci.note is None
    assert t_interval([1.0, 0.9, 1.0], bounds=ACCURACY_BOUNDS).high == 1.0
    d = paired_delta([0.0, 0.0], [1.0, 0.5])  # 2 seeds: the t-interval is [-2.43, +3.93]: clipped to [-1, 1]
    assert (d["ci_low"], d["ci_high"]) == (-1.0, 1.0) and d["clipped"] and d["note"] == interval_note(2)
    assert DELTA_BOUNDS == (-1.0, 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        t_interval([])
    with pytest.raises(ValueError, match="confidence"):
        t_interval([0.1, 0.2], confidence=95)
