"""Datasets for GIST runs: the registry, splits (fixed test split, VTAB-1k, few-shot), on-device batches."""

from .images import DatasetError, UnreadableImagesError, load_image_file, resize_uint8, to_model_input
from .readers import FASHION_MNIST_DIR, NetworkNeededError, data_dir, fashion_mnist_dir
from .registry import (
    DATASETS,
    IN_MEMORY_MAX_BYTES,
    SPLIT_SEED,
    TEST_FRACTION,
    DatasetSpec,
    describe_datasets,
    load_dataset,
)
from .splits import DatasetSplits, ImageSplit, StreamingSplit, TensorSplit

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DIR",
    "IN_MEMORY_MAX_BYTES",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "DatasetError",
    "DatasetSpec",
    "DatasetSplits",
    "ImageSplit",
    "NetworkNeededError",
    "StreamingSplit",
    "TensorSplit",
    "UnreadableImagesError",
    "data_dir",
    "describe_datasets",
    "fashion_mnist_dir",
    "load_dataset",
    "load_image_file",
    "resize_uint8",
    "to_model_input",
]
