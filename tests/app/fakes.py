"""An in-memory RunManager with the API of gist_engine.runs for fast AppTests."""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

import gist_engine as ge
from gist_engine.runs import RunSnapshot  # the real type: the fake differs only in behaviour

STEP_KEYS = ("ce_cls", "ce_gist", "kl_cls_gist", "kl_gist_cls", "interaction", "total", "lr",
             "images_per_second", "epoch")


def curves(steps: int, gist: bool, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for s in range(1, steps + 1):
        ce = 2.3 * math.exp(-s / (steps / 3)) + 0.05 * ((s * 7 + seed) % 5) / 5
        rows.append({"step": s, "ce_cls": ce, "ce_gist": ce * 1.1 if gist else 0.0,
                     "kl_cls_gist": 0.05 * ce if gist else 0.0, "kl_gist_cls": 0.04 * ce if gist else 0.0,
                     "interaction": 0.09 * ce if gist else 0.0, "total": ce * (1.62 if gist else 1.0),
                     "lr": 1e-3, "images_per_second": 40.0, "epoch": s / steps})
    acc = 0.80 + 0.02 * gist + 0.005 * seed
    evals = pd.DataFrame([{"step": steps, "epoch": 1.0, "acc_cls": acc, "acc_gist": acc - 0.01 if gist else None,
                           "agreement": 0.95 if gist else None, "per_class": {}}])
    return pd.DataFrame(rows), evals


class FakeRunManager:
    """Runs are finished (or left running) at once with synthetic curves; nothing trains."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs: dict[str, RunSnapshot] = {}
        self.frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
        self.group_meta: dict[str, dict] = {}
        self.stopped: list[str] = []
        self.store_problem: str | None = None  # as RunManager.store_problem: why the store takes no writes
        self._ids = itertools.count(1)

    # ---------------------------------------------------------------- helpers for tests
    def add(self, config: dict | None = None, status: str = "completed", steps: int = 30, done: int | None = None,
            group_id: str | None = None, error: str | None = None, name: str | None = None) -> str:
        cfg = ge.load_run_config(config or {"backbone": "test_vit", "image_size": 32, "method": "linear",
                                             "data": {"dataset": "digits"}})
        cfg_d = ge.to_dict(cfg)
        run_id = f"r{next(self._ids):04d}"
        done = steps if done is None else done
        metrics, evals = curves(steps, cfg.gist.enabled, cfg.train.seed)
        metrics = metrics[metrics.step <= done]
        evals = evals if status == "completed" else evals.iloc[0:0]
        last = evals.iloc[-1].to_dict() if len(evals) else None
        now = time.time() - 100 + len(self.runs)
        run_dir = self.root / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        self.runs[run_id] = RunSnapshot(
            id=run_id, name=name or cfg.name or f"{cfg.method}-{'gist' if cfg.gist.enabled else 'plain'}",
            status=status, created=now, started=now, finished=now + 5 if status not in ("queued", "running") else None,
            heartbeat=now, step=done, total_steps=steps, progress=done / steps,
            eta_seconds=None if status != "running" else 12.0, epoch=done / steps,
            latest=metrics.iloc[-1].to_dict() if len(metrics) else {}, last_eval=last,
            best_acc_cls=None if last is None else last["acc_cls"], acc_cls=None if last is None else last["acc_cls"],
            error=error, config_dict=cfg_d, seed=cfg.train.seed, gist_enabled=cfg.gist.enabled, method=cfg.method,
            group_id=group_id, trainable_params=2000 + (32 if cfg.gist.enabled else 0),
            gist_params=32 if cfg.gist.enabled else 0, run_dir=run_dir, versions={})
        self.frames[run_id] = (metrics, evals)
        return run_id

    def add_group(self, config: dict | None = None, seeds: int = 2) -> str:
        gid = f"g{next(self._ids):04d}"
        base = ge.load_run_config(config or {"backbone": "test_vit", "image_size": 32, "method": "linear",
                                             "data": {"dataset": "digits"}})
        for seed in range(seeds):
            for enabled in (False, True):
                cfg = ge.to_dict(base)
                cfg["train"]["seed"], cfg["gist"]["enabled"] = seed, enabled
                self.add(cfg, group_id=gid)
        self.group_meta[gid] = {"id": gid, "name": "fake group", "created": time.time(), "seeds": list(range(seeds)),
                                "config": ge.to_dict(base)}
        return gid

    # ---------------------------------------------------------------- the API
    def submit(self, config: Any, name: str | None = None) -> str:
        return self.add(config if isinstance(config, dict) else None, status="running", done=3, name=name)

    def submit_group(self, config: Any, seeds: int | list[int], name: str | None = None) -> str:
        return self.add_group(config, seeds if isinstance(seeds, int) else len(seeds))

    def stop(self, run_id: str) -> None:
        self.stopped.append(run_id)
        self.runs[run_id] = replace(self.get(run_id), status="stopped", eta_seconds=None)

    def stop_group(self, group_id: str) -> list[str]:
        if group_id not in self.group_meta:
            raise ge.RunNotFound(f"no group {group_id!r}")
        active = [r.id for r in self.list(group_id=group_id) if r.status in ("queued", "running")]
        for run_id in active:
            self.stop(run_id)
        return active

    def get(self, run_id: str) -> RunSnapshot:
        if run_id not in self.runs:
            raise ge.RunNotFound(run_id)
        return self.runs[run_id]

    def list(self, status: str | None = None, group_id: str | None = None, limit: int | None = None):
        out = [r for r in sorted(self.runs.values(), key=lambda r: -r.created)
               if (status is None or r.status == status) and (group_id is None or r.group_id == group_id)]
        return out[:limit] if limit else out

    def metrics(self, run_id: str, keys: list[str] | None = None, since_step: int = 0) -> pd.DataFrame:
        frame = self.frames[self.get(run_id).id][0]
        frame = frame[frame.step > since_step]
        return frame[["step", *(keys or STEP_KEYS)]].reset_index(drop=True)

    def evaluations(self, run_id: str) -> pd.DataFrame:
        return self.frames[self.get(run_id).id][1].copy()

    def delete(self, run_id: str) -> None:
        self.get(run_id)
        del self.runs[run_id]

    def groups(self) -> list[dict]:
        return [copy.deepcopy(g) for g in self.group_meta.values()]

    def group_results(self, group_id: str) -> dict:
        if group_id not in self.group_meta:  # as RunManager: a group deleted (with its runs) is not found
            raise ge.RunNotFound(f"no group {group_id!r}")
        runs = self.list(group_id=group_id)
        paired = ge.paired_result(reversed(runs))  # oldest first: the newest of a seed and arm counts
        return {**paired.to_dict(), "paired": paired, "runs": runs, "group": copy.deepcopy(self.group_meta[group_id])}

    def resume(self, run_id: str) -> str:
        return run_id

    def rerun(self, run_id: str) -> str:
        return self.add(self.get(run_id).config_dict, status="queued", done=0)

    def export(self, run_or_group_id: str, to: str = "csv", path: Path | None = None) -> Path:
        path = Path(path or self.root / f"{run_or_group_id}.csv")
        self.metrics(run_or_group_id).to_csv(path, index=False)
        return path

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        pass


def seeded(root: Path) -> FakeRunManager:
    """A fake with a paired group (2 seeds), a running run and a failed run."""
    mgr = FakeRunManager(root)
    mgr.add_group()
    mgr.add(status="failed", error="loss became non-finite at step 3 (total); try a lower train.lr", done=3)
    mgr.add(status="running", done=10, name="live-one")
    return mgr
