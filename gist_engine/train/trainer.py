"""Trainer: a synchronous loop (AdamW, warm-up + cosine, bf16 on CUDA) that emits every loss term to callbacks."""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import speed
from ..backbones import backbone_data_config
from ..build import build_model
from ..config import ConfigError, RunConfig, load_run_config, to_dict
from ..data import load_dataset
from ..data.images import DatasetError
from ..inspect.snapshots import TrainerSnapshots
from ..losses import LOSS_TERMS
from ..model import GistViT
from ..status import RunStatus
from ..tuners import count_parameters, no_weight_decay_parameters, tuner_step_end, tuner_train_start
from .checkpoint import (
    RESUME_NAME,
    CheckpointError,
    check_peft_type,
    package_versions,
    read_training_state,
    restore_training_state,
    save_checkpoint,
    save_training_state,
    saved_peft_type,
)
from .schedule import lr_multiplier
from .step import TrainStep, autocast, make_optimizer, resolve_precision

log = logging.getLogger(__name__)

# Statuses a run can end with (the run store adds queued, running and interrupted).
COMPLETED, STOPPED, DIVERGED, FAILED = RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.DIVERGED, RunStatus.FAILED

# A finite loss past this multiple of the run's first value also ends the run as diverged. The first value is taken
# as the chance-level loss, `(1 + gist.ce_weight) * ln(num_classes)` (`ln(num_classes)` without GIST: both heads
# predicting uniformly, the two predictions equal): the loss every run starts from with its fresh heads, and a
# floor that a first step already blown up (gist.temperature 1e-12 gives 2e11 at step 1) cannot raise. A healthy
# run never comes near it (1,000 x 3.45 for 10 classes); a loss this far past chance is a numerical blow-up.
DIVERGENCE_GROWTH = 1000.0


# Train options a resumed run may change: they decide speed and placement, not the result.
RESUMABLE_CHANGES = ("device", "log_every", "compile", "cuda_graph", "eval_batch_size", "cpu_threads", "probe_every",
                     "probe_size")

# What the trainer is doing, as `Callback.on_phase` reports it: training steps, evaluating the test split,
# evaluating the accuracy probe, writing the checkpoint, evaluating the validation split.
TRAINING, EVALUATING, PROBING, SAVING = "training", "evaluating", "probing", "saving"
VALIDATING = "validating"
PROBE_SPLIT = "probe"  # the split name of the accuracy probe's evaluations
VAL_SPLIT, TEST_SPLIT = "val", "test"  # the split names of the validation and test evaluations


def resolve_select_on(select_on: str, has_val: bool) -> str:
    """`train.select_on` as a run applies it: "auto" is "val" when the run has a validation split, else "last"
    (what every run reported before selection existed: the last epoch's test accuracy); "val", "test" and "last"
    stay as they are."""
    if select_on == "auto":
        return VAL_SPLIT if has_val else "last"
    return select_on


def early_stop_note(patience: int, best: float, epoch: int) -> str:
    """The note of a run ended by `train.early_stop_patience` (stored with the run; the status is completed)."""
    return (f"early stop after {patience} evaluations without a validation gain (best validation accuracy "
            f"{100 * best:.2f}% at epoch {epoch})")


