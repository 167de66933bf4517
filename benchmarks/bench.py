"""Benchmark: training-step speed of our engine against a plain timm (+ peft) reference, in one process.

    python -m benchmarks.bench [--device cpu|cuda] [--backbone B] [--image-size S] [--batch-size N]
        [--methods linear,adapter,...] [--compile] [--cuda-graph] [--stock-modules] [--json-out FILE]

For one backbone, image size, batch and device it times full training steps (forward, loss, backward, AdamW) of
every chosen PEFT method with GIST off and on, installed (`gist_engine.speed.install`) and stepped
(`gist_engine.train.TrainStep`) as the trainer does, and of the
reference implementations written here with plain timm:

- `ref_adapter`: GIST's adapter layout (D -> 4 -> D, GELU, x0.1, beside both sub-layers, reading the block input)
  installed on an unmodified timm ViT with forward hooks; `ref_lora`: peft's LoRA (r=8, alpha=8) on `attn.qkv`
  (needs `pip install -r requirements-bench.txt`; skipped with a note otherwise).
- `+token` variants: one extra learnable token inserted after the CLS token in a plain timm forward, the shared
  head on both outputs, and `CE + 0.5 CE + 0.75 BKLD` (T = 3) written out here.
- The references run the everyday loop: bf16 autocast where ours uses it, torch's default AdamW, no compile (with
  `--compile`, compiled reference rows are added). Ours runs as the trainer does: frozen weights stored in bf16 on
  CUDA (`--frozen-dtype fp32` turns that off); `--cuda-graph` replays each step as a CUDA graph.

Per case: warm-up steps (compilation included) are excluded; then `repeats` runs of `steps` steps are timed (CUDA
events on GPU, perf_counter on CPU) and the median is kept. FLOPs of one step come from
`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions and attention; CPU flash attention counted too);
the ceiling is a large matmul (bf16 on CUDA with bf16 autocast, fp32 otherwise) timed in the same process. Peak
memory is `torch.cuda.max_memory_allocated` per case (not measured on CPU).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from gist_engine import __version__, speed
from gist_engine.backbones import BackboneError, create_backbone
from gist_engine.build import build_model
from gist_engine.config import ConfigError
from gist_engine.speed import configure_device, resolve_frozen_dtype
from gist_engine.speed.step import COMPILE_BACKEND
from gist_engine.train import param_groups
from gist_engine.train.step import TrainStep, make_optimizer
from gist_engine.tuners import TUNERS

log = logging.getLogger(__name__)

METHODS = ("linear", "adapter", "lora", "vpt", "ssf")
# Our method options in the benchmark (the defaults, written out so the table says what ran).
METHOD_ARGS: dict[str, dict[str, Any]] = {
    "linear": {},
    "full": {},
    "bitfit": {},
    "adapter": {"variant": "gist"},
    "lora": {"rank": 8, "targets": "qv"},
    "vpt": {"length": 10, "deep": False},
    "ssf": {},
}
LR, WEIGHT_DECAY = 1e-3, 1e-4
GIST_T, GIST_CE_WEIGHT, GIST_LOSS_WEIGHT, GIST_DROPOUT = 3.0, 0.5, 0.75, 0.1


@dataclass
class BenchConfig:
    """What to benchmark; `default_bench_config` fills the device-specific defaults."""

    device: str = "cpu"
    backbone: str = "dinov2_s14"
    image_size: int = 112
    batch_size: int = 32
    num_classes: int = 100
    methods: tuple[str, ...] = METHODS
    repeats: int = 10
    steps: int = 1
    warmup: int = 1
    precision: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    compile: bool = False
    compile_backend: str = COMPILE_BACKEND
    compile_mode: str | None = None  # torch.compile mode; None = default
    frozen_dtype: str = "auto"  # our frozen weights (`train.frozen_dtype`): auto = bf16 on CUDA with bf16
    cuda_graph: bool = False  # our steps replayed as CUDA graphs on CUDA (`train.cuda_graph`; not with compile)
    stock_modules: bool = False  # ours with timm's attention and autocast's float32 LayerNorms (an A/B of those)
    reference: bool = True
    interleave: bool = False  # all cases built first, then each repeat times every case in turn (round robin)
    threads: int = 0  # CPU: torch threads; 0 = the trainer's choice (the idle CPUs this process may use)
    seed: int = 0

    @property
    def resolved_precision(self) -> str:
        """bf16 or fp32."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if self.device == "cuda" else "fp32"


