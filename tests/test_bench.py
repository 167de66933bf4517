"""The benchmark and the training fast path: JSON report, reference parity, compiled = eager, fast = plain."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from gist_engine import build_model, cli, fastpath
from gist_engine.bench import ExtraTokenViT, add_hooked_adapters, count_flops, reference_loss
from gist_engine.config import load_run_config
from gist_engine.data import DatasetSplits, TensorSplit
from gist_engine.fastpath import TrainStep, choose_cpu_threads, eval_batch_size, idle_cpus, make_optimizer, usable_cpus
from gist_engine.losses import LOSS_TERMS, gist_loss
from gist_engine.train import Callback, Trainer, param_groups, warmup_cosine

HALF = (0.5, 0.5, 0.5)
CPU = torch.device("cpu")


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


# --------------------------------------------------------------------------------------------- the benchmark
def test_bench_cli_writes_well_formed_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "--device", "cpu", "--backbone", "test_vit", "--image-size", "32", "--batch-size", "4",
                     "--methods", "linear,adapter,lora", "--repeats", "2", "--steps", "1", "--warmup", "1",
                     "--json-out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "img/s" in printed and "adapter+gist" in printed and "GIST overhead on adapter" in printed

    def no_nan(token):
        raise AssertionError(f"non-JSON number {token}")

    report = json.loads(out.read_text(), parse_constant=no_nan)
    assert {"config", "environment", "ceiling", "rows", "summary", "notes"} <= set(report)
    assert report["ceiling"]["tflops"] > 0 and report["environment"]["threads"] >= 1
    rows = {r["name"]: r for r in report["rows"]}
    ours = ["linear", "linear+gist", "adapter", "adapter+gist", "lora", "lora+gist"]
    refs = ["ref_adapter", "ref_adapter+token"]
    try:
        import peft  # noqa: F401
    except ImportError:
        assert any("peft" in n for n in report["notes"])
    else:
        refs += ["ref_lora", "ref_lora+token"]
    assert list(rows) == ours + refs
    for r in rows.values():
        assert r["images_per_second"] > 0 and r["step_ms"] > 0 and len(r["step_ms_repeats"]) == 2
        assert r["flops_per_step"] > 0 and r["tflops"] > 0 and r["pct_of_ceiling"] > 0
        assert r["compiled"] is False and r["peak_mem_mb"] is None  # CPU
    # GIST adds one token (and, for a linear probe, the backward through every block)
    assert rows["adapter+gist"]["flops_per_step"] > rows["adapter"]["flops_per_step"]
    assert rows["linear+gist"]["flops_per_step"] > 1.5 * rows["linear"]["flops_per_step"]
    # the same model, but ours runs its last block for the head rows only (exact; model.forward_rows)
    assert rows["adapter"]["flops_per_step"] < rows["ref_adapter"]["flops_per_step"]
    assert rows["adapter+gist"]["reference"] == "ref_adapter+token"
    assert rows["adapter+gist"]["vs_reference"] == pytest.approx(
        rows["adapter+gist"]["images_per_second"] / rows["ref_adapter+token"]["images_per_second"])
    assert rows["adapter+gist"]["gist_overhead_pct"] == pytest.approx(
        100 * (rows["adapter+gist"]["step_ms"] / rows["adapter"]["step_ms"] - 1))
    assert rows["linear"]["vs_reference"] is None and rows["adapter"]["gist_overhead_pct"] is None
    s = report["summary"]
    assert s["adapter_gist_vs_eager_reference"] == rows["adapter+gist"]["vs_reference"]
    assert set(s["gist_overhead_pct"]) == {"linear", "adapter", "lora"}


@pytest.mark.parametrize("stock", [False, True])
def test_bench_without_reference_times_only_ours(tmp_path, capsys, monkeypatch, stock):
    seen = []
    real = fastpath.enable_fused_attention  # what prepare_for_training calls for the bench's models
    monkeypatch.setattr(fastpath, "enable_fused_attention",
                        lambda model, packed_qkv=True: seen.append(packed_qkv) or real(model, packed_qkv))
    out = tmp_path / "b.json"
    assert cli.main(["bench", "--device", "cpu", "--backbone", "test_vit", "--image-size", "32", "--batch-size", "2",
                     "--methods", "linear", "--repeats", "1", "--steps", "1", "--no-reference",
                     *(["--stock-modules"] if stock else []), "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["rows"]] == ["linear", "linear+gist"] and not report["config"]["reference"]
    assert report["config"]["stock_modules"] is stock and seen == [not stock, not stock]
    assert ("stock timm modules" in capsys.readouterr().out) is stock


def test_bench_rejects_an_unknown_method(capsys):
    assert cli.main(["bench", "--device", "cpu", "--backbone", "test_vit", "--methods", "nope",
                     "--no-reference"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_references_compute_what_our_engine_computes():
    """The hooked adapter + extra token on plain timm equals GistViT's gist adapter with GIST on (same weights)."""
    ours = build_model({"backbone": "test_vit", "method": "adapter", "gist": {"dropout": 0.0}}, seed=0).eval()
    vit = ours.vit
    plain = build_model({"backbone": "test_vit", "method": "linear", "gist": {"enabled": False}}, seed=1).vit
    plain.load_state_dict({k.replace(".base_layer", ""): v for k, v in vit.state_dict().items()
                           if ".adapter." not in k}, strict=True)
    add_hooked_adapters(plain)
    for block, hooked in zip(vit.blocks, plain.hooked_adapters, strict=True):
        hooked[0].load_state_dict(block.adapter.down.state_dict())
        hooked[2].load_state_dict(block.adapter.up.state_dict())
    ref = ExtraTokenViT(plain).eval()
    ref.token.data.copy_(ours.gist_token.data)
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    with torch.no_grad():
        out, (cls_ref, tok_ref) = ours(x), ref(x)
    torch.testing.assert_close(cls_ref, out.cls_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tok_ref, out.gist_logits, rtol=1e-5, atol=1e-5)
    expected = gist_loss(out.cls_logits, out.gist_logits, y, ours.gist_cfg)["total"]
    torch.testing.assert_close(reference_loss(cls_ref, tok_ref, y), expected, rtol=1e-5, atol=1e-6)


