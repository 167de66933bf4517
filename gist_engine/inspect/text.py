"""Token-level attention of a GistTextEncoder: CLS and Gist rows per layer/head, rollout, as numpy and pandas."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from .capture import AttentionCapture, eval_mode, unwrap_module
from .rollout import attention_rollout

if TYPE_CHECKING:  # pandas loads only where a table is asked for (~0.25 s of every CLI start)
    import pandas as pd

QUERIES = ("cls", "gist")


class TextAttentionCapture(AttentionCapture):
    """What `capture_text_attention` records: each encoder layer's post-softmax attention in the latest forward."""

    unit = "layers"


@contextlib.contextmanager
def capture_text_attention(model: nn.Module) -> Iterator[TextAttentionCapture]:
    """Record the softmax attention of every layer of a GistTextEncoder while inside the context.

    The encoder is switched to transformers' "eager" attention (SDPA returns no weights) and back on exit; a
    forward hook on each layer's `attention.self` reads the weights it returns (before attention dropout is
    irrelevant: run it in eval mode). The mask follows the switch (GistTextEncoder builds it per forward).

    Args:
        model: A GistTextEncoder (any tuner, GIST on or off).

    Yields:
        A TextAttentionCapture; `maps[i]` is layer i's attention (B, heads, T, T) of the latest forward pass.
    """
    backbone = model.backbone
    modules = [unwrap_module(layer).attention.self for layer in model.layers]
    capture = TextAttentionCapture(len(modules))
    saved = backbone.config._attn_implementation  # the implementation in use (transformers has no public getter)
    handles = []

    def recorder(index: int):
        def hook(module: nn.Module, args: tuple, output: tuple) -> None:
            capture.maps[index] = output[1].detach()  # (B, H, T, T) softmax(q k^T / sqrt(d) + mask)

        return hook

    try:
        backbone.set_attn_implementation("eager")
        for i, module in enumerate(modules):
            handles.append(module.register_forward_hook(recorder(i)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()
        backbone.set_attn_implementation(saved)


@dataclass(eq=False)  # numpy fields
class TokenAttention:
    """CLS and Gist attention over the tokens of one text, per layer and head, and their rollout.

    T tokens in layer order (`tokens`, e.g. ["[CLS]", "[GIST]", "the", ...]), L layers, H heads. Rows are the raw
    softmax weights over all T tokens (they sum to 1). Gist fields are None with GIST off; with several Gist
    tokens their rows are averaged.
    """

    tokens: list[str]  # (T,) the token strings, Gist and prompt tokens included
    kinds: list[str]  # (T,) "CLS", "Gist", "prompt", "token" or "SEP"
    cls: np.ndarray  # (L, H, T) attention of [CLS] over the tokens
    cls_rollout: np.ndarray  # (L, T) the [CLS] row of the rollout through layers 0..l
    cls_logits: np.ndarray  # (C,)
    gist: np.ndarray | None = None  # (L, H, T)
    gist_rollout: np.ndarray | None = None  # (L, T)
    gist_logits: np.ndarray | None = None  # (C,)
    text: str = ""
    class_names: list[str] | None = None

    @property
    def num_layers(self) -> int:
        """Number of layers L."""
        return self.cls.shape[0]

    @property
    def num_heads(self) -> int:
        """Number of heads H."""
        return self.cls.shape[1]

    def _rows(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        if query not in QUERIES:
            raise ValueError(f"query must be one of {QUERIES}, got {query!r}")
        if query == "gist" and self.gist is None:
            raise ValueError("the model has no Gist token (GIST off)")
        return (self.cls, self.cls_rollout) if query == "cls" else (self.gist, self.gist_rollout)

    def strip(self, query: str = "cls", layer: int = -1, head: int | None = None,
              rollout: bool = False) -> pd.DataFrame:
        """One weight per token, for a coloured token strip.

        Args:
            query: "cls" or "gist".
            layer: Layer index (negative counts from the end).
            head: A head index; None averages the heads.
            rollout: The rollout through `layer` instead of the layer's own attention.

        Returns:
            Columns position, token, kind, weight (T rows, token order).
        """
        import pandas as pd  # heavy (~0.25 s): loaded only when a table is asked for

        att, roll = self._rows(query)
        if rollout:
            weight = roll[layer]
        else:
            weight = att[layer].mean(axis=0) if head is None else att[layer, head]
        return pd.DataFrame({"position": np.arange(len(self.tokens)), "token": self.tokens, "kind": self.kinds,
                             "weight": weight.astype(np.float64)})

    def heatmap(self, query: str = "cls", by: str = "layer", layer: int = -1) -> pd.DataFrame:
        """A 2-D table of weights for a heat map: rows layers (heads averaged) or one layer's heads, or rollout.

        Args:
            query: "cls" or "gist".
            by: "layer" (L rows, heads averaged), "head" (H rows of `layer`) or "rollout" (L rows).
            layer: The layer of `by="head"`.

        Returns:
            A DataFrame indexed by layer/head with one column per token position (columns named "i:token").
        """
        import pandas as pd  # heavy (~0.25 s): loaded only when a table is asked for

        att, roll = self._rows(query)
        table = {"layer": att.mean(axis=1), "head": att[layer], "rollout": roll}.get(by)
        if table is None:
            raise ValueError(f"by must be 'layer', 'head' or 'rollout', got {by!r}")
        index = pd.Index(range(table.shape[0]), name="head" if by == "head" else "layer")
        return pd.DataFrame(table.astype(np.float64), index=index,
                            columns=[f"{i}:{t}" for i, t in enumerate(self.tokens)])

    def frame(self) -> pd.DataFrame:
        """Every weight in long form: query, layer, head, position, token, kind, weight (head -1 = rollout)."""
        import pandas as pd  # heavy (~0.25 s): loaded only when a table is asked for

        parts = []
        for query in QUERIES:
            if query == "gist" and self.gist is None:
                continue
            att, roll = self._rows(query)
            n_l, n_h, n_t = att.shape
            layer, head, pos = np.meshgrid(np.arange(n_l), np.arange(n_h), np.arange(n_t), indexing="ij")
            parts.append(pd.DataFrame({"query": query, "layer": layer.ravel(), "head": head.ravel(),
                                       "position": pos.ravel(), "weight": att.ravel().astype(np.float64)}))
            layer, pos = np.meshgrid(np.arange(n_l), np.arange(n_t), indexing="ij")
            parts.append(pd.DataFrame({"query": query, "layer": layer.ravel(), "head": -1, "position": pos.ravel(),
                                       "weight": roll.ravel().astype(np.float64)}))
        out = pd.concat(parts, ignore_index=True)
        out.insert(4, "token", np.asarray(self.tokens, dtype=object)[out["position"].to_numpy()])
        out.insert(5, "kind", np.asarray(self.kinds, dtype=object)[out["position"].to_numpy()])
        return out

    def prediction(self) -> dict[str, object]:
        """The CLS head's class (what the model predicts) and the Gist head's, with probabilities."""
        names = self.class_names or [str(i) for i in range(len(self.cls_logits))]

        def top(logits: np.ndarray) -> dict[str, object]:
            p = np.exp(logits - logits.max())
            p /= p.sum()
            j = int(p.argmax())
            return {"class": names[j], "index": j, "prob": float(p[j])}

        return {"cls": top(self.cls_logits), "gist": None if self.gist_logits is None else top(self.gist_logits)}


def _token_strings(model: nn.Module, input_ids: Tensor) -> tuple[list[str], list[str]]:
    """Token strings and kinds in layer order: [CLS], Gist x G, prompts x M, then the text tokens."""
    tok = model.tokenizer
    words = tok.convert_ids_to_tokens(input_ids.tolist())
    special = set(getattr(tok, "all_special_tokens", []))
    kinds = ["token" if w not in special else ("SEP" if w == getattr(tok, "sep_token", None) else "special")
             for w in words[1:]]
    g, m = model.gist_length, model.num_prompt_tokens
    tokens = [words[0]] + [f"[GIST{i}]" if g > 1 else "[GIST]" for i in range(g)] + [f"[P{i}]" for i in range(m)]
    return tokens + words[1:], ["CLS"] + ["Gist"] * g + ["prompt"] * m + kinds


def compute_token_attention(model: nn.Module, text: str, pair: str | None = None) -> TokenAttention:
    """CLS and Gist attention of one text per layer and head, rollout and both heads' logits.

    Runs in eval mode (no dropout) under `torch.inference_mode` with eager attention; the model's train/eval
    state and attention implementation are restored afterwards.

    Args:
        model: A GistTextEncoder with its tokenizer.
        text: The sentence or document (truncated to `model.max_length` tokens).
        pair: The second segment of a sentence-pair task.

    Returns:
        TokenAttention of plain numpy arrays (rows sum to 1 over the T tokens).
    """
    batch = model.tokenize([text], [pair] if pair is not None else None)
    with eval_mode(model), torch.inference_mode(), capture_text_attention(model) as capture:
        out = model(batch)
        attn = capture.stacked()[:, 0].float()  # (L, 1, H, T, T) -> (L, H, T, T)
    rollout = attention_rollout(attn.mean(dim=1)[:, None])[:, 0]  # (L, 1, T, T) -> (L, T, T)
    tokens, kinds = _token_strings(model, batch["input_ids"][0].cpu())
    if len(tokens) != attn.shape[-1]:
        raise RuntimeError(f"{len(tokens)} tokens but attention over {attn.shape[-1]} positions")
    result = TokenAttention(tokens=tokens, kinds=kinds, cls=attn[:, :, 0].cpu().numpy(),
                            cls_rollout=rollout[:, 0].cpu().numpy(),
                            cls_logits=out.cls_logits[0].float().cpu().numpy(), text=text,
                            class_names=getattr(model, "class_names", None))
    if model.gist_length:
        gs = model.gist_slice
        result.gist = attn[:, :, gs].mean(dim=2).cpu().numpy()  # (L, H, G, T) -> (L, H, T)
        result.gist_rollout = rollout[:, gs].mean(dim=1).cpu().numpy()  # (L, G, T) -> (L, T)
        result.gist_logits = None if out.gist_logits is None else out.gist_logits[0].float().cpu().numpy()
    return result


__all__ = ["TextAttentionCapture", "TokenAttention", "capture_text_attention", "compute_token_attention"]
