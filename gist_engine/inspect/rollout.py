"""Attention maths: rollout through the layers (Abnar & Zuidema, 2020), map entropy and cosine similarity."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ROLLOUT_RESIDUAL = 0.5  # Abnar & Zuidema (2020): A' = 0.5 * A + 0.5 * I


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


__all__ = ["ROLLOUT_RESIDUAL", "attention_rollout", "map_cosine", "map_entropy"]
