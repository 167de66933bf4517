"""The release's training protocol (issue 18): timm 0.6.13's epoch-stepped cosine, drop-path on the attention and
MLP branches only, weight decay on the tokens, drop_last, fp16 with a gradient scaler, best-epoch evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from timm.layers import DropPath

from gist_engine import build_model, speed
from gist_engine.config import ConfigError, load_run_config
from gist_engine.data import DatasetSplits
from gist_engine.train import Callback, Trainer, cosine_epoch_lr, param_groups, steps_per_epoch
from gist_engine.train import step as step_module
from gist_engine.train import trainer as trainer_module
from gist_engine.train.checkpoint import RESUME_NAME, read_training_state, trainable_state
from gist_engine.tuners.adapter import ParallelAdapterBlock
from tests.models import randomise
from tests.toydata import squares_splits

LR = 1e-3  # the release's base lr for the GIST adapter on VTAB-1k is of this order; any lr gives the same ratios


@pytest.fixture(scope="module")
def toy_data() -> DatasetSplits:
    return squares_splits(64, 32)


def config(**train):
    return load_run_config({"backbone": "test_vit", "method": "adapter", "gist": {"dropout": 0.0},
                            "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, **train}})


# ------------------------------------------------------------------------------------------------ the schedule
def release_lr(epoch: int) -> float:
    """The release's schedule: lr given, 100 + 10 epochs, 10 warm-up, warmup_lr 1e-7, min_lr 1e-8."""
    return cosine_epoch_lr(epoch, LR, 100, 10, 1e-7, 1e-8)


def test_cosine_epoch_reproduces_timm_0_6_13_at_the_papers_epochs():
    assert release_lr(0) == pytest.approx(1e-7, rel=1e-12)
    assert release_lr(5) == pytest.approx(1e-7 + 5 * (LR - 1e-7) / 10, rel=1e-12)  # linear warm-up
    assert release_lr(10) == pytest.approx(0.9755 * LR, rel=1e-4)  # the cosine counts the warm-up: not lr
    assert release_lr(10) == pytest.approx(1e-8 + 0.5 * (LR - 1e-8) * (1 + math.cos(math.pi / 10)), rel=1e-12)
    assert release_lr(50) == pytest.approx(1e-8 + 0.5 * (LR - 1e-8), rel=1e-12)
    assert release_lr(99) > 1e-8
    assert all(release_lr(e) == 1e-8 for e in range(100, 110))  # the cool-down


