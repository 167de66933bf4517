"""Bottleneck adapters: GIST's shared parallel adapter, Houlsby's sequential adapter and AdaptFormer."""

from __future__ import annotations

from torch import Tensor, nn

from ..config import ConfigError
from ..config.methods import VARIANTS, AdapterConfig
from ..model import GistViT, init_linear_
from .base import TunerLayer, TunerSpec, block_forward, check_block, text_layers, tuner_layer_parameters


class Bottleneck(nn.Module):
    """`scale * up(dropout(gelu(down(x))))`: D -> r -> D."""

    def __init__(self, dim: int, bottleneck: int, scale: float, zero_init: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.down = init_linear_(nn.Linear(dim, bottleneck))
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.up = init_linear_(nn.Linear(bottleneck, dim))
        if zero_init:
            nn.init.zeros_(self.up.weight)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., D)."""
        return self.scale * self.up(self.dropout(self.act(self.down(x))))


class ParallelAdapterBlock(TunerLayer):
    """A timm Block with an adapter added beside its attention and/or MLP sub-layer.

    `x = x + attn(norm1(x)) [+ A(x)]; x = x + mlp(norm2(x)) [+ A(x)]` — A reads the un-normalised stream.
    """

    trained_names = ("adapter",)

    def __init__(self, base_layer: nn.Module, adapter: Bottleneck, sites: tuple[str, ...]) -> None:
        super().__init__()
        self.base_layer = check_block(base_layer, "adapter")
        self.adapter = adapter
        self.sites = sites

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, N, D)."""
        return block_forward(self.base_layer, x, beside_attn=self.adapter if "attn" in self.sites else None,
                             beside_mlp=self.adapter if "mlp" in self.sites else None)


class SequentialAdapterMLP(TunerLayer):
    """An MLP followed by a residual adapter: `h = mlp(x); h + A(h)`."""

    trained_names = ("adapter",)

    def __init__(self, base_layer: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    def forward(self, x: Tensor) -> Tensor:
        h = self.base_layer(x)
        return h + self.adapter(h)


def apply_adapter(model: GistViT, cfg: AdapterConfig) -> None:
    """Put one adapter in every block of `model.vit`, as the variant says."""
    bottleneck, scale, zero_init, sites = cfg.resolved()
    if bottleneck > model.embed_dim:
        raise ConfigError(f"method_args.bottleneck: {bottleneck} is wider than the model ({model.embed_dim})")
    blocks = model.vit.blocks
    for i, block in enumerate(blocks):
        adapter = Bottleneck(model.embed_dim, bottleneck, scale, zero_init, cfg.dropout)
        if sites == ("after_mlp",):
            check_block(block, "adapter")
            block.mlp = SequentialAdapterMLP(block.mlp, adapter)
        else:
            blocks[i] = ParallelAdapterBlock(block, adapter, sites)


class ResidualAdapterOutput(TunerLayer):
    """A post-LN BERT sub-layer output (BertSelfOutput / BertOutput) with an adapter added to its residual input.

    `LN(dropout(dense(h)) + x)` becomes `LN(dropout(dense(h)) + x + A(x))`: A reads the sub-layer's input stream
    `x` (BERT's `input_tensor`) and is added beside the sub-layer, before its LayerNorm (GIST's parallel adapter
    on a post-LN encoder).
    """

    trained_names = ("adapter",)

    def __init__(self, base_layer: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        return self.base_layer(hidden_states, input_tensor + self.adapter(input_tensor))


def apply_adapter_text(model: nn.Module, cfg: AdapterConfig) -> None:
    """Put one adapter in every layer of a GistTextEncoder (BERT is post-LN), as the variant says.

    gist: the same adapter beside the attention and the FFN (`attention.output`, `output`), reading each
    sub-layer's input stream; adaptformer: beside the FFN only; houlsby: sequential, after the FFN's output dense.
    """
    bottleneck, scale, zero_init, sites = cfg.resolved()
    if bottleneck > model.embed_dim:
        raise ConfigError(f"method_args.bottleneck: {bottleneck} is wider than the model ({model.embed_dim})")
    for layer in text_layers(model, "adapter"):
        adapter = Bottleneck(model.embed_dim, bottleneck, scale, zero_init, cfg.dropout)
        if sites == ("after_mlp",):
            layer.output.dense = SequentialAdapterMLP(layer.output.dense, adapter)
            continue
        if "attn" in sites:
            layer.attention.output = ResidualAdapterOutput(layer.attention.output, adapter)
        if "mlp" in sites:
            layer.output = ResidualAdapterOutput(layer.output, adapter)


SPEC = TunerSpec(
    config=AdapterConfig,
    apply=apply_adapter,
    apply_text=apply_adapter_text,
    trainable=tuner_layer_parameters,
    help="Bottleneck adapters (variants: gist, houlsby, adaptformer).",
    identity_at_init=lambda cfg: cfg.resolved()[2],
    variants={k: {key: v[key] for key in ("bottleneck", "scale", "help")} for k, v in VARIANTS.items()},
)
