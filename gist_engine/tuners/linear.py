"""Linear probing: only the new head (and GIST's token) is trained."""

from __future__ import annotations

from ..config.methods import LinearConfig
from .base import TunerSpec

SPEC = TunerSpec(
    config=LinearConfig,
    apply=lambda model, cfg: None,
    apply_text=lambda model, cfg: None,  # nothing to add to a text encoder either
    trainable=lambda model: (),
    help="Linear probe: train the classification head only.",
    identity_at_init=lambda cfg: True,
)