# Device defaults. CPU: the offline demo's shape (DINOv2-S/14 at 112 px), batch 32, the adapter against its
# reference, 10 single-step repeats with the cases interleaved, so that a host whose speed drifts slows every case
# alike (about a minute; docs/speed.md gives the run-to-run spread measured on a 2-core host). CUDA: ViT-B/16 at
# 224 px, batch 128, every method.
DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {"backbone": "dinov2_s14", "image_size": 112, "batch_size": 32, "methods": ("adapter",), "repeats": 10,
            "steps": 1, "warmup": 1, "interleave": True},
    "cuda": {"backbone": "vit_base_patch16_224", "image_size": 224, "batch_size": 128, "repeats": 5, "steps": 10,
             "warmup": 5},
}


def default_bench_config(device: str = "auto", **overrides: Any) -> BenchConfig:
    """The device's default config (auto = cuda when available) with `overrides` (None values ignored)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    values = {**DEFAULTS[device], **{k: v for k, v in overrides.items() if v is not None}}
    return BenchConfig(device=device, **values)


@dataclass
class CaseResult:
    """One timed case (a row of the table)."""

    name: str
    impl: str  # "gist_engine" or "reference"
    method: str
    gist: bool  # GIST on (ours) / the extra token + BKLD (reference)
    compiled: bool
    graphed: bool = False  # ours: the timed steps replayed a captured CUDA graph
    step_ms: float | None = None  # median over repeats
    step_ms_repeats: list[float] = field(default_factory=list)
    images_per_second: float | None = None
    flops_per_step: int | None = None
    gflop_per_image: float | None = None
    tflops: float | None = None  # achieved: flops_per_step / step time
    pct_of_ceiling: float | None = None
    peak_mem_mb: float | None = None
    warmup_s: float | None = None  # warm-up wall time (compilation included)
    trainable_params: int | None = None
    reference: str | None = None  # the eager reference row this one is compared with
    vs_reference: float | None = None  # ours img/s / reference img/s
    vs_reference_compiled: float | None = None
    gist_overhead_pct: float | None = None  # (step time with GIST / without - 1) * 100, same impl and method
    note: str = ""


# ------------------------------------------------------------------------------------------- the references
def reference_loss(cls_logits: Tensor, token_logits: Tensor | None, y: Tensor) -> Tensor:
    """`CE(cls)` or, with the extra token, `CE(cls) + 0.5 CE(tok) + 0.75 [KL(p||q) + KL(q||p)]`, p, q at T = 3."""
    cls_logits = cls_logits.float()
    loss = F.cross_entropy(cls_logits, y)
    if token_logits is None:
        return loss
    token_logits = token_logits.float()
    log_p = F.log_softmax(cls_logits / GIST_T, dim=-1)
    log_q = F.log_softmax(token_logits / GIST_T, dim=-1)
    bkld = (F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
            + F.kl_div(log_p, log_q, reduction="batchmean", log_target=True))
    return loss + GIST_CE_WEIGHT * F.cross_entropy(token_logits, y) + GIST_LOSS_WEIGHT * bkld


class ExtraTokenViT(nn.Module):
    """A plain timm ViT with one learnable token inserted after the CLS token; returns (cls, token) logits."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.token = nn.Parameter(torch.empty(1, 1, vit.embed_dim).uniform_(-0.5, 0.5))
        self.dropout = nn.Dropout(GIST_DROPOUT)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        v = self.vit
        x = v._pos_embed(v.patch_embed(x))  # (B, 1 + N, D)
        token = self.dropout(self.token.expand(x.shape[0], -1, -1)).to(x.dtype)  # (B, 1, D)
        x = torch.cat([x[:, :1], token, x[:, 1:]], dim=1)  # (B, 2 + N, D)
        x = v.norm(v.blocks(v.norm_pre(x)))
        return v.head(x[:, 0]), v.head(x[:, 1])  # (B, C), (B, C)


