"""The training fast path shared by the trainer and the benchmark: one optimisation step, eager or compiled.

What makes a step fast, and where each piece lives:

- `TrainStep`: bf16 autocast (when asked), GIST loss, backward, optional gradient clipping and the optimiser step,
  returning every loss term as ONE device tensor (no host synchronisation). Two options: `torch.compile` of the
  forward + loss, falling back to eager with a warning on any compile error (the failed try is undone); and, on
  CUDA for image batches, the whole step (forward, backward, clipping, AdamW) captured once per batch shape as a
  CUDA graph and replayed, so no Python runs per kernel (a small-batch ViT step otherwise waits on the CPU's
  kernel launches); a failed capture falls back to eager with a warning, or stops with a clear error where it left
  CUDA's random generator unusable.
- `make_optimizer`: AdamW, fused into one kernel per step on CUDA.
- `enable_fused_attention`: timm's `F.scaled_dot_product_attention` path in every attention module (attention
  capture switches it off only while it records, see `attention.capture_attention`), as `model.PackedQKVAttention`,
  which also lets `GistViT.forward` take its two exact row shortcuts (see `model`).
- `configure_device`: cuDNN autotuning on CUDA; on CPU the torch thread count chosen for the CPUs this process may
  use (affinity, cgroup quota) and how busy they already are, see `choose_cpu_threads`.
- `cast_frozen_`: the frozen weights stored in bf16 when training in bf16 (autocast rounds them to bf16 for every
  matmul anyway; stored so, they are not re-cast every step and the residual stream runs in bf16 too), and the
  frozen LayerNorms run in bf16 (`low_precision_frozen_norms_`: no float32 round trip of the stream per norm).
- `auto_log_every`: how often the trainer reads the loss terms back to the host (1 on CPU, 10 on CUDA).
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from timm.layers import Attention
from timm.layers import LayerNorm as TimmLayerNorm
from torch import Tensor, nn

from .losses import LOSS_TERMS, gist_loss
from .model import PackedQKVAttention

# torch.compile backend; "aot_eager" traces and partitions without generating kernels (tests use it: inductor's
# first compile takes about a minute on a small CPU).
COMPILE_BACKEND = os.environ.get("GIST_COMPILE_BACKEND", "inductor")
LOG_EVERY_CUDA = 10  # steps between loss read-backs on CUDA when train.log_every is 0 (auto)
# Evaluation batch by device type when train.eval_batch_size is 0 (auto). On CPU a batch whose activations stay in
# cache wins: DINOv2-S/14 at 112 px, 2 threads, evaluated 48 img/s at 64 against 40 at 256 (measured).
EVAL_BATCH = {"cuda": 1024, "cpu": 64}


# -------------------------------------------------------------------------------------------------- device setup
def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2/v1 CPU quota if one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


_cpu_threads_lock = threading.Lock()
_cpu_threads: int | None = None


def choose_cpu_threads() -> int:
    """torch threads for this machine, chosen once per process (`measure_cpu_threads`); thread-safe, so a caller
    waits for a choice `choose_cpu_threads_in_background` has started rather than sampling again.

    Chosen once, so that runs compared in one process (plain vs GIST) use the same count; `train.cpu_threads`
    overrides it.
    """
    global _cpu_threads
    with _cpu_threads_lock:
        if _cpu_threads is None:
            _cpu_threads = measure_cpu_threads()
        return _cpu_threads


def choose_cpu_threads_in_background() -> None:
    """Start `choose_cpu_threads` on a daemon thread, so that its 0.5 s of sampling overlaps what the caller does
    next (loading data, building the model: `idle_cpus` counts this process's own CPU time as idle)."""
    if _cpu_threads is None:
        threading.Thread(target=choose_cpu_threads, name="choose-cpu-threads", daemon=True).start()


def measure_cpu_threads() -> int:
    """The usable CPUs less those other processes keep busy now.

    An OpenMP thread that the OS has descheduled stalls every parallel op at its barrier: on a machine whose other
    processes already fill the CPUs, two threads ran a small ViT's training step 10-100x slower than one (measured
    on a shared 2-CPU machine). So the count is the CPUs idle now (`idle_cpus`: the most idle of four 0.125 s
    slices of /proc/stat, so that a burst, e.g. the browser drawing the page that launched the run, is not taken
    for a process that keeps a CPU busy), rounded, between 1 and `usable_cpus()` (which applies a cgroup quota).

    The 1-minute load average is only the fallback (no /proc/stat): it lags. A run's own load stays in it for a
    minute, so a run started just after another one on an idle 2-CPU machine read ~1.0 and got one thread, half
    the speed (measured).
    """
    n = usable_cpus()
    idle = idle_cpus()
    if idle is None:
        try:
            idle = n - max(0.0, os.getloadavg()[0] - 1.0)  # the load average counts this process once it runs
        except (AttributeError, OSError):
            return n
    return max(1, min(n, math.floor(idle + 0.5)))


def idle_cpus(window: float = 0.125, slices: int = 4, stat: Path = Path("/proc/stat")) -> float | None:
    """How many of the CPUs this process may run on are idle: the most idle of `slices` `window`-second slices.

    Reads the per-CPU lines of /proc/stat (user nice system idle iowait irq softirq steal ...) for the CPUs in the
    affinity mask, `slices + 1` times, `window` seconds apart, and returns the idle time of the idlest slice, in
    CPUs. A process that keeps a CPU busy is busy in every slice; a burst is not. This process's own CPU time counts
    as idle (its threads are the ones that will use the CPUs), so it may work while another thread samples. Stolen
    time (a hypervisor running someone else) counts as busy. None where /proc/stat is unreadable.
    """
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        cpus = None

    def sample() -> tuple[int, int] | None:
        try:
            lines = stat.read_text().splitlines()
        except OSError:
            return None
        total = idle = 0
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu" or (cpus is not None and name not in cpus):
                continue
            try:
                fields = [int(v) for v in rest.split()[:8]]
            except ValueError:  # not the kernel's format: no sample rather than a wrong one
                return None
            total += sum(fields)
            idle += sum(fields[3:5])  # idle + iowait
        return (total, idle) if total else None

    n = len(cpus) if cpus else max(1, os.cpu_count() or 1)
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit: 1/ticks s
    best, last, own = None, sample(), time.process_time()
    for _ in range(slices):
        if last is None:
            return None
        time.sleep(window)
        now, own_now = sample(), time.process_time()
        if now is not None and now[0] > last[0]:
            share = min(n, n * (now[1] - last[1] + (own_now - own) * ticks) / (now[0] - last[0]))
            best = share if best is None else max(best, share)
        last, own = now, own_now
    return best


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup (quota / period), or None when unlimited or unknown."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()  # cgroup v2: "max 100000" or "200000 100000"
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())  # cgroup v1
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def configure_device(device: torch.device, cpu_threads: int = 0) -> dict[str, Any]:
    """Process-wide settings for fast training on `device`; returns what was set (for logs and the benchmark).

    Args:
        device: The training device.
        cpu_threads: torch intra-op threads on CPU; 0 = `choose_cpu_threads()` (load-aware, once per process).
            Ignored on CUDA.

    Returns:
        {"threads": int} on CPU, {"cudnn_benchmark": True} on CUDA.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the patch-embedding conv has one fixed shape per run
        return {"cudnn_benchmark": True}
    threads = cpu_threads or choose_cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return {"threads": threads}


def auto_log_every(device: torch.device) -> int:
    """Steps between loss read-backs when `train.log_every` is 0: every step on CPU, every 10 on CUDA."""
    return LOG_EVERY_CUDA if device.type == "cuda" else 1


def eval_batch_size(device: torch.device, requested: int = 0) -> int:
    """The evaluation batch: `requested`, or large on CUDA (1024) and 64 on CPU."""
    return requested or EVAL_BATCH.get(device.type, EVAL_BATCH["cpu"])


def enable_fused_attention(model: nn.Module, packed_qkv: bool = True) -> int:
    """Switch every timm attention module to its fused (scaled_dot_product_attention) path; returns how many.

    With `packed_qkv`, timm's own `Attention` modules become `PackedQKVAttention` (the same module, a backward
    without one copy).
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "fused_attn") and hasattr(module, "qkv"):
            if packed_qkv and type(module) is Attention:
                module.__class__ = PackedQKVAttention
            module.fused_attn = True
            count += 1
    return count


