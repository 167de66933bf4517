"""FLOPs per training image of every supported peft type, GIST off and on, with the bench's FLOP counter.

    python -m benchmarks.peft_flops [--backbone dinov2_s14] [--image-size 112] [--batch-size 1] [--types a,b]
        [--json-out F]
    python -m benchmarks.peft_flops --markdown F1 F2 [--at-batch 32]   # the docs table from counts at batch 1 and 2

One eager forward + loss + backward of the model as the trainer builds it (`speed.install`, fp32), counted by
`benchmarks.bench.count_flops` (torch's `FlopCounterMode`: matmuls, convolutions, attention), divided by the batch.
A step's FLOPs are exactly a + b x batch (a: per-step work such as materialising a weight update, which LoHa, LoKr,
OFT, BOFT, ... do once per step; b: per-image work), so counts at batch 1 and 2 give the figure at any batch.
Deterministic: a figure any CPU measures exactly. Per type it also lists the aten ops the type adds to the step
(beyond those of the linear probe) that the counter does not count (element-wise products, norms, FFTs, ...), and
the trainable parameters (as `describe` counts them). A type where GIST adds more than 3% FLOPs is flagged.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench import count_flops
from gist_engine import speed
from gist_engine.build import build_model
from gist_engine.config.peft import PEFT_TYPES
from gist_engine.train.step import TrainStep, make_optimizer
from gist_engine.train.trainer import param_groups
from gist_engine.tuners import count_parameters

FLAG = 0.03  # GIST's extra FLOPs above this fraction are flagged
# aten ops that compute (arithmetic, reductions, norms, FFTs); views, copies, allocation and RNG are left out
COMPUTE = re.compile(r"^_?(mul|add|sub|div|addcmul|addcdiv|fft_\w+|native_layer_norm\w*|layer_norm\w*|sum|mean|exp|"
                     r"pow|sigmoid|tanh|gelu\w*|cos|sin|neg|rsqrt|sqrt|norm|linalg_\w+|cumsum|cumprod|\w*softmax\w*|"
                     r"where|abs|scatter\w*|index_add\w*|kron|prod|amax|max|min|sgn|sign|clamp\w*|silu\w*|"
                     r"reciprocal|triu|tril|eye|diag\w*|outer|dot|mv|einsum)_?$")


class _OpRecorder(TorchDispatchMode):
    """The aten ops (overload packets) a piece of code dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[Any] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.add(func._overloadpacket)
        return func(*args, **(kwargs or {}))


def _step(method: str, args: dict, gist: bool, backbone: str, image_size: int, batch: int) -> tuple[Any, int]:
    model = build_model({"backbone": backbone, "pretrained": False, "image_size": image_size, "num_classes": 10,
                         "method": method, "method_args": args, "gist": {"enabled": gist}}, seed=0)
    speed.install(model, "cpu", cpu_threads=None)
    model.train()
    optimizer = make_optimizer(param_groups(model, 1e-4), 1e-3, torch.device("cpu"))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    step = TrainStep(model, optimizer, params, torch.device("cpu"), "fp32", gist=model.gist_cfg)
    x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    y = torch.arange(batch) % 10

    def run() -> None:
        step.forward_loss(x, y)[-1].backward()
        optimizer.zero_grad(set_to_none=True)

    return run, count_parameters(model)[0]


def _uncounted(run: Any) -> set[str]:
    recorder = _OpRecorder()
    with recorder:
        run()
    counted = set(FlopCounterMode(display=False).flop_registry)
    return {str(op).removeprefix("aten.") for op in recorder.ops if op not in counted}


def compute_ops(ops: list[str] | set[str]) -> list[str]:
    """The ops of `ops` that compute something (COMPUTE), sorted."""
    return sorted(op for op in ops if COMPUTE.match(op))


def at_batch(one: dict[str, Any], two: dict[str, Any], batch: int) -> dict[str, Any]:
    """A row per image at `batch`, from rows counted at batch 1 and 2: a step's FLOPs are exactly a + b x batch
    (a: per-step work such as materialising a weight update, b: per-image work), so a = 2 f(1) - f(2), b = f(2) - f(1).
    """
    row = dict(one)
    for arm in ("off", "on"):
        f1, f2 = one[arm], 2 * two[arm]  # the JSON holds FLOPs per image: f(2) = 2 x per-image at batch 2
        row[arm] = (2 * f1 - f2) / batch + (f2 - f1)
        row[f"{arm}_per_step"] = 2 * f1 - f2
    row["extra"] = row["on"] / row["off"] - 1
    return row


