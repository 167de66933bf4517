"""The field's benchmark layouts: VTAB-1k suites (`vtab1k:`), VPT's FGVC JSON splits (`fgvc:`), the few-shot lists."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import MAX_LISTED, DatasetError, FileSource
from .readers import Pool, RawDataset, data_dir, dataset_folder, missing_files_error, read_label_list, read_vtab_task

# VTAB-1k (Zhai et al., 2019) in NOAH's layout: task folder -> classes (as the GIST release's train_vtab.sh gives
# --num-classes), grouped as the paper's tables are (natural, specialized, structured).
VTAB1K_TASKS: dict[str, int] = {
    "caltech101": 102, "cifar": 100, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37, "svhn": 10,
    "sun397": 397,
    "patch_camelyon": 2, "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5,
    "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4, "dsprites_loc": 16, "dsprites_ori": 16,
    "smallnorb_azi": 18, "smallnorb_ele": 9,
}
VTAB1K_GROUPS: dict[str, tuple[str, ...]] = {
    "natural": ("caltech101", "cifar", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": ("clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori", "smallnorb_azi",
                   "smallnorb_ele"),
}
VTAB1K_LISTS = ("train800.txt", "val200.txt", "train800val200.txt", "test.txt")


@dataclass(frozen=True)
class BenchmarkSet:
    """One dataset of the FGVC or few-shot benchmark: its name, classes and where its images lie."""

    title: str
    classes: int
    images: tuple[str, ...]  # image folders the listed paths may be relative to, tried in this order


# VPT's FGVC (Jia et al., 2022): folder name (normalised: lower case, letters and digits) -> the dataset. The
# image folders are those of VPT's src/data/datasets/json_dataset.py (CUB and NABirds `images/`, Dogs `Images/`,
# Flowers and Cars the dataset folder itself).
FGVC_SETS: dict[str, BenchmarkSet] = {
    "cub2002011": BenchmarkSet("CUB-200-2011", 200, ("images",)),
    "cub": BenchmarkSet("CUB-200-2011", 200, ("images",)),
    "nabirds": BenchmarkSet("NABirds", 555, ("images",)),
    "oxfordflower": BenchmarkSet("Oxford Flowers", 102, ("",)),
    "oxfordflowers": BenchmarkSet("Oxford Flowers", 102, ("",)),
    "stanforddogs": BenchmarkSet("Stanford Dogs", 120, ("Images",)),
    "stanfordcars": BenchmarkSet("Stanford Cars", 196, ("",)),
}
FGVC_SPLITS = ("train.json", "val.json", "test.json")
FGVC_IMAGE_DIRS = ("images", "Images", "")  # tried for a folder of another name

# The few-shot lists of NOAH (and CoOp): folder name (normalised) -> the dataset; images under `images/` (NOAH's
# loader), `data/images/` or the folder itself (Stanford Cars).
FEWSHOT_SETS: dict[str, BenchmarkSet] = {
    "fgvcaircraft": BenchmarkSet("FGVC-Aircraft", 100, ("images", "data/images", "")),
    "food101": BenchmarkSet("Food-101", 101, ("images", "data/images", "")),
    "oxfordflowers102": BenchmarkSet("Oxford Flowers-102", 102, ("images", "data/images", "")),
    "oxfordflowers": BenchmarkSet("Oxford Flowers-102", 102, ("images", "data/images", "")),
    "oxfordpets": BenchmarkSet("Oxford-IIIT Pets", 37, ("images", "data/images", "")),
    "stanfordcars": BenchmarkSet("Stanford Cars", 196, ("", "images", "data/images")),
}
FEWSHOT_SHOTS = (1, 2, 4, 8, 16)
FEWSHOT_SEEDS = (0, 1, 2)
FEWSHOT_LIST = re.compile(r"^train_meta\.list\.num_shot_(\d+)\.seed_(\d+)$")
FEWSHOT_FILES = ("val_meta.list", "test_meta.list")
FEWSHOT_IMAGE_DIRS = ("images", "data/images", "")

# Where `data import` installs each benchmark under the data directory (`vtab1k:<task>` reads from there).
BENCHMARK_DIRS: dict[str, str] = {"vtab1k": "vtab-1k", "fgvc": "fgvc", "fewshot": "few-shot"}


def normalised(name: str) -> str:
    """A dataset folder's name as the tables key it: lower case, letters and digits only (`Food-101` -> food101)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def benchmark_folder(kind: str, arg: str | None) -> Path:
    """The folder of `kind:<arg>`: a bare name (no `/`) is one installed by `data import` under
    `data_dir()/BENCHMARK_DIRS[kind]`, anything else a path.

    Raises:
        DatasetError: when the folder is missing (naming where bare names are looked for).
    """
    if arg and "/" not in arg and "\\" not in arg and not arg.startswith(("~", ".")):
        installed = data_dir() / BENCHMARK_DIRS[kind] / arg
        if not installed.is_dir():
            raise DatasetError(f"{kind}: {arg!r} is not installed in {installed.parent}; import it with `python -m "
                               f"gist_engine data import {kind} <zip or folder>`, or give its folder, e.g. "
                               f"{kind}:/data/{BENCHMARK_DIRS[kind]}/{arg}")
        return installed
    return dataset_folder(arg, kind)


