"""Shared pieces of the study tests: a 2 x 2 x 2-seed spec on the tiny test ViT, the toy data, injected failures."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from gist_engine.train import Callback
from tests.toydata import squares_splits

# 64 toy images at batch 16: 4 steps an epoch, 8 in all; a training state after epoch 1 (step 4).
BASE = {"backbone": "test_vit", "pretrained": False, "image_size": 32, "method": "lora", "gist": {"dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "device": "cpu", "cpu_threads": 1,
                  "checkpoint_every": 1}}


def spec(name: str = "tiny", **extra) -> dict:
    """A 2 x 2 grid (temperature x LoRA rank) x 2 seeds, paired: 12 runs (the plain arm shared across temperatures)."""
    return {"name": name, "base": BASE, "grid": {"gist.temperature": [1, 3], "method_args.rank": [2, 4]},
            "seeds": 2, **extra}


def toy_data(config):
    """The data loader of the tests (picklable by reference, so Ray workers use it too)."""
    return squares_splits(64, 32)


class FailOnce(Callback):
    """At `step` of its first attempt (a marker file in the run directory), the run fails: `raise` raises an error
    in the trainer; `kill` kills the worker process (SIGKILL), as a lost node or the OOM killer would."""

    def __init__(self, run_dir: Path, step: int, how: str, always: bool = False) -> None:
        self.marker, self.step, self.how, self.always = Path(run_dir) / "failed-once", step, how, always

    def on_step_end(self, trainer, step, metrics):
        if step != self.step or (self.marker.exists() and not self.always):
            return
        self.marker.write_text(str(step))
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected failure at step {step}")


class FailRuns:
    """A `callbacks` factory: FailOnce for runs whose name contains `name_part` (picklable for Ray)."""

    def __init__(self, name_part: str, step: int = 6, how: str = "raise", always: bool = False) -> None:
        self.name_part, self.step, self.how, self.always = name_part, step, how, always

    def __call__(self, config, run_dir):
        if self.name_part in (config.name or ""):
            return [FailOnce(run_dir, self.step, self.how, self.always)]
        return []


def run_metrics(root) -> dict[str, tuple]:
    """name -> (final accuracies, every step's loss terms) of every run in the store under `root`."""
    import sqlite3

    conn = sqlite3.connect(Path(root) / "runs.sqlite3")
    try:
        out = {}
        for rid, name, acc, best, gist, agree, step in conn.execute(
                "SELECT id, name, acc_cls, best_acc_cls, acc_gist, agreement, step FROM runs"):
            steps = conn.execute("SELECT step, key, value FROM metrics WHERE run_id = ? AND key != "
                                 "'images_per_second' ORDER BY step, key", (rid,)).fetchall()
            out[name] = ((acc, best, gist, agree, step), steps)
        return out
    finally:
        conn.close()
