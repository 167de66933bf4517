"""The loss terms the trainer logs and the weights that make up its total: torch-free, for the store and the charts.

`losses.gist_loss` computes the terms (torch); this module names them and splits a recorded total into its weighted
parts, so that reading a run's metrics and drawing its stacked loss never imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from .config import GistConfig

# The logged terms that make up each KL loss (the rest of INTERACTION_LOSSES enter the total as "interaction").
KL_TERMS: dict[str, tuple[str, ...]] = {"bkld": ("kl_cls_gist", "kl_gist_cls"), "kl": ("kl_cls_gist",),
                                        "reverse_kl": ("kl_gist_cls",)}

# The names of the terms `gist_loss` returns, in display order.
LOSS_TERMS = ("ce_cls", "ce_gist", "kl_cls_gist", "kl_gist_cls", "interaction", "total")


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


__all__ = ["KL_TERMS", "LOSS_TERMS", "loss_contributions", "loss_weights"]
