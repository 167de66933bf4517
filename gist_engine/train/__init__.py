"""Training: the trainer (a plain loop with callbacks), one optimisation step, the LR schedule, checkpoints."""

from .checkpoint import CheckpointError, load_model, package_versions, predict, save_checkpoint
from .schedule import SCHEDULES, cosine_epoch_lr, lr_multiplier, warmup_cosine
from .step import TrainStep, make_optimizer, resolve_precision
from .trainer import (
    COMPLETED,
    DIVERGED,
    DIVERGENCE_GROWTH,
    EVALUATING,
    FAILED,
    PROBE_SPLIT,
    PROBING,
    RESUMABLE_CHANGES,
    SAVING,
    STOPPED,
    TEST_SPLIT,
    TRAINING,
    VAL_SPLIT,
    VALIDATING,
    Callback,
    StepReporter,
    Trainer,
    TrainResult,
    chance_loss,
    early_stop_note,
    load_run_data,
    param_groups,
    resolve_device,
    resolve_select_on,
    seed_everything,
    steps_per_epoch,
    train,
)

__all__ = ["COMPLETED", "DIVERGED", "DIVERGENCE_GROWTH", "EVALUATING", "FAILED", "PROBE_SPLIT", "PROBING",
           "RESUMABLE_CHANGES", "SAVING", "SCHEDULES", "STOPPED", "TEST_SPLIT", "TRAINING", "VALIDATING", "VAL_SPLIT",
           "Callback", "CheckpointError", "StepReporter", "TrainResult", "TrainStep", "Trainer", "chance_loss",
           "cosine_epoch_lr", "early_stop_note", "load_model", "load_run_data", "lr_multiplier", "make_optimizer",
           "package_versions", "param_groups", "predict", "resolve_device", "resolve_precision", "resolve_select_on",
           "save_checkpoint", "seed_everything", "steps_per_epoch", "train", "warmup_cosine"]