def test_cosine_epoch_equals_timms_cosine_scheduler_as_the_release_configures_it():
    """The installed timm's CosineLRScheduler keeps 0.6.13's formula for these arguments: a second witness."""
    from timm.scheduler import CosineLRScheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = CosineLRScheduler(opt, t_initial=100, lr_min=1e-8, warmup_t=10, warmup_lr_init=1e-7, cycle_limit=1,
                              t_in_epochs=True, warmup_prefix=False)
    assert sched.get_cycle_length() + 10 == 110  # the release runs get_cycle_length() + cooldown_epochs epochs
    for epoch in range(110):
        sched.step(epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(release_lr(epoch), rel=1e-12, abs=1e-20), epoch


def test_cooldown_needs_the_epoch_schedule():
    with pytest.raises(ConfigError, match=r"train\.cooldown_epochs"):
        config(cooldown_epochs=2)
    assert config(lr_schedule="cosine_epoch", cooldown_epochs=2).train.total_epochs == 4
    assert config().train.total_epochs == 2


class OptimizerLR:
    """Records the lr of the optimiser's first group at every optimiser step (a step pre-hook)."""

    def __init__(self, monkeypatch):
        self.lrs: list[float] = []
        real = trainer_module.make_optimizer

        def make(*args, **kwargs):
            opt = real(*args, **kwargs)
            opt.register_step_pre_hook(lambda o, a, k: self.lrs.append(float(o.param_groups[0]["lr"])))
            return opt

        monkeypatch.setattr(trainer_module, "make_optimizer", make)


def test_trainer_runs_the_cooldown_at_each_epochs_lr(toy_data, monkeypatch):
    rec = OptimizerLR(monkeypatch)
    cfg = config(epochs=4, warmup_epochs=1, lr_schedule="cosine_epoch", warmup_lr=1e-5, min_lr=1e-6,
                 cooldown_epochs=2)
    result = Trainer(cfg, data=toy_data).run()
    assert result.status == "completed" and result.steps == 6 * 4 and result.epochs_done == 6
    want = [cosine_epoch_lr(e, 3e-3, 4, 1, 1e-5, 1e-6) for e in range(6) for _ in range(4)]
    assert rec.lrs == pytest.approx(want, rel=1e-12)
    assert want[0] == 1e-5 and want[-1] == 1e-6 and len(result.history["evals"]) == 6


def test_resume_restores_the_epochs_lr_and_continues_bit_for_bit(toy_data, tmp_path, monkeypatch):
    cfg = config(epochs=3, warmup_epochs=1, lr_schedule="cosine_epoch", cooldown_epochs=1, checkpoint_every=1)
    reference = Trainer(cfg, run_dir=tmp_path / "ref", data=toy_data)
    ref = reference.run()

    class Crash(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 6:
                raise KeyboardInterrupt  # in epoch 2, after the epoch-1 state

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path / "run", data=toy_data, callbacks=[Crash()]).run()
    rec = OptimizerLR(monkeypatch)
    resumed = Trainer(cfg, run_dir=tmp_path / "run", data=toy_data, resume_from=tmp_path / "run" / RESUME_NAME)
    res = resumed.run()
    assert rec.lrs == pytest.approx([cosine_epoch_lr(e, 3e-3, 3, 1) for e in (1, 2, 3) for _ in range(4)],
                                    rel=1e-12)
    assert res.steps == ref.steps == 16
    assert [s["total"] for s in res.history["steps"]] == [s["total"] for s in ref.history["steps"]]
    assert [s["lr"] for s in res.history["steps"]] == [s["lr"] for s in ref.history["steps"]]
    a, b = trainable_state(reference.model), trainable_state(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------- drop-path
def tiny(rate: float, method: str = "adapter", **args) -> torch.nn.Module:
    return build_model({"backbone": "test_vit", "method": method, "method_args": args, "drop_path_rate": rate,
                        "gist": {"dropout": 0.0}}, seed=0)


def test_drop_path_rates_follow_timms_depth_rule_on_the_two_branches_only():
    model = tiny(0.2)
    blocks = model.vit.blocks
    assert [type(b.base_layer.drop_path1).__name__ for b in blocks] == ["Identity", "DropPath"]  # linspace(0, r, 2)
    assert blocks[1].base_layer.drop_path1.drop_prob == blocks[1].base_layer.drop_path2.drop_prob == pytest.approx(0.2)
    dropped = {n for n, m in model.named_modules() if isinstance(m, DropPath)}
    assert dropped == {"vit.blocks.1.base_layer.drop_path1", "vit.blocks.1.base_layer.drop_path2"}
    assert all(type(b.base_layer.drop_path1).__name__ == "Identity" for b in tiny(0.0).vit.blocks)
    with pytest.raises(ConfigError, match="drop_path_rate"):
        load_run_config({"drop_path_rate": 1.0})
    with pytest.raises(ConfigError, match="text backbone"):
        build_model({"backbone": "test_bert", "drop_path_rate": 0.1})


def test_drop_path_zeroes_whole_samples_of_a_branch_in_training_and_nothing_in_eval():
    model, plain = tiny(0.5), tiny(0.0)
    randomise(model, ("adapter",))
    randomise(plain, ("adapter",))
    seen = []
    dp = model.vit.blocks[1].base_layer.drop_path1
    dp.register_forward_hook(lambda m, inp, out: seen.append((inp[0].detach(), out.detach())))
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        a = model.train()(x).cls_logits
        torch.manual_seed(2)
        b = model(x).cls_logits
        model.eval(), plain.eval()
        c, d, ref = model(x).cls_logits, model(x).cls_logits, plain(x).cls_logits
    assert not torch.allclose(a, b)  # training: the draws differ with the seed
    for inp, out in seen[:2]:  # per sample, the branch is either dropped or kept and scaled by 1 / keep
        kept = out.flatten(1).abs().sum(1) > 0
        assert 0 < kept.sum() < len(kept)
        torch.testing.assert_close(out[kept], inp[kept] / 0.5)
    assert torch.equal(seen[2][0], seen[2][1])  # eval: identity
    assert torch.equal(c, d) and torch.equal(c, ref)  # eval: deterministic, the model without drop-path


def test_the_adapter_beside_a_dropped_branch_is_always_added():
    model = tiny(0.9).train()
    randomise(model, ("adapter",))
    block = model.vit.blocks[1]
    assert isinstance(block, ParallelAdapterBlock)
    b = block.base_layer
    rec: dict[str, list[torch.Tensor]] = {"in": [], "dp1": [], "dp2": [], "adapter": []}
    block.register_forward_pre_hook(lambda m, args: rec["in"].append(args[0]))
    b.drop_path1.register_forward_hook(lambda m, i, o: rec["dp1"].append(o))
    b.drop_path2.register_forward_hook(lambda m, i, o: rec["dp2"].append(o))
    block.adapter.register_forward_hook(lambda m, i, o: rec["adapter"].append(o))
    out = []
    block.register_forward_hook(lambda m, i, o: out.append(o))
    torch.manual_seed(0)
    with torch.no_grad():
        model(torch.randn(32, 3, 32, 32))
    x, (a_attn, a_mlp) = rec["in"][0], rec["adapter"]
    dropped = rec["dp1"][0].flatten(1).abs().sum(1) == 0
    assert dropped.any()  # rate 0.9: most samples lose the attention branch ...
    assert (a_attn[dropped].flatten(1).abs().sum(1) > 0).all()  # ... but never the adapter beside it
    torch.testing.assert_close(out[0], x + rec["dp1"][0] + a_attn + rec["dp2"][0] + a_mlp, rtol=1e-6, atol=1e-6)


def test_speed_shortcuts_drop_the_same_samples_as_the_plain_blocks():
    plain, fast = tiny(0.5).train(), tiny(0.5).train()
    speed.install(fast, "cpu", cpu_threads=None)
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(3)
        a = plain(x)
        torch.manual_seed(3)
        b = fast(x)
    torch.testing.assert_close(b.cls_logits, a.cls_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.gist_logits, a.gist_logits, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------------- weight decay
def test_token_weight_decay_moves_the_gist_token_and_prompts_into_the_decay_group():
    model = build_model({"backbone": "test_vit", "method": "vpt", "method_args": {"deep": True}})
    names = {id(p): n for n, p in model.named_parameters()}
    prompts = {n for n in names.values() if n.endswith("prompt")}
    assert prompts == {"vit.blocks.0.prompt", "vit.blocks.1.prompt"}
    for decay_tokens, in_decay in ((False, {"vit.head.weight"}), (True, {"vit.head.weight", "gist_token", *prompts})):
        decay, no_decay = param_groups(model, 0.1, decay_tokens)
        assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
        assert {names[id(p)] for p in decay["params"]} == in_decay
        assert {names[id(p)] for p in no_decay["params"]} == {"vit.head.bias", "gist_token", *prompts} - in_decay
    full = build_model({"backbone": "test_vit", "method": "full"})
    names = {id(p): n for n, p in full.named_parameters()}
    decay, no_decay = param_groups(full, 0.1, True)
    assert "gist_token" in {names[id(p)] for p in decay["params"]}
    assert {"vit.cls_token", "vit.pos_embed"} <= {names[id(p)] for p in no_decay["params"]}  # the backbone's stay


def test_the_trainer_builds_its_groups_from_token_weight_decay(toy_data, monkeypatch):
    groups = []
    real = trainer_module.param_groups
    monkeypatch.setattr(trainer_module, "param_groups", lambda *a: groups.append(real(*a)) or groups[-1])
    Trainer(config(epochs=1, max_steps=1, token_weight_decay=True), data=toy_data).run()
    decay = groups[0][0]["params"]
    gist = [p for p in decay if p.ndim == 3]
    assert len(gist) == 1 and gist[0].shape == (1, 1, 32)  # the Gist token, decayed


# ----------------------------------------------------------------------------------------------- drop_last
def test_drop_last_counts_whole_batches_only(monkeypatch):
    assert steps_per_epoch(1000, 64, drop_last=True) == 15  # the release: 960 images per epoch
    assert steps_per_epoch(1000, 64) == 16  # 15 x 64 + 40
    assert steps_per_epoch(100, 16, True) == 6 and steps_per_epoch(100, 16) == 7
    with pytest.raises(ConfigError, match=r"train\.drop_last"):
        steps_per_epoch(10, 16, True)
    data = squares_splits(100, 16)
    for drop_last, steps in ((True, 6), (False, 7)):
        seen = []
        real = type(data.train).batches

        def spy(self, *args, _seen=seen, _real=real, **kwargs):
            for x, y in _real(self, *args, **kwargs):
                if kwargs.get("shuffle"):
                    _seen.append(len(y))
                yield x, y

        monkeypatch.setattr(type(data.train), "batches", spy)
        result = Trainer(config(epochs=2, drop_last=drop_last), data=data).run()
        monkeypatch.undo()
        assert result.steps == 2 * steps and result.epochs_done == 2
        assert seen == ([16] * 6 if drop_last else [16] * 6 + [4]) * 2


# -------------------------------------------------------------------------------------------------- fp16
def test_fp16_steps_lower_the_loss_on_the_cpu(toy_data):
    cfg = load_run_config(config(epochs=6, lr=1e-3, precision="fp16", device="cpu"), ["method=full"])
    result = Trainer(cfg, data=toy_data).run()
    assert result.status == "completed" and result.precision == "fp16"
    totals = [s["total"] for s in result.history["steps"]]
    assert all(math.isfinite(t) for t in totals)
    assert sum(totals[-4:]) < 0.85 * sum(totals[:4]), totals  # the first epoch's loss vs the last's


def test_a_step_the_scaler_skips_is_not_a_divergence(toy_data, monkeypatch):
    monkeypatch.setattr(step_module, "grad_scaler", lambda device, precision: torch.amp.GradScaler(
        device.type, init_scale=2.0 ** 100))  # every gradient overflows: every step is skipped
    trainer = Trainer(config(epochs=1, precision="fp16", device="cpu"), data=toy_data)
    trainer.setup()
    before = {k: v.clone() for k, v in trainable_state(trainer.model).items()}
    result = trainer.run()
    assert result.status == "completed" and result.steps == 4
    assert all(math.isfinite(s["total"]) for s in result.history["steps"])
    after = trainable_state(trainer.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing was applied
    assert trainer.train_step.scaler.get_scale() == 2.0 ** 96  # halved at each skipped step


def test_the_scaler_state_round_trips_through_resume(toy_data, tmp_path):
    cfg = config(epochs=3, precision="fp16", device="cpu", checkpoint_every=1)
    reference = Trainer(cfg, run_dir=tmp_path / "ref", data=toy_data)
    ref = reference.run()

    class Crash(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 4:
                self.scale = trainer.train_step.scaler.state_dict()  # after epoch 1: what the state holds
            if step == 6:
                raise KeyboardInterrupt

    crash = Crash()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path / "run", data=toy_data, callbacks=[crash]).run()
    _, meta = read_training_state(tmp_path / "run" / RESUME_NAME)
    assert meta["state"]["scaler"] == crash.scale and crash.scale["scale"] < 65536.0  # it backed off, and kept it
    resumed = Trainer(cfg, run_dir=tmp_path / "run", data=toy_data, resume_from=tmp_path / "run" / RESUME_NAME)
    res = resumed.run()
    assert [s["total"] for s in res.history["steps"]] == [s["total"] for s in ref.history["steps"]]
    assert resumed.train_step.scaler.state_dict() == reference.train_step.scaler.state_dict()
    a, b = trainable_state(reference.model), trainable_state(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fp16_refuses_bf16_frozen_weights():
    with pytest.raises(ConfigError, match="frozen_dtype"):
        config(precision="fp16", frozen_dtype="bf16")


# ------------------------------------------------------------------------------------------------ evaluation
def test_best_is_the_maximum_of_the_per_epoch_evaluations(toy_data):
    result = Trainer(config(epochs=5, eval_every=1, lr=1e-2), data=toy_data).run()
    evals = result.history["evals"]
    assert [e["epoch"] for e in evals] == [1, 2, 3, 4, 5]
    best = max(evals, key=lambda e: e["acc_cls"])  # the first epoch reaching the maximum
    assert result.best_acc_cls == best["acc_cls"] and result.best_step == best["step"]
    assert result.acc_cls == evals[-1]["acc_cls"]  # the final epoch's, beside the best
    assert len({e["acc_cls"] for e in evals}) > 1  # the maximum is chosen among different values


def test_evaluation_runs_in_inference_mode_with_the_large_batch(toy_data, monkeypatch):
    seen = []
    trainer = Trainer(config(epochs=1), data=toy_data)
    trainer.setup()
    real = type(toy_data.test).batches

    def spy(self, batch_size, *args, **kwargs):
        for x, y in real(self, batch_size, *args, **kwargs):
            seen.append((batch_size, torch.is_inference_mode_enabled(), trainer.model.training))
            yield x, y

    monkeypatch.setattr(type(toy_data.test), "batches", spy)
    trainer.evaluate()
    assert seen and all(s == (speed.eval_batch_size(trainer.device, 0), True, False) for s in seen)
    assert speed.eval_batch_size(torch.device("cuda"), 0) == 1024
