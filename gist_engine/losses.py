"""GIST's training objective: cross-entropy on both heads plus a knowledge-interaction loss between them."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import GistConfig
from .loss_terms import KL_TERMS, LOSS_TERMS, loss_contributions, loss_weights


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


__all__ = ["INTERACTION_LOSSES", "INTERACTION_LOSS_HELP", "KL_LOSSES", "KL_TERMS", "LOSS_TERMS", "gist_loss",
           "loss_contributions", "loss_weights"]
