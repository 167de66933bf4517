"""Paired delta statistics against hand computations."""

import math

import pytest

from gist_engine.runs.stats import paired_delta


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