class Callback:
    """Receives the trainer's events; override what you need. Called on the training thread, synchronously."""

    def on_train_start(self, trainer: Trainer) -> None:
        """After the model and data are ready, before the first step (step 0)."""

    def on_train_batch_end(self, trainer: Trainer, step: int) -> None:
        """Right after optimisation step `step` (from 1), before the next one and before its losses are read back
        (no host sync): the parameters are updated and this step's gradients are still on them (the step clears
        them as the next one starts). Per-step hooks go here, e.g. a tuner's rank reallocation (peft's AdaLoRA
        `update_and_allocate(step)`)."""

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After optimisation step `step` (from 1): every loss term, lr, images/s, epoch. Reported in order, every
        `train.log_every` steps (one host sync for all of them), at each probe and at each epoch end."""

    def on_eval_end(self, trainer: Trainer, step: int, metrics: dict[str, Any]) -> None:
        """After an evaluation: acc_cls, acc_gist, agreement, per_class, n, epoch, step, split ("test"; "val" for
        the validation split, evaluated after every epoch when the run selects on it, stops early on it or does not
        evaluate the test split; "probe" for the accuracy probe of `train.probe_every`). At an epoch with both, the
        test evaluation is reported before the validation one."""

    def on_phase(self, trainer: Trainer, phase: str, done: int, total: int) -> None:
        """What the trainer does now (TRAINING, EVALUATING, VALIDATING, PROBING, SAVING) and how far it is: `done`
        of `total` examples of an evaluation (0 of 0 for the other phases). Reported as each phase starts and after
        every evaluation batch."""

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        """Once, whatever the status."""


@dataclass
class TrainResult:
    """What a run produced; `history` keeps every step's losses and every evaluation."""

    status: str
    acc_cls: float | None = None  # test accuracy of the selected epoch (`selected_on`); None without a test split
    best_acc_cls: float | None = None
    best_step: int | None = None
    acc_gist: float | None = None
    agreement: float | None = None
    per_class: dict[str, float] | None = None
    trainable_params: int = 0
    gist_params: int = 0
    total_params: int = 0
    steps: int = 0
    epochs_done: float = 0.0
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    error: str | None = None
    diverged_step: int | None = None
    selected_on: str = "last"  # train.select_on resolved: val, test or last (SELECTION_LABELS says how it shows)
    selected_epoch: int | None = None  # the epoch whose accuracy is reported and whose checkpoint is kept
    selected_step: int | None = None
    val_acc: float | None = None  # validation accuracy (CLS) of the selected epoch; None when not evaluated there
    note: str | None = None  # how a completed run ended early (train.early_stop_patience)
    device: str = "cpu"
    precision: str = "fp32"
    history: dict[str, list] = field(default_factory=lambda: {"steps": [], "evals": []})
    config: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (result.json)."""
        return asdict(self)


def load_run_data(config: RunConfig, device: torch.device | str = "cpu") -> Any:
    """The `DatasetSplits` a run config asks for, prepared for its backbone (size and mean/std, or tokenizer),
    with the accuracy probe's held-out images when `train.probe_every` is set, without the test split when
    `train.evaluate_test` is false."""
    dc = backbone_data_config(config.backbone, config.image_size)
    probe = config.train.probe_size if config.train.probe_every else 0
    return load_dataset(config.data, dc["image_size"], dc["mean"], dc["std"], device=device,
                        tokenizer=dc.get("tokenizer"), probe_size=probe,  # tokenizer: a text backbone's, else None
                        test=config.train.evaluate_test)  # a trial never loads the test split


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; 'cuda' without a GPU is an error naming the option."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but no CUDA GPU is available (use auto or cpu)")
    return torch.device(name)


def param_groups(model: GistViT, weight_decay: float, token_weight_decay: bool = False) -> list[dict[str, Any]]:
    """AdamW groups: decay on the trained weight matrices only; none on 1-D parameters (biases, norms, SSF's scales
    and shifts) or on the tokens the model and its tuner layers name (`tuners.no_weight_decay_parameters`: Gist,
    CLS and register tokens, position embedding, VPT's prompts). With `token_weight_decay` the Gist token(s) and
    VPT's prompts are decayed too (the release's optim_factory.py decays its Gist token)."""
    exempt = {id(p) for p in no_weight_decay_parameters(model, decay_tokens=token_weight_decay)}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or id(p) in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Optimisation steps in one epoch of `n` training examples: ceil(n / batch_size), or n // batch_size with
    `drop_last` (the release's data/loader.py: drop_last=is_training), e.g. 15 for 1,000 images at batch 64, not 16.

    Raises:
        ConfigError: with drop_last, a training set smaller than one batch (no step at all).
    """
    if drop_last:
        if n < batch_size:
            raise ConfigError(f"train.drop_last: the training set has {n} examples, fewer than one batch of "
                              f"train.batch_size={batch_size}, so no step would run; lower the batch size or set "
                              "train.drop_last: false")
        return n // batch_size
    return math.ceil(n / batch_size)


