"""Selecting the reported epoch (train.select_on), early stopping, and a trial that never reads the test split."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gist_engine.cli.train import summary_line
from gist_engine.config import ConfigError, load_run_config, selection_label
from gist_engine.data import DatasetError, DatasetSplits
from gist_engine.estimate import estimate_run_time
from gist_engine.train import Callback, Trainer, load_run_data
from gist_engine.train.checkpoint import read_checkpoint
from tests.data.benchmark_files import vtab_task
from tests.toydata import squares, squares_splits

EPOCHS = 4


@pytest.fixture(scope="module")
def toy() -> DatasetSplits:
    """64 training images (4 steps of 16 per epoch), 32 test images and 24 validation images (other seeds)."""
    data = squares_splits(64, 32)
    x, y = squares(24, 2)
    return dataclasses.replace(data, val=type(data.train)(x, y, data.class_names, (0.5,) * 3, (0.5,) * 3, "cpu"))


def config(val_size: int = 24, **train: Any):
    # Gist dropout on: the training generator is drawn from every step, so an evaluation that drew would show
    return load_run_config({"backbone": "test_vit", "method": "lora", "gist": {"dropout": 0.2},
                            "data": {"val_size": val_size},
                            "train": {"epochs": EPOCHS, "batch_size": 16, "lr": 3e-3, **train}})


class Evals(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[int, dict[str, Any]]] = []

    def on_eval_end(self, trainer, step, metrics):
        self.events.append((step, dict(metrics)))


def evals(result, split: str) -> list[dict[str, Any]]:
    return [e for e in result.history["evals"] if e["split"] == split]


def first_best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(r["acc_cls"] for r in rows)
    return next(r for r in rows if r["acc_cls"] == best)


def steps_without_speed(result) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "images_per_second"} for s in result.history["steps"]]


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory) -> dict[str, Any]:
    """One run per select_on mode on the same data and seed; each with its run folder (the checkpoint kept)."""
    out = {}
    for mode in ("last", "test", "val", "auto"):
        folder = tmp_path_factory.mktemp(mode)
        callback = Evals()
        data = toy if mode != "last" else dataclasses.replace(toy, val=None)  # auto without val: last
        result = Trainer(config(0 if mode == "last" else 24, select_on="auto" if mode == "last" else mode),
                         data=data, run_dir=folder, callbacks=[callback]).run()
        out[mode] = (result, folder, callback)
    return out


def test_auto_without_a_validation_split_reports_the_last_epoch_as_before(runs):
    result, folder, _ = runs["last"]
    tests = evals(result, "test")
    assert result.status == "completed" and result.selected_on == "last" and result.selected_epoch == EPOCHS
    assert [e["epoch"] for e in tests] == list(range(1, EPOCHS + 1)) and not evals(result, "val")
    assert (result.acc_cls, result.acc_gist, result.agreement) == (
        tests[-1]["acc_cls"], tests[-1]["acc_gist"], tests[-1]["agreement"])
    assert result.best_acc_cls == max(e["acc_cls"] for e in tests) and result.val_acc is None
    assert read_checkpoint(folder / "checkpoint.safetensors")[1]["step"] == result.steps  # the last weights


def test_select_on_test_reports_and_keeps_the_best_test_epoch(runs):
    result, folder, _ = runs["test"]
    best = first_best(evals(result, "test"))
    assert result.selected_on == "test" and selection_label(result.selected_on) == "selected on test (optimistic)"
    assert (result.acc_cls, result.selected_epoch, result.selected_step) == (best["acc_cls"], best["epoch"],
                                                                            best["step"])
    assert result.acc_cls == result.best_acc_cls and not evals(result, "val")  # no early stop: val not needed
    assert read_checkpoint(folder / "checkpoint.safetensors")[1]["step"] == best["step"]


def test_select_on_val_reports_the_test_accuracy_of_the_best_validation_epoch(runs):
    result, folder, callback = runs["val"]
    vals = evals(result, "val")
    best = first_best(vals)
    assert [e["epoch"] for e in vals] == list(range(1, EPOCHS + 1)) and all(e["n"] == 24 for e in vals)
    test_there = next(e for e in evals(result, "test") if e["step"] == best["step"])
    assert result.selected_on == "val" and result.selected_epoch == best["epoch"] and result.val_acc == best["acc_cls"]
    assert (result.acc_cls, result.acc_gist, result.agreement) == (
        test_there["acc_cls"], test_there["acc_gist"], test_there["agreement"])
    assert read_checkpoint(folder / "checkpoint.safetensors")[1]["step"] == best["step"]
    # every validation evaluation reaches the callbacks, after the test evaluation of the same step
    reported = [(s, m["split"], m["epoch"]) for s, m in callback.events]
    assert [(s, e) for s, split, e in reported if split == "val"] == [(e["step"], e["epoch"]) for e in vals]
    assert all(m["acc_cls"] == e["acc_cls"] for (_, m), e in zip(
        [ev for ev in callback.events if ev[1]["split"] == "val"], vals, strict=True))
    for i, (_, split, _) in enumerate(reported):
        if split == "val" and i and reported[i - 1][0] == reported[i][0]:
            assert reported[i - 1][1] == "test"
    # auto with a validation split is val
    assert runs["auto"][0].selected_on == "val" and runs["auto"][0].acc_cls == result.acc_cls


def test_selection_never_changes_the_training(runs):
    reference = steps_without_speed(runs["last"][0])
    assert all(steps_without_speed(runs[mode][0]) == reference for mode in ("test", "val", "auto"))


class Freeze(Callback):
    """Keeps the trained parameters at their values from the end of epoch 1: validation accuracy stalls."""

    def __init__(self) -> None:
        self.kept: list | None = None

    def on_train_batch_end(self, trainer, step):
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        if step == 4:
            self.kept = [p.detach().clone() for p in params]
        elif self.kept is not None:
            for p, v in zip(params, self.kept, strict=True):
                p.data.copy_(v)


def test_early_stop_ends_a_stalled_run_as_completed_with_a_note(toy, tmp_path):
    result = Trainer(config(select_on="val", early_stop_patience=2, epochs=10), data=toy, run_dir=tmp_path,
                     callbacks=[Freeze()]).run()
    vals = evals(result, "val")
    assert result.status == "completed" and result.error is None
    assert [e["epoch"] for e in vals] == [1, 2, 3] and len({e["acc_cls"] for e in vals}) == 1  # 2 without a gain
    assert result.steps == 3 * 4 and result.epochs_done == 3.0
    assert result.note == ("early stop after 2 evaluations without a validation gain (best validation accuracy "
                           f"{100 * vals[0]['acc_cls']:.2f}% at epoch 1)")
    assert result.selected_epoch == 1 and read_checkpoint(tmp_path / "checkpoint.safetensors")[1]["step"] == 4
    assert evals(result, "test")[-1]["epoch"] == 3  # the test split is still evaluated where the run ended


def test_a_run_that_keeps_improving_is_not_stopped(toy):
    result = Trainer(config(early_stop_patience=EPOCHS, select_on="last"), data=toy).run()
    assert result.note is None and result.steps == EPOCHS * 4 and len(evals(result, "val")) == EPOCHS
    assert result.selected_on == "last" and result.selected_epoch == EPOCHS


class RecordingSplit:
    """Wraps a split and records every read of it (its length, its batches, any other attribute)."""

    def __init__(self, split: Any) -> None:
        self._split, self.reads = split, []

    def __len__(self) -> int:
        self.reads.append("len")
        return len(self._split)

    def batches(self, *args: Any, **kwargs: Any):
        self.reads.append("batches")
        return self._split.batches(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        self.reads.append(name)
        return getattr(self._split, name)


def test_a_trial_never_reads_the_test_split(toy, tmp_path):
    spy = RecordingSplit(toy.test)
    events = Evals()
    cfg = config(evaluate_test=False, early_stop_patience=3, attention_every=2, probe_images=2)
    trainer = Trainer(cfg, data=dataclasses.replace(toy, test=spy), run_dir=tmp_path, callbacks=[events])
    result = trainer.run()
    assert spy.reads == [] and trainer.data.test is None
    assert result.status == "completed" and result.selected_on == "val" and result.acc_cls is None
    assert {m["split"] for _, m in events.events} == {"val"} and result.val_acc == first_best(evals(result, "val"))[
        "acc_cls"]
    assert result.best_acc_cls is None and (tmp_path / "checkpoint.safetensors").exists()
    with pytest.raises(ValueError, match="no test split"):
        trainer.evaluate()
    # the same spy is read by a run that evaluates the test split
    Trainer(config(epochs=1), data=dataclasses.replace(toy, test=spy)).run()
    assert "batches" in spy.reads


def test_selection_options_refuse_what_cannot_work(toy):
    with pytest.raises(ConfigError, match=r"train.select_on: val needs a validation split.*data.val_size"):
        config(val_size=0, select_on="val")
    with pytest.raises(ConfigError, match=r"train\.early_stop_patience: 2 needs a validation split"):
        config(val_size=0, early_stop_patience=2)
    with pytest.raises(ConfigError, match=r"train\.evaluate_test: false needs a validation split"):
        config(val_size=0, evaluate_test=False)
    with pytest.raises(ConfigError, match="select_on: test needs the test split"):
        config(select_on="test", evaluate_test=False)
    with pytest.raises(ConfigError, match="select_on: 'best' is not one of auto, val, test, last"):
        config(select_on="best")
    # the data decides too: a config that asks for validation, given data without it
    with pytest.raises(ConfigError, match=r"train\.select_on: val needs a validation split, but the data has none"):
        Trainer(config(select_on="val"), data=dataclasses.replace(toy, val=None)).setup()
    defaults = load_run_config({}).train
    assert (defaults.select_on, defaults.early_stop_patience, defaults.evaluate_test) == ("auto", 0, True)


def test_a_trial_loads_no_test_image(tmp_path):
    """VTAB-1k's tuning protocol (train800 -> val200) with every test image unreadable: a run that evaluates the test
    split refuses to load, a trial loads and trains without ever opening one."""
    task = vtab_task(tmp_path / "vtab-1k", "kitti", 4)
    for image in (task / "images" / "test").iterdir():
        image.write_bytes(b"not an image")
    base = {"backbone": "test_vit", "method": "lora", "image_size": 32,
            "data": {"dataset": f"vtab1k:{task}", "val_size": 200},
            "train": {"epochs": 2, "batch_size": 4, "device": "cpu"}}
    with pytest.raises(DatasetError, match="test"):
        load_run_data(load_run_config(base))
    trial = load_run_config(base, ["train.evaluate_test=false"])
    data = load_run_data(trial)
    assert data.test is None and data.info["sizes"]["test"] == 0 and len(data.val) == 4
    assert "test split not loaded" in data.info["split"]
    result = Trainer(trial, data=data).run()
    assert result.status == "completed" and result.acc_cls is None and result.val_acc is not None


def test_a_resumed_run_continues_the_selection_and_the_patience(toy, tmp_path):
    """lr 1e-9: validation accuracy stalls from epoch 1, so patience 3 stops the run after epoch 4; a run killed in
    epoch 3 and resumed from its epoch-2 state stops at the same step, with the same selection and checkpoint."""
    cfg = config(lr=1e-9, epochs=6, early_stop_patience=3, checkpoint_every=1, select_on="val")
    ref = Trainer(cfg, run_dir=tmp_path / "ref", data=toy).run()
    assert ref.steps == 4 * 4 and ref.note and ref.selected_epoch == 1

    class Crash(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 10:
                raise KeyboardInterrupt  # in epoch 3, after the epoch-2 state

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path / "run", data=toy, callbacks=[Crash()]).run()
    res = Trainer(cfg, run_dir=tmp_path / "run", data=toy, resume_from=tmp_path / "run" / "resume.safetensors").run()
    assert (res.steps, res.note, res.selected_epoch, res.val_acc, res.acc_cls) == (
        ref.steps, ref.note, ref.selected_epoch, ref.val_acc, ref.acc_cls)
    for folder in ("ref", "run"):  # the epoch-1 weights, never overwritten by the resumable states
        assert read_checkpoint(tmp_path / folder / "checkpoint.safetensors")[1]["step"] == 4


class Phases(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []

    def on_phase(self, trainer, phase, done, total):
        self.events.append((phase, done, total))


def test_validation_has_its_own_phase_and_the_summary_line_labels_a_selection_on_test(toy, runs):
    phases = Phases()
    Trainer(config(epochs=1), data=toy, callbacks=[phases]).run()
    assert ("validating", 24, 24) in phases.events and ("evaluating", 32, 32) in phases.events
    assert "[selected on test (optimistic), epoch" in summary_line(runs["test"][0])
    assert "[selected on validation, epoch" in summary_line(runs["val"][0])
    last = summary_line(runs["last"][0])  # the default: the line every run printed before
    assert "selected" not in last and "validation" not in last


def test_the_run_time_estimate_counts_the_validation_evaluations():
    per_image = {"train_s_per_image": 0.01, "eval_s_per_image": 0.001}
    base = {"backbone": "test_vit", "data": {"test_size": 200}, "train": {"epochs": 3}}
    plain = estimate_run_time(base, per_image)
    assert (plain["evals"], plain["val_evals"]) == (3, 0)
    tuned = estimate_run_time({**base, "data": {"test_size": 200, "val_size": 100}}, per_image)  # auto: val
    assert (tuned["evals"], tuned["val_evals"]) == (3, 3)
    assert tuned["eval_seconds"] == pytest.approx((3 * 200 + 3 * 100) * 0.001)
    trial = estimate_run_time({**base, "data": {"test_size": 200, "val_size": 100},
                               "train": {"epochs": 3, "evaluate_test": False}}, per_image)
    assert (trial["evals"], trial["val_evals"]) == (0, 3) and trial["eval_seconds"] == pytest.approx(0.3)
