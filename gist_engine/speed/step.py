"""Speed wrappers of a whole training step: `torch.compile` of the forward + loss, and CUDA-graph replays.

Each one wraps the plain step (`gist_engine.train.TrainStep`, its `base_step`) and computes what it computes, with
the same parameters and optimiser; anything it does not define is read from the plain step (`scaler`, `optimizer`,
`forward_loss`, ...). `install_step(step, compile=..., cuda_graph=...)` returns the wrapped step, or the plain one
where a shortcut does not apply (CUDA graphs on a CPU or with fp16's gradient scaler). Both fall back to the plain
step with a logged warning when compiling or capturing fails.

The plain step this module wraps offers (duck-typed: speed never imports train): `__call__(x, y) -> terms`,
`forward_loss(x, y, cache_enabled=True) -> terms`, `backward(terms)`, `update()` (clip + optimiser step), and
the attributes `optimizer`, `params`, `grad_clip`, `device`, `scaler`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# torch.compile backend; "aot_eager" traces and partitions without generating kernels (tests use it: inductor's
# first compile takes about a minute on a small CPU).
COMPILE_BACKEND = os.environ.get("GIST_COMPILE_BACKEND", "inductor")

GRAPH_WARMUP_STEPS = 3  # eager steps before the first capture (each one a real training step)
MAX_GRAPHS = 2  # batch shapes captured per run (the full batch and an epoch's last one); others run eagerly


class StepWrapper:
    """A training step that computes what its `base_step` computes, faster; other attributes are the base's."""

    compiled = False
    graphed = False
    compile_error: str | None = None
    graph_error: str | None = None

    def __init__(self, base_step: Any) -> None:
        self.base_step = base_step

    def __getattr__(self, name: str) -> Any:
        if name == "base_step":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base_step, name)


class CompiledStep(StepWrapper):
    """The step with its forward + loss compiled by `torch.compile` for the first batch shape it sees (static
    shapes, the fastest kernels); a batch of another shape (an epoch's smaller last batch) runs eagerly instead of
    paying a second compilation. A compile error is caught: the step logs a warning, restores the random state the
    failed try consumed, and from then on runs eagerly. Out-of-memory errors are re-raised.

    Args:
        base_step: The plain step.
        backend: torch.compile backend; None = `COMPILE_BACKEND`.
        mode: torch.compile mode (e.g. "max-autotune-no-cudagraphs"); None = torch's default.
    """

    def __init__(self, base_step: Any, backend: Any = None, mode: str | None = None) -> None:
        super().__init__(base_step)
        self._shape: tuple | None = None  # the batch shape the compiled graph is for
        self._compiled = torch.compile(base_step.forward_loss, backend=backend or COMPILE_BACKEND, mode=mode,
                                       dynamic=False)

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (False after a fallback)."""
        return self._compiled is not None

    def __call__(self, x: Any, y: Tensor) -> Tensor:
        """One step, (len(LOSS_TERMS),) detached terms on the device, as the plain step's."""
        step = self.base_step
        if self._compiled is None:
            return step(x, y)
        step.optimizer.zero_grad(set_to_none=True)
        values = self._forward_backward(x, y)
        step.update()
        return values.detach()

    def _forward_backward(self, x: Any, y: Tensor) -> Tensor:
        step, shape = self.base_step, shape_key(x)
        if self._shape is not None and shape != self._shape:  # another shape: eager, no second compilation
            values = step.forward_loss(x, y)
            step.backward(values)
            return values
        rng = rng_state(step.device) if self._shape is None else None
        try:
            values = self._compiled(x, y)
            step.backward(values)  # a compiled backward is built lazily: its failure is a compile failure too
        except Exception as exc:
            if is_oom(exc):
                raise
            self._fall_back(exc, rng)
            values = step.forward_loss(x, y)
            step.backward(values)
        self._shape = shape
        return values

    def _fall_back(self, exc: BaseException, rng: tuple[Tensor, Tensor | None] | None) -> None:
        self._compiled = None
        self.compile_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        if rng is not None:  # the failed try's dropout draws are undone: the eager redo draws the same numbers
            set_rng_state(self.base_step.device, rng)
        self.base_step.optimizer.zero_grad(set_to_none=True)
        log.warning("torch.compile failed (%s); training continues eagerly", self.compile_error)