class Trainer:
    """Fine-tunes one config to the end (or a stop, divergence or failure) and reports through callbacks.

    Args:
        config: A RunConfig or a mapping of its keys.
        callbacks: Event receivers (progress bars, the run store, attention snapshots).
        should_stop: Checked before every step; True ends the run as `stopped`.
        run_dir: Where the checkpoint (and attention snapshots) go; None = nothing written.
        data: Already-loaded `DatasetSplits` (compare runs share one load); None = load from `config.data`.
        resume_from: A training state (`resume.safetensors`, written every `train.checkpoint_every` epochs) to
            continue from: parameters, optimizer, scheduler, RNGs, step and the result so far are restored and
            training goes on at the next epoch, in the data order of an uninterrupted run.

    Selection (`train.select_on`, resolved in `setup` into `selected_on`): the reported accuracy (`acc_cls`,
    `acc_gist`, `agreement`, `per_class`) is the test evaluation of the selected epoch, and `run_dir`'s checkpoint
    is that epoch's (written when the selection improves; with "last", at the end as always). With "val", the test
    split is also evaluated at each epoch whose validation accuracy is a new best, so the selected epoch always
    has its test figure. `trainer.model` holds the last epoch's weights. With `train.evaluate_test: false` the
    test split is dropped from `data` in `setup` and never read.
    """

    def __init__(self, config: RunConfig | dict[str, Any], callbacks: Iterable[Callback] = (),
                 should_stop: Callable[[], bool] | None = None, run_dir: str | Path | None = None,
                 data: Any = None, resume_from: str | Path | None = None) -> None:
        self.config = load_run_config(config)
        self.callbacks = list(callbacks)
        self.should_stop = should_stop or (lambda: False)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.data = data
        self.resume_from = Path(resume_from) if resume_from is not None else None
        self.model: GistViT | None = None
        self._scaler_state: dict[str, Any] | None = None  # the fp16 gradient scaler's state a resumed run restores
        self.step = 0
        self.total_steps = 0
        self.selected_on = "last"  # train.select_on resolved against the data (setup)
        # the selection's state, resumed with the training state: best validation accuracy (and its epoch),
        # validation evaluations since it, best test accuracy (select_on test)
        self._selection: dict[str, Any] = {"best_val": None, "best_val_epoch": None, "stale": 0, "best_test": None}
        self.phase = ""  # what it does now: TRAINING, EVALUATING, PROBING, SAVING (Callback.on_phase)
        self.device = resolve_device(self.config.train.device)
        self.precision = resolve_precision(self.config.train.precision, self.device)

    # ------------------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load the data (unless given) and build the model on the device."""
        cfg = self.config
        if self.device.type == "cpu" and not cfg.train.cpu_threads:
            speed.choose_cpu_threads_in_background()  # samples how busy the CPUs are while the data and model load
        if self.data is None:
            self.data = load_run_data(cfg, self.device)
        if cfg.num_classes is not None and cfg.num_classes != self.data.num_classes:
            raise ConfigError(f"num_classes: {cfg.num_classes} but dataset {cfg.data.dataset!r} has "
                              f"{self.data.num_classes} classes (leave num_classes empty to use the dataset's)")
        self._resolve_selection()
        model_cfg = replace(cfg, num_classes=self.data.num_classes)  # the parsed config, not parsed again
        seed_everything(cfg.train.seed)
        self.model = build_model(model_cfg, seed=cfg.train.seed).to(self.device)
        try:  # every exact speed shortcut, bf16 frozen weights, the device's threads
            report = speed.install(self.model, self.device, precision=self.precision,
                                   frozen_dtype=cfg.train.frozen_dtype, cpu_threads=cfg.train.cpu_threads)
        except ValueError as exc:
            raise ConfigError(f"{exc} (precision resolves to {self.precision} on {self.device.type})") from None
        log.debug("speed shortcuts: %s", report.summary())
        self.config = model_cfg

    def _resolve_selection(self) -> None:
        """Resolve `train.select_on` against the data; drop the test split of a run that must not read it.

        Raises:
            ConfigError: selection on validation, early stopping or a run without the test split, but the data has
                no validation split.
        """
        tc = self.config.train
        if not tc.evaluate_test and self.data.test is not None:
            self.data = replace(self.data, test=None)  # given data (a shared load): this run never reads its test
        has_val = self.data.val is not None
        self.selected_on = resolve_select_on(tc.select_on, has_val)
        if not has_val:
            for key, used in (("select_on: val", self.selected_on == VAL_SPLIT),
                              (f"early_stop_patience: {tc.early_stop_patience}", tc.early_stop_patience > 0),
                              ("evaluate_test: false", not tc.evaluate_test)):
                if used:
                    raise ConfigError(f"train.{key} needs a validation split, but the data has none; set "
                                      "data.val_size > 0")

    @property
    def validates_every_epoch(self) -> bool:
        """Whether the validation split is evaluated after every epoch: the run selects on it, stops early on it or
        does not evaluate the test split."""
        tc = self.config.train
        return self.selected_on == VAL_SPLIT or tc.early_stop_patience > 0 or not tc.evaluate_test

    def evaluate(self, split: Any = None, batch_size: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """CLS accuracy, Gist-head accuracy, CLS/Gist agreement and per-class accuracy on a split (test default).

        Runs in inference mode (bf16 autocast on CUDA) with large batches (`train.eval_batch_size`, auto 1024 on
        CUDA); predictions stay on the device until the end. It draws no random numbers and restores the model's
        train/eval mode, so evaluating between steps leaves training unchanged. `progress(done, total)` is called
        before the first batch and after each (examples).
        """
        model, split = self.model, split or self.data.test
        if split is None:
            raise ValueError("evaluate: this run has no test split (train.evaluate_test is false); pass a split")
        batch_size = batch_size or speed.eval_batch_size(self.device, self.config.train.eval_batch_size)
        was_training = model.training
        model.eval()
        cls_pred, gist_pred, labels = [], [], []
        done, total = 0, len(split)
        if progress is not None:
            progress(done, total)
        try:
            with torch.inference_mode(), autocast(self.device, self.precision):
                for x, y in split.batches(batch_size):
                    out = model(x)
                    cls_pred.append(out.cls_logits.argmax(-1))
                    if out.gist_logits is not None:
                        gist_pred.append(out.gist_logits.argmax(-1))
                    labels.append(y)
                    if progress is not None:
                        done += len(y)
                        progress(done, total)
        finally:
            model.train(was_training)
        cls_p, y = torch.cat(cls_pred).cpu(), torch.cat(labels).cpu()
        correct = (cls_p == y).float()
        per_class = {name: correct[y == c].mean().item() for c, name in enumerate(self.data.class_names)
                     if (y == c).any()}
        out = {"acc_cls": correct.mean().item(), "acc_gist": None, "agreement": None, "per_class": per_class,
               "n": int(y.numel())}
        if gist_pred:
            gist_p = torch.cat(gist_pred).cpu()
            out["acc_gist"] = (gist_p == y).float().mean().item()
            out["agreement"] = (gist_p == cls_p).float().mean().item()
        return out

    # ------------------------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to the end; never raises for a diverged, stopped or out-of-memory run (see `TrainResult.status`)."""
        if self.model is None:
            self.setup()
        tc, data = self.config.train, self.data
        result = self._new_result()
        per_epoch = steps_per_epoch(len(data.train), tc.batch_size, tc.drop_last)
        epochs = tc.total_epochs  # epochs + cool-down with the cosine_epoch schedule
        self.total_steps = epochs * per_epoch if tc.max_steps is None else min(epochs * per_epoch, tc.max_steps)
        # e.g. AdaLoRA's total_step (ConfigError if unfit), and its update_and_allocate after each step (None for most)
        tuner_train_start(self.model, self.config.method, self.total_steps)
        step_end = tuner_step_end(self.config.method)
        optimizer = make_optimizer(param_groups(self.model, tc.weight_decay, tc.token_weight_decay), tc.lr,
                                   self.device)
        lr_at = lambda step: lr_multiplier(step, tc, per_epoch, self.total_steps)  # noqa: E731 (LambdaLR's)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        start_epoch = self._restore(optimizer, scheduler, result) if self.resume_from is not None else 0
        probe = self._start(result)
        self.train_step = self._make_step(optimizer)
        reporter = StepReporter(self, result, tc.log_every or speed.auto_log_every(self.device), data.num_classes)
        started = time.perf_counter()
        try:
            for epoch in range(start_epoch, epochs):
                order = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)  # same order with GIST on/off
                reporter.resume_clock()
                if self.phase != TRAINING:  # after an evaluation
                    self._phase(TRAINING)
                for x, y in data.train.batches(tc.batch_size, shuffle=True, generator=order, drop_last=tc.drop_last):
                    if self.step >= self.total_steps:
                        break
                    if self.should_stop():
                        result.status = STOPPED
                        break
                    terms = self.train_step(x, y)  # (6,) on the device, no host sync
                    if step_end is not None:  # after optimizer.step, before the next step clears the gradients
                        step_end(self.model, self.step)
                    step_scheduler(scheduler, self.train_step.scaler)
                    self.step += 1
                    self._emit("on_train_batch_end", self.step)  # per-step hooks, before anything is read back
                    at = epoch + min(1.0, (self.step - epoch * per_epoch) / per_epoch)  # the epoch position
                    if not reporter.add(self.step, terms, tc.lr * lr_at(scheduler.last_epoch), at, len(y)):
                        break  # diverged
                    if probe is not None and self.step % tc.probe_every == 0 and not self._probe(reporter, probe, at):
                        break
                if not reporter.flush() or result.status != COMPLETED:
                    break
                if not self._end_epoch(epoch + 1, optimizer, scheduler, result):  # evaluate, checkpoint
                    break
        except (DatasetError, torch.OutOfMemoryError) as exc:
            reporter.flush_quietly()  # keep what can still be read back
            self._fail(result, exc)
        return self._finish(result, reporter, started, per_epoch)

    def _new_result(self) -> TrainResult:
        """The result of a run about to start: parameter counts, device, config, dataset and package versions."""
        trainable, total = count_parameters(self.model)
        return TrainResult(status=COMPLETED, trainable_params=trainable, total_params=total,
                           gist_params=self.model.gist_parameter_count(), device=str(self.device),
                           precision=self.precision, config=_config_dict(self.config), versions=package_versions(),
                           dataset=dict(self.data.info), selected_on=self.selected_on)

    def _start(self, result: TrainResult) -> Any:
        """Attention snapshots, `on_train_start`, the accuracy probe of the untrained heads, the training phase;
        returns the accuracy probe's split (None: no probe)."""
        tc = self.config.train
        if tc.attention_every and self.run_dir is not None:  # CLS/Gist maps of a probe batch every K steps
            self.callbacks.append(TrainerSnapshots(self.run_dir, tc.attention_every, tc.probe_images))
        self._emit("on_train_start")
        probe = self._probe_split()
        if probe is not None and self.step == 0:
            self._record_probe(result, probe, 0.0)  # the untrained heads: where the curve starts
        self._phase(TRAINING)
        self.model.train()
        return probe

    def _make_step(self, optimizer: torch.optim.Optimizer) -> TrainStep:
        """The training step over the optimiser's parameters, with `train.compile` / `train.cuda_graph` installed
        (`speed.install_step`) and a resumed fp16 run's gradient scale."""
        tc = self.config.train
        params = [p for group in optimizer.param_groups for p in group["params"]]
        step = speed.install_step(TrainStep(self.model, optimizer, params, self.device, self.precision, tc.grad_clip,
                                            gist=self.config.gist), compile=tc.compile, cuda_graph=tc.cuda_graph)
        if step.scaler is not None and self._scaler_state:  # a resumed fp16 run: the scale it had
            step.scaler.load_state_dict(self._scaler_state)
        return step

    def _probe(self, reporter: StepReporter, split: Any, epoch: float) -> bool:
        """The accuracy probe after the steps so far are reported; False when they diverged (no probe then)."""
        if not reporter.flush():
            return False
        self._record_probe(reporter.result, split, epoch)
        self._phase(TRAINING)
        reporter.resume_clock()  # the probe's time is not training time
        return True

    def _end_epoch(self, epochs_done: int, optimizer: torch.optim.Optimizer, scheduler: Any,
                   result: TrainResult) -> bool:
        """Evaluate (validation after every epoch when `validates_every_epoch`; test every `train.eval_every`
        epochs, at the end and, selecting on validation, at each new best), update the selection and its
        checkpoint, stop early, and save the resumable state (every `train.checkpoint_every` epochs); False when
        the run has reached its last step or stops early."""
        tc = self.config.train
        last = epochs_done == tc.total_epochs or self.step >= self.total_steps
        val = gain = None
        if self.validates_every_epoch:
            val = self._evaluate_split(self.data.val, epochs_done, VAL_SPLIT)
            best = self._selection["best_val"]
            gain = best is None or val["acc_cls"] > best
            if gain:
                self._selection.update(best_val=val["acc_cls"], best_val_epoch=epochs_done, stale=0)
            else:
                self._selection["stale"] += 1
        patience = tc.early_stop_patience
        stop_early = bool(patience) and self._selection["stale"] >= patience and not last
        test = None
        if tc.evaluate_test and (epochs_done % tc.eval_every == 0 or last or stop_early
                                 or (gain and self.selected_on == VAL_SPLIT)):
            test = self._evaluate_split(self.data.test, epochs_done, TEST_SPLIT)
        for metrics in (test, val):  # test first: the store then always holds the selected epoch's test figure
            if metrics is not None:
                result.history["evals"].append(metrics)
                self._emit("on_eval_end", self.step, metrics)
        if test is not None and (result.best_acc_cls is None or test["acc_cls"] > result.best_acc_cls):
            result.best_acc_cls, result.best_step = test["acc_cls"], self.step
        self._select(result, epochs_done, val, test, gain)
        if stop_early:
            result.note = early_stop_note(patience, self._selection["best_val"], self._selection["best_val_epoch"])
            log.info("%s", result.note)
            return False
        if self.step >= self.total_steps:
            return False
        if tc.checkpoint_every and epochs_done % tc.checkpoint_every == 0 and self.run_dir is not None:
            self._save_training_state(optimizer, scheduler, result, epochs_done)
        return True

    def _fail(self, result: TrainResult, exc: BaseException) -> None:
        """Mark the run failed with a message saying what to do: a streamed image that passed the load-time check
        but fails to decode, or out of memory."""
        result.status, result.error = FAILED, str(exc)
        if isinstance(exc, torch.OutOfMemoryError):
            bs = self.config.train.batch_size
            result.error = (f"out of GPU memory at step {self.step + 1} with train.batch_size={bs}: try a smaller "
                            f"batch (e.g. {max(1, bs // 2)}) or a smaller image_size")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _finish(self, result: TrainResult, reporter: StepReporter, started: float, per_epoch: int) -> TrainResult:
        """Timings and counts, the checkpoint of a completed or stopped run, `on_train_end`."""
        result.train_seconds = time.perf_counter() - started
        result.steps = self.step
        result.epochs_done = self.step / per_epoch
        result.images_per_second = reporter.images_per_second
        if self.run_dir is not None and result.status in (COMPLETED, STOPPED) and (
                self.selected_on == "last" or result.selected_epoch is None):  # else: saved when it was selected
            self._phase(SAVING)
            self._save_checkpoint()
        self._emit("on_train_end", result)
        return result

    def _save_checkpoint(self) -> None:
        data = self.data
        save_checkpoint(self.model, self.run_dir / "checkpoint.safetensors", self.config, step=self.step,
                        extra={"class_names": list(data.class_names), "dataset": self.config.data.dataset,
                               "text_pairs": getattr(data.train, "pairs", None) is not None})

    def _emit(self, event: str, *args: Any) -> None:
        """Call `event` (a `Callback` method name) on every callback that has it."""
        for cb in self.callbacks:
            handler = getattr(cb, event, None)  # callbacks written before an event existed lack it
            if handler is not None:
                handler(self, *args)

    def _save_training_state(self, optimizer: torch.optim.Optimizer, scheduler: Any, result: TrainResult,
                             epochs_done: int) -> None:
        """The resumable state after `epochs_done` epochs (`resume.safetensors`) and the plain checkpoint."""
        so_far = {k: getattr(result, k) for k in _RESUMED_FIELDS}
        save_training_state(self.run_dir / RESUME_NAME, self.model, optimizer, scheduler, self.config, self.step,
                            epochs_done, extra={"result": so_far, "selection": dict(self._selection)},
                            scaler=self.train_step.scaler)
        if self.selected_on == "last" or result.selected_epoch is None:  # else the selected epoch's stays
            self._save_checkpoint()

    def _restore(self, optimizer: torch.optim.Optimizer, scheduler: Any, result: TrainResult) -> int:
        """Load `resume_from` into the model, optimizer, scheduler, RNGs and result; returns the epoch to start."""
        tensors, meta = read_training_state(self.resume_from)
        try:  # parsed again: a state written before a key was added compares with that key's default
            saved = _config_dict(load_run_config(meta["config"]))
        except ConfigError as exc:
            raise CheckpointError(f"{self.resume_from}: its config is not valid here: {exc}") from None
        now = _config_dict(self.config)
        check_peft_type(self.model, saved_peft_type(saved), str(self.resume_from))  # named before the generic diff
        for cfg in (saved, now):  # how and where it runs may change; what it computes may not
            cfg.pop("name", None)
            cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in RESUMABLE_CHANGES}
        if saved != now:
            diff = sorted(k for k in now if saved.get(k) != now[k])
            raise CheckpointError(f"{self.resume_from} was written for a different config (differs in {diff})")
        restore_training_state(tensors, meta, self.model, optimizer, scheduler, source=str(self.resume_from))
        self.step = meta["step"]
        self._scaler_state = meta["state"].get("scaler")
        for key, value in meta["state"]["extra"].get("result", {}).items():
            setattr(result, key, value)
        self._selection.update(meta["state"]["extra"].get("selection", {}))
        return meta["epoch"]

    def _phase(self, phase: str, done: int = 0, total: int = 0) -> None:
        self.phase = phase
        self._emit("on_phase", phase, done, total)

    def _probe_split(self) -> Any:
        """The accuracy probe's split (`train.probe_every`): the held-out probe, else the validation split; None
        when off or when the data has neither (logged)."""
        if not self.config.train.probe_every:
            return None
        split = getattr(self.data, "probe", None)  # DatasetSplits made elsewhere may lack the field
        split = self.data.val if split is None else split
        if split is None:
            log.info("train.probe_every: no held-out training images for the accuracy probe (the training subset "
                     "is the whole train split); set data.train_size or data.val_size to have one")
        return split

    def _record_probe(self, result: TrainResult, split: Any, epoch: float) -> None:
        """Evaluate the accuracy probe now and report it as an evaluation of split "probe" (not the result's)."""
        metrics = self.evaluate(split, progress=lambda done, total: self._phase(PROBING, done, total))
        metrics.update(step=self.step, epoch=epoch, split=PROBE_SPLIT)
        result.history["evals"].append(metrics)
        self._emit("on_eval_end", self.step, metrics)

    def _evaluate_split(self, split: Any, epoch: int, name: str) -> dict[str, Any]:
        """Evaluate `split` now (phase EVALUATING, VALIDATING for the validation split): `evaluate`'s metrics with
        step, epoch and split `name`."""
        phase = VALIDATING if name == VAL_SPLIT else EVALUATING
        metrics = self.evaluate(split, progress=lambda done, total: self._phase(phase, done, total))
        metrics.update(step=self.step, epoch=epoch, split=name)
        return metrics

    def _select(self, result: TrainResult, epoch: int, val: dict[str, Any] | None, test: dict[str, Any] | None,
                gain: bool | None) -> None:
        """Move the selection to this epoch when its evaluation is the rule's choice (`selected_on`: a validation
        gain; a test accuracy above the selected one, the first of equals; any evaluation for "last"), taking
        its test figures and validation accuracy, and write the checkpoint of a new val/test selection."""
        if val is None and test is None:
            return
        if self.selected_on == VAL_SPLIT:
            chosen = bool(gain)
        elif self.selected_on == TEST_SPLIT:
            best = self._selection["best_test"]
            chosen = test is not None and (best is None or test["acc_cls"] > best)
            if chosen:
                self._selection["best_test"] = test["acc_cls"]
        else:  # last: the latest epoch with a test figure (the validation one in a run without the test split)
            chosen = test is not None or not self.config.train.evaluate_test
        if not chosen:
            return
        result.selected_epoch, result.selected_step = epoch, self.step
        result.val_acc = None if val is None else val["acc_cls"]
        if test is not None:
            result.acc_cls, result.acc_gist = test["acc_cls"], test["acc_gist"]
            result.agreement, result.per_class = test["agreement"], test["per_class"]
        if self.selected_on != "last" and self.run_dir is not None:
            self._phase(SAVING)
            self._save_checkpoint()


