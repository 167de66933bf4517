"""Dataset previews without a model: class counts and a few documents per class, read through the registry."""

from __future__ import annotations

from typing import Any

import numpy as np

from .images import DatasetError
from .registry import lookup_dataset


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


__all__ = ["text_dataset_preview"]
