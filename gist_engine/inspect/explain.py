"""Explanations: captum Integrated Gradients and GradCAM of the CLS/Gist heads, overlays, the attention report."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.images import ImageInput, load_image_file, model_inputs, pixels_to_tensor, to_model_input
from ..speed import mixed_dtype
from .capture import eval_mode, unwrap_module
from .maps import AttentionMaps, compute_attention_maps, max_entropy

if TYPE_CHECKING:  # matplotlib (the explain extra) loads where a colour map or a figure is drawn
    from matplotlib.figure import Figure

HEADS = ("cls", "gist")


# ------------------------------------------------------------------------------------------------ images
def load_image(source: ImageInput, size: int) -> np.ndarray:
    """An image (file, bytes or uint8 pixels) as the model sees it: RGB uint8 (size, size, 3).

    The shared decoder and resize of training (`gist_engine.data.images.load_image_file`): allow-list, pixel cap,
    EXIF orientation, modes made RGB over white, bicubic with antialias.
    """
    return load_image_file(source, size).permute(1, 2, 0).numpy()  # (3, S, S) -> (S, S, 3)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize decoded uint8 pixels (H, W, 3) (or grey (H, W)) to (size, size, 3), as the model input is made."""
    return load_image(np.asarray(image), size)


def image_to_tensor(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Normalise an RGB uint8 image (H, W, 3) to a model input (1, 3, H, W) (`to_model_input`)."""
    return to_model_input(pixels_to_tensor(image)[None], mean, std)


def prepare_image(model: nn.Module, image: ImageInput) -> tuple[np.ndarray, Tensor]:
    """(the image resized to the model input as uint8 (S, S, 3), the normalised input (1, 3, S, S)).

    `image` is a file path, a file's bytes or decoded uint8 pixels; give the file when there is one, so a large
    JPEG is decoded exactly as `predict` and the dataset readers decode it.
    """
    resized, x = model_inputs(image, model.data_config)  # (1, 3, S, S) uint8 and float32
    return resized[0].permute(1, 2, 0).numpy(), x


# ------------------------------------------------------------------------------------------------ overlays
def upsample_grid(grid: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of patch-grid maps (..., gh, gw) to image size (..., H, W)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    g = torch.as_tensor(np.asarray(grid, dtype=np.float32))
    lead = g.shape[:-2]
    g = g.reshape(-1, 1, *g.shape[-2:])  # (n, 1, gh, gw)
    up = torch.nn.functional.interpolate(g, size=size, mode="bilinear", align_corners=False)  # (n, 1, H, W)
    return up.reshape(*lead, *size).numpy()


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, cmap: str = "inferno", alpha: float = 0.5,
                    vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """A heat map blended over an image.

    Args:
        image: RGB uint8 (H, W, 3), e.g. the image resized to the model input.
        heat: (h, w) map (any resolution: bilinearly resized to the image).
        cmap: A matplotlib colormap name.
        alpha: Weight of the heat map (0 = the image, 1 = the colour-mapped heat map).
        vmin: Value mapped to the bottom of the colormap; default the map's minimum.
        vmax: Value mapped to the top; default the map's maximum. (Signed attributions: pass abs or clip.)

    Returns:
        RGB uint8 (H, W, 3).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    h, w = image.shape[:2]
    heat = np.asarray(heat, dtype=np.float32)
    heat = upsample_grid(np.asarray(heat, dtype=np.float32), (h, w)) if heat.shape != (h, w) else heat
    lo = float(np.min(heat)) if vmin is None else vmin
    hi = float(np.max(heat)) if vmax is None else vmax
    norm = np.clip((heat - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(heat, dtype=np.float32)
    from matplotlib import colormaps  # optional dependency (the explain extra), ~0.3-1 s to import: on use

    colour = colormaps[cmap](norm)[..., :3]  # (H, W, 3) in 0..1
    out = (1 - alpha) * image.astype(np.float32) / 255 + alpha * colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


# -------------------------------------------------------------------------------------------- attributions
@dataclass(eq=False)  # numpy fields: compare arrays explicitly
class Attributions:
    """Integrated Gradients (and optionally GradCAM) of the CLS and Gist logits of one class per image.

    IG attributes to the patch embedding output, summed over channels: `*_grid` sums (over patches) to
    `*_logit_diff` up to `*_delta`, captum's convergence delta (sum of attributions - (F(x) - F(baseline))).
    Gist fields are None with GIST off.
    """

    target: np.ndarray  # (B,) the class explained (default: the CLS prediction)
    cls_grid: np.ndarray  # (B, gh, gw) IG per patch
    cls_map: np.ndarray  # (B, S, S) cls_grid bilinearly upsampled to the image
    cls_delta: np.ndarray  # (B,) convergence delta
    cls_logit_diff: np.ndarray  # (B,) F(x) - F(baseline) of the target logit
    gist_grid: np.ndarray | None = None
    gist_map: np.ndarray | None = None
    gist_delta: np.ndarray | None = None
    gist_logit_diff: np.ndarray | None = None
    cls_gradcam: np.ndarray | None = None  # (B, gh, gw) GradCAM on the last block (non-negative)
    gist_gradcam: np.ndarray | None = None
    n_steps: int = 32


def float32_model(model: nn.Module) -> nn.Module:
    """`model` itself, or a float32 copy when its frozen weights are stored in bf16 (`speed.cast_frozen_`, the
    trainer's default on CUDA).

    Gradients need one dtype through the graph: the copy holds the same weights exactly (bf16 widens to float32
    without rounding) and runs them in float32, so attributions are those of the stored weights, with IG's
    completeness as tight as for a float32 model. The copy costs the model's size in float32, once per call.
    """
    if mixed_dtype(model) is None:
        return model
    return copy.deepcopy(model).float()


def _head_forward(model: nn.Module, head: str) -> Callable[[Tensor], Tensor]:
    if head not in HEADS:
        raise ValueError(f"head: {head!r} is not one of {HEADS}")

    def forward(x: Tensor) -> Tensor:
        out = model(x)
        logits = out.cls_logits if head == "cls" else out.gist_logits
        if logits is None:
            raise ValueError("the Gist head needs a model with GIST enabled")
        return logits  # (B, C)

    return forward


def _targets(model: nn.Module, x: Tensor, target: int | Sequence[int] | None) -> Tensor:
    if target is None:
        with torch.no_grad():
            return model(x).cls_logits.argmax(dim=-1)  # (B,)
    t = torch.as_tensor(target, dtype=torch.long, device=x.device).reshape(-1)
    return t.expand(x.shape[0]).clone() if t.numel() == 1 else t


def integrated_gradients(model: nn.Module, images: Tensor, head: str = "cls",
                         target: int | Sequence[int] | None = None, n_steps: int = 32,
                         baseline: Tensor | None = None,
                         internal_batch_size: int | None = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer Integrated Gradients (captum) on `model.vit.patch_embed` for one head's logit.

    Args:
        model: A GistViT (run in eval mode here; its train/eval state is restored).
        images: Normalised images (B, 3, S, S).
        head: "cls" or "gist".
        target: Class index (one for all images, or one per image); default the CLS prediction.
        n_steps: Points on the path (captum's default Gauss-Legendre rule). Check the delta: DINOv2-S/14 at
            224 px can need far more than 32 (|delta| fell below 2% of the logit change only at 256).
        baseline: Baseline images; default zeros in normalised space (the dataset mean colour).
        internal_batch_size: Path points per forward pass; None = all at once (4 GB RAM at 224 px, 32 steps).

    Returns:
        (grid (B, gh, gw): attributions summed over channels, delta (B,), logit F(x) - F(baseline) (B,)).
    """
    # captum is an optional dependency (the explain extra) and takes seconds to import: loaded on first use
    from captum.attr import LayerIntegratedGradients

    model = float32_model(model)
    gh, gw = model.grid_size
    param = next(model.parameters())
    x = images.to(device=param.device, dtype=param.dtype)
    base = torch.zeros_like(x) if baseline is None else baseline.to(x)
    forward = _head_forward(model, head)
    with eval_mode(model):
        t = _targets(model, x, target)
        lig = LayerIntegratedGradients(forward, model.vit.patch_embed)
        attr, delta = lig.attribute(x, baselines=base, target=t, n_steps=n_steps,
                                    internal_batch_size=internal_batch_size, return_convergence_delta=True)
        with torch.no_grad():
            diff = forward(x).gather(1, t[:, None])[:, 0] - forward(base).gather(1, t[:, None])[:, 0]  # (B,)
    grid = attr.detach().float().sum(dim=-1).reshape(x.shape[0], gh, gw)  # (B, N, D) -> (B, gh, gw)
    return grid.cpu().numpy(), delta.detach().float().cpu().numpy(), diff.float().cpu().numpy()


def grad_cam(model: nn.Module, images: Tensor, head: str = "cls",
             target: int | Sequence[int] | None = None) -> np.ndarray:
    """GradCAM on the tokens entering the last block's attention (its `norm1` output).

    The block *output* cannot be used: after it only CLS/Gist reach the heads, so patch gradients there are 0.
    The extra tokens (CLS, registers, Gist, prompts) are skipped before the patches are put on the grid.

    Args:
        model: A GistViT (run in eval mode here; its train/eval state is restored).
        images: Normalised images (B, 3, S, S).
        head: "cls" or "gist".
        target: Class index (one or one per image); default the CLS prediction.

    Returns:
        (B, gh, gw) non-negative maps: ReLU(sum_d mean_patches(grad_d) * activation_d).
    """
    model = float32_model(model)
    gh, gw = model.grid_size
    extra = model.num_extra_tokens
    layer = unwrap_module(model.vit.blocks[-1]).norm1
    param = next(model.parameters())
    x = images.to(device=param.device, dtype=param.dtype).clone().requires_grad_(True)
    acts: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, out: acts.append(out))
    try:
        with eval_mode(model), torch.enable_grad():
            t = _targets(model, x.detach(), target)
            acts.clear()
            logits = _head_forward(model, head)(x)  # (B, C)
            score = logits.gather(1, t[:, None]).sum()
            (grad,) = torch.autograd.grad(score, acts[-1])  # (B, T, D)
    finally:
        handle.remove()
    a = acts[-1].detach()[:, extra:]  # (B, T, D) -> (B, N, D) the patches only
    g = grad[:, extra:]  # (B, N, D)
    weights = g.mean(dim=1, keepdim=True)  # (B, 1, D)
    cam = torch.relu((weights * a).sum(dim=-1))  # (B, N)
    return cam.reshape(-1, gh, gw).float().cpu().numpy()  # (B, N) -> (B, gh, gw)


def explain(model: nn.Module, images: Tensor, target: int | Sequence[int] | None = None, n_steps: int = 32,
            gradcam: bool = False, internal_batch_size: int | None = 8) -> Attributions:
    """IG for the CLS logit and (GIST on) the Gist logit of the same class, optionally GradCAM for both.

    Args:
        model: A GistViT.
        images: Normalised images (B, 3, S, S).
        target: Class index (one or one per image); default the CLS prediction of each image.
        n_steps: IG steps.
        gradcam: Also compute GradCAM for both heads.
        internal_batch_size: IG path points per forward pass (None = all at once).

    Returns:
        Attributions of numpy arrays.
    """
    model = float32_model(model)  # one float32 copy for every head and method (a model with bf16 frozen weights)
    param = next(model.parameters())
    with eval_mode(model):
        t = _targets(model, images.to(device=param.device, dtype=param.dtype), target)
    size = (model.image_size, model.image_size)
    out: dict[str, Any] = {"target": t.cpu().numpy(), "n_steps": n_steps}
    for head in HEADS if model.gist_length else ("cls",):
        grid, delta, diff = integrated_gradients(model, images, head, t, n_steps,
                                                 internal_batch_size=internal_batch_size)
        out.update({f"{head}_grid": grid, f"{head}_map": upsample_grid(grid, size), f"{head}_delta": delta,
                    f"{head}_logit_diff": diff})
        if gradcam:
            out[f"{head}_gradcam"] = grad_cam(model, images, head, t)
    return Attributions(**out)


def explain_image(model: nn.Module, image: ImageInput, target: int | None = None, n_steps: int = 16
                  ) -> tuple[Attributions, np.ndarray]:
    """`explain` (Integrated Gradients, CLS and Gist heads) of one image: a file, its bytes, or uint8 pixels
    (H, W, 3) of any size, made a model input as training makes it (`prepare_image`).

    Returns:
        (Attributions, the image resized to the model input, uint8 (S, S, 3)); the IG path runs `n_steps` points
        per forward pass.
    """
    resized, x = prepare_image(model, image)
    return explain(model, x, target=target, n_steps=n_steps, internal_batch_size=n_steps), resized


def image_attention(model: nn.Module, image: ImageInput) -> AttentionMaps:
    """CLS/Gist attention maps of one image: a file, its bytes, or uint8 pixels (H, W, 3) of any size, made a model
    input as training makes it (`prepare_image`).

    Returns:
        `AttentionMaps` of numpy arrays; `images` holds the resized image, uint8 (1, S, S, 3).
    """
    resized, x = prepare_image(model, image)
    maps = compute_attention_maps(model, x, with_images=False)
    maps.images = resized[None]  # (1, S, S, 3)
    return maps


# ------------------------------------------------------------------------------------------------ report
def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def attention_summary(maps: AttentionMaps, image: int = 0) -> dict[str, Any]:
    """JSON-ready numbers of one image: per layer cosine, entropies, CLS<->Gist weights; the final rollout."""
    frame = maps.summary(image)
    layers = [{k: (int(v) if k == "layer" else _finite(v)) for k, v in row.items()}
              for row in frame.to_dict("records")]
    last = layers[-1]
    pred = {"cls": int(maps.cls_logits[image].argmax()),
            "gist": None if maps.gist_logits is None else int(maps.gist_logits[image].argmax())}
    return {"grid": list(maps.grid), "num_layers": maps.num_layers, "num_heads": maps.num_heads,
            "sequence_layout": [list(x) for x in maps.sequence_layout], "gist": maps.has_gist,
            "max_entropy": max_entropy(maps), "prediction": pred, "layers": layers,
            "rollout": {"cls_entropy": last["cls_rollout_entropy"],
                        "gist_entropy": last["gist_rollout_entropy"], "cosine": last["rollout_cosine"]}}


def attention_figure(maps: AttentionMaps, image: int = 0, cmap: str = "inferno",
                     alpha: float = 0.6) -> Figure:
    """CLS (and Gist) head-averaged maps per layer and the rollout over the image, plus per-layer numbers.

    Each map is scaled to its own min..max. Uses matplotlib's object API (Agg canvas), never pyplot.
    """
    rows = [("CLS", maps.cls_mean[image], maps.cls_rollout[image, -1])]
    if maps.has_gist:
        rows.append(("Gist", maps.gist_mean[image], maps.gist_rollout[image, -1]))
    cols = maps.num_layers + 1
    from matplotlib.figure import Figure  # optional dependency (the explain extra): on use

    fig = Figure(figsize=(1.5 * cols, 1.6 * len(rows) + 2.2), dpi=100, layout="constrained")
    grid = fig.add_gridspec(len(rows) + 1, cols, height_ratios=[1] * len(rows) + [1.3])
    base = maps.images[image] if maps.images is not None else None
    for r, (name, layer_maps, rollout) in enumerate(rows):
        for c in range(cols):
            ax = fig.add_subplot(grid[r, c])
            heat = rollout if c == maps.num_layers else layer_maps[c]
            ax.imshow(overlay_heatmap(base, heat, cmap, alpha) if base is not None else heat, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("rollout" if c == maps.num_layers else f"layer {c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    frame = maps.summary(image)
    ax = fig.add_subplot(grid[len(rows), :])
    ax.plot(frame["layer"], frame["cls_entropy"], "o-", label="CLS entropy")
    if maps.has_gist:
        ax.plot(frame["layer"], frame["gist_entropy"], "s-", label="Gist entropy")
        twin = ax.twinx()
        twin.plot(frame["layer"], frame["cls_gist_cosine"], "^--", color="tab:green", label="CLS-Gist cosine")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("cosine", fontsize=8)
        twin.legend(loc="lower right", fontsize=7)
    top = max_entropy(maps)
    ax.axhline(top, color="grey", lw=0.8, ls=":", label="uniform")
    ax.set_ylim(0, 1.05 * top)  # the whole range [0, log N]: a nearly uniform model reads as flat, not as a trend
    ax.set_xlabel("layer", fontsize=8)
    ax.set_ylabel("entropy (nats)", fontsize=8)
    ax.legend(loc="lower left", fontsize=7)
    return fig


def attention_report(model: nn.Module, image: ImageInput, out_dir: str | Path) -> dict[str, Any]:
    """Write `maps.npz`, `attention.png` and `summary.json` for one image; returns the summary.

    Args:
        model: A GistViT (e.g. built from a config or loaded from a run).
        image: An image file, its bytes, or RGB uint8 pixels (H, W, 3) of any size: made a model input as training
            makes it (`prepare_image`); DatasetError naming the file when it cannot be used.
        out_dir: Created if missing.
    """
    out_dir = Path(out_dir)
    resized, x = prepare_image(model, image)  # a bad image is refused before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    maps = compute_attention_maps(model, x, with_images=False)
    maps.images = resized[None]  # (1, S, S, 3)
    maps.save(out_dir / "maps.npz", dtype=np.float32)
    attention_figure(maps).savefig(out_dir / "attention.png")
    summary = attention_summary(maps)
    summary["image_size"] = int(model.image_size)
    summary["files"] = {k: str(out_dir / k) for k in ("maps.npz", "attention.png", "summary.json")}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


__all__ = ["Attributions", "attention_figure", "attention_report", "attention_summary", "explain", "explain_image",
           "float32_model", "grad_cam", "image_attention", "image_to_tensor", "integrated_gradients", "load_image",
           "overlay_heatmap", "prepare_image", "resize_image", "upsample_grid"]
