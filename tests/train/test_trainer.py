"""Trainer, checkpoints and the train/compare/predict CLI: learning, stop, divergence, OOM, determinism."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from gist_engine import speed
from gist_engine.config import load_run_config
from gist_engine.data import DatasetSplits, TensorSplit
from gist_engine.runs.stats import interval_note
from gist_engine.train import DIVERGENCE_GROWTH, Callback, Trainer, chance_loss, param_groups, warmup_cosine
from gist_engine.train.checkpoint import CheckpointError, load_model, predict, read_checkpoint, save_checkpoint
from tests.toydata import squares_splits


@pytest.fixture(scope="module")
def toy_data() -> DatasetSplits:
    return squares_splits(128, 64)


def config(**train):
    return load_run_config({"backbone": "test_vit", "method": "full", "gist": {"dropout": 0.0},
                            "train": {"epochs": 5, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 0.5, **train}})


def test_reaches_well_above_chance(toy_data, tmp_path):
    result = Trainer(config(), run_dir=tmp_path, data=toy_data).run()
    assert result.status == "completed" and result.steps == 5 * 8
    assert result.best_acc_cls >= 0.8, result.history["evals"]  # chance is 0.25
    assert result.acc_gist is not None and 0 <= result.agreement <= 1
    assert set(result.per_class) == set(toy_data.class_names)
    step = result.history["steps"][0]
    assert {"ce_cls", "ce_gist", "kl_cls_gist", "kl_gist_cls", "interaction", "total", "lr",
            "images_per_second"} <= set(step)
    assert len(result.history["evals"]) == 5 and (tmp_path / "checkpoint.safetensors").exists()


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, trainer):
        self.events.append(("start", 0))

    def on_step_end(self, trainer, step, metrics):
        self.events.append(("step", step))

    def on_eval_end(self, trainer, step, metrics):
        self.events.append(("eval", step))

    def on_train_end(self, trainer, result):
        self.events.append(("end", result.status))


def test_stop_is_honoured_within_one_step(toy_data):
    rec = Recorder()
    trainer = Trainer(config(), callbacks=[rec], data=toy_data)
    trainer.should_stop = lambda: trainer.step >= 3
    result = trainer.run()
    assert result.status == "stopped" and result.steps == 3
    assert rec.events[0] == ("start", 0) and rec.events[-1] == ("end", "stopped")
    assert [e for e in rec.events if e[0] == "step"] == [("step", 1), ("step", 2), ("step", 3)]


def test_nan_ends_the_run_as_diverged_with_history_kept(toy_data):
    class Poison(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 2:
                with torch.no_grad():
                    trainer.model.vit.head.weight.fill_(float("nan"))

    result = Trainer(config(), callbacks=[Poison()], data=toy_data).run()
    assert result.status == "diverged" and result.diverged_step == 3
    assert "non-finite at step 3" in result.error and "train.lr" in result.error
    assert [s["step"] for s in result.history["steps"]] == [1, 2, 3]


def test_a_loss_blown_up_past_its_chance_level_start_ends_the_run_as_diverged(toy_data):
    # gist.temperature 1e-12: the two heads' KL is ~1e11 from the first step while both heads sit at chance
    cfg = load_run_config({"backbone": "test_vit", "method": "full", "gist": {"dropout": 0.0, "temperature": 1e-12},
                           "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 0.5}})
    result = Trainer(cfg, data=toy_data).run()
    limit = DIVERGENCE_GROWTH * chance_loss(cfg, toy_data.num_classes)
    assert chance_loss(cfg, 4) == pytest.approx(1.5 * math.log(4))  # ce_weight 0.5, 4 classes
    assert result.status == "diverged" and result.diverged_step == 1
    assert [s["step"] for s in result.history["steps"]] == [1] and result.history["steps"][0]["total"] > limit
    assert "past 1000x" in result.error and "gist.temperature" in result.error and "1e-12" in result.error


def test_a_healthy_run_stays_far_below_the_growth_limit(toy_data):
    result = Trainer(config(epochs=1), data=toy_data).run()
    limit = DIVERGENCE_GROWTH * chance_loss(result_config := config(epochs=1), toy_data.num_classes)
    assert result.status == "completed" and result_config.gist.enabled
    assert max(s["total"] for s in result.history["steps"]) < limit / 100


def test_out_of_memory_fails_with_a_batch_hint(toy_data, monkeypatch):
    trainer = Trainer(config(batch_size=16), data=toy_data)
    trainer.setup()

    def boom(*args, **kwargs):
        if trainer.step == 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return type(trainer.model).forward(trainer.model, *args, **kwargs)

    monkeypatch.setattr(trainer.model, "forward", boom)
    result = trainer.run()
    assert result.status == "failed" and "smaller batch (e.g. 8)" in result.error
    assert len(result.history["steps"]) == 2


def test_same_seed_same_data_order_for_plain_and_gist(toy_data, monkeypatch):
    orders = []
    real = TensorSplit.batches

    def spy(self, *args, **kwargs):
        for x, y in real(self, *args, **kwargs):
            if kwargs.get("shuffle"):
                orders[-1].append(y.tolist())
            yield x, y

    monkeypatch.setattr(TensorSplit, "batches", spy)
    for enabled in (False, True):
        orders.append([])
        cfg = config(epochs=2, seed=7)
        cfg.gist.enabled = enabled
        Trainer(cfg, data=toy_data).run()
    assert orders[0] == orders[1] and len(orders[0]) == 16


def test_schedule_and_weight_decay_groups():
    assert warmup_cosine(0, 10, 100) == pytest.approx(1e-4)
    assert warmup_cosine(5, 10, 100) == pytest.approx(0.5, rel=1e-3)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0, abs=1e-12)
    from gist_engine import build_model

    model = build_model({"backbone": "test_vit", "method": "vpt", "method_args": {"deep": True}})
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {"vit.head.weight"}
    assert {"gist_token", "vit.head.bias", "vit.blocks.0.prompt"} <= {names[id(p)] for p in no_decay["params"]}


def test_checkpoint_round_trip_and_refusals(toy_data, tmp_path):
    cfg = config(epochs=1)
    cfg.method, cfg.method_args = "lora", {"rank": 4}
    trainer = Trainer(cfg, run_dir=tmp_path / "run", data=toy_data)
    trainer.run()
    model, loaded_cfg = load_model(tmp_path / "run")
    speed.install(model, "cpu", cpu_threads=None)  # the trainer's modules: the same computation, bit for bit
    x, _ = next(toy_data.test.batches(8))
    trainer.model.eval()
    with torch.inference_mode():
        ref, out = trainer.model(x), model(x)
    torch.testing.assert_close(out.cls_logits, ref.cls_logits, rtol=0, atol=0)
    torch.testing.assert_close(out.gist_logits, ref.gist_logits, rtol=0, atol=0)
    assert model.class_names == toy_data.class_names and loaded_cfg.method_args == {"rank": 4}
    assert predict(model, x, model.class_names)[0]["top"][0]["class"] in toy_data.class_names
    tensors, meta = read_checkpoint(tmp_path / "run")
    assert all(".lora_" in k or k.startswith(("vit.head", "gist_token")) for k in tensors)
    assert meta["seed"] == cfg.train.seed and "torch" in meta["versions"]

    other = load_run_config({**meta["config"], "method_args": {"rank": 8}})
    from gist_engine import build_model

    with pytest.raises(CheckpointError, match="shape mismatch"):
        save_checkpoint(build_model(other), tmp_path / "r8.safetensors", other)
        from gist_engine.train.checkpoint import load_trainable_state

        load_trainable_state(model, read_checkpoint(tmp_path / "r8.safetensors")[0])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04\x95 pickle-ish bytes")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(bad)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "nowhere")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gist_engine", *args], capture_output=True, text=True, timeout=600)


DEMO = ["--config", "assets/configs/demo_cpu.yaml", "--set", "image_size=56", "--set", "data.train_size=40",
        "--set", "data.test_size=30", "--set", "train.batch_size=20"]


@pytest.mark.slow
def test_cli_train_and_predict_with_the_offline_backbone(tmp_path):
    out = run_cli("train", *DEMO, "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    for key in ("status", "acc_cls", "best_acc_cls", "acc_gist", "agreement", "trainable_params", "gist_params",
                "total_params", "steps", "train_seconds", "images_per_second", "history", "config", "versions"):
        assert key in result, key
    assert result["status"] == "completed" and result["steps"] == 2 and result["gist_params"] == 384
    assert result["config"]["backbone"] == "dinov2_s14" and len(result["history"]["steps"]) == 2

    from PIL import Image

    Image.new("RGB", (28, 28), (200, 10, 10)).save(tmp_path / "red.png")
    out = run_cli("predict", "--run", str(tmp_path / "run"), "--image", str(tmp_path / "red.png"))
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["top"]) == 5
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    out = run_cli("predict", "--run", str(tmp_path / "run"), "--image", str(tmp_path / "broken.png"))
    assert out.returncode == 2 and "broken.png" in out.stderr


@pytest.mark.slow
def test_cli_compare_writes_paired_statistics(tmp_path):
    out = run_cli("compare", *DEMO, "--set", "data.train_size=20", "--seeds", "2", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert [r["seed"] for r in summary["seeds"]] == [0, 1]
    assert len(summary["runs"]) == 4 and summary["extra_params"] == 384
    d = summary["delta_acc_cls"]
    deltas = [r["gist_acc_cls"] - r["plain_acc_cls"] for r in summary["seeds"]]
    assert d["deltas"] == pytest.approx(deltas) and d["mean"] == pytest.approx(sum(deltas) / 2)
    assert "mean delta" in out.stdout and "paired" not in summary  # the object stays out of the JSON
    assert d["note"] == interval_note(2) and "2 seeds cannot bound the interval usefully" in out.stdout
    assert -1.0 <= d["ci_low"] <= d["mean"] <= d["ci_high"] <= 1.0


def test_trainer_records_attention_snapshots_when_asked(toy_data, tmp_path):
    from gist_engine.inspect import list_snapshots, load_snapshot

    result = Trainer(config(epochs=1, attention_every=3, probe_images=2), run_dir=tmp_path, data=toy_data).run()
    assert result.status == "completed" and result.steps == 8
    assert list_snapshots(tmp_path) == [0, 3, 6, 8]  # step 0, every 3 steps, and the last step
    maps = load_snapshot(tmp_path, 3)
    assert maps.cls_maps.shape[0] == 2 and maps.gist_maps is not None
