"""Which backbone names select a text encoder, without importing torch or transformers: the app's run captions and
the store's readers ask this of any run, and `backbones.text` (which builds the encoders) takes its names from here.
"""

from __future__ import annotations

HUB_PREFIX = "hf:"  # "hf:<hub name or local folder>", e.g. hf:bert-base-uncased, hf:roberta-base
# The registered text encoders, in `backbones.text.TEXT_BACKBONES`'s order (a test checks that both agree).
TEXT_BACKBONE_NAMES = ("minilm_l6", "test_bert", "test_roberta")


def is_text_backbone(name: str) -> bool:
    """Whether `name` selects a text encoder: a registered text backbone or `hf:<hub name or folder>`."""
    return name in TEXT_BACKBONE_NAMES or name.startswith(HUB_PREFIX)


__all__ = ["HUB_PREFIX", "TEXT_BACKBONE_NAMES", "is_text_backbone"]
