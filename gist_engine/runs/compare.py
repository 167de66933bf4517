"""Paired comparisons: the same config with GIST off and on, over seeds, on one load of the data."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, load_run_config, to_dict
from ..status import RunStatus
from ..train import Callback, Trainer, TrainResult
from .pairs import DELTA_METRICS, RUN_METRICS, ArmRun, format_table, paired_result

ACCURACY_KEYS = DELTA_METRICS  # the metrics a comparison takes the delta of


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


def seed_list(first: int, seeds: int | Sequence[int]) -> list[int]:
    """The seeds of a paired comparison: `seeds` seeds from `first` on, or an explicit list of distinct seeds >= 0.

    Raises:
        ConfigError: fewer than one seed, a repeated seed or a negative one.
    """
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds: need at least one seed, got {seeds}")
        return list(range(first, first + seeds))
    out = [int(s) for s in seeds]
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise ConfigError(f"seeds: need distinct seeds >= 0, got {out}")
    return out


def summarise(results: list[tuple[int, bool, TrainResult]]) -> dict[str, Any]:
    """`paired_result` of foreground runs, (seed, gist_enabled, TrainResult) each, as its JSON-ready dict
    (`PairedResult.to_dict`: seeds, delta_acc_cls, delta_best_acc_cls, extra_params, ...) plus `paired`, the
    `PairedResult` itself (`format_table` reads it; leave it out when writing JSON)."""
    paired = paired_result(ArmRun(seed=seed, gist=enabled, status=r.status, trainable_params=r.trainable_params,
                                  metrics={k: getattr(r, k) for k in RUN_METRICS}) for seed, enabled, r in results)
    return {**paired.to_dict(), "paired": paired}


def run_compare(config: RunConfig | dict[str, Any], seeds: int, out_dir: str | Path | None = None,
                callbacks: Callable[[int, bool, RunConfig], list[Callback]] | None = None,
                should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train plain and GIST for `seeds` seeds on one load of the data.

    Returns:
        `summarise`'s dict plus `config` and `runs` (per run its seed, arm, status, accuracies, steps, speed,
        error): compare.json without `paired` (the `PairedResult`, which `format_table` prints).
    """
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
        if result.status == RunStatus.STOPPED:
            break
    summary = summarise(results)
    summary["config"] = to_dict(load_run_config(config))
    summary["runs"] = [{"seed": s, "gist": e, "status": r.status, "acc_cls": r.acc_cls, "best_acc_cls": r.best_acc_cls,
                        "acc_gist": r.acc_gist, "agreement": r.agreement, "steps": r.steps,
                        "train_seconds": r.train_seconds, "images_per_second": r.images_per_second,
                        "error": r.error} for s, e, r in results]
    return summary


__all__ = ["ACCURACY_KEYS", "format_table", "paired_configs", "run_compare", "seed_list", "summarise"]
