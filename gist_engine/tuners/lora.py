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
        """x (..., D) -> (..., 3D): the base projection plus one low-rank update over all targeted slices."""
        out = self.base_layer(x)  # (..., 3D)
        h = self.dropout(x)
        a_all = torch.cat([self.lora_A[t] for t in self.targets]).to(h.dtype)  # (n*r, D)
        # (3D, n*r): slice s of the output reads only its own r columns; an untargeted slice is a zero-width block,
        # so it gets zero rows. Built from the tiny B parameters every step, folding in the scaling, so that the
        # update is one addmm on the full-size output instead of chunk + per-slice adds + cat (extra full copies).
        b_first = self.lora_B[self.targets[0]]
        empty = b_first.new_zeros(b_first.shape[0], 0)  # (D, 0)
        b_all = torch.block_diag(*(self.lora_B[t] if t in self.targets else empty for t in "qkv"))
        b_all = (b_all * self.scaling).to(out.dtype)
        low = (h @ a_all.T).to(out.dtype)  # (..., n*r); under autocast already out's dtype
        flat = torch.addmm(out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]), b_all.T)
        return flat.reshape(out.shape)


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
        """x (..., in) -> (..., out)."""
        out = self.base_layer(x)  # (..., out)
        h = self.dropout(x)
        low = (h @ self.lora_A.to(h.dtype).T).to(out.dtype)  # (..., r)
        # The scaling goes into the small B, and the add into the GEMM, so the full-size output is written once.
        b = (self.lora_B * self.scaling).to(out.dtype)  # (out, r)
        flat = torch.addmm(out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]), b.T)
        return flat.reshape(out.shape)


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
