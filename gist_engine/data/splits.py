"""Dataset splits: uint8 tensors on the device, streamed files or tokenised text behind one interface; sampling."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .images import DatasetError, to_model_input


class ImageSource(Protocol):
    """Where the pixels of a pool live: an in-memory array or a list of files."""

    channels: int

    def stream_workers(self) -> int: ...
    def __len__(self) -> int: ...
    def fetch(self, index: np.ndarray, size: int, threads: int = 1) -> torch.Tensor: ...
    def check(self, index: np.ndarray, threads: int = 1) -> None: ...


# ----------------------------------------------------------------------------------------------------
# Seeded sampling (positions into a label array)

def _rng(seed: int, step: int) -> np.random.Generator:
    """An independent stream per (seed, sampling step), so e.g. the val draw never shifts the train draw."""
    return np.random.default_rng(np.random.SeedSequence([seed, step]))


def fixed_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified train/test split: round(fraction * n_c) test images per class, at least one left to train.

    Args:
        labels: (N,) int class ids.
        test_fraction: Share of each class that goes to the test split.
        seed: The split's own fixed seed (never the data seed, so the test set never changes between runs).

    Returns:
        Sorted positions (train, test).
    """
    rng = _rng(seed, 0)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = min(int(np.floor(test_fraction * len(members) + 0.5)), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_subset(labels: np.ndarray, n: int, seed: int, step: int, what: str) -> np.ndarray:
    """`n` positions drawn without replacement, class proportions kept.

    Each class gets the floor of its share `n * n_c / N`; the draws left over go one each to the classes with the
    largest remainders (ties in seeded random order), so the counts sum to `n` and no class gets more than it has.

    Args:
        labels: (N,) int class ids of the pool.
        n: How many to draw.
        seed: The data seed.
        step: Which draw this is (0 val, 2 train, 3 test), for independent streams.
        what: The option name for the error message (e.g. "train_size").

    Returns:
        Sorted positions into `labels`.
    """
    if n > len(labels):
        raise DatasetError(f"{what}={n} but only {len(labels)} images are available for it")
    if n == len(labels):
        return np.arange(len(labels))
    rng = _rng(seed, step)
    classes, counts = np.unique(labels, return_counts=True)
    take, remainder = np.divmod(counts * n, len(labels))  # share n * n_c / N in whole draws and a remainder
    by_remainder = np.lexsort((rng.random(len(classes)), -remainder))  # largest remainder first
    take[by_remainder[:n - int(take.sum())]] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
              for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked))


def few_shot_subset(labels: np.ndarray, k: int, seed: int, class_names: Sequence[str]) -> np.ndarray:
    """Exactly `k` positions of every class (seeded); DatasetError naming a class that has fewer than `k`."""
    rng = _rng(seed, 1)
    picked = []
    for c, name in enumerate(class_names):
        members = np.flatnonzero(labels == c)
        if len(members) < k:
            raise DatasetError(f"few_shot={k}: class {name!r} has only {len(members)} training images")
        picked.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(picked))


# ----------------------------------------------------------------------------------------------------
# Splits

class Split(Protocol):
    """What the trainer needs of a split, image or text: labels (N,) on the CPU and batches on the device.

    `batches` yields (inputs, labels (B,)): normalised images (B, 3, H, W) for an ImageSplit, a dict of token ids
    and masks (B, T) for a TextSplit.
    """

    labels: torch.Tensor
    class_names: list[str]
    storage: str

    def __len__(self) -> int: ...
    def class_counts(self) -> dict[str, int]: ...
    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[Any, torch.Tensor]]: ...
    def raw(self, idx: torch.Tensor | Sequence[int]) -> Any: ...


