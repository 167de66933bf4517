"""What every tuner shares: the spec type, the tuner layer base class, the one function that sets trainable
parameters, and counting."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from timm.models.vision_transformer import Block
from torch import Tensor, nn


class TunerLayer(nn.Module):
    """A module a tuner adds to the backbone (peft's "tuner layer"): it wraps a frozen `base_layer` and owns the
    parameters the method trains.

    Each subclass names them structurally: `trained_names`, its own attributes (parameters or submodules) that the
    method trains, and `no_decay_names`, those of them that AdamW must not decay (tokens, like VPT's prompts).
    """

    trained_names: ClassVar[tuple[str, ...]] = ()
    no_decay_names: ClassVar[tuple[str, ...]] = ()

    def _named(self, names: tuple[str, ...]) -> Iterator[nn.Parameter]:
        for name in names:
            value = getattr(self, name)
            yield from [value] if isinstance(value, nn.Parameter) else value.parameters()

    def trained_parameters(self) -> list[nn.Parameter]:
        """The parameters of `trained_names`."""
        return list(self._named(self.trained_names))

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The parameters of `no_decay_names`."""
        return list(self._named(self.no_decay_names))


def tuner_layers(model: nn.Module) -> list[TunerLayer]:
    """Every tuner layer inside `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, TunerLayer)]


def tuner_layer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What a tuner that adds modules trains: the `trained_parameters` of its tuner layers."""
    return [p for layer in tuner_layers(model) for p in layer.trained_parameters()]


def no_weight_decay_parameters(model: nn.Module, decay_tokens: bool = False) -> list[nn.Parameter]:
    """Every parameter AdamW must not decay beside the 1-D ones: the model's tokens (Gist, CLS, registers,
    position embedding; `GistTokens.no_weight_decay_parameters`) and its tuner layers' tokens (VPT's prompts).

    With `decay_tokens` (`train.token_weight_decay`) the Gist token(s) and the tuner layers' tokens are left out,
    so they are decayed, as the release decays its Gist token (a 3-D parameter its optim_factory.py does not
    exempt); the backbone's own tokens (CLS, registers, position embedding: timm's `no_weight_decay()`) stay.
    """
    if not decay_tokens:
        return model.no_weight_decay_parameters() + [p for layer in tuner_layers(model)
                                                     for p in layer.no_weight_decay_parameters()]
    gist = getattr(model, "gist_token", None)
    return [p for p in model.no_weight_decay_parameters() if p is not gist]


@dataclass(frozen=True)
class TunerSpec:
    """One PEFT method: its options, how it modifies a GistViT, and which parameters it trains."""

    config: type  # the method's options class, gist_engine.config.METHOD_CONFIGS[name] (the typed method_args)
    apply: Callable[[Any, Any], None]  # (GistViT, config) -> None; wraps modules of model.vit in place
    trainable: Callable[[nn.Module], Iterable[nn.Parameter]]  # model -> the method's own trained parameters
    help: str  # one line for the CLI and the app
    identity_at_init: Callable[[Any], bool]  # config -> does the tuned model equal the base at step 0?
    variants: dict[str, dict] | None = None  # named presets of the options, if the method has any
    apply_text: Callable[[Any, Any], None] | None = None  # (GistTextEncoder, config) -> None; None: images only
    on_train_start: Callable[[Any, int], None] | None = None  # (model, total steps) -> None, before the first step
    on_step_end: Callable[[Any, int], None] | None = None  # (model, step from 0) -> None, after optimizer.step

    def apply_for(self, model: Any) -> Callable[[Any, Any], None] | None:
        """The apply function for the model's modality (`model.modality`, "image" when absent); None if unsupported."""
        return self.apply_text if getattr(model, "modality", "image") == "text" else self.apply


def mark_trainable(model: nn.Module, trainable: Iterable[nn.Parameter]) -> None:
    """THE place where parameters are frozen or trained: the method's own (`trainable`) and the model's task
    parameters (`GistTokens.task_parameters`: head, Gist token(s), a separate Gist head), nothing else."""
    train = {id(p) for p in model.task_parameters()} | {id(p) for p in trainable}
    for param in model.parameters():
        param.requires_grad_(id(param) in train)


def biases(model: nn.Module) -> list[nn.Parameter]:
    """The bias parameter of every module that has one (BitFit's trained set)."""
    return [p for m in model.modules() for name, p in m.named_parameters(recurse=False) if name == "bias"]


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


def block_forward(b: nn.Module, x: Tensor, *, rows: int | None = None,
                  beside_attn: Callable[[Tensor], Tensor] | None = None,
                  beside_mlp: Callable[[Tensor], Tensor] | None = None, **attn_kwargs: Any) -> Tensor:
    """timm's pre-norm `Block.forward` (timm/models/vision_transformer.py), with the hooks tuners and speed
    shortcuts need, so the block is composed in this one place:

    `h = x + drop_path1(ls1(attn(norm1(x)))) [+ beside_attn(x)]; out = h + drop_path2(ls2(mlp(norm2(h))))
    [+ beside_mlp(h)]` — the parallel branches read each sub-layer's un-normalised input (GIST's adapter).

    Args:
        b: A timm `Block` (or a module with its eight parts, `check_block`).
        x: The block's input, (B, N, D).
        rows: Output only the first `rows` tokens (every token still gives keys and values; the attention module
            must accept `rows`, `speed.attention.PackedQKVAttention`), or None for all.
        beside_attn, beside_mlp: Branches added beside the attention and the MLP sub-layers, or None.
        attn_kwargs: Passed to `b.attn` (`rows` is passed too when given).

    Returns:
        (B, N, D), or (B, rows, D) with `rows`.
    """
    if rows is not None:
        attn_kwargs["rows"] = rows
    x_rows = x if rows is None else x[:, :rows]  # (B, rows, D)
    h = x_rows + b.drop_path1(b.ls1(b.attn(b.norm1(x), **attn_kwargs)))
    if beside_attn is not None:
        h = h + beside_attn(x_rows)
    out = h + b.drop_path2(b.ls2(b.mlp(b.norm2(h))))
    if beside_mlp is not None:
        out = out + beside_mlp(h)
    return out


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
