"""CLS and Gist attention maps of a batch of images: per layer and head, CLS<->Gist weights, rollout, .npz files."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from .._io import atomic_path
from ..speed import mixed_dtype
from .capture import capture_attention, eval_mode
from .rollout import attention_rollout, map_cosine, map_entropy

if TYPE_CHECKING:  # pandas loads only where a table is asked for (~0.25 s of every CLI start)
    import pandas as pd

SUMMARY_COLUMNS = ("layer", "cls_entropy", "gist_entropy", "cls_gist_cosine", "cls_to_gist", "gist_to_cls",
                   "cls_rollout_entropy", "gist_rollout_entropy", "rollout_cosine")


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> int:
    """Write a compressed .npz atomically (readers never see half a file); returns its size in bytes."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
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
    labels: np.ndarray | None = None  # (B,) int64 true classes of a snapshot's probe images, when recorded

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
        import pandas as pd  # heavy (~0.25 s): loaded only when a table is asked for

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


def input_normalisation(model: nn.Module) -> tuple[Sequence[float], Sequence[float]] | None:
    """(mean, std) of a model's input normalisation (its `data_config`), or None when it has none."""
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
    norm = input_normalisation(model)
    if with_images and norm is not None:
        maps.images = to_uint8_images(images, *norm)
    return maps


def max_entropy(maps: AttentionMaps) -> float:
    """The largest possible map entropy, log(gh * gw) nats (a uniform map)."""
    return math.log(maps.grid[0] * maps.grid[1])


__all__ = ["SUMMARY_COLUMNS", "AttentionMaps", "compute_attention_maps", "input_normalisation",
           "maps_from_attention", "max_entropy", "save_npz", "to_uint8_images"]