class ImageSplit(abc.ABC):
    """One split (train, val or test): labels on the CPU, normalised batches on the device."""

    storage = ""

    def __init__(self, labels: torch.Tensor, class_names: list[str], mean: Sequence[float],
                 std: Sequence[float], device: torch.device | str, image_size: int):
        self.labels = labels.to(torch.int64).cpu()  # (N,)
        self.class_names = list(class_names)
        self.device = torch.device(device)
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        """Images per class, every class listed (zeros included), in class order."""
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return dict(zip(self.class_names, counts, strict=True))

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised batches on the device.

        Args:
            batch_size: Images per batch.
            shuffle: Visit the images in the order `torch.randperm(len(self), generator=generator)`.
            generator: A CPU generator: the same seed gives the same order.
            drop_last: Skip a last batch smaller than `batch_size`.

        Yields:
            (images float32 (B, 3, H, W), labels int64 (B,)), both on the device.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        chunks = [order[i:i + batch_size] for i in range(0, stop, batch_size)]
        if chunks:
            yield from self._batches(chunks)

    @abc.abstractmethod
    def _batches(self, chunks: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    @abc.abstractmethod
    def raw(self, idx: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """uint8 (k, 3, H, W) on the CPU of the images at positions `idx` (thumbnails, probe images)."""


class TensorSplit(ImageSplit):
    """A split held as one uint8 tensor (N, C, H, W) on the device (C = 1 for greyscale data, 3 otherwise)."""

    storage = "memory"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                 mean: Sequence[float], std: Sequence[float], device: torch.device | str):
        super().__init__(labels, class_names, mean, std, device, int(images.shape[-1]))
        if len(images) != len(self.labels):
            raise ValueError(f"{len(images)} images but {len(self.labels)} labels")
        self.images = images.to(self.device)  # (N, C, H, W) uint8
        self._device_labels = self.labels.to(self.device)

    def _batches(self, chunks: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # the whole order goes to the device in one copy: a per-batch copy would stall the CUDA queue every step
        order = torch.cat(chunks).to(self.device)  # (n,)
        for chunk in order.split([len(c) for c in chunks]):
            yield to_model_input(self.images[chunk], self.mean, self.std), self._device_labels[chunk]

    def raw(self, idx: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """uint8 (k, 3, H, W) on the CPU of the images at positions `idx`."""
        x = self.images[torch.as_tensor(idx, dtype=torch.int64, device=self.device)].cpu()  # (k, C, H, W)
        return x.expand(-1, 3, -1, -1).contiguous()  # (k, 3, H, W)


class _Fetch(Dataset):
    """Map-style dataset whose item is a whole batch: positions (B,) -> uint8 (B, C, S, S)."""

    def __init__(self, source: ImageSource, index: np.ndarray, size: int):
        self.source, self.index, self.size = source, index, size

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, positions: torch.Tensor) -> torch.Tensor:
        return self.source.fetch(self.index[positions.numpy()], self.size)


class StreamingSplit(ImageSplit):
    """A split too large for memory: a DataLoader decodes and resizes each batch (workers for files)."""

    storage = "stream"

    def __init__(self, source: ImageSource, index: np.ndarray, labels: torch.Tensor, class_names: list[str],
                 mean: Sequence[float], std: Sequence[float], device: torch.device | str, image_size: int,
                 num_workers: int | None = None):
        super().__init__(labels, class_names, mean, std, device, image_size)
        self.source, self.index = source, np.asarray(index)
        self.num_workers = source.stream_workers() if num_workers is None else num_workers

    def _batches(self, chunks: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(_Fetch(self.source, self.index, self.image_size), sampler=chunks, batch_size=None,
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for chunk, images in zip(chunks, loader, strict=True):
            images = images.to(self.device, non_blocking=True)
            yield to_model_input(images, self.mean, self.std), self.labels[chunk].to(self.device)

    def raw(self, idx: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """uint8 (k, 3, H, W) on the CPU of the images at positions `idx` (decoded now)."""
        positions = torch.as_tensor(idx, dtype=torch.int64).cpu().numpy()
        x = self.source.fetch(self.index[positions], self.image_size)  # (k, C, H, W)
        return x.expand(-1, 3, -1, -1).contiguous()  # (k, 3, H, W)


class TextSplit:
    """One split of tokenised documents on the device (a `Split`, as ImageSplit: `batches`, `labels`, ...).

    Token ids and masks are stored padded to the split's longest document (at most `max_length`); each batch is
    cut to its own longest document, so short texts (tweets) cost short sequences.
    """

    storage = "memory"

    def __init__(self, encoding: dict[str, torch.Tensor], labels: torch.Tensor, class_names: list[str],
                 texts: list[str], device: torch.device | str, pairs: list[str] | None = None) -> None:
        self.labels = labels.to(torch.int64).cpu()  # (N,)
        self.class_names = list(class_names)
        self.device = torch.device(device)
        self.texts, self.pairs = list(texts), pairs
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        self.lengths = encoding["attention_mask"].sum(dim=1).cpu()  # (N,) tokens per document, on the CPU
        self.tensors = {k: v.to(self.device) for k, v in encoding.items()}  # each (N, L)
        self._device_labels = self.labels.to(self.device)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def max_tokens(self) -> int:
        """The longest document in tokens ([CLS] and [SEP] included)."""
        return int(self.lengths.max()) if len(self) else 0

    def class_counts(self) -> dict[str, int]:
        """Documents per class, every class listed (zeros included), in class order."""
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return dict(zip(self.class_names, counts, strict=True))

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Tokenised batches on the device.

        Args:
            batch_size: Documents per batch.
            shuffle: Visit the documents in the order `torch.randperm(len(self), generator=generator)`.
            generator: A CPU generator: the same seed gives the same order.
            drop_last: Skip a last batch smaller than `batch_size`.

        Yields:
            ({"input_ids": (B, T), "attention_mask": (B, T)[, "token_type_ids": (B, T)]}, labels (B,)), T the
            longest document of the batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            chunk = order[i:i + batch_size]  # (B,) on the CPU
            width = int(self.lengths[chunk].max())  # no device sync: the lengths live on the CPU
            index = chunk.to(self.device)
            yield {k: v[index, :width] for k, v in self.tensors.items()}, self._device_labels[index]  # (B, T)

    def raw(self, idx: torch.Tensor | Sequence[int]) -> list[str]:
        """The documents at positions `idx` (pairs joined with ' [SEP] ')."""
        positions = torch.as_tensor(idx, dtype=torch.int64).cpu().tolist()
        if self.pairs is None:
            return [self.texts[i] for i in positions]
        return [f"{self.texts[i]} [SEP] {self.pairs[i]}" for i in positions]


@dataclass
class DatasetSplits:
    """A loaded dataset: train, optional val and test splits, class names and a JSON-ready description. `test` is
    None only when it was not asked for (`load_dataset(..., test=False)`: a tuning trial never reads it)."""

    train: Split
    val: Split | None
    test: Split | None
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    probe: Split | None = None  # held-out train-split images for the trainer's accuracy probe (train.probe_every)

    @property
    def num_classes(self) -> int:
        """Number of classes (the head's output size)."""
        return len(self.class_names)

    def summary(self) -> str:
        """A short text table: the dataset, the split sizes and the images per class of each split."""
        parts = [f"{self.info.get('name', '?')}: {self.num_classes} classes, " + ", ".join(
            f"{k} {v}" for k, v in self.info.get("sizes", {}).items()) + f" ({self.info.get('storage', '')})"]
        splits = {"train": self.train, "val": self.val, "test": self.test}
        width = max(len(c) for c in self.class_names)
        parts.append(f"{'class':<{width}} " + " ".join(f"{k:>6}" for k, s in splits.items() if s is not None))
        counts = {k: s.class_counts() for k, s in splits.items() if s is not None}
        for c in self.class_names:
            parts.append(f"{c:<{width}} " + " ".join(f"{counts[k][c]:>6}" for k in counts))
        return "\n".join(parts)
