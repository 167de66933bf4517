"""SSF (Lian et al., 2022): a learnable per-channel scale and shift after every linear, conv and norm op."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config.methods import SSFConfig
from ..model import GistViT
from .base import TunerLayer, TunerSpec, check_block, text_layers, tuner_layer_parameters


class SSF(TunerLayer):
    """`base(x) * scale + shift` with per-channel scale and shift (channel_dim 1 for a conv output)."""

    trained_names = ("ssf_scale", "ssf_shift")

    def __init__(self, base_layer: nn.Module, dim: int, init_std: float, channel_dim: int = -1) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.ssf_scale = nn.Parameter(torch.ones(dim))
        self.ssf_shift = nn.Parameter(torch.zeros(dim))
        if init_std > 0:
            nn.init.normal_(self.ssf_scale, mean=1.0, std=init_std)
            nn.init.normal_(self.ssf_shift, std=init_std)
        self.channel_dim = channel_dim

    def forward(self, x: Tensor) -> Tensor:
        """base(x) scaled and shifted per channel: (..., C), or (B, C, H, W) when channel_dim is 1."""
        y = self.base_layer(x)
        scale, shift = self.ssf_scale, self.ssf_shift
        if self.channel_dim == 1:  # (B, C, H, W)
            scale, shift = scale.view(-1, 1, 1), shift.view(-1, 1, 1)
        return y * scale + shift


def apply_ssf(model: GistViT, cfg: SSFConfig) -> None:
    """Scale-and-shift after the patch projection, every norm, qkv, proj, fc1, fc2 and the final norm."""
    vit, std = model.vit, cfg.init_std
    proj = vit.patch_embed.proj
    vit.patch_embed.proj = SSF(proj, proj.out_channels, std, channel_dim=1)
    for block in vit.blocks:
        b = check_block(block, "ssf")
        b.norm1 = SSF(b.norm1, model.embed_dim, std)
        b.norm2 = SSF(b.norm2, model.embed_dim, std)
        b.attn.qkv = SSF(b.attn.qkv, b.attn.qkv.out_features, std)
        b.attn.proj = SSF(b.attn.proj, b.attn.proj.out_features, std)
        b.mlp.fc1 = SSF(b.mlp.fc1, b.mlp.fc1.out_features, std)
        b.mlp.fc2 = SSF(b.mlp.fc2, b.mlp.fc2.out_features, std)
    vit.norm = SSF(vit.norm, model.embed_dim, std)


TEXT_SSF_SITES = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")


def apply_ssf_text(model: nn.Module, cfg: SSFConfig) -> None:
    """Scale-and-shift after the embedding LayerNorm and every linear and LayerNorm op of each text layer."""
    emb = model.backbone.embeddings
    emb.LayerNorm = SSF(emb.LayerNorm, model.embed_dim, cfg.init_std)
    for layer in text_layers(model, "ssf"):
        for site in TEXT_SSF_SITES:
            parent_path, _, name = site.rpartition(".")
            parent = layer.get_submodule(parent_path)
            base = getattr(parent, name)
            dim = base.out_features if isinstance(base, nn.Linear) else model.embed_dim
            setattr(parent, name, SSF(base, dim, cfg.init_std))


SPEC = TunerSpec(
    config=SSFConfig,
    apply=apply_ssf,
    apply_text=apply_ssf_text,
    trainable=tuner_layer_parameters,
    help="SSF: learnable scale and shift after each linear and norm op.",
    identity_at_init=lambda cfg: cfg.init_std == 0,
)
