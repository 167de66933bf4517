"""The accuracy probe (train.probe_every) and the trainer's phases: recorded, held out, and training unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gist_engine.config import DataConfig, load_run_config
from gist_engine.data import DatasetSplits, load_dataset
from gist_engine.runs import RunManager
from gist_engine.train import Callback, Trainer
from tests.toydata import squares_splits


@pytest.fixture(scope="module")
def toy() -> DatasetSplits:
    data = squares_splits(64, 32)
    held_out = squares_splits(24, 8)  # other images (seed 0, 24 of them) stand in for the held-out train images
    return dataclasses.replace(data, probe=held_out.train)


def config(**train):
    # Gist dropout on: the training generator is drawn from every step, so a probe that drew too would show
    return load_run_config({"backbone": "test_vit", "method": "lora", "gist": {"dropout": 0.2},
                            "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, **train}})


class Phases(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []

    def on_phase(self, trainer, phase, done, total):
        self.events.append((phase, done, total))


def test_the_probe_is_recorded_and_training_is_bit_identical(toy):
    plain = Trainer(config(), data=toy).run()
    phases = Phases()
    probed = Trainer(config(probe_every=3), data=toy, callbacks=[phases]).run()
    assert plain.status == probed.status == "completed" and plain.steps == probed.steps == 8
    assert probed.history["steps"] == [{**s, "images_per_second": p["images_per_second"]}  # speed differs, only
                                       for s, p in zip(plain.history["steps"], probed.history["steps"], strict=True)]
    assert (probed.acc_cls, probed.acc_gist, probed.agreement) == (plain.acc_cls, plain.acc_gist, plain.agreement)
    probes = [e for e in probed.history["evals"] if e["split"] == "probe"]
    assert [e["step"] for e in probes] == [0, 3, 6] and all(e["n"] == 24 for e in probes)
    assert [e["split"] for e in probed.history["evals"] if e["split"] != "probe"] == ["test", "test"]
    assert ("probing", 0, 24) in phases.events and ("probing", 24, 24) in phases.events
    ends = [i for i, e in enumerate(phases.events) if e == ("evaluating", 32, 32)]  # after epochs 1 and 2
    assert len(ends) == 2 and phases.events[ends[0] + 1] == ("training", 0, 0) and ends[1] == len(phases.events) - 1


def test_no_probe_without_held_out_images_and_off_by_default(toy):
    data = dataclasses.replace(toy, probe=None)
    result = Trainer(config(probe_every=2, epochs=1), data=data).run()
    assert {e["split"] for e in result.history["evals"]} == {"test"}
    assert load_run_config({}).train.probe_every == 0


def test_the_probe_images_are_held_out_of_the_training_subset():
    cfg = DataConfig(dataset="digits", train_size=200, test_size=50, seed=3)
    args = (16, (0.5,) * 3, (0.5,) * 3)
    base, probed = load_dataset(cfg, *args), load_dataset(cfg, *args, probe_size=40)
    assert base.probe is None and len(probed.probe) == 40
    assert np.array_equal(base.train.images.numpy(), probed.train.images.numpy())  # the same training images
    assert np.array_equal(base.test.images.numpy(), probed.test.images.numpy())
    train = {bytes(x) for x in probed.train.images.numpy()}
    assert not any(bytes(x) in train for x in probed.probe.images.numpy())  # none of them trained on
    assert len(set(probed.probe.labels.tolist())) == 10  # stratified: every class
    again = load_dataset(cfg, *args, probe_size=40)
    assert np.array_equal(again.probe.images.numpy(), probed.probe.images.numpy())  # fixed per data seed
    whole = load_dataset(DataConfig(dataset="digits", test_size=50), *args, probe_size=40)
    assert whole.probe is None  # the training subset is the whole train split: nothing held out


def test_the_store_keeps_probe_evaluations_apart_and_records_the_phase(toy, tmp_path):
    mgr = RunManager(tmp_path, torch_threads=0, data_loader=lambda cfg: toy, heartbeat_every=0.2, flush_seconds=0.05)
    try:
        cfg = config(probe_every=4)
        run = mgr.wait(mgr.submit(cfg), timeout=120)
        evals = mgr.evaluations(run.id)
    finally:
        mgr.shutdown(timeout=30)
    assert run.status == "completed"
    assert sorted(evals[evals["split"] == "probe"]["step"]) == [0, 4, 8]
    test = evals[evals["split"] == "test"]
    assert run.acc_cls == test["acc_cls"].iloc[-1] and run.best_acc_cls == test["acc_cls"].max()
    assert run.last_eval["step"] == 8 and run.phase["name"] in ("training", "saving")
    assert "phase" not in mgr.metrics(run.id).columns and "phase" not in run.latest
