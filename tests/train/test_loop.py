"""The trainer's loop parts: the pure lr schedule, the step reporter (batched read-back, divergence at its exact
step, callbacks' order) and the per-step hook a tuner can use (it fires after every step, before any read-back,
with that step's gradients on the parameters)."""

from __future__ import annotations

import math

import pytest
import torch

from gist_engine.config import load_run_config
from gist_engine.losses import LOSS_TERMS
from gist_engine.train import (
    DIVERGENCE_GROWTH,
    SCHEDULES,
    Callback,
    StepReporter,
    Trainer,
    TrainResult,
    chance_loss,
    cosine_epoch_lr,
    lr_multiplier,
    warmup_cosine,
)
from tests.toydata import squares_splits


def config(**train):
    return load_run_config({"backbone": "test_vit", "method": "adapter", "gist": {"dropout": 0.0},
                            "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "warmup_epochs": 0.5, **train}})


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_lr_multiplier_is_the_schedule_formula(schedule):
    tc = load_run_config({"backbone": "test_vit", "train": {"epochs": 4, "lr": 3e-3, "warmup_epochs": 1,
                                                            "lr_schedule": schedule}}).train
    per_epoch, total = 5, 20
    for step in range(total):
        want = (warmup_cosine(step, 5, total) if schedule == "cosine"
                else cosine_epoch_lr(step // per_epoch, 3e-3, 4, 1, tc.warmup_lr, tc.min_lr) / 3e-3)
        assert lr_multiplier(step, tc, per_epoch, total) == want
        assert lr_multiplier(step, tc, per_epoch, total) == lr_multiplier(step, tc, per_epoch, total)  # pure


class Events(Callback):
    def __init__(self):
        self.events = []

    def on_train_batch_end(self, trainer, step):
        self.events.append(("batch", step))

    def on_step_end(self, trainer, step, metrics):
        self.events.append(("step", step))


class Host:
    """The trainer as the reporter sees it: its callbacks, its config's lr, its step."""

    def __init__(self, callbacks):
        self.callbacks, self.step = callbacks, 0
        self.config = config()

    def _emit(self, event, *args):
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)


def terms(total: float) -> torch.Tensor:
    return torch.tensor([1.0] * (len(LOSS_TERMS) - 1) + [total])


def test_the_reporter_reads_back_every_k_steps_in_order_and_stops_at_the_first_non_finite_loss():
    seen = Events()
    host, result = Host([seen]), TrainResult(status="completed")
    reporter = StepReporter(host, result, every=3, num_classes=4)
    assert reporter.add(1, terms(1.0), 0.1, 0.1, 8) and reporter.add(2, terms(1.0), 0.1, 0.2, 8)
    assert seen.events == []  # nothing read back yet
    assert reporter.add(3, terms(1.0), 0.1, 0.3, 8)
    assert seen.events == [("step", 1), ("step", 2), ("step", 3)]
    assert reporter.add(4, terms(math.nan), 0.1, 0.4, 8)  # pending, not read yet
    assert reporter.add(5, terms(2.0), 0.1, 0.5, 8)  # the queue is not full: still nothing read
    assert not reporter.flush()
    assert result.status == "diverged" and result.diverged_step == 4 == host.step
    assert "non-finite at step 4 (total)" in result.error
    assert [s["step"] for s in result.history["steps"]] == [1, 2, 3, 4]  # step 5 ran after it: not reported
    assert reporter.images == 40 and reporter.flush()  # nothing pending any more


def test_the_reporter_ends_the_run_at_the_exact_step_a_finite_loss_grows_past_the_limit():
    host, result = Host([]), TrainResult(status="completed")
    reporter = StepReporter(host, result, every=4, num_classes=4)
    limit = DIVERGENCE_GROWTH * chance_loss(host.config, 4)
    assert limit == pytest.approx(1000 * 1.5 * math.log(4))  # GIST on, ce_weight 0.5
    for step, total in enumerate([2.0, 3.0, limit * 0.99, limit * 1.01], start=1):
        reporter.add(step, terms(total), 0.1, 0.1, 8)
    assert result.status == "diverged" and result.diverged_step == 4 == host.step
    assert "loss grew to" in result.error and "at step 4, past 1000x its chance-level start (2.08" in result.error
    assert [s["step"] for s in result.history["steps"]] == [1, 2, 3, 4]


def test_the_per_step_hook_fires_after_every_step_before_any_read_back_with_gradients():
    class Hook(Events):
        def on_train_batch_end(self, trainer, step):
            super().on_train_batch_end(trainer, step)
            grads = [p.grad for p in trainer.train_step.params]
            assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
            assert trainer.step == step

    seen = Hook()
    result = Trainer(config(log_every=4, max_steps=6), callbacks=[seen], data=squares_splits(40, 8)).run()
    assert result.status == "completed" and result.steps == 6
    assert seen.events == [("batch", 1), ("batch", 2), ("batch", 3), ("batch", 4), ("step", 1), ("step", 2),
                           ("step", 3), ("step", 4), ("batch", 5), ("step", 5), ("batch", 6), ("step", 6)]
