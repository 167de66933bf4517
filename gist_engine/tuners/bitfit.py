"""BitFit (Ben Zaken et al., 2022): train the bias terms of the backbone only."""

from __future__ import annotations

from ..config.methods import BitFitConfig
from .base import TunerSpec, biases

SPEC = TunerSpec(
    config=BitFitConfig,
    apply=lambda model, cfg: None,
    apply_text=lambda model, cfg: None,  # nothing to add to a text encoder either
    trainable=biases,
    help="BitFit: train the bias terms of the backbone.",
    identity_at_init=lambda cfg: True,
)