def test_flop_counter_counts_fused_attention_on_cpu():
    model = build_model({"backbone": "test_vit", "method": "linear"}, seed=0)
    x = torch.randn(2, 3, 32, 32)
    fused = count_flops(lambda: model(x))
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    unfused = count_flops(lambda: model(x))  # explicit q @ k^T and attn @ v matmuls
    assert fused == unfused > 0


# ------------------------------------------------------------------------------------------------- the fast path
def _step(compile: bool, backend: str = "aot_eager", seed: int = 0) -> tuple[TrainStep, torch.nn.Module]:
    model = build_model({"backbone": "test_vit", "method": "adapter", "gist": {"dropout": 0.0}}, seed=seed).train()
    opt = make_optimizer(param_groups(model, 1e-4), 1e-2, CPU)
    params = [p for g in opt.param_groups for p in g["params"]]
    return TrainStep(model, opt, params, CPU, "fp32", grad_clip=1.0, compile=compile, backend=backend), model


def test_a_failing_compile_falls_back_to_eager_with_a_warning():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    torch._dynamo.reset()
    eager, _ = _step(False)
    compiled, _ = _step(True, backend=broken_backend)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with pytest.warns(RuntimeWarning, match="training continues eagerly"):
        b = compiled(x, y)
    torch.testing.assert_close(b, eager(x, y), rtol=0, atol=0)
    assert not compiled.compiled and "no compiler here" in compiled.compile_error
    torch.testing.assert_close(compiled(x, y), eager(x, y), rtol=0, atol=0)  # and stays eager


