"""GistTextEncoder: a Hugging Face BERT/RoBERTa encoder with a Gist token after [CLS] and a shared head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .backbones import BackboneError, create_text_backbone, load_tokenizer
from .config import GistConfig
from .model import GistOutput, GistTokens, init_linear_
from .tuners import apply_tuner

DEFAULT_MAX_LENGTH = 128  # DataConfig.max_length's default, for a model built without a RunConfig


def _bidirectional_mask_fn() -> Any:
    """transformers' mask builder (>= 4.56), or None on older versions (then the model's own 4-D mask)."""
    try:
        from transformers.masking_utils import create_bidirectional_mask  # optional dependency (text extra)
    except ImportError:
        return None
    return create_bidirectional_mask


class GistTextEncoder(GistTokens, nn.Module):
    """Wraps (never copies) a Hugging Face encoder and inserts Gist tokens right after [CLS].

    The sequence inside the layers is `[CLS, Gist x G, (prompts), tokens 1 .. L-1]`. The Gist tokens are inserted
    into the embedding output (word + position + type embeddings, LayerNorm, dropout), so they have no position
    embedding of their own and the text tokens keep their positions; the attention mask is extended with ones (a
    Gist token is never masked). One new head is shared by the [CLS] output and the mean of the Gist outputs
    (as GistViT), after dropout p = the encoder's hidden dropout (as BertForSequenceClassification).

    Args:
        backbone: The encoder (`embeddings`, `encoder.layer`; see `backbones.create_text_backbone`).
        num_classes: Number of output classes.
        gist: GIST options; `gist.enabled=False` gives exactly the plain encoder's [CLS] state plus the head.
        tokenizer: The backbone's tokenizer (for `tokenize`, `predict` and the attention views).
        max_length: Tokens per document after truncation, [CLS] and [SEP] included.
    """

    modality = "text"
    num_prefix_tokens = 1  # [CLS]

    def __init__(self, backbone: nn.Module, num_classes: int, gist: GistConfig | None = None, tokenizer: Any = None,
                 max_length: int = 128) -> None:
        super().__init__()
        self._create_mask = _bidirectional_mask_fn()  # transformers >= 4.56: its mask builder; else None
        gist = gist or GistConfig()
        self.backbone = backbone
        self.gist_cfg = gist
        self.tokenizer = tokenizer
        self.max_length = max_length
        config = backbone.config
        self.embed_dim: int = config.hidden_size
        self.num_prompt_tokens: int = 0  # set by VPT, whose tokens sit after the Gist tokens
        self.num_classes = num_classes
        self.head_drop = nn.Dropout(getattr(config, "classifier_dropout", None) or config.hidden_dropout_prob)
        self.head = init_linear_(nn.Linear(self.embed_dim, num_classes))
        self.add_gist_parameters(gist, self.embed_dim, num_classes)

    def get_classifier(self) -> nn.Module:
        """The new head, shared by the [CLS] and Gist outputs unless `gist.shared_head` is off."""
        return self.head

    # ------------------------------------------------------------------------------------------------ layout
    @property
    def layers(self) -> nn.ModuleList:
        """The encoder's layers (tuners wrap their sub-modules, or the layers themselves for VPT)."""
        return self.backbone.encoder.layer

    @property
    def num_extra_tokens(self) -> int:
        """Tokens inserted after [CLS]: Gist + prompts."""
        return self.gist_length + self.num_prompt_tokens

    @property
    def seq_len(self) -> int:
        """Longest sequence inside the layers: max_length text tokens + Gist + prompts."""
        return self.max_length + self.num_extra_tokens

    def sequence_layout(self) -> list[tuple[str, int]]:
        """Token groups in layer order with their (maximum) lengths, e.g. [("CLS", 1), ("Gist", 1), ("tokens", 127)]."""
        layout = [("CLS", 1)]
        if self.gist_length:
            layout.append(("Gist", self.gist_length))
        if self.num_prompt_tokens:
            layout.append(("prompts", self.num_prompt_tokens))
        layout.append(("tokens", self.max_length - 1))
        return layout

    # ------------------------------------------------------------------------------------------------ inputs
    def tokenize(self, texts: Sequence[str] | str, pairs: Sequence[str] | None = None,
                 max_length: int | None = None) -> dict[str, Tensor]:
        """Tokenise texts (truncated, padded to the longest) into the dict `forward` takes, on the model's device."""
        if self.tokenizer is None:
            raise ValueError("this GistTextEncoder has no tokenizer; pass input_ids and attention_mask instead")
        texts = [texts] if isinstance(texts, str) else list(texts)
        enc = self.tokenizer(texts, list(pairs) if pairs is not None else None, truncation=True, padding=True,
                             max_length=max_length or self.max_length, return_tensors="pt")
        device = self.head.weight.device
        keys = ("input_ids", "attention_mask") + (("token_type_ids",) if pairs is not None else ())
        return {k: enc[k].to(device) for k in keys if k in enc}

    def embed(self, input_ids: Tensor, attention_mask: Tensor | None = None,
              token_type_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Embeddings + Gist (and prompt slot) insertion after [CLS], and the extended mask.

        (B, L) ids -> hidden (B, 1 + G + M + L - 1, D) and mask (B, 1 + G + M + L - 1), 1 = attend.
        """
        x = self.backbone.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (B, L, D)
        b = x.shape[0]
        mask = torch.ones(input_ids.shape, dtype=torch.long, device=x.device) if attention_mask is None \
            else attention_mask.to(device=x.device, dtype=torch.long)  # (B, L)
        extra = []
        if self.gist_token is not None:
            extra.append(self.gist_dropout(self.gist_token.expand(b, -1, -1)).to(x.dtype))  # (B, G, D)
        if self.num_prompt_tokens:  # slots the first prompt layer (VPT) overwrites with its prompts
            extra.append(x.new_zeros(b, self.num_prompt_tokens, x.shape[-1]))  # (B, M, D)
        if extra:
            n = sum(e.shape[1] for e in extra)
            x = torch.cat([x[:, :1], *extra, x[:, 1:]], dim=1)  # (B, 1 + G + M + L - 1, D)
            mask = torch.cat([mask[:, :1], mask.new_ones(b, n), mask[:, 1:]], dim=1)  # (B, 1 + G + M + L - 1)
        return x, mask

    def encoder_mask(self, mask: Tensor, hidden: Tensor) -> Tensor | None:
        """The 2-D padding mask (B, T) as the installed transformers' layers expect it for the current attention
        implementation: None (no padding, SDPA), a boolean (B, 1, T, T) or an additive float (B, 1, T|1, T) mask."""
        create = self._create_mask  # resolved once in __init__: torch.compile traces a plain attribute
        if create is not None:
            return create(config=self.backbone.config, inputs_embeds=hidden, attention_mask=mask)
        return self.backbone.get_extended_attention_mask(mask, mask.shape, dtype=hidden.dtype)  # (B, 1, 1, T)

    # ------------------------------------------------------------------------------------------------ forward
    def forward_features(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                         token_type_ids: Tensor | None = None) -> Tensor:
        """All hidden states after the last layer (BERT is post-LN: already normalised). -> (B, 1 + G + M + L - 1, D)"""
        x, mask = self.embed(input_ids, attention_mask, token_type_ids)
        out = self.backbone.encoder(x, attention_mask=self.encoder_mask(mask, x))
        return out[0]  # last_hidden_state (ModelOutput or tuple)

    def forward_head(self, x: Tensor) -> GistOutput:
        """Both heads from the hidden states. (B, T, D) -> GistOutput((B, C), (B, C) | None)"""
        cls_logits = self.head(self.head_drop(x[:, 0]))  # (B, D) -> (B, C)
        if self.gist_token is None:
            return GistOutput(cls_logits, None)
        gist_feat = self.head_drop(x[:, self.gist_slice].mean(dim=1))  # (B, G, D) -> (B, D)
        head = self.gist_head if self.gist_head is not None else self.head
        return GistOutput(cls_logits, head(gist_feat))

    def forward(self, x: Mapping[str, Tensor] | Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> GistOutput:
        """A tokenised batch -> GistOutput(cls_logits (B, C), gist_logits (B, C) or None).

        Args:
            x: A mapping with `input_ids` (B, L) and optionally `attention_mask`, `token_type_ids` (what
                `TextSplit.batches` and `tokenize` yield), or the `input_ids` tensor itself.
            attention_mask: (B, L), 1 = token, 0 = padding (when `x` is a tensor).
            token_type_ids: (B, L) segment ids of sentence pairs (when `x` is a tensor).
        """
        if isinstance(x, Mapping):
            x, attention_mask, token_type_ids = (x["input_ids"], x.get("attention_mask"), x.get("token_type_ids"))
        return self.forward_head(self.forward_features(x, attention_mask, token_type_ids))


def build_text_model(cfg: Any, num_classes: int) -> GistTextEncoder:
    """The GistTextEncoder a ModelConfig (or RunConfig, whose `data.max_length` it reads) describes, tuner applied.

    Args:
        cfg: A validated ModelConfig/RunConfig whose backbone is a text backbone.
        num_classes: Classes of the head.
    """
    if cfg.weights is not None:
        raise BackboneError(f"weights: a text backbone loads its own folder; use backbone 'hf:<folder>' instead of "
                            f"weights={cfg.weights!r}")
    data = getattr(cfg, "data", None)
    max_length = data.max_length if data is not None else DEFAULT_MAX_LENGTH
    tokenizer = load_tokenizer(cfg.backbone)
    backbone = create_text_backbone(cfg.backbone, cfg.pretrained)
    limit = min(backbone.config.max_position_embeddings, tokenizer.model_max_length or 10**9)
    if max_length > limit:
        raise BackboneError(f"data.max_length: {max_length} exceeds {cfg.backbone}'s {limit} positions")
    model = GistTextEncoder(backbone, num_classes, cfg.gist, tokenizer=tokenizer, max_length=max_length)
    model.method = cfg.method
    model.method_config = apply_tuner(model, cfg.method, cfg.method_args)
    model.data_config = {"modality": "text", "tokenizer": cfg.backbone, "max_length": max_length}
    return model


__all__ = ["DEFAULT_MAX_LENGTH", "GistTextEncoder", "build_text_model"]
