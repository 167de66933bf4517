"""Datasets for GIST runs: the registry, splits, the benchmark layouts and their importer, images, text, uploads."""

from .benchmarks import BENCHMARK_DIRS, VTAB1K_GROUPS, VTAB1K_TASKS
from .images import (
    BACKGROUND,
    IMAGE_FORMATS,
    MAX_IMAGE_PIXELS,
    DatasetError,
    ImageFileError,
    UnreadableImagesError,
    decode_image,
    load_image_file,
    model_inputs,
    resize_uint8,
    to_model_input,
)
from .importer import BenchmarkLimits, BenchmarkReport, import_benchmark
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
    "BACKGROUND",
    "BENCHMARK_DIRS",
    "DATASETS",
    "FASHION_MNIST_DIR",
    "GLUE_TASKS",
    "IMAGE_FORMATS",
    "IN_MEMORY_MAX_BYTES",
    "MAX_IMAGE_PIXELS",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "VTAB1K_GROUPS",
    "VTAB1K_TASKS",
    "BenchmarkLimits",
    "BenchmarkReport",
    "DatasetError",
    "DatasetSpec",
    "DatasetSplits",
    "ImageFileError",
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
    "decode_image",
    "describe_datasets",
    "fashion_mnist_dir",
    "import_benchmark",
    "import_imagefolder_zip",
    "import_text_table",
    "list_text_datasets",
    "list_uploaded_datasets",
    "load_dataset",
    "load_image_file",
    "lookup_dataset",
    "model_inputs",
    "parse_text_table",
    "resize_uint8",
    "text_dataset_preview",
    "to_model_input",
]
