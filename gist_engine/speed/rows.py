"""Row shortcuts of a GistViT: the last block for the head rows only, the first block's gradient for its new rows.

Two exact shortcuts (the same logits and gradients as the plain forward), where the blocks allow them:
- The heads read only the first rows of the last block's output (the prefix and Gist tokens), so the last block
  runs for those rows alone: every token still gives keys and values, but the queries, the projection, the MLP and
  every tuner after the attention see the head rows only (three quarters of the last block's work saved). The
  model's `forward_features` then returns those rows only, which is all `forward_head` reads.
- When nothing before the blocks is trained, only the Gist (and VPT's prompt) rows of the first block's input carry
  a gradient, so the first block's qkv projection back-propagates to those rows only (its input gradient is a few
  rows instead of a full matrix product; that gradient is what GIST adds to a method such as the adapter). The
  input images must not need a gradient either: input attributions run on a model without `speed.install`, or
  inside `speed.disabled(model)`.
Both need a `PackedQKVAttention` with its packed path on (`rows_supported`), and a block this module knows
(`ROW_FORWARDS`); otherwise the block runs whole (attention capture, for one).
"""

from __future__ import annotations

from collections.abc import Callable

from timm.models.vision_transformer import Block
from torch import Tensor, nn

from ..model import GistViT
from ..tuners.base import block_forward
from ..tuners.vpt import PromptBlock
from .attention import PackedQKVAttention
from .tuners import SharedUpAdapterBlock
from .wrap import SpeedWrapper


def _block_rows(b: Block, x: Tensor, rows: int | None, grad_rows: tuple[int, int] | None) -> Tensor:
    """timm's pre-norm Block for the first `rows` output tokens. (B, N, D) -> (B, rows, D)"""
    return block_forward(b, x, rows=rows, grad_rows=grad_rows)


# How each known block runs for rows (x, rows, grad_rows) -> (B, rows or N, D), and whether it can right now.
ROW_FORWARDS: dict[type, Callable[..., Tensor]] = {
    Block: _block_rows,
    SharedUpAdapterBlock: lambda b, x, rows, grad_rows: b(x, rows=rows, grad_rows=grad_rows),
    PromptBlock: lambda b, x, rows, grad_rows: forward_rows(b.base_layer, b.prompted(x), rows, grad_rows),
}
ROWS_SUPPORTED: dict[type, Callable[[nn.Module], bool]] = {
    Block: lambda b: type(b.attn) is PackedQKVAttention and b.attn.packed,
    SharedUpAdapterBlock: lambda b: b.enabled and rows_supported(b.base_layer.base_layer),
    PromptBlock: lambda b: rows_supported(b.base_layer),
}


def rows_supported(block: nn.Module) -> bool:
    """Whether `forward_rows` can run `block` right now."""
    check = ROWS_SUPPORTED.get(type(block))
    return check is not None and check(block)


def forward_rows(block: nn.Module, x: Tensor, rows: int | None = None,
                 grad_rows: tuple[int, int] | None = None) -> Tensor:
    """A block's output, (B, N, D) -> (B, N, D), or (B, rows, D) for its first `rows` tokens; `grad_rows` (a, b):
    only rows a:b of `x` need an input gradient. See `rows_supported`."""
    return ROW_FORWARDS[type(block)](block, x, rows, grad_rows)


class BlockRows(SpeedWrapper):
    """A block that runs for the rows its output and its input gradient need (see the module docstring).

    Args:
        base_layer: The block (timm's `Block` or a tuner's block wrapper listed in `ROW_FORWARDS`).
        head_rows: Output only these leading tokens (the last block), or None for all.
        grad_rows: (a, b): only input rows a:b need a gradient when no `upstream` parameter is trained (the first
            block), or None.
        upstream: The parameters before the blocks (patch and position embeddings, prefix tokens, `norm_pre`).
    """

    def __init__(self, base_layer: nn.Module, head_rows: int | None = None, grad_rows: tuple[int, int] | None = None,
                 upstream: list[nn.Parameter] | None = None) -> None:
        super().__init__(base_layer)
        self.head_rows, self.grad_rows = head_rows, grad_rows
        self.upstream = list(upstream or [])  # not registered: the model owns them

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, head_rows or N, D)."""
        if not (self.enabled and rows_supported(self.base_layer)):
            return self.base_layer(x)
        rows = self.head_rows
        grad_rows = None if any(p.requires_grad for p in self.upstream) else self.grad_rows
        if rows is None and grad_rows is None:
            return self.base_layer(x)
        return forward_rows(self.base_layer, x, rows, grad_rows)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in (("head_rows", self.head_rows), ("grad_rows", self.grad_rows))
                         if v is not None)


# Parameters of a timm VisionTransformer that come after the blocks' input (everything else comes before it).
_AFTER_EMBEDDING = ("blocks.", "norm.", "fc_norm.", "attn_pool.", "head_drop.", "head.")


def install_row_shortcuts(model: nn.Module) -> dict[str, object]:
    """Wrap the last block of a GistViT for its head rows and, when it inserts tokens (Gist, VPT's prompts), the
    first block for their input gradient (`BlockRows`, in place, idempotent). Other models are left alone.

    A tuner whose layers mix tokens (`model.tuner_mixes_tokens`, e.g. peft's Lily, whose router averages over the
    batch and sequence) gets neither shortcut: computing only some rows would change what it computes.

    Returns:
        {"head_rows": int or None, "grad_rows": (a, b) or None} (None: that shortcut is not installed), or {}
        for a model that is not a GistViT.
    """
    if not isinstance(model, GistViT):
        return {}
    if getattr(model, "tuner_mixes_tokens", False):
        return {"head_rows": None, "grad_rows": None}
    blocks = model.vit.blocks
    if any(isinstance(b, BlockRows) for b in blocks):  # installed already
        return {"head_rows": getattr(blocks[-1], "head_rows", None), "grad_rows": getattr(blocks[0], "grad_rows", None)}
    p, inserted = model.num_prefix_tokens, model.gist_length + model.num_prompt_tokens
    grad_rows = (p, p + inserted) if inserted else None  # (prefix, Gist, prompts, patches): the Gist and prompts
    if type(blocks[0]) not in ROW_FORWARDS:
        grad_rows = None
    head_rows = model.head_rows if type(blocks[-1]) in ROW_FORWARDS else None
    upstream = [q for n, q in model.vit.named_parameters() if not n.startswith(_AFTER_EMBEDDING)]
    # The first block's norm1 feeds the qkv projection whose input gradient the shortcut cuts: a trained norm1
    # (peft's LN-tuning) needs every row's gradient, as a trained patch embedding does.
    upstream += list(getattr(blocks[0], "norm1", nn.Identity()).parameters())
    if any(q.requires_grad for q in upstream):
        grad_rows = None  # not installed, so the speed report says so (BlockRows also checks at every forward)
    if len(blocks) == 1 and (head_rows is not None or grad_rows is not None):
        blocks[0] = BlockRows(blocks[0], head_rows, grad_rows, upstream)
    elif len(blocks) > 1:
        if head_rows is not None:
            blocks[-1] = BlockRows(blocks[-1], head_rows=head_rows)
        if grad_rows is not None:
            blocks[0] = BlockRows(blocks[0], grad_rows=grad_rows, upstream=upstream)
    return {"head_rows": head_rows, "grad_rows": grad_rows}


__all__ = ["ROWS_SUPPORTED", "ROW_FORWARDS", "BlockRows", "forward_rows", "install_row_shortcuts", "rows_supported"]
