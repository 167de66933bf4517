"""Attention inspection: capture every block's softmax attention, CLS/Gist maps, rollout, snapshots."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from timm.layers import Attention
from torch import Tensor, nn

from .speed import mixed_dtype

if TYPE_CHECKING:  # pandas loads only where a table is asked for (~0.25 s of every CLI start)
    import pandas as pd

SNAPSHOT_DIR = "attention"  # snapshots live in <run_dir>/attention/
PROBE_FILE = "probe.npz"  # the probe images (uint8, de-normalised), written once at step 0
STEP_FILE = "step_{:07d}.npz"
_STEP_PATTERN = re.compile(r"^step_(\d+)\.npz$")
ROLLOUT_RESIDUAL = 0.5  # Abnar & Zuidema (2020): A' = 0.5 * A + 0.5 * I
SUMMARY_COLUMNS = ("layer", "cls_entropy", "gist_entropy", "cls_gist_cosine", "cls_to_gist", "gist_to_cls",
                   "cls_rollout_entropy", "gist_rollout_entropy", "rollout_cosine")


# --------------------------------------------------------------------------------------------------- capture
def unwrap_module(module: nn.Module) -> nn.Module:
    """The original module inside tuner wrappers (which keep it as `base_layer`)."""
    while hasattr(module, "base_layer"):  # tuner wrappers (PromptBlock, ParallelAdapterBlock, ...)
        module = module.base_layer
    return module


def attention_modules(model: nn.Module) -> list[Attention]:
    """timm's Attention module of every block, in block order, looking through tuner wrappers.

    Args:
        model: A GistViT or a timm VisionTransformer.

    Returns:
        One `timm.layers.Attention` per block.
    """
    vit = getattr(model, "vit", model)
    modules = []
    for i, block in enumerate(vit.blocks):
        attn = getattr(unwrap_module(block), "attn", None)
        if attn is not None and not isinstance(attn, Attention):
            attn = unwrap_module(attn)
        if not isinstance(attn, Attention):
            raise TypeError(f"block {i}: attention capture supports timm's Attention module, got "
                            f"{type(attn).__name__}")
        modules.append(attn)
    return modules


class AttentionCapture:
    """What `capture_attention` records: each block's post-softmax attention in the latest forward pass."""

    def __init__(self, num_layers: int) -> None:
        self.maps: list[Tensor | None] = [None] * num_layers  # each (B, heads, T, T), detached

    def clear(self) -> None:
        """Forget the recorded maps."""
        self.maps = [None] * len(self.maps)

    def stacked(self) -> Tensor:
        """All layers as one tensor (L, B, heads, T, T); raises if some block has not run."""
        missing = [i for i, m in enumerate(self.maps) if m is None]
        if missing:
            raise RuntimeError(f"no attention recorded for blocks {missing}: run a forward in the context")
        return torch.stack(self.maps)  # (L, B, H, T, T)


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[AttentionCapture]:
    """Record the softmax attention of every block while inside the context.

    Fused attention (`Attention.fused_attn`) is switched off per module so the explicit softmax runs, and a
    forward hook on `attn.attn_drop` reads its input, the post-softmax matrix (before attention dropout).
    On exit the hooks are removed and every flag is restored, also when the forward raises. The training
    path never enters this context and keeps fused attention.

    Args:
        model: A GistViT (any tuner, GIST on or off) or a timm VisionTransformer.

    Yields:
        An AttentionCapture; `maps[i]` is block i's attention (B, heads, T, T) of the latest forward pass.
    """
    modules = attention_modules(model)
    capture = AttentionCapture(len(modules))
    saved = [m.fused_attn for m in modules]
    handles = []

    def recorder(index: int):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            capture.maps[index] = args[0].detach()  # (B, H, T, T) softmax(q k^T / sqrt(d))

        return hook

    try:
        for i, module in enumerate(modules):
            module.fused_attn = False
            handles.append(module.attn_drop.register_forward_hook(recorder(i)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in zip(modules, saved, strict=True):
            module.fused_attn = flag


# ------------------------------------------------------------------------------------------------ maths
def attention_rollout(attn: Tensor, residual: float = ROLLOUT_RESIDUAL) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) through each layer.

    Per layer `A' = (1 - residual) * A + residual * I`, rows re-normalised, then `R_l = A'_l @ R_{l-1}`.

    Args:
        attn: Head-averaged attention per layer, (L, B, T, T).
        residual: Weight of the identity (the residual connection); 0.5 as in the paper.

    Returns:
        The cumulative rollout after each layer, (L, B, T, T); `[-1]` is the rollout of the whole model.
    """
    eye = torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)  # (T, T)
    rollout, out = None, []
    for a in attn:  # (B, T, T)
        a = (1.0 - residual) * a + residual * eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout  # (B, T, T)
        out.append(rollout)
    return torch.stack(out)  # (L, B, T, T)


def map_entropy(maps: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each map over its last two axes, the map normalised to sum to 1.

    Args:
        maps: (..., gh, gw) non-negative maps.

    Returns:
        (...) entropies; a uniform map over N patches gives log(N), a one-hot map 0.
    """
    m = np.asarray(maps, dtype=np.float64)
    p = m.reshape(*m.shape[:-2], -1)  # (..., N)
    p = p / np.clip(p.sum(axis=-1, keepdims=True), 1e-300, None)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=-1)