def cast_frozen_(model: nn.Module, dtype: torch.dtype = torch.bfloat16, norms: bool = True) -> int:
    """Store every frozen floating-point parameter of `model` in `dtype`, in place; returns how many were cast.

    Trainable parameters stay float32 (the optimiser's master weights). Run the model under `autocast` afterwards:
    it mixes dtypes only through autocast's casts. With `norms`, the frozen LayerNorms then run in `dtype` too
    (`low_precision_frozen_norms_`).
    """
    count = 0
    for param in model.parameters():
        if not param.requires_grad and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
            count += 1
    if norms:
        low_precision_frozen_norms_(model)
    return count


def low_precision_frozen_norms_(model: nn.Module) -> int:
    """Run every LayerNorm whose parameters are all frozen in autocast's dtype (timm's `fast_norm`); returns how
    many.

    Autocast runs LayerNorm in float32: on a bf16 residual stream each norm then costs a bf16 -> fp32 copy of its
    input, a float32 norm and an fp32 -> bf16 copy for the next matmul, and the same three again backward. timm's
    fast norm casts the input and weights to autocast's dtype and runs the norm there (its statistics still
    accumulate in float32), so the output is the float32 norm rounded once to bf16, the value the next matmul read
    anyway. A norm with a trainable weight or bias keeps autocast's float32 path (its gradients stay float32).
    Plain `nn.LayerNorm` modules (the text encoders') become timm's `LayerNorm`, a subclass with the same state.
    Without autocast a fast norm is `F.layer_norm`, as before.
    """
    count = 0
    for module in model.modules():
        if type(module) not in (nn.LayerNorm, TimmLayerNorm):
            continue
        if any(p.requires_grad for p in module.parameters()):
            continue
        if type(module) is nn.LayerNorm:
            module.__class__ = TimmLayerNorm
        module._fast_norm = True
        count += 1
    return count


