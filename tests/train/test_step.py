"""One optimisation step (train.step) and its speed wrappers (speed.step): compiled = eager, a compile failure falls
back, the step and the trainer's fast loop equal the plain loop, whole-step CUDA graphs equal eager steps (falling
back to the plain step on a CPU), text batches."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from gist_engine import build_model, speed
from gist_engine.config import load_run_config
from gist_engine.data import DatasetSplits, TensorSplit
from gist_engine.losses import LOSS_TERMS, gist_loss
from gist_engine.speed import step as step_module
from gist_engine.speed.step import CompiledStep, GraphedStep
from gist_engine.train import Callback, Trainer, param_groups, seed_everything, warmup_cosine
from gist_engine.train.step import TrainStep, make_optimizer
from tests.models import model, step_for
from tests.toydata import squares_splits

HALF = (0.5, 0.5, 0.5)
CPU = torch.device("cpu")
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def toy_data() -> DatasetSplits:
    g = torch.Generator().manual_seed(0)
    names = ["a", "b", "c", "d"]

    def split(n: int) -> TensorSplit:
        y = torch.arange(n) % 4
        x = torch.randint(0, 60, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        x[:, y % 3] += (40 * (1 + y)).to(torch.uint8).view(-1, 1, 1)  # a class-coloured tint
        return TensorSplit(x, y, names, HALF, HALF, "cpu")

    return DatasetSplits(train=split(40), val=None, test=split(16), class_names=names, info={"name": "toy"})


def run_config(**train):
    return load_run_config({"backbone": "test_vit", "method": "adapter", "gist": {"dropout": 0.1},
                            "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "warmup_epochs": 0.5, **train}})


def squares(device: str = "cpu") -> DatasetSplits:
    return squares_splits(36, 16, device)


# ------------------------------------------------------------------------------------------------- the step
def _step(compile: bool, backend: str = "aot_eager", seed: int = 0) -> tuple[TrainStep, torch.nn.Module]:
    model = build_model({"backbone": "test_vit", "method": "adapter", "gist": {"dropout": 0.0}}, seed=seed).train()
    opt = make_optimizer(param_groups(model, 1e-4), 1e-2, CPU)
    params = [p for g in opt.param_groups for p in g["params"]]
    step = TrainStep(model, opt, params, CPU, "fp32", grad_clip=1.0, gist=model.gist_cfg)
    return speed.install_step(step, compile=compile, backend=backend), model


def test_a_failing_compile_falls_back_to_eager_with_a_warning(caplog):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    torch._dynamo.reset()
    eager, _ = _step(False)
    compiled, _ = _step(True, backend=broken_backend)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with caplog.at_level(logging.WARNING, logger="gist_engine.speed.step"):
        b = compiled(x, y)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "training continues eagerly" in caplog.records[0].getMessage()
    torch.testing.assert_close(b, eager(x, y), rtol=0, atol=0)
    assert not compiled.compiled and "no compiler here" in compiled.compile_error
    torch.testing.assert_close(compiled(x, y), eager(x, y), rtol=0, atol=0)  # and stays eager


def test_compiled_and_eager_steps_give_the_same_losses(toy_data, monkeypatch):
    """train.compile through the Trainer (aot_eager: dynamo + AOTAutograd, no kernel generation, to stay fast)."""
    monkeypatch.setattr(step_module, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    cfg = run_config(epochs=1, max_steps=4, grad_clip=1.0)
    cfg.gist.dropout = 0.0
    eager = Trainer(cfg, data=toy_data).run()
    cfg.train.compile = True
    trainer = Trainer(cfg, data=toy_data)
    compiled = trainer.run()
    assert compiled.status == "completed" and compiled.steps == 4
    assert isinstance(trainer.train_step, CompiledStep) and trainer.train_step.compiled
    for a, b in zip(eager.history["steps"], compiled.history["steps"], strict=True):
        for k in LOSS_TERMS:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), (a["step"], k)
    assert compiled.acc_cls == pytest.approx(eager.acc_cls)


def test_the_compiled_step_compiles_once(toy_data):
    """One graph for the batch shape; a different (last) batch runs eagerly instead of compiling again."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    step, _ = _step(True, backend=counting_backend)
    eager, _ = _step(False)
    g = torch.Generator().manual_seed(1)
    after_first = None
    for batch in (4, 4, 3, 4):
        x, y = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
        torch.testing.assert_close(step(x, y), eager(x, y), rtol=1e-5, atol=1e-6)
        after_first = after_first or len(graphs)
    assert step.compiled and len(graphs) == after_first >= 1


def plain_loop(cfg, data) -> list[dict[str, float]]:
    """The straightforward training loop (a host sync per step): what the fast path must reproduce exactly."""
    seed_everything(cfg.train.seed)
    model = build_model(load_run_config(cfg, ["num_classes=4"]), seed=cfg.train.seed).train()
    speed.install(model, CPU, cpu_threads=None)  # the trainer's model (it is compared with the plain one elsewhere)
    tc = cfg.train
    steps_per_epoch = math.ceil(len(data.train) / tc.batch_size)
    total, warmup = tc.epochs * steps_per_epoch, round(tc.warmup_epochs * steps_per_epoch)
    opt = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total))
    history = []
    for epoch in range(tc.epochs):
        order = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
        for x, y in data.train.batches(tc.batch_size, shuffle=True, generator=order):
            out = model(x)
            terms = gist_loss(out.cls_logits, out.gist_logits, y, model.gist_cfg)
            opt.zero_grad()
            terms["total"].backward()
            opt.step()
            sched.step()
            history.append({k: terms[k].item() for k in LOSS_TERMS} | {"lr": sched.get_last_lr()[0]})
    return history


