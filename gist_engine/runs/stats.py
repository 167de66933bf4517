"""The package's one t-interval (clipped to what the quantity can take) and the paired delta GIST - plain over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ACCURACY_BOUNDS = (0.0, 1.0)  # an accuracy (a fraction): its interval never leaves [0, 100] %
DELTA_BOUNDS = (-1.0, 1.0)  # a difference of two accuracies: never outside [-100, +100] points


@dataclass(frozen=True)
class Interval:
    """The mean of some values with its t-based confidence interval.

    `low`/`high` are None with fewer than two values; `clipped` says the t-interval reached past `bounds` and was
    cut there; `note` is a plain sentence when the interval cannot be read as a useful bound (one or two values).
    """

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None
    confidence: float
    bounds: tuple[float, float] | None
    clipped: bool
    note: str | None


def interval_note(n: int) -> str | None:
    """What a reader must know about an interval over `n` seeds, or None from 3 seeds on.

    With 1 value there is no interval; with 2 the t quantile of 1 degree of freedom is 12.71 (95%), so the interval
    spans about ±9 times the two values' spread: true, but too wide to bound anything usefully.
    """
    if n < 1:
        return None
    if n == 1:
        return "1 seed: no confidence interval (run 3 seeds or more)"
    if n == 2:
        return "2 seeds cannot bound the interval usefully (1 degree of freedom: ±12.7 standard errors); run 3 or more"
    return None


def clip_interval(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float, bool]:
    """(low, high, clipped): an interval cut to `bounds` (None: unchanged), and whether it reached past them.

    `t_interval` clips with it; so does a reader of numbers recorded before intervals were clipped (a gallery
    manifest), so both show the same interval.
    """
    if bounds is None:
        return low, high, False
    return max(low, bounds[0]), min(high, bounds[1]), low < bounds[0] or high > bounds[1]


def t_interval(values: Sequence[float], confidence: float = 0.95,
               bounds: tuple[float, float] | None = None) -> Interval:
    """Mean and Student-t confidence interval of the mean, clipped to `bounds`.

    Args:
        values: One number per seed (fractions for accuracies), at least one.
        confidence: Level of the two-sided interval, in (0, 1).
        bounds: What the quantity can take, e.g. `ACCURACY_BOUNDS` (0, 1) or `DELTA_BOUNDS` (-1, 1); the
            t-interval is clipped to it (a symmetric interval around a mean near a bound would otherwise promise
            accuracies below 0% or above 100%). None: not clipped.

    Returns:
        An `Interval`; std (ddof 1) and the bounds are None with one value.

    Raises:
        ValueError: no values, or a confidence outside (0, 1).
    """
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"t_interval needs a non-empty list of numbers, got shape {a.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(a.mean())
    if a.size < 2:
        return Interval(1, mean, None, None, None, confidence, bounds, False, interval_note(1))
    std = float(a.std(ddof=1))
    from scipy import stats  # imported here: scipy.stats takes ~1 s to import, and only comparisons need it

    half = float(stats.t.ppf(0.5 + confidence / 2, a.size - 1)) * std / math.sqrt(a.size)
    low, high, clipped = clip_interval(mean - half, mean + half, bounds)
    return Interval(int(a.size), mean, std, low, high, confidence, bounds, clipped, interval_note(int(a.size)))


def paired_t_p(deltas: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t-test (H0: the mean delta is 0), from the per-seed deltas.

    The same number as `scipy.stats.ttest_rel(gist, plain)`; None with fewer than two deltas or when every delta
    is equal (the t statistic is undefined).
    """
    d = np.asarray(deltas, dtype=float)
    if d.size < 2:
        return None
    std = float(d.std(ddof=1))
    if not std > 0:
        return None
    from scipy import stats  # imported here: see t_interval

    t = float(d.mean()) / (std / math.sqrt(d.size))
    return float(2 * stats.t.sf(abs(t), d.size - 1))


def paired_delta(plain: Sequence[float], gist: Sequence[float], confidence: float = 0.95,
                 bounds: tuple[float, float] | None = DELTA_BOUNDS) -> dict[str, Any]:
    """Statistics of `gist - plain` over paired seeds.

    Args:
        plain: Accuracy of the plain method per seed (a fraction).
        gist: Accuracy of the same method with GIST, same seeds, same order.
        confidence: Level of the t-based confidence interval.
        bounds: The interval is clipped to this range (default: a difference of two fractions, [-1, 1]).

    Returns:
        n, per-seed deltas, mean, std (ddof 1), the CI bounds (`t_interval`, clipped), the two-sided paired t-test
        p-value (`paired_t_p`), confidence, plain_mean, gist_mean, clipped (the t-interval was cut at a bound) and
        note (`interval_note`: 1 or 2 seeds); the spread figures are None with fewer than two seeds (and the
        p-value when every delta is equal).

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    a, b = np.asarray(plain, dtype=float), np.asarray(gist, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_delta needs two equal-length non-empty lists, got {a.shape} and {b.shape}")
    d = b - a
    ci = t_interval(d.tolist(), confidence, bounds)
    return {"n": ci.n, "deltas": d.tolist(), "mean": ci.mean, "std": ci.std, "ci_low": ci.low, "ci_high": ci.high,
            "p_value": paired_t_p(d.tolist()), "confidence": confidence, "plain_mean": float(a.mean()),
            "gist_mean": float(b.mean()), "clipped": ci.clipped, "note": ci.note}


__all__ = ["ACCURACY_BOUNDS", "DELTA_BOUNDS", "Interval", "clip_interval", "interval_note", "paired_delta",
           "paired_t_p", "t_interval"]
