"""Learning-rate schedules (pure functions of the step): the per-step warm-up + cosine (the default), and timm
0.6.13's epoch-stepped cosine; `lr_multiplier` picks the run's from `SCHEDULES`.

`cosine_epoch_lr` is the release's schedule (JCruan519/GIST train.py, which builds timm 0.6.13's
`scheduler/scheduler_factory.py:create_scheduler` -> `scheduler/cosine_lr.py:CosineLRScheduler` with
t_initial=epochs, warmup_t=warmup_epochs, warmup_lr_init=warmup_lr, lr_min=min_lr, cycle_limit 1, warmup_prefix
False, t_in_epochs True, and runs `get_cycle_length() + cooldown_epochs` epochs, stepping the scheduler once per
epoch: `lr_scheduler.step(epoch + 1)` after each, so epoch e trains at `_get_lr(e)`). Written from the formula;
no old timm is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..config import TrainConfig


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, warmup_start: float = 1e-4) -> float:
    """LR multiplier: linear warm-up from `warmup_start` to 1, then cosine decay to 0 at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def cosine_epoch_lr(epoch: int, lr: float, epochs: int, warmup_epochs: float = 0.0, warmup_lr: float = 1e-7,
                    min_lr: float = 1e-8) -> float:
    """The learning rate of epoch `epoch` (from 0) under timm 0.6.13's CosineLRScheduler as the release uses it.

    Warm-up (e < warmup_t): warmup_lr + e * (lr - warmup_lr) / warmup_t. Then, within the one cycle
    (e < t_initial): min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * e / t_initial)) — the cosine counts from epoch 0,
    so its length includes the warm-up (warmup_prefix False): epoch 10 of 100 is 0.9755 x lr, not lr. After the
    cycle (the cool-down epochs): min_lr.

    Args:
        epoch: The epoch (timm's t), from 0.
        lr: The peak learning rate (the scheduler's base value).
        epochs: timm's t_initial: the cycle length in epochs (the run's `train.epochs`, cool-down excluded).
        warmup_epochs: timm's warmup_t.
        warmup_lr: timm's warmup_lr_init.
        min_lr: timm's lr_min.
    """
    if epoch < warmup_epochs:
        return warmup_lr + epoch * (lr - warmup_lr) / warmup_epochs
    if epoch < epochs:  # i = t // t_initial == 0 < cycle_limit
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * epoch / epochs))
    return min_lr


# train.lr_schedule -> the lr multiplier of step `step` (from 0): (step, train config, steps per epoch, total steps).
SCHEDULES: dict[str, Callable[[int, TrainConfig, int, int], float]] = {
    # per step: linear warm-up over round(warmup_epochs x steps per epoch) steps, cosine to 0 at the last step
    "cosine": lambda step, tc, per_epoch, total: warmup_cosine(step, round(tc.warmup_epochs * per_epoch), total),
    # constant within an epoch: that epoch's value of timm's scheduler, relative to the peak lr
    "cosine_epoch": lambda step, tc, per_epoch, total: cosine_epoch_lr(step // per_epoch, tc.lr, tc.epochs,
                                                                       tc.warmup_epochs, tc.warmup_lr,
                                                                       tc.min_lr) / tc.lr,
}


def lr_multiplier(step: int, train: TrainConfig, per_epoch: int, total_steps: int) -> float:
    """The learning rate of optimisation step `step` (from 0) as a multiple of `train.lr`, under
    `train.lr_schedule` (`SCHEDULES`): what `torch.optim.lr_scheduler.LambdaLR` applies and each step reports.

    Args:
        step: Steps done before this one (the scheduler's `last_epoch`).
        train: The run's train options (schedule, lr, warm-up, epochs, warmup_lr, min_lr).
        per_epoch: Optimisation steps per epoch (`steps_per_epoch`).
        total_steps: Steps the run lasts (the per-step cosine reaches 0 there).
    """
    return SCHEDULES[train.lr_schedule](step, train, per_epoch, total_steps)


__all__ = ["SCHEDULES", "cosine_epoch_lr", "lr_multiplier", "warmup_cosine"]