def test_compiled_and_eager_steps_give_the_same_losses(toy_data, monkeypatch):
    """train.compile through the Trainer (aot_eager: dynamo + AOTAutograd, no kernel generation, to stay fast)."""
    monkeypatch.setattr("gist_engine.fastpath.COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    cfg = run_config(epochs=1, max_steps=4, grad_clip=1.0)
    cfg.gist.dropout = 0.0
    eager = Trainer(cfg, data=toy_data).run()
    cfg.train.compile = True
    trainer = Trainer(cfg, data=toy_data)
    compiled = trainer.run()
    assert compiled.status == "completed" and trainer.train_step.compiled and compiled.steps == 4
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
    from gist_engine.train import seed_everything

    seed_everything(cfg.train.seed)
    model = build_model(load_run_config(cfg, ["num_classes=4"]), seed=cfg.train.seed).train()
    fastpath.enable_fused_attention(model)  # the trainer's model (its forward is compared with timm's elsewhere)
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


def test_device_choices():
    assert 1 <= choose_cpu_threads() <= usable_cpus()
    assert eval_batch_size(CPU) == 64 and eval_batch_size(torch.device("cuda")) == 1024
    assert eval_batch_size(CPU, 64) == 64


def _stat(cpu0: tuple[int, int], cpu1: tuple[int, int]) -> str:
    """A /proc/stat with two CPUs given as (busy ticks, idle ticks)."""
    lines = [f"cpu  {cpu0[0] + cpu1[0]} 0 0 {cpu0[1] + cpu1[1]} 0 0 0 0 0 0"]
    lines += [f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0" for i, (busy, idle) in enumerate((cpu0, cpu1))]
    return "\n".join([*lines, "intr 1 2 3", "ctxt 99"]) + "\n"


def test_idle_cpus_reads_the_affinity_cpus_and_keeps_the_idlest_slice(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # (cpu0, cpu1) as (busy, idle) ticks at each read: cpu0 runs someone else's job throughout; cpu1 is busy with a
    # burst in the first slice, then idles 3/4 of the second
    reads = iter([((1000, 5000), (2000, 7000)), ((1100, 5000), (2100, 7000)), ((1200, 5000), (2125, 7075))])
    monkeypatch.setattr(fastpath.time, "sleep", lambda s: stat.write_text(_stat(*next(reads))))
    monkeypatch.setattr(fastpath.time, "process_time", lambda: 0.0)  # this process sleeps meanwhile
    monkeypatch.setattr(fastpath.os, "sched_getaffinity", lambda pid: {0, 1})
    stat.write_text(_stat(*next(reads)))
    assert idle_cpus(slices=2, stat=stat) == pytest.approx(2 * 75 / 200)
    reads = iter([((1000, 5000), (2000, 7000)), ((1100, 5000), (2025, 7075))])
    monkeypatch.setattr(fastpath.os, "sched_getaffinity", lambda pid: {1})  # only cpu1 is ours
    stat.write_text(_stat(*next(reads)))
    assert idle_cpus(slices=1, stat=stat) == pytest.approx(0.75)
    # cpu1 busy for a whole slice, 0.6 s of it this process's own work (e.g. loading data while a thread samples):
    # 60 of its 100 ticks are ours, so 0.6 of the CPU is free for us; never more than the CPUs there are
    for own_seconds, free in ((0.6, 0.6), (1.5, 1.0)):
        reads = iter([((1000, 5000), (2000, 7000)), ((1000, 5000), (2100, 7000))])
        own = iter([10.0, 10.0 + own_seconds])
        monkeypatch.setattr(fastpath.time, "process_time", lambda own=own: next(own))
        monkeypatch.setattr(fastpath.os, "sysconf", lambda name: 100)
        stat.write_text(_stat(*next(reads)))
        assert idle_cpus(slices=1, stat=stat) == pytest.approx(free)
    monkeypatch.setattr(fastpath.time, "process_time", lambda: 0.0)
    assert idle_cpus(stat=tmp_path / "missing") is None
    stat.write_text("cpu0 1 2 3 4\ncpu1 12 x 7\n")
    assert idle_cpus(slices=1, stat=stat) is None  # not the kernel's format: the caller falls back


@pytest.mark.parametrize(("idle", "load", "threads"), [
    (2.0, 1.0, 2),  # idle machine whose load average still holds the previous run: both CPUs
    (1.6, 0.0, 2), (1.4, 0.0, 1), (0.0, 3.0, 1),  # others busy now: fewer threads, never 0
    (None, 1.0, 2), (None, 2.7, 1),  # no /proc/stat: the load average, less this process
])
def test_thread_count_follows_idle_cpus(monkeypatch, idle, load, threads):
    monkeypatch.setattr(fastpath, "usable_cpus", lambda: 2)
    monkeypatch.setattr(fastpath, "idle_cpus", lambda: idle)
    monkeypatch.setattr(fastpath.os, "getloadavg", lambda: (load, load, load))
    assert fastpath.measure_cpu_threads() == threads


def test_thread_count_chosen_in_the_background_is_sampled_once(monkeypatch):
    calls = []

    def slow_measure() -> int:
        calls.append(1)
        time.sleep(0.2)  # the caller asks while the background thread still samples
        return 1

    monkeypatch.setattr(fastpath, "_cpu_threads", None)
    monkeypatch.setattr(fastpath, "measure_cpu_threads", slow_measure)
    fastpath.choose_cpu_threads_in_background()
    time.sleep(0.05)
    assert fastpath.choose_cpu_threads() == 1 and fastpath.choose_cpu_threads() == 1
    fastpath.choose_cpu_threads_in_background()  # already chosen: no second sample
    assert len(calls) == 1
