"""Paired statistics of GIST against the plain method over seeds: mean delta, std, 95% CI, paired t-test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def paired_delta(plain: Sequence[float], gist: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Statistics of `gist - plain` over paired seeds.

    Args:
        plain: Accuracy of the plain method per seed.
        gist: Accuracy of the same method with GIST, same seeds, same order.
        confidence: Level of the t-based confidence interval.

    Returns:
        n, per-seed deltas, mean, std (ddof 1), the CI bounds and the two-sided paired t-test p-value; the
        spread figures are None with fewer than two seeds (and the p-value when every delta is equal).
    """
    a, b = np.asarray(plain, dtype=float), np.asarray(gist, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_delta needs two equal-length non-empty lists, got {a.shape} and {b.shape}")
    d = b - a
    out: dict[str, Any] = {"n": int(d.size), "deltas": d.tolist(), "mean": float(d.mean()), "std": None,
                           "ci_low": None, "ci_high": None, "p_value": None, "confidence": confidence,
                           "plain_mean": float(a.mean()), "gist_mean": float(b.mean())}
    if d.size < 2:
        return out
    std = float(d.std(ddof=1))
    from scipy import stats  # imported here: scipy.stats takes ~1 s to import, and only comparisons need it

    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1)) * std / math.sqrt(d.size)
    out.update(std=std, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    if std > 0:
        out["p_value"] = float(stats.ttest_rel(b, a).pvalue)
    return out


__all__ = ["paired_delta"]