def prepare_for_training(model: nn.Module, device: torch.device, precision: str, frozen_dtype: str = "auto",
                         stock_modules: bool = False) -> torch.dtype | None:
    """The trainer's preparation of a model: fused attention (`enable_fused_attention`) and, where
    `train.frozen_dtype` resolves to bf16, the frozen weights and norms in bf16 (`cast_frozen_`); returns that dtype
    or None. `stock_modules`: keep timm's attention and autocast's float32 norms (the benchmark's A/B). Raises
    ValueError for bf16 frozen weights without bf16 precision."""
    enable_fused_attention(model, packed_qkv=not stock_modules)
    frozen = resolve_frozen_dtype(frozen_dtype, device, precision)
    if frozen is not None:
        cast_frozen_(model, frozen, norms=not stock_modules)  # trainable parameters stay float32
    return frozen


def mixed_dtype(model: nn.Module) -> torch.dtype | None:
    """The low-precision dtype of a model whose frozen weights `cast_frozen_` cast, or None for a uniform model."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    low = dtypes - {torch.float32}
    return next(iter(low)) if len(dtypes) > 1 and len(low) == 1 else None


def resolve_frozen_dtype(setting: str, device: torch.device, precision: str) -> torch.dtype | None:
    """`train.frozen_dtype` resolved: bf16 (auto: on CUDA when training in bf16) or None (keep float32)."""
    if setting == "bf16" or (setting == "auto" and device.type == "cuda" and precision == "bf16"):
        if precision != "bf16":
            raise ValueError("train.frozen_dtype: bf16 frozen weights need train.precision bf16 (autocast)")
        return torch.bfloat16
    return None


def make_optimizer(groups: Iterable[dict[str, Any]], lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over parameter groups: the fused single-kernel implementation on CUDA, torch's default elsewhere."""
    return torch.optim.AdamW(list(groups), lr=lr, fused=device.type == "cuda")


