"""Attention snapshots during training: a fixed probe batch's maps at step 0 and every K steps, and their files."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..status import RunStatus
from .maps import AttentionMaps, compute_attention_maps, input_normalisation, save_npz, to_uint8_images

SNAPSHOT_DIR = "attention"  # snapshots live in <run_dir>/attention/
PROBE_FILE = "probe.npz"  # the probe images (uint8, de-normalised), written once at step 0
STEP_FILE = "step_{:07d}.npz"
_STEP_PATTERN = re.compile(r"^step_(\d+)\.npz$")


def choose_probe_images(images: Tensor, k: int, seed: int = 0) -> Tensor:
    """A fixed, seeded choice of `k` images (k, 3, H, W) from a tensor of images (N, 3, H, W)."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.randperm(images.shape[0], generator=gen)[: min(k, images.shape[0])]
    return images[index.to(images.device)].clone()


def snapshot_dir(run_dir: str | Path) -> Path:
    """Where a run's snapshots are: `<run_dir>/attention/` (a path to that folder itself is accepted too)."""
    run_dir = Path(run_dir)
    sub = run_dir / SNAPSHOT_DIR
    if sub.is_dir() or not any(_STEP_PATTERN.match(p.name) for p in run_dir.glob("step_*.npz")):
        return sub
    return run_dir


class AttentionSnapshots:
    """Trainer callback: attention maps of a fixed probe batch at step 0 and every `every` steps.

    Files: `<out_dir>/attention/probe.npz` (the probe images, uint8) and `step_0000000.npz`, ... (float16
    maps, see `AttentionMaps.save`). Recording uses eval mode under inference_mode and restores the mode.

    Args:
        out_dir: The run directory.
        every: Record when `step % every == 0` (steps count from 1); step 0 is recorded by `on_train_start`.
        probe_images: Normalised probe images (k, 3, H, W), e.g. from `choose_probe_images`.
    """

    def __init__(self, out_dir: Path, every: int, probe_images: Tensor, probe_labels: Tensor | None = None) -> None:
        if every < 1:
            raise ValueError(f"every: must be >= 1, got {every}")
        self.dir = Path(out_dir) / SNAPSHOT_DIR
        self.every = every
        self.probe_images = probe_images.detach()
        self.probe_labels = probe_labels  # (k,) their classes, stored beside the images for the attention page
        self.last_step: int | None = None
        self.bytes_written = 0

    def on_train_start(self, model: nn.Module) -> None:
        """Write the probe images and record step 0 (before any training)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        norm = input_normalisation(model)
        if norm is not None:
            images = to_uint8_images(self.probe_images, *norm)  # (k, H, W, 3)
            arrays = {"images": images}
            if self.probe_labels is not None:
                arrays["labels"] = self.probe_labels.detach().cpu().numpy().astype(np.int64)
            self.bytes_written += save_npz(self.dir / PROBE_FILE, arrays)
        self.record(model, 0)

    def on_step_end(self, model: nn.Module, step: int) -> None:
        """Record when `step % every == 0`."""
        if step % self.every == 0:
            self.record(model, step)

    def on_train_end(self, model: nn.Module, step: int) -> None:
        """Optional: record the final step too, if it is not a multiple of `every`."""
        if step != self.last_step:
            self.record(model, step)

    def record(self, model: nn.Module, step: int) -> None:
        """Compute the probe batch's maps and write `step_{step:07d}.npz`."""
        maps = compute_attention_maps(model, self.probe_images, with_images=False)
        self.bytes_written += replace(maps, step=step).save(self.dir / STEP_FILE.format(step))
        self.last_step = step


def list_snapshots(run_dir: str | Path) -> list[int]:
    """The recorded steps of a run, ascending (empty when there are none)."""
    folder = snapshot_dir(run_dir)
    if not folder.is_dir():
        return []
    steps = (_STEP_PATTERN.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in steps if m)


def load_snapshot(run_dir: str | Path, step: int) -> AttentionMaps:
    """The maps recorded at `step`, with the probe images attached when they were stored."""
    folder = snapshot_dir(run_dir)
    path = folder / STEP_FILE.format(step)
    if not path.exists():
        raise FileNotFoundError(f"no attention snapshot for step {step} in {folder}; recorded steps: "
                                f"{list_snapshots(run_dir)}")
    maps = AttentionMaps.load(path)
    if maps.images is None and (folder / PROBE_FILE).exists():
        with np.load(folder / PROBE_FILE, allow_pickle=False) as data:
            maps.images = data["images"]
            maps.labels = data["labels"] if "labels" in data.files else None
    return maps


class TrainerSnapshots:
    """Trainer callback recording `train.attention_every` snapshots of a fixed probe batch of the test split.

    Adapts `AttentionSnapshots` (which takes the model) to the Trainer's events; files go to
    `<run_dir>/attention/` where the attention page finds them.
    """

    def __init__(self, run_dir: Path, every: int, probe_images: int) -> None:
        self.run_dir, self.every, self.k = Path(run_dir), every, probe_images
        self.snapshots: Any = None

    def on_train_start(self, trainer: Any) -> None:
        """Pick the probe images (seeded, from the first test batch; the validation split's in a run that does not
        read the test split, `train.evaluate_test: false`) and record step 0."""
        data = trainer.data
        split = data.test if data.test is not None else (data.val if data.val is not None else data.train)
        x, y = next(split.batches(max(64, self.k)))  # (B, 3, S, S) normalised, on the device
        probe = choose_probe_images(x, self.k, seed=trainer.config.data.seed)
        labels = choose_probe_images(y, self.k, seed=trainer.config.data.seed)  # (k,) the same seeded choice
        self.snapshots = AttentionSnapshots(self.run_dir, self.every, probe, labels)
        if trainer.step == 0:
            self.snapshots.on_train_start(trainer.model)  # the probe images and step 0
        else:  # a resumed run: its probe images are stored already; record where it resumes
            self.snapshots.record(trainer.model, trainer.step)

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        """Record every `every` steps."""
        if self.snapshots is not None:
            self.snapshots.on_step_end(trainer.model, step)

    def on_eval_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        """Nothing to do."""

    def on_train_end(self, trainer: Any, result: Any) -> None:
        """Record the last step too (completed or stopped runs)."""
        if self.snapshots is not None and result.status in (RunStatus.COMPLETED, RunStatus.STOPPED) and trainer.step:
            self.snapshots.on_train_end(trainer.model, trainer.step)


__all__ = ["PROBE_FILE", "SNAPSHOT_DIR", "STEP_FILE", "AttentionSnapshots", "TrainerSnapshots", "choose_probe_images",
           "list_snapshots", "load_snapshot", "snapshot_dir"]
