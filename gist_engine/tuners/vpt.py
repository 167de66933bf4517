"""Visual Prompt Tuning (Jia et al., 2022): learnable prompt tokens, shallow (input only) or deep (every block)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config.methods import VPTConfig
from ..model import GistViT
from .base import TunerLayer, TunerSpec, text_layers, tuner_layer_parameters


class PromptBlock(TunerLayer):
    """A block that first inserts (first block) or replaces (deep VPT, later blocks) the prompt tokens.

    Prompts sit after the prefix and Gist tokens and have no position embedding.
    """

    trained_names = ("prompt",)
    no_decay_names = ("prompt",)  # tokens, like the Gist token

    def __init__(self, base_layer: nn.Module, prompt: nn.Parameter, offset: int, insert: bool, dropout: float):
        super().__init__()
        self.base_layer = base_layer
        self.prompt = prompt  # (1, M, D)
        self.offset = offset  # prefix + Gist tokens before the prompts
        self.insert = insert
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, o + [M] + N, D) -> the base block's output for the prompted sequence (B, o + M + N, D)."""
        return self.base_layer(self.prompted(x))

    def prompted(self, x: Tensor) -> Tensor:
        """The block's input with this block's prompts in their slots. (B, o + [M] + N, D) -> (B, o + M + N, D)"""
        m, o = self.prompt.shape[1], self.offset
        prompt = self.dropout(self.prompt.expand(x.shape[0], -1, -1)).to(x.dtype)  # (B, M, D)
        rest = x[:, o:] if self.insert else x[:, o + m:]  # (B, N, D) the patches
        return torch.cat([x[:, :o], prompt, rest], dim=1)  # (B, o + M + N, D)


def apply_vpt(model: GistViT, cfg: VPTConfig) -> None:
    """Wrap the first block (shallow) or every block (deep) with its prompts."""
    patch = model.vit.patch_embed.patch_size
    bound = math.sqrt(6.0 / (3 * patch[0] * patch[1] + model.embed_dim))  # VPT's uniform init
    offset = model.num_prefix_tokens + model.gist_length
    blocks = model.vit.blocks
    for i in range(len(blocks) if cfg.deep else 1):
        prompt = nn.Parameter(torch.empty(1, cfg.length, model.embed_dim))
        nn.init.uniform_(prompt, -bound, bound)
        blocks[i] = PromptBlock(blocks[i], prompt, offset, insert=(i == 0), dropout=cfg.dropout)
    model.num_prompt_tokens = cfg.length


class TextPromptLayer(TunerLayer):
    """A text encoder layer that first writes its prompts into the prompt slots after [CLS] and the Gist tokens.

    GistTextEncoder reserves the slots (zeros, attended: their mask is 1) so the sequence length and the attention
    mask stay fixed through the encoder; the first layer (shallow) or every layer (deep) overwrites them.
    """

    trained_names = ("prompt",)
    no_decay_names = ("prompt",)  # tokens, like the Gist token

    def __init__(self, base_layer: nn.Module, prompt: nn.Parameter, offset: int, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.prompt = prompt  # (1, M, D)
        self.offset = offset  # [CLS] + Gist tokens before the prompts
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        m, o = self.prompt.shape[1], self.offset
        prompt = self.dropout(self.prompt.expand(hidden_states.shape[0], -1, -1)).to(hidden_states.dtype)  # (B, M, D)
        x = torch.cat([hidden_states[:, :o], prompt, hidden_states[:, o + m:]], dim=1)  # (B, o + M + L - 1, D)
        return self.base_layer(x, *args, **kwargs)


def apply_vpt_text(model: nn.Module, cfg: VPTConfig) -> None:
    """Prompt slots after [CLS] and the Gist tokens, filled by the first layer (shallow) or every layer (deep).

    Prompts have no position embedding; init uniform(-v, v) with v = sqrt(6 / (D + D)) (Xavier's bound for a
    D x D map: VPT's patch-based bound has no meaning for text).
    """
    bound = math.sqrt(6.0 / (2 * model.embed_dim))
    offset = model.num_prefix_tokens + model.gist_length
    layers = model.layers
    text_layers(model, "vpt")
    for i in range(len(layers) if cfg.deep else 1):
        prompt = nn.Parameter(torch.empty(1, cfg.length, model.embed_dim))
        nn.init.uniform_(prompt, -bound, bound)
        layers[i] = TextPromptLayer(layers[i], prompt, offset, cfg.dropout)
    model.num_prompt_tokens = cfg.length


SPEC = TunerSpec(
    config=VPTConfig,
    apply=apply_vpt,
    apply_text=apply_vpt_text,
    trainable=tuner_layer_parameters,
    help="VPT: learnable prompt tokens at the input (shallow) or at every block (deep).",
    identity_at_init=lambda cfg: False,
)