def map_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of two stacks of maps over their last two axes: (..., gh, gw) x2 -> (...)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a.reshape(*a.shape[:-2], -1)  # (..., N)
    b = b.reshape(*b.shape[:-2], -1)
    norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(axis=-1) / np.clip(norm, 1e-300, None)


# ------------------------------------------------------------------------------------------------ maps
def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> int:
    """Write a compressed .npz atomically (readers never see half a file); returns its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary results
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path.stat().st_size


@dataclass(eq=False)  # numpy fields: compare arrays explicitly
class AttentionMaps:
    """CLS and Gist attention maps of a batch of images, as numpy arrays (no torch needed to draw them).

    B images, L layers, H heads, (gh, gw) the patch grid. Raw attention weights (not re-normalised over the
    patches: the rest of each row goes to CLS, registers, Gist and prompts). Gist fields are None with GIST
    off; with several Gist tokens their query rows are averaged (as the Gist head averages their outputs).
    """

    cls_maps: np.ndarray  # (B, L, H, gh, gw) CLS -> patch attention per layer and head
    cls_rollout: np.ndarray  # (B, L, gh, gw) CLS row of the rollout through layers 0..l
    cls_logits: np.ndarray  # (B, C)
    gist_maps: np.ndarray | None = None  # (B, L, H, gh, gw) Gist -> patch attention
    gist_rollout: np.ndarray | None = None  # (B, L, gh, gw) Gist row(s) of the rollout
    cls_to_gist: np.ndarray | None = None  # (B, L, H) attention of CLS on the Gist tokens (summed over them)
    gist_to_cls: np.ndarray | None = None  # (B, L, H) attention of the Gist token(s) on CLS
    gist_logits: np.ndarray | None = None  # (B, C)
    images: np.ndarray | None = None  # (B, S, S, 3) uint8: the model inputs, de-normalised
    sequence_layout: tuple[tuple[str, int], ...] = ()  # token groups in block order, e.g. (("CLS", 1), ...)
    step: int | None = None  # training step of a snapshot

    @property
    def has_gist(self) -> bool:
        """Whether the model had a Gist token."""
        return self.gist_maps is not None

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (gh, gw)."""
        return tuple(self.cls_maps.shape[-2:])

    @property
    def num_layers(self) -> int:
        """Number of blocks L."""
        return self.cls_maps.shape[1]

    @property
    def num_heads(self) -> int:
        """Number of attention heads H."""
        return self.cls_maps.shape[2]

    @property
    def cls_mean(self) -> np.ndarray:
        """Head-averaged CLS -> patch maps, (B, L, gh, gw)."""
        return self.cls_maps.astype(np.float32).mean(axis=2)

    @property
    def gist_mean(self) -> np.ndarray | None:
        """Head-averaged Gist -> patch maps, (B, L, gh, gw), or None with GIST off."""
        return None if self.gist_maps is None else self.gist_maps.astype(np.float32).mean(axis=2)

    def summary(self, image: int | None = None) -> pd.DataFrame:
        """The per-layer numbers a teacher shows, one row per layer.

        Columns: `layer`; `cls_entropy`, `gist_entropy` (nats, of the head-averaged map as a distribution over
        patches; the maximum is log(gh * gw)); `cls_gist_cosine` (cosine of the two head-averaged maps);
        `cls_to_gist`, `gist_to_cls` (head-averaged attention weights); the same entropies and cosine for the
        rollout through that layer. Gist columns are NaN with GIST off.

        Args:
            image: Index of one image; None averages each number over the images.
        """
        import pandas as pd

        sel = slice(None) if image is None else slice(image, image + 1)
        nan = np.full((len(self.cls_maps[sel]), self.num_layers), np.nan)  # (b, L)
        cls_mean, cls_roll = self.cls_mean[sel], self.cls_rollout[sel].astype(np.float32)
        cols = {"cls_entropy": map_entropy(cls_mean), "gist_entropy": nan, "cls_gist_cosine": nan,
                "cls_to_gist": nan, "gist_to_cls": nan, "cls_rollout_entropy": map_entropy(cls_roll),
                "gist_rollout_entropy": nan, "rollout_cosine": nan}
        if self.has_gist:
            gist_mean, gist_roll = self.gist_mean[sel], self.gist_rollout[sel].astype(np.float32)
            cols.update(gist_entropy=map_entropy(gist_mean), cls_gist_cosine=map_cosine(cls_mean, gist_mean),
                        cls_to_gist=self.cls_to_gist[sel].astype(np.float64).mean(axis=-1),
                        gist_to_cls=self.gist_to_cls[sel].astype(np.float64).mean(axis=-1),
                        gist_rollout_entropy=map_entropy(gist_roll),
                        rollout_cosine=map_cosine(cls_roll, gist_roll))
        frame = pd.DataFrame({k: v.mean(axis=0) for k, v in cols.items()})  # (b, L) -> (L,)
        frame.insert(0, "layer", np.arange(self.num_layers))
        return frame[list(SUMMARY_COLUMNS)]

    def save(self, path: str | Path, dtype: type = np.float16) -> int:
        """Write the maps to a compressed .npz (float maps as `dtype`, logits float32), atomically.

        Returns:
            The file size in bytes.
        """
        arrays: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                if value.dtype.kind == "f":
                    value = value.astype(np.float32 if f.name.endswith("logits") else dtype)
                arrays[f.name] = value
        arrays["sequence_layout"] = np.array(json.dumps(self.sequence_layout))
        if self.step is not None:
            arrays["step"] = np.array(self.step, dtype=np.int64)
        return save_npz(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> AttentionMaps:
        """Read maps written by `save` (float arrays come back as float32)."""
        with np.load(Path(path), allow_pickle=False) as data:
            kwargs = {}
            for f in fields(cls):
                if f.name not in data.files:
                    continue
                value = data[f.name]
                if f.name == "sequence_layout":
                    value = tuple((str(name), int(n)) for name, n in json.loads(str(value)))
                elif f.name == "step":
                    value = int(value)
                elif value.dtype.kind == "f":
                    value = value.astype(np.float32)
                kwargs[f.name] = value
        return cls(**kwargs)


def to_uint8_images(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """De-normalise model inputs (B, 3, H, W) back to uint8 RGB images (B, H, W, 3)."""
    m = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    x = images.detach().float().cpu() * s + m  # (B, 3, H, W) in 0..1
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)


def _data_config(model: nn.Module) -> tuple[Sequence[float], Sequence[float]] | None:
    cfg = getattr(model, "data_config", None)
    return (cfg["mean"], cfg["std"]) if cfg else None


def maps_from_attention(attn: Tensor, model: nn.Module, cls_logits: Tensor,
                        gist_logits: Tensor | None = None) -> AttentionMaps:
    """CLS/Gist maps, CLS<->Gist weights and rollout from captured attention.

    Args:
        attn: `AttentionCapture.stacked()`, (L, B, heads, T, T) with T = model.num_extra_tokens + patches.
        model: The GistViT the attention came from (for the token layout and the grid).
        cls_logits: (B, C) CLS head output of the same forward pass.
        gist_logits: (B, C) Gist head output, or None.

    Returns:
        AttentionMaps without images (the caller adds them if it has them).
    """
    extra = model.num_extra_tokens  # CLS + registers + Gist + prompts
    gh, gw = model.grid_size
    tokens = attn.shape[-1]  # attn: (L, B, H, T, T)
    if tokens - extra != gh * gw:
        raise ValueError(f"attention has {tokens} tokens; expected {extra} extra tokens + {gh}x{gw} patches")
    attn = attn.float()

    def grid(x: Tensor) -> np.ndarray:  # (L, B, ..., N) -> (B, L, ..., gh, gw)
        return x.reshape(*x.shape[:-1], gh, gw).movedim(0, 1).cpu().numpy()

    rollout = attention_rollout(attn.mean(dim=2))  # (L, B, T, T)
    maps = {"cls_maps": grid(attn[:, :, :, 0, extra:]),  # (L, B, H, N) -> (B, L, H, gh, gw)
            "cls_rollout": grid(rollout[:, :, 0, extra:]),  # (L, B, N) -> (B, L, gh, gw)
            "cls_logits": cls_logits.detach().float().cpu().numpy()}
    if model.gist_length:
        gs = model.gist_slice
        maps.update(
            gist_maps=grid(attn[:, :, :, gs, extra:].mean(dim=3)),  # (L, B, H, G, N) -> (B, L, H, gh, gw)
            gist_rollout=grid(rollout[:, :, gs, extra:].mean(dim=2)),  # (L, B, G, N) -> (B, L, gh, gw)
            # (L, B, H, G) -> (B, L, H): CLS row on the Gist columns, Gist rows on the CLS column
            cls_to_gist=attn[:, :, :, 0, gs].sum(dim=-1).movedim(0, 1).cpu().numpy(),
            gist_to_cls=attn[:, :, :, gs, 0].mean(dim=-1).movedim(0, 1).cpu().numpy(),
            gist_logits=None if gist_logits is None else gist_logits.detach().float().cpu().numpy())
    layout = model.sequence_layout() if hasattr(model, "sequence_layout") else ()
    return AttentionMaps(**maps, sequence_layout=tuple((str(k), int(n)) for k, n in layout))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode (no dropout) and restore each one's own train/eval flag on exit."""
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in saved:
            m.training = training


def compute_attention_maps(model: nn.Module, images: Tensor, with_images: bool = True) -> AttentionMaps:
    """All maps of a batch: per layer/head CLS and Gist maps, CLS<->Gist weights, rollout, logits.

    Runs in eval mode (no dropout, Gist dropout included) under `torch.inference_mode`; the model's
    train/eval state is restored afterwards.

    Args:
        model: A GistViT.
        images: Normalised images (B, 3, S, S), S = model.image_size.
        with_images: Also store the de-normalised uint8 images (needs `model.data_config`).

    Returns:
        AttentionMaps of plain numpy arrays.
    """
    param = next(model.parameters())
    low = mixed_dtype(model)  # frozen weights stored in bf16 (a trainer's model): run under autocast, as it trains
    x = images.to(device=param.device, dtype=torch.float32 if low is not None else param.dtype)
    with eval_mode(model), torch.inference_mode(), capture_attention(model) as capture, \
            torch.autocast(param.device.type, dtype=low or torch.bfloat16, enabled=low is not None):
        out = model(x)
        attn = capture.stacked().float()  # (L, B, H, T, T)
    out = tuple(o.float() if o is not None else None for o in out) if isinstance(out, tuple) else out.float()
    cls_logits, gist_logits = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
    maps = maps_from_attention(attn, model, cls_logits, gist_logits)
    norm = _data_config(model)
    if with_images and norm is not None:
        maps.images = to_uint8_images(images, *norm)
    return maps


# ------------------------------------------------------------------------------------------------ snapshots
def choose_probe_images(images: Tensor, k: int, seed: int = 0) -> Tensor:
    """A fixed, seeded choice of `k` images (k, 3, H, W) from a tensor of images (N, 3, H, W)."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.randperm(images.shape[0], generator=gen)[: min(k, images.shape[0])]
    return images[index.to(images.device)].clone()


def snapshot_dir(run_dir: str | Path) -> Path:
    """Where a run's snapshots are: `<run_dir>/attention/` (a path to that folder itself is accepted too)."""
    run_dir = Path(run_dir)
    sub = run_dir / SNAPSHOT_DIR
    if sub.is_dir() or not any(_STEP_PATTERN.match(p.name) for p in run_dir.glob("step_*.npz")):
        return sub
    return run_dir


class AttentionSnapshots:
    """Trainer callback: attention maps of a fixed probe batch at step 0 and every `every` steps.

    Files: `<out_dir>/attention/probe.npz` (the probe images, uint8) and `step_0000000.npz`, ... (float16
    maps, see `AttentionMaps.save`). Recording uses eval mode under inference_mode and restores the mode.

    Args:
        out_dir: The run directory.
        every: Record when `step % every == 0` (steps count from 1); step 0 is recorded by `on_train_start`.
        probe_images: Normalised probe images (k, 3, H, W), e.g. from `choose_probe_images`.
    """

    def __init__(self, out_dir: Path, every: int, probe_images: Tensor) -> None:
        if every < 1:
            raise ValueError(f"every: must be >= 1, got {every}")
        self.dir = Path(out_dir) / SNAPSHOT_DIR
        self.every = every
        self.probe_images = probe_images.detach()
        self.last_step: int | None = None
        self.bytes_written = 0

    def on_train_start(self, model: nn.Module) -> None:
        """Write the probe images and record step 0 (before any training)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        norm = _data_config(model)
        if norm is not None:
            images = to_uint8_images(self.probe_images, *norm)  # (k, H, W, 3)
            self.bytes_written += save_npz(self.dir / PROBE_FILE, {"images": images})
        self.record(model, 0)

    def on_step_end(self, model: nn.Module, step: int) -> None:
        """Record when `step % every == 0`."""
        if step % self.every == 0:
            self.record(model, step)

    def on_train_end(self, model: nn.Module, step: int) -> None:
        """Optional: record the final step too, if it is not a multiple of `every`."""
        if step != self.last_step:
            self.record(model, step)

    def record(self, model: nn.Module, step: int) -> None:
        """Compute the probe batch's maps and write `step_{step:07d}.npz`."""
        maps = compute_attention_maps(model, self.probe_images, with_images=False)
        self.bytes_written += replace(maps, step=step).save(self.dir / STEP_FILE.format(step))
        self.last_step = step


def list_snapshots(run_dir: str | Path) -> list[int]:
    """The recorded steps of a run, ascending (empty when there are none)."""
    folder = snapshot_dir(run_dir)
    if not folder.is_dir():
        return []
    steps = (_STEP_PATTERN.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in steps if m)


def load_snapshot(run_dir: str | Path, step: int) -> AttentionMaps:
    """The maps recorded at `step`, with the probe images attached when they were stored."""
    folder = snapshot_dir(run_dir)
    path = folder / STEP_FILE.format(step)
    if not path.exists():
        raise FileNotFoundError(f"no attention snapshot for step {step} in {folder}; recorded steps: "
                                f"{list_snapshots(run_dir)}")
    maps = AttentionMaps.load(path)
    if maps.images is None and (folder / PROBE_FILE).exists():
        with np.load(folder / PROBE_FILE, allow_pickle=False) as data:
            maps.images = data["images"]
    return maps


def max_entropy(maps: AttentionMaps) -> float:
    """The largest possible map entropy, log(gh * gw) nats (a uniform map)."""
    return math.log(maps.grid[0] * maps.grid[1])


__all__ = [
    "AttentionCapture", "AttentionMaps", "AttentionSnapshots", "attention_modules", "attention_rollout",
    "capture_attention", "choose_probe_images", "compute_attention_maps", "eval_mode", "list_snapshots",
    "load_snapshot", "map_cosine", "map_entropy", "maps_from_attention", "max_entropy", "save_npz",
    "snapshot_dir", "to_uint8_images", "unwrap_module",
]


class TrainerSnapshots:
    """Trainer callback recording `train.attention_every` snapshots of a fixed probe batch of the test split.

    Adapts `attention.AttentionSnapshots` (which takes the model) to the Trainer's events; files go to
    `<run_dir>/attention/` where the attention page finds them.
    """

    def __init__(self, run_dir: Path, every: int, probe_images: int) -> None:
        self.run_dir, self.every, self.k = Path(run_dir), every, probe_images
        self.snapshots: Any = None

    def on_train_start(self, trainer: Any) -> None:
        """Pick the probe images (seeded, from the first test batch) and record step 0."""
        x, _ = next(trainer.data.test.batches(max(64, self.k)))  # (B, 3, S, S) normalised, on the device
        probe = choose_probe_images(x, self.k, seed=trainer.config.data.seed)
        self.snapshots = AttentionSnapshots(self.run_dir, self.every, probe)
        if trainer.step == 0:
            self.snapshots.on_train_start(trainer.model)  # the probe images and step 0
        else:  # a resumed run: its probe images are stored already; record where it resumes
            self.snapshots.record(trainer.model, trainer.step)

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        """Record every `every` steps."""
        if self.snapshots is not None:
            self.snapshots.on_step_end(trainer.model, step)

    def on_eval_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        """Nothing to do."""

    def on_train_end(self, trainer: Any, result: Any) -> None:
        """Record the last step too (completed or stopped runs)."""
        if self.snapshots is not None and result.status in ("completed", "stopped") and trainer.step:
            self.snapshots.on_train_end(trainer.model, trainer.step)