def markdown(rows: dict[str, Any]) -> str:
    """The table of docs/speed.md: GFLOP per training image off/on, GIST's share, trainable params, uncounted ops."""
    lines = ["| peft type | GFLOP / image, plain | + GIST | GIST adds | of which per step, plain (GFLOP) | trainable, "
             "plain / + GIST | compute ops it adds that the counter does not count |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in rows.items():
        flag = " **> 3%**" if r["extra"] > FLAG else ""
        ops = ", ".join(f"`{op}`" for op in compute_ops(r["uncounted_ops"])) or "none"
        step = f"{r['off_per_step'] / 1e9:.3f}" if "off_per_step" in r else ""
        lines.append(f"| `{name}` | {r['off'] / 1e9:.3f} | {r['on'] / 1e9:.3f} | {100 * r['extra']:+.2f}%{flag} | "
                     f"{step} | {r['trainable_off']:,} / {r['trainable_on']:,} | {ops} |")
    return "\n".join(lines)


def measure(backbone: str, image_size: int, batch: int, types: list[str] | None = None, ops: bool = True,
            save: Any = None) -> dict[str, Any]:
    """{peft type: {"off", "on" (FLOPs per image), "extra" (on/off - 1), "trainable_off", "trainable_on",
    "uncounted_ops"}} and the linear probe's row for reference."""
    base_ops: set[str] = set()
    if ops:
        base_run, _ = _step("linear", {}, True, backbone, image_size, batch)
        base_ops = _uncounted(base_run)
    rows: dict[str, Any] = {}
    for name in types or PEFT_TYPES:
        args = {"peft_type": name}
        row: dict[str, Any] = {}
        for gist in (False, True):
            run, trainable = _step("peft", args, gist, backbone, image_size, batch)
            row["on" if gist else "off"] = count_flops(run) / batch
            row["trainable_on" if gist else "trainable_off"] = trainable
            if gist:
                row["uncounted_ops"] = compute_ops(_uncounted(run) - base_ops) if ops else []
        row["extra"] = row["on"] / row["off"] - 1
        rows[name] = row
        if save is not None:
            save(rows)  # after every type: a long run keeps what it measured
        print(f"{name:10s} off {row['off'] / 1e9:8.3f} GFLOP  on {row['on'] / 1e9:8.3f} GFLOP  "
              f"+{100 * row['extra']:.2f}%{'  FLAG' if row['extra'] > FLAG else ''}  trainable "
              f"{row['trainable_off']:,} / {row['trainable_on']:,}  uncounted: {', '.join(row['uncounted_ops'])}",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="dinov2_s14")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--types", help="comma-separated peft types (default: every supported one)")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--flops-only", action="store_true", help="skip recording the uncounted ops (faster)")
    p.add_argument("--markdown", type=Path, nargs="+", help="print the table of these JSON files and exit")
    p.add_argument("--at-batch", type=int, default=32, help="with rows at batch 1 and 2: per image at this batch")
    a = p.parse_args(argv)
    if a.markdown:  # rows counted at batch 1 and 2 give the per-image figure at --at-batch
        by_batch: dict[int, dict[str, Any]] = {}
        for f in a.markdown:
            data = json.loads(f.read_text())
            by_batch.setdefault(data["batch_size"], {}).update(data["rows"])
        one, two = by_batch.get(1, {}), by_batch.get(2, {})
        rows = {k: at_batch(one[k], two[k], a.at_batch) if k in two else one[k] for k in one} if one and two \
            else next(iter(by_batch.values()))
        print(markdown(rows))
        return 0
    warnings.filterwarnings("ignore", module="peft")
    # FLOP counts do not depend on threads; the idle CPUs only (two threads on a busy machine stall at OpenMP
    # barriers, 10-100x slower)
    torch.set_num_threads(speed.choose_cpu_threads())
    types = [t.strip() for t in a.types.split(",") if t.strip()] if a.types else None

    def save(rows: dict[str, Any]) -> None:
        if a.json_out:
            a.json_out.write_text(json.dumps({"backbone": a.backbone, "image_size": a.image_size,
                                              "batch_size": a.batch_size, "rows": rows}, indent=1))

    measure(a.backbone, a.image_size, a.batch_size, types, ops=not a.flops_only, save=save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
