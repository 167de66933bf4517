"""GistViT: a timm VisionTransformer with a learnable Gist token and a CLS head and a Gist head.

Two exact shortcuts of `GistViT.forward` (the same logits and gradients as the plain forward), where the blocks
allow them:
- The heads read only the first rows of the last block's output (the prefix and Gist tokens), so the last block
  runs for those rows alone: every token still gives keys and values, but the queries, the projection, the MLP and
  every tuner after the attention see the head rows only (three quarters of the last block's work saved).
- When nothing before the blocks is trained, only the Gist (and VPT's prompt) rows of the first block's input carry
  a gradient, so the first block's qkv projection back-propagates to those rows only (its input gradient is a few
  rows instead of a full matrix product; that gradient is what GIST adds to a method such as the adapter).
Both need `PackedQKVAttention` (installed by `fastpath.enable_fused_attention`, as the trainer does) with its fused
path on, and a block they know: timm's `Block` or a tuner's wrapper that implements `forward_rows`; otherwise the
block runs whole (attention capture, for one).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn
from torch.nn import functional as F

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


class PackedQKVAttention(Attention):
    """timm's `Attention` whose fused path splits q, k, v from the qkv output's (B, N, 3, H, d) layout, and can
    compute the output of the first `rows` queries only.

    timm permutes qkv to (3, B, H, N, d) before splitting, so backward stacks the three gradients in that order and
    copies them back to the (B, N, 3 * H * d) layout the qkv projection needs: one full-size copy per block. Split
    on the packed axis instead, backward's stack writes that layout directly. Forward values are the same (the
    same views go into `scaled_dot_product_attention`); the unfused path (attention capture) is timm's own.
    """

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False,
                rows: int | None = None, grad_rows: tuple[int, int] | None = None) -> Tensor:
        """(B, N, D) -> (B, N, D), or (B, rows, D): the first `rows` queries against all N keys and values.

        `grad_rows` (a, b): only rows a:b of `x` need an input gradient (see `_qkv`).
        """
        if not self.fused_attn or getattr(self, "gate", None) is not None:
            if rows is not None or grad_rows is not None:
                raise RuntimeError("attention rows need the fused path (see rows_supported)")
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        B, N, _ = x.shape
        qkv = self._qkv(x, grad_rows)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).unbind(2)  # (B, N, H, d) each
        if rows is not None:
            q = q[:, :rows]
        q, k = self.q_norm(q), self.k_norm(k)  # over d: the same on either layout
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=attn_mask, is_causal=is_causal,
                                           dropout_p=self.attn_drop.p if self.training else 0.0)
        x = self.norm(x.transpose(1, 2).reshape(B, q.shape[1], self.num_heads * self.head_dim))
        return self.proj_drop(self.proj(x))

    def _qkv(self, x: Tensor, grad_rows: tuple[int, int] | None) -> Tensor:
        """The qkv projection of every row; with `grad_rows` and a frozen `nn.Linear` projection, backward
        multiplies only those rows' gradient by the weight (`RowGradLinear`)."""
        qkv = self.qkv
        if (grad_rows is None or not (torch.is_grad_enabled() and x.requires_grad) or type(qkv) is not nn.Linear
                or qkv.weight.requires_grad or (qkv.bias is not None and qkv.bias.requires_grad)):
            return qkv(x)
        return RowGradLinear.apply(x, qkv.weight, qkv.bias, *grad_rows)


class RowGradLinear(torch.autograd.Function):
    """`F.linear(x, weight, bias)` of a frozen layer whose input needs a gradient on rows a:b of dim 1 only.

    Backward: a zero input gradient with `grad[:, a:b] @ weight` in those rows (no weight or bias gradient), where
    autograd would multiply the whole (B, N, out) gradient by the weight. Forward is the plain projection, autocast
    included.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, a: int, b: int) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.rows, ctx.x_shape, ctx.x_dtype = (a, b), x.shape, x.dtype
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
        (weight,) = ctx.saved_tensors
        a, b = ctx.rows
        grad_x = grad.new_zeros(ctx.x_shape, dtype=ctx.x_dtype)
        grad_x[:, a:b] = (grad[:, a:b] @ weight.to(grad.dtype)).to(ctx.x_dtype)
        return grad_x, None, None, None, None


def rows_supported(block: nn.Module) -> bool:
    """Whether `forward_rows` can run `block` (timm's pre-norm Block, or a wrapper that says so) right now."""
    check = getattr(block, "rows_supported", None)
    if check is not None:
        return check()
    attn = getattr(block, "attn", None)
    return (type(block) is Block and type(attn) is PackedQKVAttention and attn.fused_attn
            and getattr(attn, "gate", None) is None)


def forward_rows(block: nn.Module, x: Tensor, rows: int | None = None,
                 grad_rows: tuple[int, int] | None = None) -> Tensor:
    """A block's output, (B, N, D) -> (B, N, D), or (B, rows, D) for its first `rows` tokens; `grad_rows` (a, b):
    only rows a:b of `x` need an input gradient. See `rows_supported`."""
    own = getattr(block, "forward_rows", None)
    if own is not None:
        return own(x, rows, grad_rows)
    b = block
    h = (x if rows is None else x[:, :rows]) + b.drop_path1(b.ls1(b.attn(b.norm1(x), rows=rows, grad_rows=grad_rows)))
    return h + b.drop_path2(b.ls2(b.mlp(b.norm2(h))))


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
    the CLS and Gist outputs (the paper's design) unless `shared_head` is off.

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
        return self._embed(x)[0]

    def _embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int] | None]:
        """`embed` and the rows of its output that the trainable parameters reach before the first block (the Gist
        tokens, and the prompts VPT inserts in it) when they are the only ones, else None."""
        vit = self.vit
        x = vit.patch_embed(x)
        x = vit._pos_embed(x)  # (B, P + N, D)
        x = vit.patch_drop(x)  # keeps the P prefix tokens; the Gist tokens come after it
        only_inserted = not (x.requires_grad or any(p.requires_grad for p in vit.norm_pre.parameters()))
        if self.gist_token is not None:
            gist = self.gist_dropout(self.gist_token.expand(x.shape[0], -1, -1))  # (B, G, D)
            p = self.num_prefix_tokens
            x = torch.cat([x[:, :p], gist.to(x.dtype), x[:, p:]], dim=1)  # (B, P + G + N, D)
        inserted = self.gist_length + self.num_prompt_tokens  # VPT inserts its prompts in the first block
        grad_rows = (self.num_prefix_tokens, self.num_prefix_tokens + inserted) if only_inserted and inserted else None
        return vit.norm_pre(x), grad_rows

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
        """(B, 3, H, W) -> GistOutput(cls_logits (B, C), gist_logits (B, C) or None).

        The logits of `forward_head(forward_features(x))`, computed with the module docstring's two shortcuts where
        the first and last blocks allow them.
        """
        blocks = self.vit.blocks
        n = len(blocks)
        last_rows = self.head_rows if rows_supported(blocks[-1]) else None
        x, grad_rows = self._embed(x)
        if not rows_supported(blocks[0]):
            grad_rows = None
        for i, block in enumerate(blocks):
            rows, grads = (last_rows if i == n - 1 else None), (grad_rows if i == 0 else None)
            x = block(x) if rows is None and grads is None else forward_rows(block, x, rows, grads)
        return self.forward_head(self.vit.norm(x))

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