class PlainViT(nn.Module):
    """The plain timm forward with the (cls, None) output convention of `ExtraTokenViT`."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: Tensor) -> tuple[Tensor, None]:
        return self.vit(x), None


def _install_hooks(block: nn.Module, adapter: nn.Module, scale: float) -> list[Any]:
    saved: dict[str, Tensor] = {}

    def keep(key: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            saved[key] = args[0]
        return hook

    def add(key: str) -> Callable:
        def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
            return out + adapter(saved.pop(key)) * scale  # pop: no tensor outlives the forward (nor guards)
        return hook

    # x = x + ls1(attn(norm1(x))) + A(x);  h = that;  out = h + ls2(mlp(norm2(h))) + A(h)
    return [block.register_forward_pre_hook(keep("x")), block.ls1.register_forward_hook(add("x")),
            block.norm2.register_forward_pre_hook(keep("h")), block.ls2.register_forward_hook(add("h"))]


def add_hooked_adapters(vit: nn.Module, bottleneck: int = 4, scale: float = 0.1) -> list[nn.Parameter]:
    """GIST's parallel adapter on an unmodified timm ViT via forward hooks; returns the adapters' parameters."""
    dim = vit.embed_dim
    adapters = nn.ModuleList(nn.Sequential(nn.Linear(dim, bottleneck), nn.GELU(), nn.Linear(bottleneck, dim))
                             for _ in vit.blocks)
    vit.hooked_adapters = adapters  # registered, so .to(device) moves them
    for block, adapter in zip(vit.blocks, adapters, strict=True):
        _install_hooks(block, adapter, scale)
    return list(adapters.parameters())


def add_peft_lora(vit: nn.Module, rank: int = 8) -> list[nn.Parameter]:
    """peft's LoRA (r, alpha = r, no dropout) on every `attn.qkv`; returns its parameters. ImportError without peft."""
    from peft import LoraConfig, inject_adapter_in_model  # an optional package (requirements-bench.txt)

    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=["qkv"]), vit)
    return [p for n, p in vit.named_parameters() if "lora_" in n]


@dataclass(frozen=True)
class Reference:
    """A reference implementation of one of our methods on a plain timm ViT."""

    label: str
    add: Callable[[nn.Module], list[nn.Parameter]]  # adds the method in place; returns its trainable parameters
    requires: str | None = None  # an optional package it needs (skipped with a note when missing)


REFERENCES: dict[str, Reference] = {
    "adapter": Reference("timm + hooked adapter", add_hooked_adapters),
    "lora": Reference("timm + peft LoRA", add_peft_lora, requires="peft"),
}