# ----------------------------------------------------------------------------------------------------
# VTAB-1k

def read_vtab1k_task(root: Path, task: str | None = None) -> RawDataset:
    """One VTAB-1k task folder, by name: all four list files required, labels checked against the task's classes.

    Args:
        root: The task folder (`<suite>/<task>`).
        task: Its task name (default: the folder's name).

    Raises:
        DatasetError: an unknown task name, a missing list file, a label out of range or a listed image missing
            (naming the task and the file).
    """
    task = task or root.name
    if task not in VTAB1K_TASKS:
        raise DatasetError(f"vtab1k: {task!r} ({root}) is not a VTAB-1k task; the 19 tasks are "
                           f"{', '.join(VTAB1K_TASKS)} (a folder of VTAB list files by another name: vtab:<dir>)")
    return read_vtab_task(root, f"vtab1k {task}", VTAB1K_TASKS[task], required=VTAB1K_LISTS)


def read_vtab1k(arg: str | None) -> RawDataset:
    """`vtab1k:<root>/<task>` or `vtab1k:<task>` (a suite installed under the data directory): one of the 19
    VTAB-1k tasks in NOAH's layout (the GIST release, SSF, PETL_Vision and V-PETL Bench read it).

    val_size = 0: train800val200.txt -> test.txt (the final protocol); val_size > 0: train800.txt -> val200.txt
    (the tuning protocol; val_size images drawn from val200, all of them at 200 or more).
    """
    return read_vtab1k_task(benchmark_folder("vtab1k", arg))


# ----------------------------------------------------------------------------------------------------
# FGVC (VPT's JSON splits)

def _json_split(path: Path, kind: str) -> dict[str, int]:
    """One VPT split file: {image path: class id}."""
    if not path.is_file():
        raise DatasetError(f"{kind}: {path.parent} has no {path.name} (an FGVC folder has {', '.join(FGVC_SPLITS)})")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{kind}: {path} is not readable JSON ({exc})") from None
    if not isinstance(entries, dict) or not entries:
        raise DatasetError(f"{kind}: {path} must map image paths to class ids, e.g. "
                           '{"001.Black_footed_Albatross/x.jpg": 1}')
    for name, label in entries.items():
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise DatasetError(f"{kind}: {path}: entry {name!r} has class id {label!r}; ids are whole numbers >= 0")
    return entries


def _image_dir(root: Path, first: str, candidates: tuple[str, ...], kind: str, source: Path) -> Path:
    """The first candidate folder under `root` in which the listed file `first` exists."""
    for sub in candidates:
        if (root / sub / first).is_file():
            return root / sub if sub else root
    tried = ", ".join(str(root / sub) if sub else str(root) for sub in candidates)
    raise DatasetError(f"{kind}: the first image of {source} ({first!r}) is in none of {tried}")


def _checked_paths(names: list[str], image_root: Path, root: Path, kind: str, source: Path) -> list[Path]:
    """The files `names` under `image_root`, each inside `root` and present (else the first few are named)."""
    real_root = root.resolve()
    paths, missing = [], []
    for name in names:
        path = image_root / name
        if not path.resolve().is_relative_to(real_root):
            raise DatasetError(f"{kind}: {source}: {name!r} lies outside {root}; splits name images inside the "
                               "dataset folder")
        if not path.is_file():
            missing.append(name)
        paths.append(path)
    if missing:
        raise missing_files_error(kind, source, missing)
    return paths


def read_fgvc_folder(root: Path) -> RawDataset:
    """One FGVC dataset folder with VPT's `train.json`, `val.json`, `test.json` ({image path: class id}).

    Class ids are mapped to 0..K-1 in sorted order (as VPT's JSONDataset does); a known dataset (CUB-200-2011,
    NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars) must have its number of classes.
    val_size = 0: train + val -> test (the final protocol); val_size > 0: train -> val (tuning).

    Raises:
        DatasetError: a missing or malformed split file, a class of val/test not in train, a wrong class count, a
            listed image missing or outside the folder.
    """
    known = FGVC_SETS.get(normalised(root.name))
    kind = f"fgvc {root.name}"
    splits = {name: _json_split(root / name, kind) for name in FGVC_SPLITS}
    first = next(iter(splits["train.json"]))
    image_root = _image_dir(root, first, known.images if known else FGVC_IMAGE_DIRS, kind, root / "train.json")
    ids = sorted(set(splits["train.json"].values()))
    if known and len(ids) != known.classes:
        raise DatasetError(f"{kind}: train.json names {len(ids)} classes; {known.title} has {known.classes}")
    index = {c: i for i, c in enumerate(ids)}
    pools = {}
    for name, entries in splits.items():
        unknown = sorted({c for c in entries.values() if c not in index})
        if unknown:
            raise DatasetError(f"{kind}: {root / name} has class id(s) {unknown[:MAX_LISTED]} that train.json "
                               "does not have")
        paths = _checked_paths(list(entries), image_root, root, kind, root / name)
        pools[name] = Pool.whole(FileSource(paths), np.array([index[c] for c in entries.values()], dtype=np.int64))
    train, val = pools["train.json"], pools["val.json"]
    both = Pool.whole(FileSource(train.source.paths + val.source.paths), np.concatenate([train.labels, val.labels]))
    return RawDataset([str(c) for c in ids], both, pools["test.json"], val=val, train_beside_val=train,
                      where=str(root), val_note="val drawn from val.json, train from train.json")