class StepReporter:
    """Reports training steps to the callbacks, in order, each with its own number: a step's loss terms stay on
    the device until `every` steps are pending (or `flush` is called: a probe, an epoch end), then all of them
    are read back in one host sync. The first non-finite total loss, or one past `DIVERGENCE_GROWTH` times the
    chance-level loss (`chance_loss`), marks the run diverged at its exact step (the steps run after it are not
    reported). It also keeps the training clock (callbacks' and probes' time excluded).
    """

    def __init__(self, trainer: Trainer, result: TrainResult, every: int, num_classes: int) -> None:
        self.trainer, self.result, self.every = trainer, result, every
        self.pending: list[tuple[int, torch.Tensor, float, float, int]] = []  # (step, terms (6,), lr, epoch, images)
        self.train_seconds, self.images = 0.0, 0
        self.tick = time.perf_counter()
        self.limit = DIVERGENCE_GROWTH * chance_loss(trainer.config, num_classes)

    @property
    def images_per_second(self) -> float:
        """Training images per second of training time so far (0 before any)."""
        return self.images / self.train_seconds if self.train_seconds else 0.0

    def resume_clock(self) -> None:
        """Training time counts from now (after an evaluation or a probe)."""
        self.tick = time.perf_counter()

    def add(self, step: int, terms: torch.Tensor, lr: float, epoch: float, images: int) -> bool:
        """Queue step `step`'s (len(LOSS_TERMS),) device terms; report the queue when it is full. False: diverged."""
        self.pending.append((step, terms, lr, epoch, images))
        return len(self.pending) < self.every or self.flush()

    def flush(self) -> bool:
        """Report the pending steps; False (run diverged, later steps dropped) at the first non-finite loss."""
        if not self.pending:
            return True
        rows = torch.stack([p[1] for p in self.pending]).tolist()  # (k, 6): the one host sync
        self.train_seconds += time.perf_counter() - self.tick
        self.images += sum(p[4] for p in self.pending)
        ok = True
        for (step, _, lr, epoch, _n), row in zip(self.pending, rows, strict=True):
            metrics = dict(zip(LOSS_TERMS, row, strict=True))
            metrics.update(lr=lr, images_per_second=self.images_per_second, epoch=epoch)
            self.result.history["steps"].append({"step": step, **metrics})
            self.trainer._emit("on_step_end", step, metrics)
            if not math.isfinite(metrics["total"]) or metrics["total"] > self.limit:
                self._diverged(step, metrics)
                ok = False  # the steps run after it (log_every > 1) are not reported
                break
        self.pending.clear()
        self.tick = time.perf_counter()  # callbacks' time is not training time
        return ok

    def flush_quietly(self) -> None:
        """`flush` after a failure: keep what can still be read back, drop the rest."""
        try:
            self.flush()
        except Exception:
            self.pending.clear()

    def _diverged(self, step: int, metrics: dict[str, float]) -> None:
        cfg = self.trainer.config
        self.result.status, self.result.diverged_step = DIVERGED, step
        bad = [k for k in LOSS_TERMS if not math.isfinite(metrics[k])]
        if bad:
            self.result.error = (f"loss became non-finite at step {step} ({', '.join(bad)}); try a lower train.lr "
                                 f"(now {cfg.train.lr:g}) or train.grad_clip")
        else:
            worst = max((k for k in LOSS_TERMS if k != "total"), key=lambda k: abs(metrics[k]))
            hint = (f"a gist.temperature nearer 1 (now {cfg.gist.temperature:g}), a lower gist.loss_weight "
                    f"(now {cfg.gist.loss_weight:g}) or " if cfg.gist.enabled and worst.startswith(("kl", "inter"))
                    else "")
            self.result.error = (f"loss grew to {metrics['total']:.3g} at step {step}, past {DIVERGENCE_GROWTH:g}x "
                                 f"its chance-level start ({self.limit / DIVERGENCE_GROWTH:.3g}; largest term "
                                 f"{worst} = {metrics[worst]:.3g}); try {hint}a lower train.lr (now {cfg.train.lr:g})")
        self.trainer.step = step