class Steps(Callback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, trainer, step, metrics):
        self.steps.append(step)


@pytest.mark.parametrize("log_every", [1, 3])
def test_fast_path_equals_the_plain_loop_on_a_fixed_seed(toy_data, log_every):
    cfg = run_config(log_every=log_every)
    seen = Steps()
    result = Trainer(cfg, callbacks=[seen], data=toy_data).run()
    expected = plain_loop(cfg, toy_data)
    assert result.status == "completed" and seen.steps == list(range(1, 11)) == [s["step"] for s in
                                                                                   result.history["steps"]]
    for got, want in zip(result.history["steps"], expected, strict=True):
        assert {k: got[k] for k in want} == want  # bit-for-bit


def test_a_non_finite_loss_is_reported_at_its_exact_step_with_log_every(toy_data, monkeypatch):
    trainer = Trainer(run_config(log_every=4), data=toy_data)
    trainer.setup()
    real = type(trainer.model).forward

    def poisoned(*args, **kwargs):
        out = real(trainer.model, *args, **kwargs)
        if trainer.step == 2:  # the forward of step 3
            return type(out)(out.cls_logits * float("nan"), out.gist_logits)
        return out

    monkeypatch.setattr(trainer.model, "forward", poisoned)
    result = trainer.run()
    assert result.status == "diverged" and result.diverged_step == 3 and result.steps == 3
    assert "non-finite at step 3" in result.error
    assert [s["step"] for s in result.history["steps"]] == [1, 2, 3]


# ----------------------------------------------------------------------------------------------- CUDA graphs
def test_cuda_graphs_are_off_on_the_cpu():
    step = step_for(model(), CPU, "fp32", cuda_graph=True)
    assert type(step) is TrainStep and not step.graphed  # the plain step: no wrapper installed
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    assert torch.isfinite(step(x, y)).all()


@cuda_only
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_replays_equal_eager_steps_with_a_schedule_and_a_last_batch(precision):
    """Warm-up steps, the capture, replays, another batch shape and lr changes: the same numbers as eager."""
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    nets = [model().to(dev), model().to(dev)]
    eager, graphed = step_for(nets[0], dev, precision), step_for(nets[1], dev, precision, cuda_graph=True)
    scheds = [torch.optim.lr_scheduler.LambdaLR(s.optimizer, lambda i: warmup_cosine(i, 2, 12))
              for s in (eager, graphed)]
    g = torch.Generator().manual_seed(0)
    for i, batch in enumerate((8, 8, 8, 8, 8, 5, 8, 8, 5, 8, 8, 8)):
        x = torch.randn(batch, 3, 32, 32, generator=g).to(dev)
        y = torch.randint(0, 10, (batch,), generator=g).to(dev)
        a, b = eager(x, y), graphed(x, y)
        tol = 1e-4 if precision == "fp32" else 2e-2  # bf16: kernels may differ in summation order
        torch.testing.assert_close(b, a, rtol=tol, atol=tol / 10, msg=f"step {i + 1}")
        for s in scheds:
            s.step()
    assert isinstance(graphed, GraphedStep) and graphed.graphed and graphed.graph_error is None
    assert len(graphed._graphs) == 2
    if precision == "fp32":
        for pa, pb in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
            torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5)


@cuda_only
def test_trainer_with_and_without_cuda_graphs_on_the_gpu():
    base = {"backbone": "test_vit", "method": "adapter", "gist": {"dropout": 0.0},
            "train": {"epochs": 3, "batch_size": 8, "lr": 1e-2, "warmup_epochs": 1, "device": "cuda",
                      "grad_clip": 1.0, "log_every": 4}}
    runs = []
    for graph in (False, True):
        cfg = load_run_config(base, [f"train.cuda_graph={str(graph).lower()}"])
        trainer = Trainer(cfg, data=squares("cuda"))
        runs.append(trainer.run())
        assert runs[-1].status == "completed", runs[-1].error
        assert trainer.train_step.graphed is graph
    for a, b in zip(runs[0].history["steps"], runs[1].history["steps"], strict=True):
        assert b["total"] == pytest.approx(a["total"], rel=1e-2, abs=1e-3) and b["lr"] == a["lr"]


def test_text_models_train_with_bf16_frozen_weights_and_compiled():
    """The text encoder's dict batches through the same step: bf16 frozen weights, and torch.compile (aot_eager)."""
    texts = ["a good film", "terrible plot and acting", "fine", "what a wonderful day to be alive"]
    y = torch.tensor([0, 1, 2, 0])
    losses = {}
    for case in ("fp32", "bf16 frozen", "compiled"):
        net = build_model({"backbone": "test_bert", "method": "adapter", "num_classes": 3,
                           "gist": {"dropout": 0.0}}, seed=0).train()
        if case == "bf16 frozen":
            speed.install(net, CPU, precision="bf16", frozen_dtype="bf16", cpu_threads=None)
        torch._dynamo.reset()
        step = step_for(net, CPU, "bf16" if case == "bf16 frozen" else "fp32", compile=case == "compiled",
                        backend="aot_eager")
        batch = net.tokenize(texts, max_length=16)
        losses[case] = torch.stack([step(batch, y) for _ in range(3)])
        assert step.compiled is (case == "compiled")
    torch.testing.assert_close(losses["compiled"], losses["fp32"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["bf16 frozen"], losses["fp32"], rtol=2e-2, atol=2e-2)
