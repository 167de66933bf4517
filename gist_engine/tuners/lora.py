"""LoRA (Hu et al., 2022) on the query/key/value slices of timm's fused qkv projection."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config.methods import LoRAConfig
from ..model import GistViT
from .base import TunerLayer, TunerSpec, check_block, text_layers, tuner_layer_parameters


class LoRAQKV(TunerLayer):
    """timm's fused `qkv` Linear (D -> 3D) plus a zero-initialised low-rank update on chosen slices."""

    trained_names = ("lora_A", "lora_B")

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float, targets: str, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        dim = base_layer.in_features
        if base_layer.out_features != 3 * dim:
            raise TypeError(f"LoRA expects a fused qkv Linear D -> 3D, got {base_layer}")
        self.targets = "".join(t for t in "qkv" if t in targets)  # canonical order
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout)
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for t in self.targets:
            a = nn.Parameter(torch.empty(rank, dim))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # as peft and the LoRA reference
            self.lora_A[t] = a
            self.lora_B[t] = nn.Parameter(torch.zeros(dim, rank))

    def forward(self, x: Tensor) -> Tensor:
        """x (..., D) -> (..., 3D): the base projection, each targeted slice plus `B_t A_t dropout(x) * alpha / r`.
        (`speed.tuners.FusedLoRAQKV` computes the same as one addmm.)"""
        out = self.base_layer(x)  # (..., 3D)
        h = self.dropout(x)
        qkv = dict(zip("qkv", out.chunk(3, dim=-1), strict=True))  # (..., D) each
        for t in self.targets:
            qkv[t] = qkv[t] + (h @ self.lora_A[t].T) @ self.lora_B[t].T * self.scaling
        return torch.cat([qkv[t] for t in "qkv"], dim=-1)  # (..., 3D)


def apply_lora(model: GistViT, cfg: LoRAConfig) -> None:
    """Wrap every block's `attn.qkv` with a LoRA update."""
    for block in model.vit.blocks:
        attn = check_block(block, "lora").attn
        if not isinstance(attn.qkv, nn.Linear):
            raise TypeError(f"LoRA expects attn.qkv to be a Linear, got {type(attn.qkv).__name__}")
        attn.qkv = LoRAQKV(attn.qkv, cfg.rank, cfg.alpha, cfg.targets, cfg.dropout)


class LoRALinear(TunerLayer):
    """A Linear layer plus a zero-initialised low-rank update: `base(x) + B A dropout(x) * alpha / r`."""

    trained_names = ("lora_A", "lora_B")

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout)
        self.lora_A = nn.Parameter(torch.empty(rank, base_layer.in_features))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft and the LoRA reference
        self.lora_B = nn.Parameter(torch.zeros(base_layer.out_features, rank))

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out). (`speed.tuners.FusedLoRALinear` computes the same as one addmm.)"""
        return self.base_layer(x) + (self.dropout(x) @ self.lora_A.T) @ self.lora_B.T * self.scaling


TEXT_TARGETS = {"q": "query", "k": "key", "v": "value"}  # BERT's separate projections of attention.self


def apply_lora_text(model: nn.Module, cfg: LoRAConfig) -> None:
    """Wrap the chosen query/key/value Linear layers of every text encoder layer with a LoRA update."""
    for layer in text_layers(model, "lora"):
        attn = layer.attention.self
        for t in cfg.targets:
            name = TEXT_TARGETS[t]
            base = getattr(attn, name)
            if not isinstance(base, nn.Linear):
                raise TypeError(f"LoRA expects attention.self.{name} to be a Linear, got {type(base).__name__}")
            setattr(attn, name, LoRALinear(base, cfg.rank, cfg.alpha, cfg.dropout))


SPEC = TunerSpec(
    config=LoRAConfig,
    apply=apply_lora,
    apply_text=apply_lora_text,
    trainable=tuner_layer_parameters,
    help="LoRA: low-rank updates of the query and value projections.",
    identity_at_init=lambda cfg: True,
)
