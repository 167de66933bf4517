"""Run-time estimates: the trainer's step measured at two batch sizes (fixed + per-image part) on a copy with the
speed shortcuts, and the schedule's arithmetic (last partial batch, evaluations, accuracy probes, cool-down)."""

from __future__ import annotations

import math

import pytest
import torch

import gist_engine as ge
from gist_engine.estimate import START_SECONDS, _fit
from gist_engine.speed import SpeedWrapper

TINY = {"backbone": "test_vit", "image_size": 32, "method": "lora", "num_classes": 10, "gist": {"enabled": True},
        "data": {"dataset": "digits", "train_size": 100, "test_size": 40},
        "train": {"epochs": 2, "batch_size": 32, "device": "cpu", "cpu_threads": 1}}
COSTS = {"train_s_per_step": 0.01, "train_s_per_image": 0.002, "eval_s_per_batch": 0.005,
         "eval_s_per_image": 0.001, "warmup_s": 0.3, "device": "cpu", "build_s": 1.0}


def test_the_schedule_prices_steps_images_evaluations_and_probes():
    est = ge.estimate_run_time(TINY, COSTS, images=1797, classes=10)
    steps = 2 * math.ceil(100 / 32)  # 4 per epoch: the last batch holds 4 images, not 32
    assert (est["steps"], est["train_images"], est["test_images"], est["evals"], est["probes"]) == (8, 100, 40, 2, 0)
    train = steps * 0.01 + 2 * 100 * 0.002 + 0.3
    evals = 2 * (1 * 0.005 + 40 * 0.001)  # one evaluation batch (64 on CPU) of 40 images, twice
    assert est["train_seconds"] == pytest.approx(train) and est["eval_seconds"] == pytest.approx(evals)
    assert est["seconds"] == pytest.approx(train + evals + 1.0 + START_SECONDS)


def test_accuracy_probes_and_a_cool_down_are_counted():
    probed = {**TINY, "train": {**TINY["train"], "probe_every": 2, "probe_size": 64}}
    est = ge.estimate_run_time(probed, COSTS, images=1797, classes=10)
    assert est["probes"] == 8 // 2 + 1  # at step 0 and every 2 steps
    assert est["probe_seconds"] == pytest.approx(5 * (0.005 + 64 * 0.001))
    cooled = {**TINY, "train": {**TINY["train"], "lr_schedule": "cosine_epoch", "cooldown_epochs": 1}}
    assert ge.estimate_run_time(cooled, COSTS, images=1797, classes=10)["steps"] == 12  # 2 + 1 epochs


def test_a_per_image_only_throughput_still_prices_a_run():
    est = ge.estimate_run_time(TINY, {"train_s_per_image": 0.002, "eval_s_per_image": 0.001}, 1797, 10)
    assert est["seconds"] == pytest.approx(200 * 0.002 + 80 * 0.001 + START_SECONDS)


def test_fit_splits_a_step_into_its_fixed_and_per_image_parts():
    assert _fit(2, 0.05 + 2 * 0.01, 8, 0.05 + 8 * 0.01) == pytest.approx((0.05, 0.01))
    assert _fit(2, 0.3, 8, 0.2) == (0.0, 0.2 / 8), "a noisy pair (the larger batch faster) falls back, never < 0"


def test_measure_throughput_times_the_trainers_step_on_a_copy():
    cfg = ge.load_run_config(TINY)
    model = ge.build_model(cfg).eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tp = ge.measure_throughput(model, 8, "cpu", 1, cfg)
    assert tp["batches"] == [2, 8] and tp["threads"] == 1 and tp["device"] == "cpu"
    assert tp["train_s_per_image"] > 0 and tp["eval_s_per_image"] > 0
    assert tp["train_s_per_step"] >= 0 and tp["eval_s_per_batch"] >= 0 and tp["warmup_s"] >= 0
    assert not any(isinstance(m, SpeedWrapper) for m in model.modules()), "the caller's model stays plain"
    assert not model.training
    for n, p in model.named_parameters():  # the optimiser stepped the copy only
        assert torch.equal(p, before[n]), n
