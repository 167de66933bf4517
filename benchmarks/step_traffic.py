"""Kernels and bytes of one eager CUDA training step, traced on any machine (benchmarks.steptrace; no GPU needed).

    python -m benchmarks.step_traffic [--method adapter] [--no-gist] [--frozen-dtype bf16] [--stock] [--top 20]

Builds the benchmark's model (ViT-B/16, random init, 224 px, batch 128) as the trainer prepares it on CUDA (fused
attention, bf16 frozen weights, bf16 autocast) and prints the step's aten ops grouped by name: kernels and GB
moved, the heaviest first. `--stock` keeps timm's attention module and autocast's float32 LayerNorms, to see
what the fast path removes. The bytes are a model of memory traffic, not a measurement (see the module).
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.bench import METHOD_ARGS
from benchmarks.steptrace import summarize, totals, trace_cuda_step
from gist_engine import speed
from gist_engine.build import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="adapter", choices=sorted(METHOD_ARGS))
    parser.add_argument("--no-gist", action="store_true")
    parser.add_argument("--backbone", default="vit_base_patch16_224")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--frozen-dtype", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--fp32", action="store_true", help="trace without autocast (float32 throughout)")
    parser.add_argument("--stock", action="store_true", help="timm's attention, autocast's float32 LayerNorms")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    model = build_model({"backbone": args.backbone, "pretrained": False, "image_size": args.image_size,
                         "num_classes": 100, "method": args.method, "method_args": METHOD_ARGS[args.method],
                         "gist": {"enabled": not args.no_gist}}, seed=0).train()
    speed.install(model, torch.device("cuda"), precision="fp32" if args.fp32 else "bf16",
                  frozen_dtype="fp32" if args.fp32 else args.frozen_dtype, cpu_threads=None, stock_modules=args.stock)
    records = trace_cuda_step(model, args.batch_size, bf16=not args.fp32)
    t = totals(records)
    print(f"{args.method} (GIST {'off' if args.no_gist else 'on'}), {args.backbone} {args.image_size} px, batch "
          f"{args.batch_size}, {'fp32' if args.fp32 else 'bf16 autocast'}, frozen {args.frozen_dtype}"
          f"{', stock timm modules' if args.stock else ''}: {t['kernels']} kernels, {t['gb']:.2f} GB; "
          f"without matmuls and attention {t['other_kernels']} kernels, {t['other_gb']:.2f} GB")
    if args.top > 0:
        print(summarize(records).head(args.top).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
