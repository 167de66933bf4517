"""A tiny in-memory image problem the trainer can learn in seconds: coloured squares at random places."""

from __future__ import annotations

import torch

from gist_engine.data import DatasetSplits, TensorSplit

HALF = (0.5, 0.5, 0.5)
NAMES = ["red", "green", "blue", "yellow"]
COLOURS = torch.tensor([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40]], dtype=torch.uint8)


def squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 classes: a 12x12 square of the class's colour at a random place in a noisy 32x32 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randint(0, 100, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    corners = torch.randint(0, 20, (n, 2), generator=g)
    for i, c in enumerate(y.tolist()):
        r, col = corners[i].tolist()
        x[i, :, r:r + 12, col:col + 12] = COLOURS[c].view(3, 1, 1)
    return x, y


def squares_splits(n_train: int, n_test: int, device: str = "cpu") -> DatasetSplits:
    """Train and test splits of the squares problem (different seeds), held in memory on `device`."""
    (xtr, ytr), (xte, yte) = squares(n_train, 0), squares(n_test, 1)

    def split(x: torch.Tensor, y: torch.Tensor) -> TensorSplit:
        return TensorSplit(x.to(device), y.to(device), NAMES, HALF, HALF, device)

    return DatasetSplits(train=split(xtr, ytr), val=None, test=split(xte, yte), class_names=NAMES,
                         info={"name": "squares"})