def chance_loss(cfg: RunConfig, num_classes: int) -> float:
    """The training loss of chance-level predictions, where every run starts: `ln(num_classes)` per head, the CLS
    head's weighted 1 and the Gist head's `gist.ce_weight` (without GIST, the CLS head's alone); the interaction
    between two equal uniform predictions is 0. `DIVERGENCE_GROWTH` times it is the divergence limit.

    Args:
        cfg: The run's config (its `gist` options).
        num_classes: C, the dataset's number of classes (at least 2 gives a positive value).

    Returns:
        The loss in nats (ln C for C = 1 is 0: then any positive loss counts as growth; floored at 1e-3 nats).
    """
    weight = 1.0 + (cfg.gist.ce_weight if cfg.gist.enabled else 0.0)
    return max(weight * math.log(num_classes), 1e-3)


def step_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: Any) -> None:
    """`scheduler.step()` after an optimisation step; with fp16's gradient scaler, a first step it skipped
    (overflow) is no misordered scheduler call, so torch's warning about one is silenced."""
    if scaler is None:
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
        scheduler.step()


# What a resumed run carries over from the part before its checkpoint.
_RESUMED_FIELDS = ("acc_cls", "best_acc_cls", "best_step", "acc_gist", "agreement", "per_class", "history",
                   "selected_epoch", "selected_step", "val_acc")


def _config_dict(cfg: RunConfig) -> dict[str, Any]:
    return to_dict(cfg)


def train(config: RunConfig | dict[str, Any], **kwargs: Any) -> TrainResult:
    """Build, train and evaluate a config in one call (see `Trainer` for the keyword arguments)."""
    return Trainer(config, **kwargs).run()


__all__ = ["COMPLETED", "DIVERGED", "EVALUATING", "FAILED", "PROBE_SPLIT", "PROBING", "RESUMABLE_CHANGES", "SAVING",
           "STOPPED", "TEST_SPLIT", "TRAINING", "VALIDATING", "VAL_SPLIT", "Callback", "StepReporter", "TrainResult",
           "Trainer", "early_stop_note", "load_run_data", "param_groups", "resolve_device", "resolve_select_on",
           "seed_everything", "steps_per_epoch", "train"]

