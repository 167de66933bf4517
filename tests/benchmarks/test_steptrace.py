"""The CUDA-step trace (benchmarks.steptrace) runs without a GPU and sees what the fast path removes."""

from __future__ import annotations

import torch

from benchmarks.steptrace import summarize, totals, trace_cuda_step
from gist_engine import speed
from gist_engine.build import build_model

BATCH = 4


def traced(stock: bool, method: str = "adapter", bf16: bool = True):
    model = build_model({"backbone": "test_vit", "method": method, "gist": {"enabled": True}}, seed=0).train()
    speed.install(model, torch.device("cuda"), precision="bf16" if bf16 else "fp32",
                  frozen_dtype="bf16" if bf16 else "fp32", cpu_threads=None, stock_modules=stock)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    records = trace_cuda_step(model, BATCH, bf16=bf16)
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())  # the model is left as it was
    return model, records


def stream_shape(model) -> tuple[int, int, int]:
    return (BATCH, model.seq_len, model.embed_dim)


def test_the_fast_path_moves_no_float32_copy_of_the_residual_stream_and_no_qkv_copy():
    model, stock = traced(stock=True)
    _, fast = traced(stock=False)
    shape = stream_shape(model)

    def stream_casts(records):
        return [r for r in records if r.op == "_to_copy" and r.shapes[0] == shape]

    blocks = len(model.vit.blocks)
    norms = 2 * blocks + 1
    # autocast's float32 LayerNorm: the stream up to fp32 and back, forward and backward, for every norm
    assert len(stream_casts(stock)) == 4 * norms - 2  # the final norm's output reaches the head as two rows only
    assert stream_casts(fast) == []

    def qkv_clones(records):  # full-size copies of the qkv gradient, (B, N, 3, H, d)
        return [r for r in records if r.op == "clone" and r.shapes[0][:2] == shape[:2]]

    assert len(qkv_clones(stock)) == blocks and qkv_clones(fast) == []
    assert {r.dtypes[0] for r in fast if r.op.startswith("native_layer_norm")} == {"bfloat16"}

    def count(records, kind):
        return sum(r.kind == kind for r in records), sum(r.bytes for r in records if r.kind == kind)

    # the same GEMMs and attention kernels, the last block's smaller (its head rows only, speed.rows)
    for kind in ("matmul", "attention"):
        assert count(fast, kind)[0] == count(stock, kind)[0] and count(fast, kind)[1] < count(stock, kind)[1]
    t_stock, t_fast = totals(stock), totals(fast)
    assert t_fast["kernels"] < t_stock["kernels"] and t_fast["other_gb"] < 0.8 * t_stock["other_gb"]


def test_the_trace_counts_every_block_and_the_summary_adds_up():
    model, records = traced(stock=False, method="lora", bf16=False)
    ops = [r.op for r in records]
    blocks = len(model.vit.blocks)
    assert ops.count("_scaled_dot_product_flash_attention") == blocks
    assert ops.count("_scaled_dot_product_flash_attention_backward") == blocks
    assert ops.count("native_layer_norm") == ops.count("native_layer_norm_backward") == 2 * blocks + 1
    assert not any(r.op == "_to_copy" for r in records)  # float32 throughout: nothing to cast
    table = summarize(records)
    assert list(table.columns) == ["op", "kind", "kernels", "gb"] and table.iloc[-1]["op"] == "total"
    assert table.iloc[-1]["kernels"] == len(records) == totals(records)["kernels"]
    assert abs(table.iloc[:-1]["gb"].sum() - totals(records)["gb"]) < 1e-9
    assert table.iloc[:-1]["gb"].is_monotonic_decreasing
