"""GistViT: a timm VisionTransformer with a learnable Gist token and a CLS head and a Gist head."""

from __future__ import annotations

from typing import NamedTuple

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from .config import GistConfig


class GistOutput(NamedTuple):
    """Both predictions of a GistViT forward pass."""

    cls_logits: Tensor  # (B, C) the CLS head: what the model predicts at inference
    gist_logits: Tensor | None  # (B, C) the Gist head; None when GIST is off


def init_linear_(layer: nn.Linear) -> nn.Linear:
    """timm's ViT initialisation for a new Linear layer: truncated normal (std .02) weight, zero bias."""
    nn.init.trunc_normal_(layer.weight, std=0.02)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class GistTokens:
    """What every GIST model shares: its Gist tokens, their place after `num_prefix_tokens`, and their cost.

    The model sets `num_prefix_tokens` and calls `add_gist_parameters` in its constructor.
    """

    num_prefix_tokens: int

    def add_gist_parameters(self, gist: GistConfig, dim: int, num_classes: int) -> None:
        """Add `gist_token` (1, L, D) ~ U(-init, init), its dropout, and a separate `gist_head` unless the head is
        shared (all None when GIST is off)."""
        if gist.enabled:
            self.gist_token = nn.Parameter(torch.empty(1, gist.length, dim))
            nn.init.uniform_(self.gist_token, -gist.init, gist.init)
            self.gist_dropout = nn.Dropout(gist.dropout)
            self.gist_head = None if gist.shared_head else init_linear_(nn.Linear(dim, num_classes))
        else:
            self.register_parameter("gist_token", None)
            self.gist_dropout = None
            self.gist_head = None

    @property
    def gist_length(self) -> int:
        """Number of Gist tokens in the sequence (0 when GIST is off)."""
        return 0 if self.gist_token is None else self.gist_token.shape[1]

    @property
    def gist_slice(self) -> slice:
        """Where the Gist tokens sit in the block sequence."""
        return slice(self.num_prefix_tokens, self.num_prefix_tokens + self.gist_length)

    def get_classifier(self) -> nn.Module:
        """The new classification head (timm's name); each model says where it keeps it."""
        raise NotImplementedError

    def task_parameters(self) -> list[nn.Parameter]:
        """The parameters of the task, trained whatever the PEFT method: the new head, the Gist token(s) and a
        separate Gist head if any (`tuners.mark_trainable` adds the method's own)."""
        params = list(self.get_classifier().parameters())
        if self.gist_token is not None:
            params.append(self.gist_token)
        if self.gist_head is not None:
            params += list(self.gist_head.parameters())
        return params

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The model's tokens, which AdamW does not decay (timm's `no_weight_decay()` set, as parameters): the
        Gist token(s) here; a backbone adds its own (CLS and register tokens, position embedding)."""
        return [self.gist_token] if self.gist_token is not None else []

    def gist_parameter_count(self) -> int:
        """The parameters GIST itself adds: the Gist token(s) (and a separate Gist head if any)."""
        params = [self.gist_token] if self.gist_token is not None else []
        if self.gist_head is not None:
            params += list(self.gist_head.parameters())
        return sum(p.numel() for p in params)


class GistViT(GistTokens, nn.Module):
    """Wraps (never copies) a timm VisionTransformer and inserts Gist tokens after its prefix tokens.

    The sequence inside the blocks is `[prefix (CLS, registers), Gist x L, (prompts), patches]`. The Gist tokens
    are inserted after the position embedding is added, so they have none of their own. One new head is shared by
    the CLS and Gist outputs (the paper's design) unless `shared_head` is off. This is the plain computation; the
    trainer adds exact speed shortcuts as wrapper modules (`gist_engine.speed.install`).

    Args:
        vit: The backbone; its classifier is replaced by a new `num_classes` head (trunc-normal init).
        num_classes: Number of output classes.
        gist: GIST options; `gist.enabled=False` gives exactly the plain timm model.
    """

    def __init__(self, vit: VisionTransformer, num_classes: int, gist: GistConfig | None = None) -> None:
        super().__init__()
        gist = gist or GistConfig()
        if not isinstance(vit, VisionTransformer):
            raise TypeError(f"GistViT needs a timm VisionTransformer, got {type(vit).__name__}")
        if vit.cls_token is None or vit.global_pool != "token":
            raise ValueError(
                "GIST reads the CLS token: the backbone needs a class token and global_pool='token' "
                f"(got class token: {vit.cls_token is not None}, global_pool={vit.global_pool!r})"
            )
        self.vit = vit
        self.gist_cfg = gist
        self.embed_dim: int = vit.embed_dim
        self.num_prefix_tokens: int = vit.num_prefix_tokens  # timm's: CLS + register tokens
        self.num_prompt_tokens: int = 0  # set by prompt tuners (VPT), which put their tokens after the Gist tokens
        vit.reset_classifier(num_classes)
        init_linear_(vit.head)
        self.num_classes = num_classes
        self.add_gist_parameters(gist, self.embed_dim, num_classes)

    def get_classifier(self) -> nn.Module:
        """The new head, shared by the CLS and Gist outputs unless `gist.shared_head` is off: timm's `vit.head`."""
        return self.vit.get_classifier()

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The Gist token(s) and the ViT's own tokens: timm's `no_weight_decay()` names (position embedding, CLS
        and distillation tokens) and the register tokens."""
        names = sorted(set(self.vit.no_weight_decay()) | {"reg_token"})
        vit_tokens = [getattr(self.vit, n, None) for n in names]
        return super().no_weight_decay_parameters() + [p for p in vit_tokens if isinstance(p, nn.Parameter)]

    @property
    def num_extra_tokens(self) -> int:
        """Tokens before the patches inside the blocks: prefix + Gist + prompts."""
        return self.num_prefix_tokens + self.gist_length + self.num_prompt_tokens

    @property
    def seq_len(self) -> int:
        """Tokens inside the blocks: prefix + Gist + prompts + patches."""
        return self.num_extra_tokens + self.vit.patch_embed.num_patches

    @property
    def grid_size(self) -> tuple[int, int]:
        """The patch grid (rows, cols) for the backbone's image size."""
        return tuple(self.vit.patch_embed.grid_size)

    @property
    def image_size(self) -> int:
        """The input image size in pixels (square)."""
        return int(self.vit.patch_embed.img_size[0])

    def embed(self, x: Tensor) -> Tensor:
        """Patch embedding + position embedding + Gist insertion. (B, 3, H, W) -> (B, P + G + N, D)"""
        vit = self.vit
        x = vit.patch_embed(x)
        x = vit._pos_embed(x)  # (B, P + N, D)
        x = vit.patch_drop(x)  # keeps the P prefix tokens; the Gist tokens come after it
        if self.gist_token is not None:
            gist = self.gist_dropout(self.gist_token.expand(x.shape[0], -1, -1))  # (B, G, D)
            p = self.num_prefix_tokens
            x = torch.cat([x[:, :p], gist.to(x.dtype), x[:, p:]], dim=1)  # (B, P + G + N, D)
        return vit.norm_pre(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """All tokens after the final norm. (B, 3, H, W) -> (B, P + G + prompts + N, D)"""
        x = self.embed(x)
        x = self.vit.blocks(x)
        return self.vit.norm(x)

    def forward_head(self, x: Tensor) -> GistOutput:
        """Both heads from the normed tokens. (B, T, D) -> GistOutput((B, C), (B, C) | None)"""
        vit = self.vit
        cls_feat = vit.head_drop(vit.fc_norm(x[:, 0]))  # (B, D)
        cls_logits = vit.head(cls_feat)
        if self.gist_token is None:
            return GistOutput(cls_logits, None)
        gist_feat = vit.head_drop(vit.fc_norm(x[:, self.gist_slice].mean(dim=1)))  # (B, G, D) -> (B, D)
        head = self.gist_head if self.gist_head is not None else vit.head
        return GistOutput(cls_logits, head(gist_feat))

    @property
    def head_rows(self) -> int:
        """The leading tokens the heads read: the prefix (CLS, registers) and the Gist tokens."""
        return self.num_prefix_tokens + self.gist_length

    def forward(self, x: Tensor) -> GistOutput:
        """(B, 3, H, W) -> GistOutput(cls_logits (B, C), gist_logits (B, C) or None)."""
        return self.forward_head(self.forward_features(x))

    def sequence_layout(self) -> list[tuple[str, int]]:
        """The token groups in block order with their lengths, e.g. [("CLS", 1), ("Gist", 1), ("patches", 64)]."""
        vit = self.vit
        layout = [("CLS", 1)]
        if self.num_prefix_tokens > 1:
            layout.append(("registers", self.num_prefix_tokens - 1))
        if self.gist_length:
            layout.append(("Gist", self.gist_length))
        if self.num_prompt_tokens:
            layout.append(("prompts", self.num_prompt_tokens))
        layout.append(("patches", vit.patch_embed.num_patches))
        return layout
