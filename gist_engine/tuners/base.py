"""What every tuner shares: the spec type, the one function that sets trainable parameters, and counting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from timm.models.vision_transformer import Block
from torch import nn

# Parameters of the task, trained whatever the method: the new head and GIST's own (token, separate head).
# "head." is the head of a GistTextEncoder (GistViT's is "vit.head.").
TASK_PARAMETERS = ("vit.head.", "gist_token", "gist_head.", "head.")


@dataclass(frozen=True)
class TunerSpec:
    """One PEFT method: its options, how it modifies a GistViT, and which parameters it trains."""

    config: type  # the method's options class, gist_engine.config.METHOD_CONFIGS[name] (the typed method_args)
    apply: Callable[[Any, Any], None]  # (GistViT, config) -> None; wraps modules of model.vit in place
    trainable: Callable[[str], bool]  # parameter name (as in GistViT.named_parameters) -> trained?
    help: str  # one line for the CLI and the app
    identity_at_init: Callable[[Any], bool]  # config -> does the tuned model equal the base at step 0?
    variants: dict[str, dict] | None = None  # named presets of the options, if the method has any
    apply_text: Callable[[Any, Any], None] | None = None  # (GistTextEncoder, config) -> None; None: images only

    def apply_for(self, model: Any) -> Callable[[Any, Any], None] | None:
        """The apply function for the model's modality (`model.modality`, "image" when absent); None if unsupported."""
        return self.apply_text if getattr(model, "modality", "image") == "text" else self.apply


def mark_trainable(model: nn.Module, trainable: Callable[[str], bool]) -> None:
    """THE place where parameters are frozen or trained: the method's own + the task parameters, nothing else."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(TASK_PARAMETERS) or trainable(name))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def check_block(block: nn.Module, method: str) -> Block:
    """The timm Block a wrapper re-composes; a clear error for a backbone with another block design."""
    base = getattr(block, "base_layer", block)
    needed = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
    if not all(hasattr(base, n) for n in needed):
        raise TypeError(f"{method} supports timm ViT blocks (pre-norm Block); got {type(base).__name__}")
    return base


def text_layers(model: Any, method: str) -> list[nn.Module]:
    """The BERT-style layers of a GistTextEncoder (`attention.self.query`, ..., `output.LayerNorm`), checked."""
    layers = list(model.layers)
    for layer in layers:
        base = getattr(layer, "base_layer", layer)
        ok = all(hasattr(base, n) for n in ("attention", "intermediate", "output")) and \
            hasattr(base.attention, "self") and hasattr(base.attention, "output")
        if not ok:
            raise TypeError(f"{method} supports BERT-style encoder layers; got {type(base).__name__}")
    return layers
