"""GIST's training objective: cross-entropy on both heads plus a knowledge-interaction loss between them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import GistConfig


def _kl(log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(a || b) with batchmean reduction, from log-probabilities. (B, C), (B, C) -> ()"""
    return (log_a.exp() * (log_a - log_b)).sum(-1).mean()


def _js(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Jensen-Shannon divergence 0.5 KL(p||m) + 0.5 KL(q||m), m = (p + q) / 2."""
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    return 0.5 * (_kl(log_p, log_m) + _kl(log_q, log_m))


def _mse(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Squared distance between the probability vectors, summed over classes, averaged over the batch."""
    return (log_p.exp() - log_q.exp()).pow(2).sum(-1).mean()


# The losses made of the two KL directions: name -> D(KL(p||q), KL(q||p)). `gist_loss` logs both directions
# anyway, so it passes them in rather than computing them again.
KL_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "bkld": lambda kl_pq, kl_qp: kl_pq + kl_qp,
    "kl": lambda kl_pq, kl_qp: kl_pq,
    "reverse_kl": lambda kl_pq, kl_qp: kl_qp,
}


def _from_kl(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda log_p, log_q: KL_LOSSES[name](_kl(log_p, log_q), _kl(log_q, log_p))


# name -> D(log p_cls, log q_gist); p and q are the temperature-softened predictions of the two heads.
INTERACTION_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    **{name: _from_kl(name) for name in KL_LOSSES},
    "js": _js,
    "mse": _mse,
    "none": lambda log_p, log_q: log_p.new_zeros(()),
}

INTERACTION_LOSS_HELP: dict[str, str] = {
    "bkld": "Bidirectional KL, KL(p||q) + KL(q||p) (the paper's default).",
    "kl": "KL(p_cls || p_gist) only.",
    "reverse_kl": "KL(p_gist || p_cls) only.",
    "js": "Jensen-Shannon divergence between the two predictions.",
    "mse": "Squared error between the two probability vectors.",
    "none": "No interaction: both heads trained by cross-entropy alone.",
}

# The logged terms that make up each KL loss (the rest of INTERACTION_LOSSES enter the total as "interaction").
KL_TERMS: dict[str, tuple[str, ...]] = {"bkld": ("kl_cls_gist", "kl_gist_cls"), "kl": ("kl_cls_gist",),
                                        "reverse_kl": ("kl_gist_cls",)}

# The names of the terms `gist_loss` returns, in display order.
LOSS_TERMS = ("ce_cls", "ce_gist", "kl_cls_gist", "kl_gist_cls", "interaction", "total")


def gist_loss(cls_logits: Tensor, gist_logits: Tensor | None, target: Tensor, cfg: GistConfig) -> dict[str, Tensor]:
    """The GIST objective `CE(cls) + ce_weight * CE(gist) + loss_weight * D(p_cls, p_gist)`.

    `p = softmax(cls / T)` and `q = softmax(gist / T)`; no T^2 factor and no stop-gradient, as in the paper's
    release. Computed with log_softmax in float32 (safe under mixed precision).

    Args:
        cls_logits: (B, C) logits of the CLS head.
        gist_logits: (B, C) logits of the Gist head, or None when GIST is off (then total = CE(cls)).
        target: (B,) integer class labels.
        cfg: GIST options (loss name, weights, temperature).

    Returns:
        Every term for logging: ce_cls, ce_gist, kl_cls_gist (KL(p||q)), kl_gist_cls (KL(q||p)), interaction
        (the weighted-in D, unweighted), and total (the value to back-propagate). Monitoring terms that are not
        part of `total` are detached.
    """
    cls_logits = cls_logits.float()
    ce_cls = F.cross_entropy(cls_logits, target)
    if gist_logits is None:
        zero = ce_cls.new_zeros(())
        return {"ce_cls": ce_cls, "ce_gist": zero, "kl_cls_gist": zero, "kl_gist_cls": zero,
                "interaction": zero, "total": ce_cls}
    gist_logits = gist_logits.float()
    ce_gist = F.cross_entropy(gist_logits, target)
    log_p = F.log_softmax(cls_logits / cfg.temperature, dim=-1)
    log_q = F.log_softmax(gist_logits / cfg.temperature, dim=-1)
    # both directions are always logged (the live curves' BKLD decomposition); the KL losses reuse them
    kl_pq, kl_qp = _kl(log_p, log_q), _kl(log_q, log_p)
    if cfg.loss in KL_LOSSES:
        interaction = KL_LOSSES[cfg.loss](kl_pq, kl_qp)
    else:
        interaction = INTERACTION_LOSSES[cfg.loss](log_p, log_q)
    total = ce_cls + cfg.ce_weight * ce_gist + cfg.loss_weight * interaction
    return {"ce_cls": ce_cls, "ce_gist": ce_gist, "kl_cls_gist": kl_pq.detach(), "kl_gist_cls": kl_qp.detach(),
            "interaction": interaction, "total": total}


T = TypeVar("T")


def _gist_options(gist: GistConfig | Mapping[str, Any] | None) -> GistConfig | None:
    """A GistConfig from a config or a stored `gist` mapping (missing keys take GistConfig's defaults, keys of
    another release are ignored); None when GIST is off."""
    if gist is None:
        return None
    if not isinstance(gist, GistConfig):
        known = {f.name for f in dataclasses.fields(GistConfig)}
        gist = dataclasses.replace(GistConfig(), **{k: v for k, v in gist.items() if k in known})
    return gist if gist.enabled else None


def loss_weights(gist: GistConfig | Mapping[str, Any] | None) -> dict[str, float]:
    """The weight each logged term carries in `gist_loss`'s total, for the terms that enter it.

    Args:
        gist: The run's GIST options (a GistConfig, or the stored config's `gist` mapping: missing keys take the
            defaults of GistConfig); None or `enabled: false` = a plain run.

    Returns:
        Term (a `LOSS_TERMS` name) -> weight: ce_cls 1; with GIST ce_gist `ce_weight`, and `loss_weight` on
        kl_cls_gist and/or kl_gist_cls for the KL losses (bkld: both, kl: the first, reverse_kl: the second) or on
        `interaction` for js and mse (none: no interaction term). The weighted terms add up to `total`.
    """
    g = _gist_options(gist)
    if g is None:
        return {"ce_cls": 1.0}
    out = {"ce_cls": 1.0, "ce_gist": float(g.ce_weight)}
    if g.loss in KL_TERMS:
        out.update({term: float(g.loss_weight) for term in KL_TERMS[g.loss]})
    elif g.loss != "none":
        out["interaction"] = float(g.loss_weight)
    return out


def loss_contributions(terms: Mapping[str, T], gist: GistConfig | Mapping[str, Any] | None) -> dict[str, T]:
    """The training objective split into the weighted terms that add up to it: `weight * term` per `loss_weights`.

    Args:
        terms: Logged terms by name (`gist_loss`'s dict, one step's floats, or whole columns: tensors, arrays,
            pandas Series; anything that multiplies by a float).
        gist: As in `loss_weights`.

    Returns:
        Term name -> weighted value, in `LOSS_TERMS` order; their sum is `total` (up to rounding).

    Raises:
        KeyError: a term the objective needs is missing from `terms`.
    """
    weights = loss_weights(gist)
    return {name: weights[name] * terms[name] for name in LOSS_TERMS if name in weights}
