"""Full fine-tuning: every backbone parameter is trained."""

from __future__ import annotations

from ..config.methods import FullConfig
from .base import TunerSpec

SPEC = TunerSpec(
    config=FullConfig,
    apply=lambda model, cfg: None,
    apply_text=lambda model, cfg: None,  # nothing to add to a text encoder either
    trainable=lambda model: model.parameters(),
    help="Full fine-tuning: train every parameter.",
    identity_at_init=lambda cfg: True,
)