def read_fgvc(arg: str | None) -> RawDataset:
    """`fgvc:<dir>` (or `fgvc:<name>` installed under the data directory): VPT's FGVC JSON splits."""
    return read_fgvc_folder(benchmark_folder("fgvc", arg))


# ----------------------------------------------------------------------------------------------------
# Few-shot (NOAH's lists)

def fewshot_lists(root: Path) -> dict[tuple[int, int], Path]:
    """The standard train lists present in `<root>/annotations`: (shots, seed) -> file."""
    found = {}
    folder = root / "annotations"
    if folder.is_dir():
        for entry in folder.iterdir():
            match = FEWSHOT_LIST.match(entry.name)
            if match and entry.is_file():
                found[(int(match[1]), int(match[2]))] = entry
    return dict(sorted(found.items()))


def read_fewshot_folder(root: Path) -> RawDataset:
    """One few-shot dataset folder: `annotations/train_meta.list.num_shot_{1,2,4,8,16}.seed_{0,1,2}`,
    `val_meta.list`, `test_meta.list` of `path label` lines.

    The train list is chosen when the data is split, by `data.few_shot` (shots) and `data.seed`
    (`RawDataset.train_lists`); `train` here is the first list present (previews). val_size = 0: the list -> test;
    val_size > 0: the list -> val_meta.list.

    Raises:
        DatasetError: no train list or no test list, a label out of range, a listed image missing.
    """
    kind = f"fewshot {root.name}"
    known = FEWSHOT_SETS.get(normalised(root.name))
    lists = fewshot_lists(root)
    test_file = root / "annotations" / "test_meta.list"
    if not lists or not test_file.is_file():
        raise DatasetError(f"{kind}: {root}/annotations needs test_meta.list and the train lists "
                           "train_meta.list.num_shot_<k>.seed_<s> (k in 1, 2, 4, 8, 16; s in 0, 1, 2)")
    first_line = next((line for line in test_file.read_text(encoding="utf-8").splitlines() if line.strip()), "")
    first = first_line.strip().rsplit(None, 1)[0] if first_line.strip() else ""
    image_root = _image_dir(root, first, known.images if known else FEWSHOT_IMAGE_DIRS, kind, test_file)
    classes = known.classes if known else None

    def read(path: Path) -> Pool:
        paths, labels = read_label_list(path, image_root, kind, classes, inside=root)
        return Pool.whole(FileSource(paths), labels)

    test = read(test_file)
    num_classes = classes or 1 + int(test.labels.max())
    val_file = root / "annotations" / "val_meta.list"
    val = read(val_file) if val_file.is_file() else None
    readers = {key: (lambda path=path: read(path)) for key, path in lists.items()}
    return RawDataset([str(i) for i in range(num_classes)], readers[next(iter(readers))](), test, val=val,
                      where=str(root), val_note="val drawn from annotations/val_meta.list", train_lists=readers)


def read_fewshot(arg: str | None) -> RawDataset:
    """`fewshot:<dir>` (or `fewshot:<name>` installed under the data directory): a few-shot dataset with the
    standard lists chosen by `data.few_shot` and `data.seed`."""
    return read_fewshot_folder(benchmark_folder("fewshot", arg))


def standard_list(raw: RawDataset, few_shot: int | None, seed: int) -> Pool:
    """The train pool of the standard list for `few_shot` shots and `seed` (RawDataset.train_lists).

    Raises:
        DatasetError: when few_shot is unset or that list is not there, naming the lists available.
    """
    available = ", ".join(f"few_shot={k} seed={s}" for k, s in raw.train_lists)
    if few_shot is None or (few_shot, seed) not in raw.train_lists:
        got = "data.few_shot is not set" if few_shot is None else f"there is no list for few_shot={few_shot} " \
                                                                  f"seed={seed}"
        raise DatasetError(f"fewshot {raw.where}: {got}; the published numbers use the standard lists, and these "
                           f"are available: {available} (set data.few_shot and data.seed to one of them)")
    return raw.train_lists[(few_shot, seed)]()


__all__ = ["BENCHMARK_DIRS", "FEWSHOT_SETS", "FGVC_SETS", "VTAB1K_GROUPS", "VTAB1K_TASKS", "benchmark_folder",
           "read_fewshot", "read_fgvc", "read_vtab1k", "standard_list"]
