"""Looking inside a model: attention capture, CLS/Gist maps, rollout, training snapshots, token attention of text.

Modules: `capture` (hooks on every block's softmax), `rollout` (the maths), `maps` (AttentionMaps of a batch),
`snapshots` (a probe batch's maps during training), `text` (a GistTextEncoder's token attention) and `explain`
(captum Integrated Gradients, GradCAM, overlays and figures). `explain` is not imported here: it loads matplotlib,
and captum on first use; import it as `gist_engine.inspect.explain`.
"""

from .capture import AttentionCapture, attention_modules, capture_attention, eval_mode, unwrap_module
from .maps import (
    SUMMARY_COLUMNS,
    AttentionMaps,
    compute_attention_maps,
    input_normalisation,
    maps_from_attention,
    max_entropy,
    save_npz,
    to_uint8_images,
)
from .rollout import ROLLOUT_RESIDUAL, attention_rollout, map_cosine, map_entropy
from .snapshots import (
    PROBE_FILE,
    SNAPSHOT_DIR,
    STEP_FILE,
    AttentionSnapshots,
    TrainerSnapshots,
    choose_probe_images,
    list_snapshots,
    load_snapshot,
    snapshot_dir,
)
from .text import TextAttentionCapture, TokenAttention, capture_text_attention, compute_token_attention

__all__ = [
    "PROBE_FILE",
    "ROLLOUT_RESIDUAL",
    "SNAPSHOT_DIR",
    "STEP_FILE",
    "SUMMARY_COLUMNS",
    "AttentionCapture",
    "AttentionMaps",
    "AttentionSnapshots",
    "TextAttentionCapture",
    "TokenAttention",
    "TrainerSnapshots",
    "attention_modules",
    "attention_rollout",
    "capture_attention",
    "capture_text_attention",
    "choose_probe_images",
    "compute_attention_maps",
    "compute_token_attention",
    "eval_mode",
    "input_normalisation",
    "list_snapshots",
    "load_snapshot",
    "map_cosine",
    "map_entropy",
    "maps_from_attention",
    "max_entropy",
    "save_npz",
    "snapshot_dir",
    "to_uint8_images",
    "unwrap_module",
]