# -------------------------------------------------------------------------------------------------- measuring
def _flash_cpu_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _flash_cpu_backward_flops(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                              **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs torch's counter sees while `fn()` runs (CPU flash attention included, which it does not count)."""
    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _flash_cpu_flops
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _flash_cpu_backward_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(device: torch.device, dtype: torch.dtype, n: int | None = None, iters: int | None = None,
                   repeats: int | None = None) -> float:
    """The measured matmul rate in TFLOP/s: best of `repeats` runs of `iters` (n x n) @ (n x n) products."""
    n = n or (8192 if device.type == "cuda" else 1024)
    iters = iters or (50 if device.type == "cuda" else 2)
    repeats = repeats or (3 if device.type == "cuda" else 6)  # best of more short runs on a shared CPU
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        best = min(best, _timed(lambda: a @ b, device, iters))
    return 2 * n**3 / best / 1e12  # best is seconds per product


def _timed(fn: Callable[[], Any], device: torch.device, iters: int) -> float:
    """Seconds per call of `fn`, over `iters` calls (CUDA events on GPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    tick = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - tick) / iters


# ------------------------------------------------------------------------------------------------------ cases
@dataclass
class _Built:
    step: Callable[[], Any]  # one full training step on the fixed batch
    count: Callable[[], Any]  # one eager forward + backward, for the FLOP counter
    trainable: int
    compiled: Callable[[], bool] = lambda: False  # still compiled after the timed steps?
    compile_error: Callable[[], str | None] = lambda: None
    graphed: Callable[[], bool] = lambda: False  # replaying a CUDA graph after the timed steps?
    graph_error: Callable[[], str | None] = lambda: None


def our_case(cfg: BenchConfig, method: str, gist: bool, x: Tensor, y: Tensor) -> _Built:
    """Our model for `method` (GIST on/off) with the trainer's optimiser and step, on the fixed batch (x, y)."""
    device = torch.device(cfg.device)
    model = build_model({"backbone": cfg.backbone, "pretrained": False, "image_size": cfg.image_size,
                         "num_classes": cfg.num_classes, "method": method, "method_args": METHOD_ARGS.get(method, {}),
                         "gist": {"enabled": gist}}, seed=cfg.seed).to(device)
    speed.install(model, device, precision=cfg.resolved_precision, frozen_dtype=cfg.frozen_dtype, cpu_threads=None,
                  stock_modules=cfg.stock_modules)  # the device is configured once, by run_bench
    model.train()
    optimizer = make_optimizer(param_groups(model, WEIGHT_DECAY), LR, device)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    step = speed.install_step(TrainStep(model, optimizer, params, device, cfg.resolved_precision, gist=model.gist_cfg),
                              compile=cfg.compile, backend=cfg.compile_backend, mode=cfg.compile_mode,
                              cuda_graph=cfg.cuda_graph)

    def count() -> None:
        step.forward_loss(x, y)[-1].backward()
        optimizer.zero_grad(set_to_none=True)

    return _Built(step=lambda: step(x, y), count=count, trainable=sum(p.numel() for p in params),
                  compiled=lambda: step.compiled, compile_error=lambda: step.compile_error,
                  graphed=lambda: step.graphed, graph_error=lambda: step.graph_error)


def reference_case(cfg: BenchConfig, method: str, token: bool, compiled: bool, x: Tensor, y: Tensor) -> _Built:
    """The plain timm (+ peft) reference for `method`, with the extra token + BKLD when `token`."""
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    vit, _ = create_backbone(cfg.backbone, cfg.image_size, False, None)
    vit.reset_classifier(cfg.num_classes)
    vit.requires_grad_(False)
    params = REFERENCES[method].add(vit)
    model: nn.Module = ExtraTokenViT(vit) if token else PlainViT(vit)
    for p in [*params, *vit.head.parameters(), *([model.token] if token else [])]:
        p.requires_grad_(True)
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)  # torch's default implementation
    bf16 = cfg.resolved_precision == "bf16"
    state: dict[str, Any] = {"forward": model, "compiled": False, "error": None}
    if compiled:
        state["forward"] = torch.compile(model, backend=cfg.compile_backend, mode=cfg.compile_mode)
        state["compiled"] = True

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            cls_logits, token_logits = state["forward"](x)
        reference_loss(cls_logits, token_logits, y).backward()
        optimizer.step()

    def safe_step() -> None:  # the compiled reference falls back to eager, as a user would
        try:
            step()
        except Exception as exc:
            if not state["compiled"] or isinstance(exc, torch.OutOfMemoryError):
                raise
            state["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            log.warning("reference torch.compile failed (%s); timing it eagerly", state["error"])
            state["forward"], state["compiled"] = model, False
            step()

    def count() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            cls_logits, token_logits = model(x)
        reference_loss(cls_logits, token_logits, y).backward()
        optimizer.zero_grad(set_to_none=True)

    return _Built(step=safe_step, count=count, trainable=sum(p.numel() for p in params),
                  compiled=lambda: state["compiled"], compile_error=lambda: state["error"])


def _measure(row: CaseResult, build: Callable[[], _Built], cfg: BenchConfig, ceiling: float) -> CaseResult:
    built = _prepare(row, build, cfg)
    times = [_timed(built.step, torch.device(cfg.device), cfg.steps) * 1e3 for _ in range(cfg.repeats)]
    return _finish(row, built, times, cfg, ceiling)


def _prepare(row: CaseResult, build: Callable[[], _Built], cfg: BenchConfig) -> _Built:
    """Build a case and run its untimed warm-up steps."""
    device = torch.device(cfg.device)
    if cfg.compile:
        torch._dynamo.reset()  # drop the previous case's graphs (and the parameters they hold)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    built = build()
    row.trainable_params = built.trainable
    tick = time.perf_counter()
    for _ in range(cfg.warmup):
        built.step()
    _sync(device)
    row.warmup_s = time.perf_counter() - tick
    return built


def _measure_interleaved(plan: list[tuple[CaseResult, Callable[[], _Built]]], cfg: BenchConfig,
                         ceiling: float) -> list[CaseResult]:
    """Every case built and warmed up first; then each repeat times every case in turn, so that a host whose speed
    drifts (a shared CPU) slows all cases alike within a repeat."""
    device = torch.device(cfg.device)
    built = [_prepare(row, build, cfg) for row, build in plan]
    times: list[list[float]] = [[] for _ in plan]
    for _ in range(cfg.repeats):
        for case_times, case in zip(times, built, strict=True):
            case_times.append(_timed(case.step, device, cfg.steps) * 1e3)
    return [_finish(row, case, t, cfg, ceiling) for (row, _), case, t in zip(plan, built, times, strict=True)]


def _finish(row: CaseResult, built: _Built, times: list[float], cfg: BenchConfig, ceiling: float) -> CaseResult:
    """Fill a row from its timed repeats (ms per step)."""
    device = torch.device(cfg.device)
    if row.compiled and not built.compiled():
        row.compiled = False
        row.note = (row.note + "; " if row.note else "") + f"compile failed, timed eagerly: {built.compile_error()}"
    row.graphed = built.graphed()
    if built.graph_error():
        row.note = (row.note + "; " if row.note else "") + f"CUDA graph capture failed: {built.graph_error()}"
    if device.type == "cuda":
        row.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
    row.flops_per_step = count_flops(built.count)
    row.step_ms_repeats = [round(t, 4) for t in times]
    row.step_ms = statistics.median(times)
    row.images_per_second = cfg.batch_size / (row.step_ms / 1e3)
    row.gflop_per_image = row.flops_per_step / cfg.batch_size / 1e9
    row.tflops = row.flops_per_step / (row.step_ms / 1e3) / 1e12
    row.pct_of_ceiling = 100 * row.tflops / ceiling if ceiling > 0 else None
    return row


def _plan(cfg: BenchConfig, notes: list[str]) -> list[tuple[CaseResult, Callable[[Tensor, Tensor], _Built]]]:
    """Every case to run, in order: ours (each method, GIST off then on), then the references."""
    plan: list[tuple[CaseResult, Callable[[Tensor, Tensor], _Built]]] = []
    for method in cfg.methods:
        if method not in TUNERS:
            raise ValueError(f"--methods: unknown method {method!r}; choose from {', '.join(TUNERS)}")
        for gist in (False, True):
            row = CaseResult(name=method + ("+gist" if gist else ""), impl="gist_engine", method=method, gist=gist,
                             compiled=cfg.compile)
            plan.append((row, lambda x, y, m=method, g=gist: our_case(cfg, m, g, x, y)))
    if not cfg.reference:
        return plan
    for method in cfg.methods:
        ref = REFERENCES.get(method)
        if ref is None:
            continue
        if ref.requires and importlib.util.find_spec(ref.requires) is None:
            notes.append(f"{ref.requires} is not installed: the {ref.label} reference was skipped "
                         "(pip install -r requirements-bench.txt)")
            continue
        label = ref.label
        for compiled in (False, True) if cfg.compile else (False,):
            for token in (False, True):
                name = f"ref_{method}" + ("+token" if token else "") + (" compiled" if compiled else "")
                row = CaseResult(name=name, impl="reference", method=method, gist=token, compiled=compiled,
                                 note=label + (" + extra token + BKLD" if token else ""))
                plan.append((row, lambda x, y, m=method, t=token, c=compiled: reference_case(cfg, m, t, c, x, y)))
    return plan


def _compare(rows: list[CaseResult]) -> None:
    """Fill vs_reference, vs_reference_compiled and gist_overhead_pct."""
    by_name = {r.name: r for r in rows}
    for r in rows:
        if r.step_ms is None:
            continue
        if r.gist:
            plain = next((o for o in rows if o.impl == r.impl and o.method == r.method and not o.gist
                          and o.compiled == r.compiled and o.step_ms), None)
            if plain is not None:
                r.gist_overhead_pct = 100 * (r.step_ms / plain.step_ms - 1)
        if r.impl != "gist_engine":
            continue
        ref = by_name.get(f"ref_{r.method}" + ("+token" if r.gist else ""))
        if ref is not None and ref.images_per_second:
            r.reference, r.vs_reference = ref.name, r.images_per_second / ref.images_per_second
        ref_c = by_name.get(f"ref_{r.method}" + ("+token" if r.gist else "") + " compiled")
        if ref_c is not None and ref_c.images_per_second and ref_c.compiled:
            r.vs_reference_compiled = r.images_per_second / ref_c.images_per_second


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, the device's name and the torch thread count."""
    env = {"gist_engine": __version__, "torch": torch.__version__, "timm": timm.__version__,
           "python": platform.python_version(), "threads": torch.get_num_threads(), "cpu": platform.processor()}
    try:
        import peft  # an optional package (requirements-bench.txt)

        env["peft"] = peft.__version__
    except ImportError:
        env["peft"] = None
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def run_bench(cfg: BenchConfig, log: Callable[[str], None] | None = print,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every case of `cfg` and return the report (config, environment, ceiling, rows, summary, notes).

    Args:
        cfg: What to benchmark (see `default_bench_config`).
        log: Called with one line per finished case (None = silent).
        on_row: Called with the report so far after every case (e.g. to save partial results).

    Returns:
        A JSON-ready dict; `rows` holds one `CaseResult` dict per case.
    """
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available")
    resolve_frozen_dtype(cfg.frozen_dtype, device, cfg.resolved_precision)  # bf16 frozen weights need bf16
    settings = configure_device(device, cfg.threads)
    bf16 = cfg.resolved_precision == "bf16"
    notes: list[str] = []
    if device.type == "cpu":
        notes.append("CPU: peak memory is not measured; timings on a shared machine are noisy")
    ceiling_dtype = torch.bfloat16 if bf16 else torch.float32
    # One ceiling per report: the best rate of the matmul timed here and again after the cases (a shared CPU may be
    # busy at one of the two); the rows' share of it is set at the end, and the table states it once.
    ceiling = matmul_ceiling(device, ceiling_dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=gen).to(device)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=gen).to(device)
    rows: list[CaseResult] = []
    env = {**environment(device), **settings}

    def report() -> dict[str, Any]:
        _compare(rows)
        return {"config": {**asdict(cfg), "precision": cfg.resolved_precision}, "environment": env,
                "ceiling": {"tflops": ceiling, "dtype": str(ceiling_dtype).removeprefix("torch."),
                            "what": "best rate of a large square matmul in this process (start and end)"},
                "rows": [asdict(r) for r in rows], "summary": summarize(rows), "notes": notes}

    plan = [(row, lambda b=build: b(x, y)) for row, build in _plan(cfg, notes)]
    if cfg.interleave:
        rows.extend(_measure_interleaved(plan, cfg, ceiling))  # a failure fails the whole run: no case is timed
        if log:
            for row in rows:
                log(_row_line(row))
        plan = []
    for row, build in plan:
        try:
            _measure(row, build, cfg, ceiling)
        except Exception as exc:  # one broken case (OOM, a package version) must not lose the others' results
            what = "out of memory" if isinstance(exc, torch.OutOfMemoryError) else \
                f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:400]
            row.note = (row.note + "; " if row.note else "") + what
            row.step_ms = row.images_per_second = row.tflops = row.pct_of_ceiling = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        if log:
            log(_row_line(row))
        if on_row:
            on_row(report())
    ceiling = max(ceiling, matmul_ceiling(device, ceiling_dtype))  # again at the end: the best rate seen
    for row in rows:
        if row.tflops is not None:
            row.pct_of_ceiling = 100 * row.tflops / ceiling
    return report()


def summarize(rows: list[CaseResult]) -> dict[str, Any]:
    """The issue's two targets, read from the rows: adapter+GIST vs the eager reference (>= 2x), GIST overhead."""
    out: dict[str, Any] = {}
    ours = next((r for r in rows if r.impl == "gist_engine" and r.method == "adapter" and r.gist), None)
    if ours is not None:
        out["adapter_gist_images_per_second"] = ours.images_per_second
        out["adapter_gist_vs_eager_reference"] = ours.vs_reference
        out["target_2x_reference_met"] = None if ours.vs_reference is None else ours.vs_reference >= 2.0
    overheads = {r.method: r.gist_overhead_pct for r in rows if r.impl == "gist_engine" and r.gist}
    out["gist_overhead_pct"] = overheads
    if overheads.get("adapter") is not None:
        out["target_adapter_overhead_le_2pct_met"] = overheads["adapter"] <= 2.0
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _run_as(row: dict[str, Any]) -> str:
    """How a row's steps ran: compiled, graph (CUDA graph replays) or eager."""
    return "compiled" if row["compiled"] else "graph" if row.get("graphed") else "eager"


def _row_line(r: CaseResult) -> str:
    if r.step_ms is None:
        return f"{r.name:27s} failed: {r.note}"
    return (f"{r.name:27s} {r.images_per_second:9.1f} img/s  {r.step_ms:9.2f} ms/step  {r.tflops:8.4f} TFLOP/s")


HEADER = ("case", "impl", "run as", "img/s", "ms/step", "GFLOP/img", "TFLOP/s", "%ceil", "peak MB", "vs ref",
          "GIST ovh %")


def format_table(report: dict[str, Any]) -> str:
    """The report as a text table, with the environment and the targets underneath."""
    lines = []
    widths = (27, 11, 8, 10, 10, 10, 9, 7, 9, 7, 10)
    lines.append(" ".join(h.rjust(w) if i > 2 else h.ljust(w) for i, (h, w) in enumerate(zip(HEADER, widths,
                                                                                             strict=True))))
    for r in report["rows"]:
        cells = (r["name"], r["impl"], _run_as(r), _fmt(r["images_per_second"], ".1f"),
                 _fmt(r["step_ms"], ".2f"), _fmt(r["gflop_per_image"], ".3g"), _fmt(r["tflops"], ".4f"),
                 _fmt(r["pct_of_ceiling"], ".1f"), _fmt(r["peak_mem_mb"], ".0f"),
                 _fmt(r["vs_reference"], ".2f") if r["vs_reference"] is not None else "",
                 _fmt(r["gist_overhead_pct"], "+.1f") if r["gist_overhead_pct"] is not None else "")
        lines.append(" ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                 strict=True))))
    cfg, env, ceiling = report["config"], report["environment"], report["ceiling"]
    where = env.get("gpu") or f"CPU ({env['threads']} threads)"
    lines.append(f"{cfg['backbone']} @ {cfg['image_size']} px, batch {cfg['batch_size']}, {cfg['precision']}, "
                 f"ours: frozen weights {cfg.get('frozen_dtype', 'fp32')}, CUDA graphs "
                 f"{'on' if cfg.get('cuda_graph') and cfg['device'] == 'cuda' else 'off'}"
                 f"{', stock timm modules' if cfg.get('stock_modules') else ''}, "
                 f"{where}; median of {cfg['repeats']} x {cfg['steps']} steps after {cfg['warmup']} warm-up; "
                 f"ceiling {ceiling['tflops']:.3f} TFLOP/s ({ceiling['dtype']} matmul)")
    s = report["summary"]
    if s.get("adapter_gist_vs_eager_reference") is not None:
        lines.append(f"adapter+gist vs eager reference: {s['adapter_gist_vs_eager_reference']:.2f}x (target >= 2x)")
    if s.get("gist_overhead_pct", {}).get("adapter") is not None:
        lines.append(f"GIST overhead on adapter: {s['gist_overhead_pct']['adapter']:+.1f}% (target <= 2%)")
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def _finite(obj: Any) -> Any:
    """A copy with NaN/inf floats as None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(report), indent=2, allow_nan=False))
    tmp.replace(path)
    return path


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench",
                                description="time training steps of every method, GIST off/on, against plain timm "
                                "(+peft)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda when available")
    p.add_argument("--backbone", help="backbone (random init); default: vit_base_patch16_224 on cuda, dinov2_s14 "
                   "on cpu")
    p.add_argument("--image-size", type=int, help="pixels; default 224 on cuda, 112 on cpu")
    p.add_argument("--batch-size", type=int, help="default 128 on cuda, 32 on cpu")
    p.add_argument("--num-classes", type=int, help="classes of the head (default 100)")
    p.add_argument("--methods",
                   help="comma-separated methods (default linear,adapter,lora,vpt,ssf on cuda; adapter on cpu)")
    p.add_argument("--repeats", type=int, help="timed repeats; the median is reported (default 5 cuda, 10 cpu)")
    p.add_argument("--steps", type=int, help="training steps per timed repeat (default 10 cuda, 1 cpu)")
    p.add_argument("--warmup", type=int, help="untimed steps first, compilation included (default 5 cuda, 1 cpu)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="auto: bf16 autocast on cuda, fp32 on cpu")
    p.add_argument("--compile", action="store_true", help="compile our steps; adds compiled reference rows")
    p.add_argument("--frozen-dtype", choices=("fp32", "bf16", "auto"),
                   help="storage of our frozen weights (train.frozen_dtype); auto (default): bf16 on cuda")
    p.add_argument("--cuda-graph", action="store_true", help="replay our steps as CUDA graphs (train.cuda_graph)")
    p.add_argument("--stock-modules", action="store_true",
                   help="ours with timm's attention module and autocast's float32 LayerNorms (to time what the "
                   "packed-qkv attention and the bf16 frozen norms give)")
    p.add_argument("--compile-backend", help="torch.compile backend (default inductor)")
    p.add_argument("--compile-mode", help="torch.compile mode, e.g. max-autotune-no-cudagraphs (default: torch's)")
    p.add_argument("--no-reference", action="store_true", help="skip the plain timm / peft reference rows")
    p.add_argument("--threads", type=int, help="CPU: torch threads (default: the idle CPUs, as the trainer chooses)")
    interleave = p.add_mutually_exclusive_group()
    interleave.add_argument("--interleave", dest="interleave", action="store_true", default=None,
                            help="build every case first, then time them in turn within each repeat (default on cpu)")
    interleave.add_argument("--no-interleave", dest="interleave", action="store_false",
                            help="time each case's repeats one case after another (default on cuda)")
    p.add_argument("--json-out", metavar="FILE", help="write the report as JSON (rewritten after every case)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints the table (and progress lines on stderr). Returns the exit status: 2 for a bad
    option, with the reason on stderr."""
    args = build_parser().parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else None
    try:
        cfg = default_bench_config(args.device, backbone=args.backbone, image_size=args.image_size,
                                   batch_size=args.batch_size, num_classes=args.num_classes, methods=methods,
                                   repeats=args.repeats, steps=args.steps, warmup=args.warmup,
                                   precision=args.precision, compile=args.compile or None,
                                   compile_backend=args.compile_backend, compile_mode=args.compile_mode,
                                   frozen_dtype=args.frozen_dtype, cuda_graph=args.cuda_graph or None,
                                   stock_modules=args.stock_modules or None,
                                   reference=False if args.no_reference else None, interleave=args.interleave,
                                   threads=args.threads)
        save = (lambda partial: write_report(partial, args.json_out)) if args.json_out else None
        report = run_bench(cfg, log=lambda line: print(line, file=sys.stderr), on_row=save)
    except (ValueError, ConfigError, BackboneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json_out:
        print(f"wrote {write_report(report, args.json_out)}")
    return 0


__all__ = ["DEFAULTS", "METHODS", "REFERENCES", "BenchConfig", "CaseResult", "ExtraTokenViT", "Reference",
           "add_hooked_adapters", "add_peft_lora", "build_parser", "count_flops", "default_bench_config",
           "format_table", "main", "matmul_ceiling", "our_case", "reference_case", "reference_loss", "run_bench",
           "summarize", "write_report"]


if __name__ == "__main__":
    sys.exit(main())
