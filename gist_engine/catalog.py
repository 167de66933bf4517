"""The catalogue of everything selectable (what `python -m gist_engine list --json` prints, and the app's forms)."""

from __future__ import annotations

from typing import Any

from .backbones import BACKBONES, TEXT_BACKBONES, backbone_info
from .config import RunConfig, describe_fields
from .data import describe_datasets
from .losses import INTERACTION_LOSS_HELP
from .tuners import describe_tuners


def catalogue() -> dict[str, Any]:
    """Everything selectable: backbones, tuners (options, variants), interaction losses, datasets, config keys.

    Returns:
        A JSON-ready dict: `backbones` and `text_backbones` ({name: `backbone_info`}), `tuners` ({name: help,
        options, ...}), `losses` ({name: help}), `datasets` (`describe_datasets()`), `config` (the fields of
        `RunConfig`, `describe_fields`).
    """
    return {
        "backbones": {name: backbone_info(name) for name in BACKBONES},
        "text_backbones": {name: backbone_info(name) for name in TEXT_BACKBONES},  # build GistTextEncoders
        "tuners": describe_tuners(),
        "losses": dict(INTERACTION_LOSS_HELP),
        "config": describe_fields(RunConfig),
        "datasets": describe_datasets(),
    }


__all__ = ["catalogue"]
