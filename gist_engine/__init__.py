"""GIST Studio's engine: GIST (Ruan et al., 2023) on timm Vision Transformers with every standard PEFT method.

The public API below is imported lazily (PEP 562): `import gist_engine` imports none of torch, timm or onnx, and
`gist_engine.X` or `from gist_engine import X` imports the module that defines X on first use. Reading the run
store, the verdict (`PairedResult`) and the gallery's files thus costs no torch import; building or training a
model imports what it needs when it is first asked for.
"""

from ._lazy import lazy_exports
from ._version import __version__ as __version__

# module -> the public names it gives the package (every one of them is in __all__)
EXPORTS: dict[str, tuple[str, ...]] = {
    ".backbones": (
        "BACKBONES", "TEXT_BACKBONES", "BackboneError", "backbone_data_config", "backbone_info", "create_backbone",
    ),
    ".build": ("build_model", "describe_model", "parameter_summary",),
    ".catalog": ("catalogue",),
    ".config": (
        "RECIPES", "SELECTION_LABELS", "ConfigError", "DataConfig", "GistConfig", "ModelConfig", "RunConfig",
        "TrainConfig", "check_value", "describe_fields", "load_run_config", "selection_label", "to_dict",
    ),
    ".data": (
        "DATASETS", "VTAB1K_TASKS", "BenchmarkReport", "DatasetError", "describe_datasets", "import_benchmark",
        "import_text_table", "list_text_datasets", "load_dataset",
    ),
    ".data.preview": ("dataset_preview", "dataset_samples", "text_dataset_preview", "text_dataset_samples",),
    ".data.registry": ("dataset_modality", "split_sizes",),
    ".data.upload": ("decode_image", "delete_uploaded_dataset", "import_imagefolder_zip", "list_uploaded_datasets",),
    "._lazy": ("preload",),
    ".estimate": ("estimate_run_time", "measure_throughput",),
    ".inspect": ("TokenAttention", "compute_token_attention", "list_snapshots", "load_snapshot",),
    ".inspect.explain": ("explain_image", "image_attention", "overlay_heatmap",),
    ".files": ("CHECKPOINT_NAME", "RESULT_NAME", "RESUME_NAME",),
    ".loss_terms": ("LOSS_TERMS", "loss_contributions", "loss_weights",),
    ".losses": ("INTERACTION_LOSSES", "gist_loss",),
    ".model": ("GistOutput", "GistViT",),
    ".runs": (
        "DELTA_BOUNDS", "InvalidId", "PairedResult", "RunError", "RunManager", "RunNotFound", "RunReader",
        "RunSnapshot", "StoreError", "check_id", "clip_interval", "format_table", "interval_note", "is_id",
        "paired_delta", "paired_result", "printable", "run_compare", "summarise",
    ),
    ".runs.adapter": ("adapter_archive", "adapter_file_name",),
    ".runs.queue": ("QueuePlace", "queue_place",),
    ".runs.gallery": (
        "GalleryError", "gallery_examples", "import_gallery", "import_gallery_entry", "list_gallery",
        "remove_gallery_example",
    ),
    ".status": ("RunStatus", "StudyStatus",),
    ".studies": (
        "FEW_SEEDS_MARK", "FEW_SEEDS_NOTE", "STUDY_EXPORTS", "STUDY_STATUSES", "StudyError", "StudyInfo", "StudyJob",
        "StudySpec", "budget_table", "create_study", "delete_study", "export_study", "format_budget", "format_study",
        "get_study", "list_studies",
        "load_study_spec", "load_uploaded_spec", "ray_available", "resume_study", "run_study", "start_study",
        "stop_study_cell", "study_budget", "study_curve", "study_matrix", "study_results", "study_runs",
        "study_selection", "study_tuning", "study_verdicts", "TuneSpec",
    ),
    ".text_model": ("GistTextEncoder",),
    ".text_names": ("is_text_backbone",),
    ".train": ("Callback", "Trainer", "TrainResult", "train",),
    ".train.checkpoint": ("CheckpointError", "load_model", "predict", "save_checkpoint",),
    ".tuners": ("TUNERS", "apply_tuner", "count_parameters",),
}
# public name -> (module, its name there)
RENAMED: dict[str, tuple[str, str]] = {
    "STUDY_BACKENDS": (".studies", "BACKENDS"),
    "runs_data_dir": (".runs", "data_dir"),
}

# module -> modules that register something in it when imported: a gallery bundle of kind `study` is read by
# runs.gallery with the hooks that studies.gallery registers
COMPANIONS: dict[str, tuple[str, ...]] = {".runs.gallery": (".studies.gallery",)}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), EXPORTS, RENAMED, COMPANIONS)