class GraphedStep(StepWrapper):
    """On CUDA, the whole step (forward, backward, clipping, AdamW) captured once per image-batch shape as a CUDA
    graph and replayed, so no Python runs per kernel (a small-batch ViT step otherwise waits on the CPU's kernel
    launches). The first `GRAPH_WARMUP_STEPS` steps run eagerly on a side stream (lazy initialisations happen
    outside a capture); text batches (a new padded length per batch) and shapes beyond `MAX_GRAPHS` run eagerly.
    A failed capture falls back to eager steps with a logged warning, or stops with a clear error where it left
    CUDA's random generator unusable. Not for fp16 (its scaler decides on the host whether a step runs).

    Each optimiser group's lr becomes a device tensor the graph reads (the scheduler's new value is copied into it
    before every replay), and AdamW keeps its step count on the device (`capturable`).
    """

    def __init__(self, base_step: Any) -> None:
        super().__init__(base_step)
        self.cuda_graph = True  # False after a failed capture
        self._graphs: dict[tuple, _StepGraph] = {}
        self._eager_steps = 0
        self._lr: list[Tensor] = []
        self._side: torch.cuda.Stream | None = None
        for group in base_step.optimizer.param_groups:
            lr = group["lr"]
            group.setdefault("initial_lr", float(lr))  # schedulers scale this float, never the tensor
            tensor = lr if isinstance(lr, Tensor) else torch.tensor(float(lr), device=base_step.device)
            group["lr"] = tensor
            self._lr.append(tensor)
            if "capturable" in group:
                group["capturable"] = True

    @property
    def graphed(self) -> bool:
        """Whether steps replay a captured CUDA graph (False before the first capture and after a fallback)."""
        return self.cuda_graph and bool(self._graphs)

    def _sync_lr(self) -> None:
        """Copy a scheduler's float lr (older torch replaces the tensor) into the tensor the graph reads."""
        for group, tensor in zip(self.base_step.optimizer.param_groups, self._lr, strict=True):
            if group["lr"] is not tensor:
                tensor.fill_(float(group["lr"]))
                group["lr"] = tensor

    def __call__(self, x: Any, y: Tensor) -> Tensor:
        """One step: a replay of the step's graph for this batch shape; warm-up steps (real, eager) and the
        capture first."""
        if not self.cuda_graph:
            return self.base_step(x, y)
        self._sync_lr()
        if not isinstance(x, Tensor):  # text batches: a new padded length per batch, and mask checks on the host
            return self.base_step(x, y)
        key = (shape_key(x), tuple(y.shape))
        graph = self._graphs.get(key)
        if graph is not None:
            return graph.replay(x, y)
        if self._eager_steps < GRAPH_WARMUP_STEPS or len(self._graphs) >= MAX_GRAPHS:
            return self._side_stream_step(x, y)
        try:
            graph = self._capture(x, y)
        except Exception as exc:
            self.base_step.optimizer.zero_grad(set_to_none=True)
            if is_oom(exc):
                raise
            self.cuda_graph = False
            self._graphs.clear()
            self.graph_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            log.warning("CUDA graph capture failed (%s); training continues eagerly", self.graph_error)
            try:
                return self.base_step(x, y)
            except RuntimeError as after:  # a capture that failed half-way can leave CUDA's RNG unusable
                raise RuntimeError(f"CUDA graph capture failed ({self.graph_error}) and left CUDA unusable for "
                                   f"this process ({after}); run again with train.cuda_graph: false") from exc
        self._graphs[key] = graph
        return graph.replay(x, y)

    def _side_stream_step(self, x: Tensor, y: Tensor) -> Tensor:
        """An eager step on a side stream, as CUDA graph capture requires of the steps before it."""
        device = self.base_step.device
        self._side = self._side or torch.cuda.Stream(device)
        self._side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(self._side):
            values = self.base_step(x, y)
        torch.cuda.current_stream(device).wait_stream(self._side)
        self._eager_steps += 1
        return values

    def _capture(self, x: Tensor, y: Tensor) -> _StepGraph:
        """Record (not run) one whole step on static copies of the batch; the gradients it writes are its own."""
        step = self.base_step
        static_x, static_y = x.clone(), y.clone()
        step.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates its gradients in the pool
        graph = torch.cuda.CUDAGraph()
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False  # cuDNN's FIND cannot run inside a capture (its key sees alignment)
        try:
            with torch.cuda.graph(graph):
                values = step.forward_loss(static_x, static_y, cache_enabled=False)  # no cast cache outlives it
                values[-1].backward()
                if step.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(step.params, step.grad_clip)
                step.optimizer.step()
        finally:
            torch.backends.cudnn.benchmark = benchmark
        grads = [p.grad for p in step.params]  # kept alive: the graph writes them on every replay
        return _StepGraph(graph, static_x, static_y, values.detach(), grads)


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


def install_step(step: Any, *, compile: bool = False, backend: Any = None, mode: str | None = None,
                 cuda_graph: bool = False) -> Any:
    """The training step with the asked-for shortcut installed: `CompiledStep` with `compile` (CUDA graphs are
    then left to torch.compile's own modes), else `GraphedStep` with `cuda_graph` on a CUDA device without a
    gradient scaler; otherwise `step` itself (fp16 with `cuda_graph`: a logged note).

    Args:
        step: The plain step (`gist_engine.train.TrainStep`).
        compile: `train.compile`.
        backend: torch.compile backend; None = `COMPILE_BACKEND`.
        mode: torch.compile mode; None = torch's default.
        cuda_graph: `train.cuda_graph`.
    """
    if compile:
        return CompiledStep(step, backend, mode)
    if not cuda_graph or step.device.type != "cuda":
        return step
    if step.scaler is not None:
        log.info("train.cuda_graph is not used with fp16 precision (the gradient scaler decides on the host "
                 "whether each step runs); training runs eagerly")
        return step
    return GraphedStep(step)


def is_oom(exc: BaseException) -> bool:
    """Whether an exception is an out-of-memory error (torch's, or a RuntimeError saying so)."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def shape_key(x: Any) -> tuple:
    """The input's shapes: a tensor's, or each entry's of a mapping (text batches are dicts of tensors)."""
    if isinstance(x, Tensor):
        return tuple(x.shape)
    if isinstance(x, Mapping):
        return tuple((k, tuple(v.shape)) for k, v in sorted(x.items()))
    return (type(x).__name__,)


def rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The CPU generator's state and, on CUDA, the device's."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


__all__ = ["COMPILE_BACKEND", "GRAPH_WARMUP_STEPS", "MAX_GRAPHS", "CompiledStep", "GraphedStep", "StepWrapper",
           "install_step", "is_oom", "rng_state", "set_rng_state", "shape_key"]
