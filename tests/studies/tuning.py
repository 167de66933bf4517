"""Pieces of the tuned-study tests: a tiny tuned spec, toy data with a validation split that logs its reads."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import pytest

from gist_engine.config import TrainConfig
from gist_engine.data import DatasetSplits, TensorSplit
from gist_engine.studies import tune
from gist_engine.train import Callback
from tests.studies.helpers import BASE
from tests.toydata import HALF, NAMES, squares

TUNE = {"space": {"train.lr": {"loguniform": [1.0e-3, 3.0e-2]}, "train.weight_decay": {"choice": [0.0, 0.05]}},
        "trials": 2, "scheduler": "asha", "search": "random", "val_size": 32}
# Whether the trainer evaluates a validation split every epoch and skips the test split (train.select_on,
# train.evaluate_test); without it the tests put in a stand-in callback (`ValEvaluations`) and check no test read.
TRAINER_SELECTS = "select_on" in {f.name for f in dataclasses.fields(TrainConfig)}
needs_selection = pytest.mark.skipif(not TRAINER_SELECTS, reason="the trainer has no train.select_on / "
                                     "train.evaluate_test yet (a trial would still evaluate the test split)")


def tuned_spec(name: str = "tuned", **extra) -> dict:
    """One cell (no grid), lr and weight decay tuned with 2 trials per arm, 2 seeds: 4 trials + 4 final runs."""
    return {"name": name, "base": BASE, "seeds": 2, "tune": dict(TUNE), **extra}


class RecordingSplit(TensorSplit):
    """A TensorSplit that appends `<run name> <split>` to a log file each time its batches are read."""

    def __init__(self, *args, log: Path, run: str, split: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log, self.run, self.split = log, run, split

    def batches(self, *args, **kwargs):
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(f"{self.run} {self.split}\n")
        return super().batches(*args, **kwargs)


class ToyData:
    """A data loader (picklable by reference): 64 train, 32 val (when data.val_size > 0), 32 test squares; every
    read of a split is logged to `log` by run name."""

    def __init__(self, log: Path) -> None:
        self.log = Path(log)

    def __call__(self, config) -> DatasetSplits:
        def split(seed: int, n: int, name: str) -> TensorSplit:
            x, y = squares(n, seed)
            return RecordingSplit(x, y, NAMES, HALF, HALF, "cpu", log=self.log, run=config.name, split=name)

        val = split(2, 32, "val") if config.data.val_size else None
        return DatasetSplits(train=split(0, 64, "train"), val=val, test=split(1, 32, "test"), class_names=NAMES,
                             info={"name": "squares"})


def reads(log: Path) -> list[tuple[str, str]]:
    """(run name, split) of every logged read, in order."""
    if not Path(log).exists():
        return []
    return [tuple(line.split(" ", 1)) for line in Path(log).read_text().splitlines()]


class ValEvaluations(Callback):
    """Stand-in while the trainer lacks per-epoch validation: evaluates the val split at each epoch's end and
    reports it to the other callbacks as an evaluation of split "val" (what the trainer's selection will do)."""

    def __init__(self) -> None:
        self.done: set[int] = set()

    def on_step_end(self, trainer, step, metrics):
        epoch = metrics.get("epoch", 0.0)
        if trainer.data.val is None or epoch != int(epoch) or int(epoch) in self.done or epoch == 0:
            return
        self.done.add(int(epoch))
        out = trainer.evaluate(trainer.data.val)
        out.update(step=step, epoch=float(epoch), split="val")
        for cb in trainer.callbacks:
            if cb is not self:
                cb.on_eval_end(trainer, step, out)


def stand_in_callbacks(config, run_dir):
    """The `callbacks` factory of the tuned tests: the stand-in until the trainer selects on validation itself."""
    return [] if TRAINER_SELECTS else [ValEvaluations()]


@contextlib.contextmanager
def protocol_for_this_trainer():
    """Until the trainer knows train.select_on / train.evaluate_test / train.early_stop_patience, leave those keys
    out of the protocol (everything else of it, data.val_size included, applies)."""
    with pytest.MonkeyPatch.context() as mp:
        if not TRAINER_SELECTS:
            for table in (tune.TRIAL_PROTOCOL, tune.FINAL_PROTOCOL):
                for key in [k for k in table if k.startswith("train.")]:
                    mp.delitem(table, key)
        yield


__all__ = ["TRAINER_SELECTS", "TUNE", "ToyData", "needs_selection", "protocol_for_this_trainer", "reads",
           "stand_in_callbacks", "tuned_spec"]
