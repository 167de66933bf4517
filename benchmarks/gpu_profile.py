"""Where a training step's GPU time goes: torch.profiler over a few steps of one bench case, top kernels by time.

    python -m benchmarks.gpu_profile [--method adapter] [--no-gist] [--frozen-dtype bf16] [--steps 5] [--top 25]

Uses the benchmark's model and step (ViT-B/16 at 224 px, batch 128, bf16 autocast on CUDA; the small CPU config
otherwise) and prints the profiler's table sorted by device time, with the step time and how much of it is
matmul (gemm), attention and everything else.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench import default_bench_config, our_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="adapter")
    parser.add_argument("--no-gist", action="store_true")
    parser.add_argument("--frozen-dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    cfg = default_bench_config("auto", batch_size=args.batch_size, frozen_dtype=args.frozen_dtype)
    cuda = cfg.device == "cuda"
    if not cuda:
        cfg.precision = "bf16" if args.frozen_dtype == "bf16" else "auto"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=gen).to(cfg.device)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=gen).to(cfg.device)
    built = our_case(cfg, args.method, not args.no_gist, x, y)
    for _ in range(3):
        built.step()
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            built.step()
        if cuda:
            torch.cuda.synchronize()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    total = sum(getattr(e, key) for e in events) / args.steps / 1e3  # ms per step (self times add up)
    groups = {"gemm": 0.0, "attention": 0.0, "other": 0.0}
    for e in events:
        name = e.key.lower()
        gemm = ("gemm", "matmul", "nvjet", "cutlass", "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
        what = "gemm" if any(g in name for g in gemm) else \
            "attention" if ("flash" in name or "fmha" in name or "attention" in name) else "other"
        if name.startswith("aten::") != cuda:  # on CUDA the kernels (not the aten ops launching them); on CPU the ops
            groups[what] += getattr(e, key) / args.steps / 1e3
    print(f"{args.method}{'' if args.no_gist else '+gist'}, frozen {args.frozen_dtype}, batch {cfg.batch_size}, "
          f"{cfg.device}: {total:.2f} ms of self time per step; kernels: "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in groups.items()))
    print(events.table(sort_by=key, row_limit=args.top, max_name_column_width=70))


if __name__ == "__main__":
    main()
