"""Run-time estimates before a run: one measured training step and inference pass, scaled to the schedule."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .config import DataConfig, RunConfig, load_run_config
from .data import TEST_FRACTION
from .speed import configure_device
from .train import resolve_device

START_SECONDS = 0.5  # a run's own start-up beside the model build (store, threads), added to every estimate


def measure_throughput(model: nn.Module, batch: int, device: str = "auto", cpu_threads: int = 0) -> dict[str, Any]:
    """Seconds per image (document) of a training step and of inference, measured on random inputs.

    Images are random (batch, 3, S, S); documents are `model.max_length` tokens long (an upper bound per step).
    The first training pass warms up allocators and kernels; the best of the next two counts, and the best of two
    inference passes. The model is left in eval mode without gradients; on CUDA a copy is measured.

    Args:
        model: A GistViT or GistTextEncoder (CPU).
        batch: Inputs per pass.
        device: `train.device` ("auto", "cpu", "cuda").
        cpu_threads: `train.cpu_threads` (0 = the count a run would choose): set process-wide, as a run does.

    Returns:
        `train_s_per_image`, `eval_s_per_image`, `device` (str), `threads` (torch's intra-op threads).
    """
    dev = resolve_device(device)
    configure_device(dev, cpu_threads)  # the thread count a run will use (process-wide anyway)
    if dev.type != "cpu":
        model = copy.deepcopy(model).to(dev)
    if getattr(model, "modality", "image") == "text":  # full-length documents: an upper bound per step
        x = model.tokenize([" ".join(["word"] * model.max_length)] * batch)  # on the model's device
    else:
        x = torch.randn(batch, 3, model.image_size, model.image_size, device=dev)
    y = torch.zeros(batch, dtype=torch.long, device=dev)
    model.train()
    try:
        times = []
        for _ in range(3):
            tick = time.perf_counter()
            out = model(x)
            torch.nn.functional.cross_entropy(out.cls_logits, y).backward()
            times.append(time.perf_counter() - tick)
        model.zero_grad(set_to_none=True)
    finally:
        model.eval()
    with torch.inference_mode():
        infers = []
        for _ in range(2):
            tick = time.perf_counter()
            model(x)
            infers.append(time.perf_counter() - tick)
    return {"train_s_per_image": min(times[1:]) / batch, "eval_s_per_image": min(infers) / batch,
            "device": str(dev), "threads": torch.get_num_threads()}


def _expected_sizes(data: DataConfig, images: int | None, classes: int | None) -> tuple[int, int]:
    """(train, test) images a data config will use, from the dataset's size (1,000 and 10 classes if unknown)."""
    total = images or 1000
    classes = classes or 10
    test = round(TEST_FRACTION * total)
    train = total - test - data.val_size
    if data.few_shot:
        train = data.few_shot * classes
    elif data.train_size:
        train = data.train_size
    return max(1, min(train, total)), max(1, data.test_size or test)


def estimate_run_time(config: RunConfig | Mapping[str, Any], throughput: Mapping[str, Any],
                      images: int | None = None, classes: int | None = None) -> dict[str, Any]:
    """A rough run-time estimate: measured per-image times scaled to the config's schedule.

    Args:
        config: The run config.
        throughput: `measure_throughput`'s dict, optionally with `build_s` (seconds to build the model).
        images: Images (documents) in the whole dataset, when known (approximate for some datasets).
        classes: Its classes, when known (few-shot sizes).

    Returns:
        `seconds` (total), `train_seconds`, `eval_seconds`, `steps`, `train_images`, `test_images`, `evals` (of the
        test split; 0 with `train.evaluate_test: false`), `val_evals` (of the validation split: every epoch when the
        run selects on it, stops early on it or skips the test split; an early stop is not foreseen), and the
        entries of `throughput`.
    """
    cfg = load_run_config(config)
    tc = cfg.train
    n_train, n_test = _expected_sizes(cfg.data, images, classes)
    steps_per_epoch = math.ceil(n_train / tc.batch_size)
    steps = tc.epochs * steps_per_epoch if tc.max_steps is None else min(tc.max_steps, tc.epochs * steps_per_epoch)
    evals = tc.epochs // tc.eval_every + (1 if tc.epochs % tc.eval_every else 0) if tc.evaluate_test else 0
    validates = cfg.data.val_size > 0 and (tc.select_on in ("auto", "val") or tc.early_stop_patience > 0
                                           or not tc.evaluate_test)
    val_evals = tc.epochs if validates else 0
    train_s = steps * min(tc.batch_size, n_train) * throughput["train_s_per_image"]
    eval_s = (evals * n_test + val_evals * cfg.data.val_size) * throughput["eval_s_per_image"]
    return {"seconds": train_s + eval_s + throughput.get("build_s", 0.0) + START_SECONDS, "train_seconds": train_s,
            "eval_seconds": eval_s, "steps": steps, "train_images": n_train, "test_images": n_test, "evals": evals,
            "val_evals": val_evals, **throughput}


__all__ = ["estimate_run_time", "measure_throughput"]
