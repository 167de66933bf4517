"""GIST on text: BERT/RoBERTa-family encoders with a Gist token, text datasets and token-level attention.

transformers is imported only when a text model or tokenizer is built, so `import gist_engine` stays light.
"""

from .attention import TokenAttention, capture_text_attention, compute_token_attention
from .backbones import (
    HUB_PREFIX,
    TEXT_BACKBONES,
    TextBackboneSpec,
    create_text_backbone,
    is_text_backbone,
    load_tokenizer,
    text_backbone_info,
    text_data_config,
)
from .data import (
    GLUE_TASKS,
    TextImportReport,
    TextSplit,
    import_text_table,
    list_text_datasets,
    parse_text_table,
    text_dataset_preview,
)
from .model import GistTextEncoder, build_text_model

__all__ = [
    "GLUE_TASKS",
    "HUB_PREFIX",
    "TEXT_BACKBONES",
    "GistTextEncoder",
    "TextBackboneSpec",
    "TextImportReport",
    "TextSplit",
    "TokenAttention",
    "build_text_model",
    "capture_text_attention",
    "compute_token_attention",
    "create_text_backbone",
    "import_text_table",
    "is_text_backbone",
    "list_text_datasets",
    "load_tokenizer",
    "parse_text_table",
    "text_backbone_info",
    "text_data_config",
    "text_dataset_preview",
]