def autocast(device: torch.device, precision: str, cache_enabled: bool = True) -> AbstractContextManager:
    """bf16 autocast on `device` when `precision` is "bf16"; a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16",
                          cache_enabled=cache_enabled)


# ---------------------------------------------------------------------------------------------------- the step
def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class TrainStep:
    """One optimisation step of a Gist model (GistViT, or the text model): `terms = step(x, y)`, kept on the device.

    The step is `zero_grad -> forward (autocast) + GIST loss -> backward -> clip -> optimizer.step`. It returns the
    loss terms in `LOSS_TERMS` order as a detached float32 (len(LOSS_TERMS),) tensor on the device and never reads
    anything back to the host, so a CUDA queue never drains between steps.

    With `compile=True` the forward + loss is compiled with `torch.compile` for the first batch shape it sees (static
    shapes, the fastest kernels); a batch of another shape (an epoch's smaller last batch) runs eagerly instead of
    paying a second compilation. A compile error is caught: the step warns, restores the random state the failed try
    consumed, and from then on runs eagerly. Out-of-memory errors are re-raised.

    Args:
        model: The GistViT (its trainable parameters set).
        optimizer: The optimiser over `params`.
        params: The trained parameters (for gradient clipping).
        device: The training device.
        precision: "bf16" (autocast) or "fp32".
        grad_clip: Max gradient norm, or None.
        compile: Compile the forward + loss.
        backend: torch.compile backend; None = `COMPILE_BACKEND`.
        mode: torch.compile mode (e.g. "max-autotune-no-cudagraphs"); None = torch's default.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                 device: torch.device, precision: str = "fp32", grad_clip: float | None = None,
                 compile: bool = False, backend: str | None = None, mode: str | None = None,
                 cuda_graph: bool = False) -> None:
        self.model, self.optimizer, self.params = model, optimizer, params
        self.device, self.precision, self.grad_clip = device, precision, grad_clip
        self.compile_error: str | None = None
        self._shape: tuple | None = None  # the batch shape the compiled graph is for
        self._compiled: Callable[[Any, Tensor], Tensor] | None = None
        if compile:
            self._compiled = torch.compile(self.forward_loss, backend=backend or COMPILE_BACKEND, mode=mode,
                                           dynamic=False)
        # Whole-step CUDA graphs (eager model only: a compiled one is left to torch.compile's own modes).
        self.graph_error: str | None = None
        self._graphs: dict[tuple, _StepGraph] = {}
        self._eager_steps = 0
        self._lr: list[Tensor] = []
        self._side: torch.cuda.Stream | None = None
        self.cuda_graph = cuda_graph and device.type == "cuda" and not compile
        if self.cuda_graph:
            self._make_capturable()

    @property
    def graphed(self) -> bool:
        """Whether steps replay a captured CUDA graph (False before the first capture and after a fallback)."""
        return self.cuda_graph and bool(self._graphs)

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (False after a fallback)."""
        return self._compiled is not None

    def forward_loss(self, x: Any, y: Tensor, cache_enabled: bool = True) -> Tensor:
        """Eager forward + GIST loss: every term stacked, (len(LOSS_TERMS),); the last one, total, has a graph."""
        with autocast(self.device, self.precision, cache_enabled):
            out = self.model(x)
        terms = gist_loss(out.cls_logits, out.gist_logits, y, self.model.gist_cfg)
        return torch.stack([terms[k].float() for k in LOSS_TERMS])  # (6,) total last

    def _compiled_forward_backward(self, x: Any, y: Tensor) -> Tensor:
        shape = _shape_key(x)
        if self._shape is not None and shape != self._shape:  # another shape: eager, no second compilation
            values = self.forward_loss(x, y)
            values[-1].backward()
            return values
        rng = _rng_state(self.device) if self._shape is None else None
        try:
            values = self._compiled(x, y)
            values[-1].backward()  # a compiled backward is built lazily: its failure is a compile failure too
        except Exception as exc:
            if _is_oom(exc):
                raise
            self._fall_back(exc, rng)
            values = self.forward_loss(x, y)
            values[-1].backward()
        self._shape = shape
        return values

    def _fall_back(self, exc: BaseException, rng: tuple[Tensor, Tensor | None] | None) -> None:
        self._compiled = None
        self.compile_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        if rng is not None:  # the failed try's dropout draws are undone: the eager redo draws the same numbers
            _set_rng_state(self.device, rng)
        self.optimizer.zero_grad(set_to_none=True)
        warnings.warn(f"torch.compile failed ({self.compile_error}); training continues eagerly", RuntimeWarning,
                      stacklevel=3)

    def __call__(self, x: Any, y: Tensor) -> Tensor:
        """One step on a batch (images (B, 3, H, W), or a text batch's dict) and labels (B,).

        Returns:
            The detached loss terms on the device, (len(LOSS_TERMS),) float32 in `LOSS_TERMS` order.
        """
        if self.cuda_graph:
            return self._graph_step(x, y)
        return self._eager_step(x, y)

    def _eager_step(self, x: Any, y: Tensor) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        if self._compiled is None:
            values = self.forward_loss(x, y)
            values[-1].backward()
        else:
            values = self._compiled_forward_backward(x, y)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return values.detach()

    # ------------------------------------------------------------------------------------------ CUDA graphs
    def _make_capturable(self) -> None:
        """Each group's lr becomes a device tensor the graph reads (the scheduler's new value is copied into it
        before every replay), and AdamW keeps its step count on the device (`capturable`)."""
        for group in self.optimizer.param_groups:
            lr = group["lr"]
            group.setdefault("initial_lr", float(lr))  # schedulers scale this float, never the tensor
            tensor = lr if isinstance(lr, Tensor) else torch.tensor(float(lr), device=self.device)
            group["lr"] = tensor
            self._lr.append(tensor)
            if "capturable" in group:
                group["capturable"] = True

    def _sync_lr(self) -> None:
        """Copy a scheduler's float lr (older torch replaces the tensor) into the tensor the graph reads."""
        for group, tensor in zip(self.optimizer.param_groups, self._lr, strict=True):
            if group["lr"] is not tensor:
                tensor.fill_(float(group["lr"]))
                group["lr"] = tensor

    def _graph_step(self, x: Any, y: Tensor) -> Tensor:
        """A replay of the step's graph for this batch shape; warm-up steps (real, eager) and the capture first."""
        self._sync_lr()
        if not isinstance(x, Tensor):  # text batches: a new padded length per batch, and mask checks on the host
            return self._eager_step(x, y)
        key = (_shape_key(x), tuple(y.shape))
        graph = self._graphs.get(key)
        if graph is not None:
            return graph.replay(x, y)
        if self._eager_steps < GRAPH_WARMUP_STEPS or len(self._graphs) >= MAX_GRAPHS:
            # the first steps run eagerly, so that lazy initialisations (cuBLAS, AdamW's state) happen outside a
            # capture; so do shapes beyond MAX_GRAPHS
            return self._side_stream_step(x, y)
        try:
            graph = self._capture(x, y)
        except Exception as exc:
            self.optimizer.zero_grad(set_to_none=True)
            if _is_oom(exc):
                raise
            self.cuda_graph = False
            self._graphs.clear()
            self.graph_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            warnings.warn(f"CUDA graph capture failed ({self.graph_error}); training continues eagerly",
                          RuntimeWarning, stacklevel=3)
            try:
                return self._eager_step(x, y)
            except RuntimeError as after:  # a capture that failed half-way can leave CUDA's RNG unusable
                raise RuntimeError(f"CUDA graph capture failed ({self.graph_error}) and left CUDA unusable for "
                                   f"this process ({after}); run again with train.cuda_graph: false") from exc
        self._graphs[key] = graph
        return graph.replay(x, y)

    def _side_stream_step(self, x: Tensor, y: Tensor) -> Tensor:
        """An eager step on a side stream, as CUDA graph capture requires of the steps before it."""
        self._side = self._side or torch.cuda.Stream(self.device)
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            values = self._eager_step(x, y)
        torch.cuda.current_stream(self.device).wait_stream(self._side)
        self._eager_steps += 1
        return values

    def _capture(self, x: Tensor, y: Tensor) -> _StepGraph:
        """Record (not run) one whole step on static copies of the batch; the gradients it writes are its own."""
        static_x, static_y = x.clone(), y.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates its gradients in the pool
        graph = torch.cuda.CUDAGraph()
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False  # cuDNN's FIND cannot run inside a capture (its key sees alignment)
        try:
            with torch.cuda.graph(graph):
                values = self.forward_loss(static_x, static_y, cache_enabled=False)  # no cast cache outlives it
                values[-1].backward()
                if self.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
                self.optimizer.step()
        finally:
            torch.backends.cudnn.benchmark = benchmark
        grads = [p.grad for p in self.params]  # kept alive: the graph writes them on every replay
        return _StepGraph(graph, static_x, static_y, values.detach(), grads)


