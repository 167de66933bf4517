"""Run-time estimates before a run: the trainer's own step and evaluation measured, scaled to the schedule."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from . import speed
from .config import DataConfig, RunConfig, load_run_config
from .data import TEST_FRACTION
from .train import TrainStep, make_optimizer, param_groups, resolve_device, resolve_precision

START_SECONDS = 0.5  # a run's own start-up beside the model build (store, threads), added to every estimate
REPEATS = 2  # timed passes per batch size after the warm-up pass; the faster counts (another process's burst
# only ever adds time)


def _fit(small: int, t_small: float, large: int, t_large: float) -> tuple[float, float]:
    """(seconds per pass, seconds per example) of `t = a + b * n` through two measured passes; a noisy pair that
    gives a negative part falls back to the large batch's time per example (a = 0)."""
    per_example = (t_large - t_small) / (large - small)
    per_pass = t_small - small * per_example
    if per_example <= 0 or per_pass < 0:
        return 0.0, t_large / large
    return per_pass, per_example


def _fastest(fn: Callable[[], Any], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tick)
    return best


def measure_throughput(model: nn.Module, batch: int, device: str = "auto", cpu_threads: int = 0,
                       config: RunConfig | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Time the trainer's own training step and evaluation pass on random inputs, at two batch sizes.

    What is measured is what a run executes: a copy of `model` with the speed shortcuts the trainer installs
    (`speed.install`: packed attention, head rows, folded adapter scale, ...), stepped by the trainer's `TrainStep`
    (GIST loss of both heads, backward, AdamW). A step costs a fixed part (per-call overhead of some thousand
    operator calls, the optimiser, thread synchronisation) plus a part per image, so each is timed at `batch // 4`
    and `batch` inputs and fitted as `seconds = per_step + images * per_image`; the trainer's batch (e.g. 32) and
    its evaluation batch (64 on CPU) are then priced from the fit, where timing one small batch alone would charge
    its fixed part to every image. The first training pass (allocator and
    kernel warm-up) is timed apart (`warmup_s`: what it takes beyond a steady pass, paid once per run); after it the
    fastest of `REPEATS` passes counts. The model passed in is left as it was.

    Images are random (batch, 3, S, S); documents are `model.max_length` tokens long (an upper bound per step).

    Args:
        model: A GistViT or GistTextEncoder (CPU), e.g. the app's cached untrained model.
        batch: The larger batch timed (the caller's cap on measuring time, e.g. min(8, train.batch_size)).
        device: `train.device` ("auto", "cpu", "cuda").
        cpu_threads: `train.cpu_threads` (0 = the count a run would choose): set process-wide, as a run does.
        config: The run config (precision, frozen_dtype, the GIST loss, lr, weight decay, grad_clip); None: the
            defaults.

    Returns:
        `train_s_per_image`, `train_s_per_step` (seconds), `eval_s_per_image`, `eval_s_per_batch`, `warmup_s`,
        `device` (str), `threads` (torch's intra-op threads), `batches` (the two sizes timed).
    """
    cfg = load_run_config(config if config is not None else {})
    dev = resolve_device(device)
    precision = resolve_precision(cfg.train.precision, dev)
    twin = copy.deepcopy(model).to(dev)  # the speed shortcuts are installed on a copy: the caller's model stays plain
    speed.install(twin, dev, precision=precision, frozen_dtype=cfg.train.frozen_dtype, cpu_threads=cpu_threads)
    optimizer = make_optimizer(param_groups(twin, cfg.train.weight_decay), cfg.train.lr, dev)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    step = TrainStep(twin, optimizer, params, dev, precision, cfg.train.grad_clip, gist=cfg.gist)
    sizes = (max(1, batch // 4), max(2, batch))

    def inputs(n: int) -> tuple[Any, torch.Tensor]:
        if getattr(twin, "modality", "image") == "text":  # full-length documents: an upper bound per step
            x = twin.tokenize([" ".join(["word"] * twin.max_length)] * n)  # on the model's device
        else:
            x = torch.randn(n, 3, twin.image_size, twin.image_size, device=dev)
        return x, torch.zeros(n, dtype=torch.long, device=dev)

    def sync(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        return run

    data = {n: inputs(n) for n in sizes}
    twin.train()
    warm = _fastest(sync(lambda: step(*data[sizes[0]])), 1)  # the first pass: allocator and kernel warm-up
    train_t = [_fastest(sync(lambda n=n: step(*data[n])), REPEATS) for n in sizes]
    twin.eval()
    with torch.inference_mode():
        eval_t = [_fastest(sync(lambda n=n: twin(data[n][0])), REPEATS) for n in sizes]
    per_step, per_image = _fit(sizes[0], train_t[0], sizes[1], train_t[1])
    per_batch, per_eval = _fit(sizes[0], eval_t[0], sizes[1], eval_t[1])
    return {"train_s_per_image": per_image, "train_s_per_step": per_step, "eval_s_per_image": per_eval,
            "eval_s_per_batch": per_batch, "warmup_s": max(0.0, warm - train_t[0]), "device": str(dev),
            "threads": torch.get_num_threads(), "batches": list(sizes)}


def _expected_sizes(data: DataConfig, images: int | None, classes: int | None) -> tuple[int, int, int]:
    """(train, test, left over) images a data config will use, from the dataset's size (1,000 and 10 classes if
    unknown); left over: train-split images the training subset leaves out (the accuracy probe draws from them)."""
    total = images or 1000
    classes = classes or 10
    test = round(TEST_FRACTION * total)
    pool = total - test - data.val_size
    train = pool
    if data.few_shot:
        train = data.few_shot * classes
    elif data.train_size:
        train = data.train_size
    train = max(1, min(train, total))
    return train, max(1, data.test_size or test), max(0, pool - train)


def _eval_seconds(n: int, batch: int, throughput: Mapping[str, Any]) -> float:
    """One evaluation of `n` examples in batches of `batch`."""
    return math.ceil(n / batch) * throughput.get("eval_s_per_batch", 0.0) + n * throughput["eval_s_per_image"]


def estimate_run_time(config: RunConfig | Mapping[str, Any], throughput: Mapping[str, Any],
                      images: int | None = None, classes: int | None = None) -> dict[str, Any]:
    """A run's time: the measured step and evaluation costs (`measure_throughput`) over the config's schedule.

    Training: every step's fixed part plus every trained image's part (`steps * train_s_per_step + images *
    train_s_per_image`, the last batch of an epoch as small as it is), plus the first pass's warm-up. Evaluation:
    the test split after every `train.eval_every` epochs and at the end, and the accuracy probe (`train.probe_every`:
    `train.probe_size` held-out images at step 0 and every `probe_every` steps), each in batches of the device's
    evaluation batch (`train.eval_batch_size`; 64 on CPU). Plus the model build (`build_s`, when measured) and
    `START_SECONDS`. Data loading is not counted (cached between runs of one dataset).

    Args:
        config: The run config.
        throughput: `measure_throughput`'s dict, optionally with `build_s` (seconds to build the model); an older
            dict with only per-image times prices them alone.
        images: Images (documents) in the whole dataset, when known (approximate for some datasets).
        classes: Its classes, when known (few-shot sizes).

    Returns:
        `seconds` (total), `train_seconds`, `eval_seconds` (test and validation evaluations and probes),
        `probe_seconds` (of which the probes), `steps`, `train_images`, `test_images`, `evals` (of the test split; 0
        with `train.evaluate_test: false`), `val_evals` (of the validation split: every epoch when the run selects on
        it, stops early on it or skips the test split; an early stop is not foreseen), `probes`, and the entries of
        `throughput`.
    """
    cfg = load_run_config(config)
    tc = cfg.train
    n_train, n_test, left_over = _expected_sizes(cfg.data, images, classes)
    epochs = tc.total_epochs
    if tc.drop_last:
        per_epoch, epoch_images = max(1, n_train // tc.batch_size), max(1, n_train // tc.batch_size) * tc.batch_size
    else:
        per_epoch, epoch_images = math.ceil(n_train / tc.batch_size), n_train
    steps = epochs * per_epoch if tc.max_steps is None else min(tc.max_steps, epochs * per_epoch)
    trained = min(epochs * epoch_images, steps * tc.batch_size)
    evals = epochs // tc.eval_every + (1 if epochs % tc.eval_every else 0) if tc.evaluate_test else 0
    validates = cfg.data.val_size > 0 and (tc.select_on in ("auto", "val") or tc.early_stop_patience > 0
                                           or not tc.evaluate_test)
    val_evals = epochs if validates else 0
    batch = speed.eval_batch_size(torch.device(throughput.get("device", "cpu")), tc.eval_batch_size)
    train_s = (steps * throughput.get("train_s_per_step", 0.0) + trained * throughput["train_s_per_image"]
               + throughput.get("warmup_s", 0.0))
    probe_n = (min(tc.probe_size, left_over) or cfg.data.val_size) if tc.probe_every else 0  # else the val split
    probes = steps // tc.probe_every + 1 if tc.probe_every and probe_n else 0
    probe_s = probes * _eval_seconds(probe_n, batch, throughput) if probes else 0.0
    eval_s = (evals * _eval_seconds(n_test, batch, throughput) + probe_s
              + (val_evals * _eval_seconds(cfg.data.val_size, batch, throughput) if val_evals else 0.0))
    return {"seconds": train_s + eval_s + throughput.get("build_s", 0.0) + START_SECONDS, "train_seconds": train_s,
            "eval_seconds": eval_s, "probe_seconds": probe_s, "steps": steps, "train_images": n_train,
            "test_images": n_test, "evals": evals, "val_evals": val_evals, "probes": probes, **throughput}


__all__ = ["estimate_run_time", "measure_throughput"]
