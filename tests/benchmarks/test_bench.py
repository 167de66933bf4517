"""The benchmark (benchmarks.bench): JSON report, reference parity, the FLOP counter."""

from __future__ import annotations

import json
import re

import pytest
import torch

from benchmarks import bench
from benchmarks.bench import ExtraTokenViT, add_hooked_adapters, count_flops, reference_loss
from gist_engine import build_model
from gist_engine.losses import gist_loss
from gist_engine.speed import attention as speed_attention


# --------------------------------------------------------------------------------------------- the benchmark
def test_bench_cli_writes_well_formed_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--device", "cpu", "--backbone", "test_vit", "--image-size", "32", "--batch-size", "4",
                     "--methods", "linear,adapter,lora", "--repeats", "2", "--steps", "1", "--warmup", "1",
                     "--json-out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "img/s" in printed and "adapter+gist" in printed and "GIST overhead on adapter" in printed
    stated = re.findall(r"([0-9.]+) TFLOP/s \(float32 matmul\)", captured.out + captured.err)
    assert len(stated) == 1 and "ceiling" not in captured.err  # one measured ceiling, stated once

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
    assert float(stated[0]) == pytest.approx(report["ceiling"]["tflops"], abs=5e-4)
    for r in rows.values():
        assert r["images_per_second"] > 0 and r["step_ms"] > 0 and len(r["step_ms_repeats"]) == 2
        assert r["flops_per_step"] > 0 and r["tflops"] > 0
        assert r["pct_of_ceiling"] == pytest.approx(100 * r["tflops"] / report["ceiling"]["tflops"])
        assert r["compiled"] is False and r["peak_mem_mb"] is None  # CPU
    # GIST adds one token (and, for a linear probe, the backward through every block)
    assert rows["adapter+gist"]["flops_per_step"] > rows["adapter"]["flops_per_step"]
    assert rows["linear+gist"]["flops_per_step"] > 1.5 * rows["linear"]["flops_per_step"]
    # the same model, but ours runs its last block for the head rows only (exact; speed.rows)
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
    real = speed_attention.enable_fused_attention  # what speed.install calls for the bench's models
    monkeypatch.setattr(speed_attention, "enable_fused_attention",
                        lambda model, packed_qkv=True: seen.append(packed_qkv) or real(model, packed_qkv))
    out = tmp_path / "b.json"
    assert bench.main(["--device", "cpu", "--backbone", "test_vit", "--image-size", "32", "--batch-size", "2",
                     "--methods", "linear", "--repeats", "1", "--steps", "1", "--no-reference",
                     *(["--stock-modules"] if stock else []), "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["rows"]] == ["linear", "linear+gist"] and not report["config"]["reference"]
    assert report["config"]["stock_modules"] is stock and seen == [not stock, not stock]
    assert ("stock timm modules" in capsys.readouterr().out) is stock


@pytest.mark.parametrize("interleave", [True, False])
def test_interleaved_cases_are_timed_in_turn_within_each_repeat(monkeypatch, interleave):
    """Interleaved (the CPU default), a drifting host slows every case alike: each repeat times every case."""
    order = []
    real = bench._timed
    def timed(fn, device, iters):
        if "matmul_ceiling" not in fn.__qualname__:  # the training steps, not the ceiling's matmuls
            order.append(fn)
        return real(fn, device, iters)

    monkeypatch.setattr(bench, "_timed", timed)
    cfg = bench.default_bench_config("cpu", backbone="test_vit", image_size=32, batch_size=2, methods=("linear",),
                                     repeats=2, steps=1, warmup=1, reference=False, interleave=interleave)
    assert bench.default_bench_config("cpu").interleave is True
    report = bench.run_bench(cfg, log=None)
    assert [r["name"] for r in report["rows"]] == ["linear", "linear+gist"]
    assert all(len(r["step_ms_repeats"]) == 2 for r in report["rows"])
    a, b = order[0], next(fn for fn in order if fn is not order[0])
    assert order == ([a, b, a, b] if interleave else [a, a, b, b])


def test_bench_rejects_an_unknown_method(capsys):
    assert bench.main(["--device", "cpu", "--backbone", "test_vit", "--methods", "nope",
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
