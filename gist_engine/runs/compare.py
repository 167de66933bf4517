"""Paired comparisons: the same config with GIST off and on, over seeds, on one load of the data."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import RunConfig, load_run_config, to_dict
from ..train import Callback, Trainer, TrainResult
from .stats import paired_delta

ACCURACY_KEYS = ("acc_cls", "best_acc_cls")


def paired_configs(config: RunConfig | dict[str, Any], seeds: int, first_seed: int | None = None
                   ) -> list[tuple[int, bool, RunConfig]]:
    """(seed, gist_enabled, config) for every run of a comparison: plain then GIST per seed.

    Both runs of a seed share train.seed (same init of shared parameters, same data order), the data and the
    schedule; only `gist.enabled` differs.
    """
    base = load_run_config(config)
    start = base.train.seed if first_seed is None else first_seed
    runs = []
    for seed in range(start, start + seeds):
        for enabled in (False, True):
            cfg = copy.deepcopy(base)
            cfg.train.seed = seed
            cfg.gist.enabled = enabled
            cfg.name = f"{base.name or base.method}-{'gist' if enabled else 'plain'}-seed{seed}"
            runs.append((seed, enabled, cfg))
    return runs


def summarise(results: list[tuple[int, bool, TrainResult]]) -> dict[str, Any]:
    """Per-seed accuracies and the paired delta statistics (final and best accuracy)."""
    by_seed: dict[int, dict[str, TrainResult]] = {}
    for seed, enabled, result in results:
        by_seed.setdefault(seed, {})["gist" if enabled else "plain"] = result
    rows = []
    for seed, pair in sorted(by_seed.items()):
        if set(pair) != {"plain", "gist"}:
            continue
        row = {"seed": seed}
        for arm, r in pair.items():
            row.update({f"{arm}_{k}": getattr(r, k) for k in ACCURACY_KEYS})
            row[f"{arm}_status"] = r.status
            row[f"{arm}_trainable_params"] = r.trainable_params
        row["gist_acc_gist"], row["gist_agreement"] = pair["gist"].acc_gist, pair["gist"].agreement
        rows.append(row)
    complete = [r for r in rows if all(r[f"{a}_{k}"] is not None for a in ("plain", "gist") for k in ACCURACY_KEYS)]
    out: dict[str, Any] = {"seeds": rows}
    for key in ACCURACY_KEYS:
        out[f"delta_{key}"] = (paired_delta([r[f"plain_{key}"] for r in complete], [r[f"gist_{key}"] for r in complete])
                               if complete else None)
    if rows:
        out["extra_params"] = rows[0]["gist_trainable_params"] - rows[0]["plain_trainable_params"]
    return out


def format_table(summary: dict[str, Any]) -> str:
    """A small text table: per-seed accuracies (%) and the mean delta with its 95% CI and p-value."""
    lines = [f"{'seed':>4}  {'plain':>7}  {'GIST':>7}  {'delta':>7}   (final test accuracy, %; best in brackets)"]
    for r in summary["seeds"]:
        p, g = r["plain_acc_cls"], r["gist_acc_cls"]
        if p is None or g is None:
            lines.append(f"{r['seed']:>4}  {r['plain_status']:>7}  {r['gist_status']:>7}")
            continue
        lines.append(f"{r['seed']:>4}  {100 * p:7.2f}  {100 * g:7.2f}  {100 * (g - p):+7.2f}   "
                     f"[{100 * r['plain_best_acc_cls']:.2f} / {100 * r['gist_best_acc_cls']:.2f}]")
    d = summary.get("delta_acc_cls")
    if d:
        spread = (f" ± {100 * d['std']:.2f} (std), 95% CI [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}], "
                  f"p = {d['p_value']:.3g}" if d["std"] is not None and d["p_value"] is not None else "")
        lines.append(f"mean delta {100 * d['mean']:+.2f} points over {d['n']} seed(s){spread}; GIST adds "
                     f"{summary.get('extra_params', 0):,} trainable parameters")
    return "\n".join(lines)


def run_compare(config: RunConfig | dict[str, Any], seeds: int, out_dir: str | Path | None = None,
                callbacks: Callable[[int, bool, RunConfig], list[Callback]] | None = None,
                should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train plain and GIST for `seeds` seeds on one load of the data; returns (and writes) compare.json's dict."""
    data = None
    results = []
    for seed, enabled, cfg in paired_configs(config, seeds):
        run_dir = Path(out_dir) / cfg.name if out_dir is not None else None
        trainer = Trainer(cfg, callbacks=callbacks(seed, enabled, cfg) if callbacks else (),
                          should_stop=should_stop, run_dir=run_dir, data=data)
        trainer.setup()
        data = trainer.data
        result = trainer.run()
        results.append((seed, enabled, result))
        if result.status == "stopped":
            break
    summary = summarise(results)
    summary["config"] = to_dict(load_run_config(config))
    summary["runs"] = [{"seed": s, "gist": e, "status": r.status, "acc_cls": r.acc_cls, "best_acc_cls": r.best_acc_cls,
                        "acc_gist": r.acc_gist, "agreement": r.agreement, "steps": r.steps,
                        "train_seconds": r.train_seconds, "images_per_second": r.images_per_second,
                        "error": r.error} for s, e, r in results]
    return summary


__all__ = ["ACCURACY_KEYS", "format_table", "paired_configs", "run_compare", "summarise"]
