"""Datasets for GIST runs: the registry, splits (fixed test split, VTAB-1k, few-shot), images, text, uploads."""

from .images import DatasetError, UnreadableImagesError, load_image_file, resize_uint8, to_model_input
from .preview import text_dataset_preview
from .readers import FASHION_MNIST_DIR, NetworkNeededError, data_dir, fashion_mnist_dir
from .registry import (
    DATASETS,
    IN_MEMORY_MAX_BYTES,
    SPLIT_SEED,
    TEST_FRACTION,
    DatasetSpec,
    describe_datasets,
    load_dataset,
    lookup_dataset,
)
from .splits import DatasetSplits, ImageSplit, Split, StreamingSplit, TensorSplit, TextSplit
from .text import GLUE_TASKS, TextSource, parse_text_table
from .upload import (
    ImportReport,
    TextImportReport,
    UploadLimits,
    import_imagefolder_zip,
    import_text_table,
    list_text_datasets,
    list_uploaded_datasets,
)

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DIR",
    "GLUE_TASKS",
    "IN_MEMORY_MAX_BYTES",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "DatasetError",
    "DatasetSpec",
    "DatasetSplits",
    "ImageSplit",
    "ImportReport",
    "NetworkNeededError",
    "Split",
    "StreamingSplit",
    "TensorSplit",
    "TextImportReport",
    "TextSource",
    "TextSplit",
    "UnreadableImagesError",
    "UploadLimits",
    "data_dir",
    "describe_datasets",
    "fashion_mnist_dir",
    "import_imagefolder_zip",
    "import_text_table",
    "list_text_datasets",
    "list_uploaded_datasets",
    "load_dataset",
    "load_image_file",
    "lookup_dataset",
    "parse_text_table",
    "resize_uint8",
    "text_dataset_preview",
    "to_model_input",
]