GRAPH_WARMUP_STEPS = 3  # eager steps before the first capture (each one a real training step)
MAX_GRAPHS = 2  # batch shapes captured per run (the full batch and an epoch's last one); others run eagerly


class _StepGraph:
    """A captured training step: its static inputs, its loss-terms output and the gradients it owns."""

    def __init__(self, graph: torch.cuda.CUDAGraph, x: Tensor, y: Tensor, values: Tensor, grads: list) -> None:
        self.graph, self.x, self.y, self.values, self.grads = graph, x, y, values, grads

    def replay(self, x: Tensor, y: Tensor) -> Tensor:
        """Copy the batch in, run the step, return a copy of its loss terms (the graph overwrites its own)."""
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.values.clone()


def _shape_key(x: Any) -> tuple:
    """The input's shapes: a tensor's, or each entry's of a mapping (text batches are dicts of tensors)."""
    if isinstance(x, Tensor):
        return tuple(x.shape)
    if isinstance(x, Mapping):
        return tuple((k, tuple(v.shape)) for k, v in sorted(x.items()))
    return (type(x).__name__,)


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


__all__ = ["COMPILE_BACKEND", "PackedQKVAttention", "TrainStep", "auto_log_every", "autocast", "cast_frozen_",
           "choose_cpu_threads", "choose_cpu_threads_in_background", "configure_device", "enable_fused_attention",
           "eval_batch_size", "idle_cpus", "low_precision_frozen_norms_", "make_optimizer", "measure_cpu_threads",
           "mixed_dtype", "prepare_for_training", "resolve_frozen_dtype", "usable_cpus"]
