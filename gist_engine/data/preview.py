"""Looking at a dataset before a run: thumbnails or documents per class, and seeded samples of its test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .images import DatasetError
from .readers import Pool, RawDataset
from .registry import SPLIT_SEED, TEST_FRACTION, lookup_dataset, read_dataset
from .splits import fixed_split


def _as_rgb(batch: torch.Tensor) -> np.ndarray:
    """uint8 (k, C, S, S) tensor -> (k, S, S, 3) numpy."""
    return batch.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()


def _test_pool(raw: RawDataset) -> Pool:
    """The official test pool, else the fixed test split every run uses (TEST_FRACTION per class, SPLIT_SEED)."""
    if raw.test is not None:
        return raw.test
    return raw.train.take(fixed_split(raw.train.labels, TEST_FRACTION, SPLIT_SEED)[1])


def _pick(pool: Pool, n: int, seed: int) -> np.ndarray:
    """`n` sorted positions of `pool`, drawn without replacement with `seed`."""
    return np.sort(np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False))


def dataset_preview(dataset: str, per_class: int = 4, size: int = 48) -> dict[str, Any]:
    """A few thumbnails per class and the class counts of a dataset (reads it; downloads nothing new).

    Args:
        dataset: A `data.dataset` value (`mnist5k`, `imagefolder:/path`, ...).
        per_class: Thumbnails per class (the first ones of the train pool, in order).
        size: Thumbnail side in pixels.

    Returns:
        `class_names`, `counts` (images per class over all pools), `total`, `where` (file or folder read),
        `thumbnails` {class: uint8 (k, size, size, 3)}.

    Raises:
        DatasetError: when it cannot be read (e.g. needs a network, or is a text dataset), with the reason.
    """
    raw = read_dataset(dataset)
    pools = [p for p in (raw.train, raw.test) if p is not None]
    counts = {c: int(sum((p.labels == i).sum() for p in pools)) for i, c in enumerate(raw.class_names)}
    thumbs = {}
    for i, c in enumerate(raw.class_names):
        pos = np.flatnonzero(raw.train.labels == i)[:per_class]
        if len(pos):
            thumbs[c] = _as_rgb(raw.train.source.fetch(raw.train.index[pos], size))
    return {"class_names": list(raw.class_names), "counts": counts, "total": sum(counts.values()),
            "where": raw.where, "thumbnails": thumbs}


def text_dataset_preview(dataset: str, per_class: int = 3, chars: int = 300) -> dict[str, Any]:
    """A few documents per class and the class counts of a text dataset (the twin of the image preview).

    Args:
        dataset: A `data.dataset` value of a text dataset (`bbc_news`, `textfile:/path.csv`, ...).
        per_class: Documents per class (the first ones of the train pool, in order).
        chars: Each document cut to this many characters (with "..." when cut).

    Returns:
        `class_names`, `counts` (documents per class over all pools), `total`, `where`, `samples` {class: [text]}.

    Raises:
        DatasetError: for an unknown or image dataset, or one that cannot be read.
    """
    spec, arg = lookup_dataset(dataset)
    if spec.modality != "text":
        raise DatasetError(f"{dataset!r} is an image dataset")
    raw = spec.read(arg)
    pools = [p for p in (raw.train, raw.test) if p is not None]
    counts = {c: int(sum((p.labels == i).sum() for p in pools)) for i, c in enumerate(raw.class_names)}
    samples = {}
    for i, c in enumerate(raw.class_names):
        texts, _ = raw.train.source.take(raw.train.index[np.flatnonzero(raw.train.labels == i)[:per_class]])
        samples[c] = [t if len(t) <= chars else t[:chars].rstrip() + "..." for t in texts]
    return {"class_names": list(raw.class_names), "counts": counts, "total": sum(counts.values()),
            "where": raw.where, "samples": samples}


def dataset_samples(dataset: str, n: int = 8, size: int = 112, seed: int = 0) -> dict[str, Any]:
    """`n` test-split images of a dataset (seeded), resized for a model: e.g. to look at attention maps.

    Returns:
        `images` uint8 (n, size, size, 3), `labels` (n,), `class_names`.

    Raises:
        DatasetError: when it cannot be read, with the reason.
    """
    raw = read_dataset(dataset)
    pool = _test_pool(raw)
    pick = _pick(pool, n, seed)
    return {"images": _as_rgb(pool.source.fetch(pool.index[pick], size)), "labels": pool.labels[pick].tolist(),
            "class_names": list(raw.class_names)}


def text_dataset_samples(dataset: str, n: int = 8, seed: int = 0) -> dict[str, Any]:
    """`n` test-split documents of a text dataset (seeded): e.g. to look at token attention.

    Returns:
        `texts` (sentence pairs joined with " [SEP] "), `labels` (n,), `class_names`.

    Raises:
        DatasetError: when it cannot be read, with the reason.
    """
    raw = read_dataset(dataset)
    pool = _test_pool(raw)
    pick = _pick(pool, n, seed)
    texts, pairs = pool.source.take(pool.index[pick])
    if pairs is not None:
        texts = [f"{t} [SEP] {q}" for t, q in zip(texts, pairs, strict=True)]
    return {"texts": list(texts), "labels": pool.labels[pick].tolist(), "class_names": list(raw.class_names)}


__all__ = ["dataset_preview", "dataset_samples", "text_dataset_preview", "text_dataset_samples"]
