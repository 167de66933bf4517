"""The benchmark layouts (vtab1k:, fgvc:, fewshot:): counts, the protocol switch, class counts, lists, refusals."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets

from gist_engine import train
from gist_engine.config import DataConfig, load_run_config
from gist_engine.config.recipes import RECIPES
from gist_engine.data import DatasetError, NetworkNeededError, load_dataset
from gist_engine.data.benchmarks import VTAB1K_GROUPS, VTAB1K_TASKS
from gist_engine.data.registry import split_sizes

from .benchmark_files import fewshot_set, fgvc_set, png, vtab_task

HALF = (0.5, 0.5, 0.5)


def load(dataset: str, **kwargs):
    return load_dataset(DataConfig(dataset=dataset, **kwargs), 8, HALF, HALF)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A VTAB-1k suite of two tasks: kitti (4 classes) and patch_camelyon (2)."""
    vtab_task(tmp_path / "vtab-1k", "kitti", 4)
    vtab_task(tmp_path / "vtab-1k", "patch_camelyon", 2)
    return tmp_path / "vtab-1k"


def test_the_19_tasks_and_their_class_counts_match_the_recipes() -> None:
    assert len(VTAB1K_TASKS) == 19 and sum(len(g) for g in VTAB1K_GROUPS.values()) == 19
    for task, classes in VTAB1K_TASKS.items():
        assert RECIPES[f"vtab1k/{task}"]["num_classes"] == classes


def test_vtab1k_counts_and_the_protocol_switch(suite: Path) -> None:
    final = load(f"vtab1k:{suite}/kitti")
    assert (len(final.train), final.val, len(final.test)) == (4 * 3, None, 4 * 2)  # train800val200 -> test
    assert final.class_names == ["0", "1", "2", "3"]
    tuning = load(f"vtab1k:{suite}/kitti", val_size=200)  # train800 -> all of val200
    assert (len(tuning.train), len(tuning.val), len(tuning.test)) == (4 * 2, 4, 4 * 2)
    assert "val drawn from val200.txt" in tuning.info["split"]
    assert split_sizes(DataConfig(dataset=f"vtab1k:{suite}/kitti", val_size=200))["train"] == 8


def test_vtab1k_reads_an_installed_suite_by_task_name(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIST_DATA_DIR", str(suite.parent))
    assert len(load("vtab1k:patch_camelyon").train) == 2 * 3
    with pytest.raises(DatasetError, match=r"'dtd' is not installed in .*data import vtab1k"):
        load("vtab1k:dtd")


def test_vtab1k_refusals_name_task_and_file(suite: Path) -> None:
    kitti = suite / "kitti"
    (kitti / "test.txt").write_text((kitti / "test.txt").read_text() + "images/test/0_0.png 4\n")
    with pytest.raises(DatasetError, match=r"vtab1k kitti: .*test.txt line 9: label 4 is out of range .*4 classes"):
        load(f"vtab1k:{kitti}")
    vtab_task(suite, "kitti", 5)  # a folder with more classes than the task has: refused the same way
    with pytest.raises(DatasetError, match=r"label 4 is out of range"):
        load(f"vtab1k:{kitti}")
    vtab_task(suite, "kitti", 4)
    for i in range(7):
        (kitti / "images" / "test" / f"{i % 4}_{i // 4}.png").unlink()
    with pytest.raises(DatasetError, match=r"vtab1k kitti: .*test.txt names 7 missing image file\(s\) \(first 5 "
                                           r"listed\): images/test/0_0.png \(line 1\)"):
        load(f"vtab1k:{kitti}")
    (suite / "patch_camelyon" / "val200.txt").unlink()
    with pytest.raises(DatasetError, match=r"vtab1k patch_camelyon: .* has no val200.txt"):
        load(f"vtab1k:{suite}/patch_camelyon")
    (suite / "kitti").rename(suite / "kitty")
    with pytest.raises(DatasetError, match=r"'kitty' .* is not a VTAB-1k task; the 19 tasks are caltech101"):
        load(f"vtab1k:{suite}/kitty")


def test_vtab1k_lines_escaping_the_folder_are_refused_crlf_and_spaces_accepted(suite: Path) -> None:
    camelyon = suite / "patch_camelyon"
    rows = (camelyon / "test.txt").read_text().splitlines()
    (camelyon / "test.txt").write_text("\r\n".join(f"{r}   " for r in rows) + "\r\n\r\n")  # Windows, trailing spaces
    assert len(load(f"vtab1k:{camelyon}").test) == len(rows)
    (suite / "outside.png").write_bytes((camelyon / "images/test/0_0.png").read_bytes())
    (camelyon / "test.txt").write_text("\n".join([*rows, "../outside.png 0"]))
    with pytest.raises(DatasetError, match=r"test.txt line 5: '../outside.png' lies outside"):
        load(f"vtab1k:{camelyon}")


def test_vtab_keeps_working(suite: Path) -> None:
    raw = load(f"vtab:{suite}/kitti")
    assert (len(raw.train), len(raw.test)) == (12, 8)


def test_a_benchmark_dataset_brings_its_recipe_values_unless_set(suite: Path) -> None:
    cfg = load_run_config({"data": {"dataset": f"vtab1k:{suite}/kitti"}})
    assert (cfg.num_classes, cfg.drop_path_rate, cfg.train.lr, cfg.train.weight_decay) == (4, 0.0, 1e-2, 5e-5)
    assert (cfg.backbone, cfg.image_size, cfg.train.epochs, cfg.train.precision) == ("dinov2_s14", 0, 1, "auto")
    own = load_run_config({"data": {"dataset": "vtab1k:eurosat"}, "train": {"lr": 0.1}, "drop_path_rate": 0.05})
    assert (own.train.lr, own.drop_path_rate, own.train.weight_decay, own.num_classes) == (0.1, 0.05, 5e-2, 10)
    named = load_run_config({"data": {"dataset": "vtab1k:eurosat"}, "recipe": "vtab1k/dtd"})
    assert (named.num_classes, named.train.lr) == (47, 5e-3)  # a recipe the config names wins
    few = load_run_config({"data": {"dataset": "fewshot:/data/few-shot/Food-101"}})
    assert (few.num_classes, few.train.lr, few.train.weight_decay, few.drop_path_rate) == (101, 1e-3, 1e-3, 0.1)
    assert load_run_config({"data": {"dataset": "vtab:/x/kitti"}}).num_classes is None  # vtab: brings nothing
    assert load_run_config({"recipe": "fewshot/oxford-pets"}).gist.dropout == 0.9
    assert load_run_config({"gist": {"dropout": 0.98}}).gist.dropout == 0.98


def test_fgvc_splits_protocol_and_refusals(tmp_path: Path) -> None:
    root = fgvc_set(tmp_path, "birds", [1, 5, 9])  # ids mapped in sorted order, as VPT does
    final = load(f"fgvc:{root}")
    assert (len(final.train), final.val, len(final.test), final.class_names) == (9, None, 6, ["1", "5", "9"])
    tuning = load(f"fgvc:{root}", val_size=1000)
    assert (len(tuning.train), len(tuning.val)) == (6, 3) and "val.json" in tuning.info["split"]
    flowers = fgvc_set(tmp_path, "OxfordFlower", [0, 1, 2], images="")
    with pytest.raises(DatasetError, match=r"fgvc OxfordFlower: train.json names 3 classes; Oxford Flowers has 102"):
        load(f"fgvc:{flowers}")
    (root / "test.json").write_text('{"001.class/test_0.jpg": 7}')
    with pytest.raises(DatasetError, match=r"fgvc birds: .*test.json has class id\(s\) \[7\]"):
        load(f"fgvc:{root}")
    (root / "test.json").write_text('{"001.class/gone.jpg": 1}')
    with pytest.raises(DatasetError, match=r"test.json names 1 missing image file.*001.class/gone.jpg"):
        load(f"fgvc:{root}")
    (root / "val.json").unlink()
    with pytest.raises(DatasetError, match=r"fgvc birds: .* has no val.json"):
        load(f"fgvc:{root}")


def test_fewshot_chooses_the_standard_list_by_shots_and_seed(tmp_path: Path) -> None:
    root = fewshot_set(tmp_path, "oxford-pets", 3)
    one = load(f"fewshot:{root}", few_shot=1, seed=0)
    two = load(f"fewshot:{root}", few_shot=2, seed=0)
    other = load(f"fewshot:{root}", few_shot=1, seed=1)
    assert (len(one.train), len(two.train), len(other.train), len(one.test)) == (3, 6, 3, 3)
    assert len(one.class_names) == 37  # Oxford-IIIT Pets, whatever the lists name
    assert "standard few-shot list: 1 shots, seed 0" in one.info["split"]
    assert not np.array_equal(one.train.images.cpu().numpy(), other.train.images.cpu().numpy())  # another list
    assert len(load(f"fewshot:{root}", few_shot=2, seed=0, val_size=10).val) == 3  # the val list
    with pytest.raises(DatasetError, match=r"no list for few_shot=4 seed=0; .* available: few_shot=1 seed=0, "
                                           r"few_shot=1 seed=1, few_shot=2 seed=0"):
        load(f"fewshot:{root}", few_shot=4, seed=0)
    with pytest.raises(DatasetError, match=r"data.few_shot is not set"):
        load(f"fewshot:{root}")
    with pytest.raises(DatasetError, match=r"no list for few_shot=1 seed=2"):
        load(f"fewshot:{root}", few_shot=1, seed=2)
    (root / "annotations" / "test_meta.list").write_text("c0/4.png 40\n")
    with pytest.raises(DatasetError, match=r"fewshot oxford-pets: .*test_meta.list line 1: label 40 is out of range"):
        load(f"fewshot:{root}", few_shot=1, seed=0)


@pytest.mark.parametrize(("layout", "data", "steps", "classes"), [
    ("vtab1k", {"val_size": 0}, 3, 4),            # train800val200 (12) in batches of 4
    ("fgvc", {"val_size": 100}, 2, 3),            # train.json (6) -> val.json
    ("fewshot", {"few_shot": 2, "seed": 0}, 2, 37),  # the 2-shot list of oxford-pets (6), its 37-class head
])
def test_one_epoch_on_each_layout_with_the_tiny_model(tmp_path: Path, layout: str, data: dict, steps: int,
                                                      classes: int) -> None:
    folder = {"vtab1k": lambda: vtab_task(tmp_path, "kitti", 4), "fgvc": lambda: fgvc_set(tmp_path, "birds", [3, 4, 5]),
              "fewshot": lambda: fewshot_set(tmp_path, "oxford-pets", 3)}[layout]()
    result = train({"backbone": "test_vit", "pretrained": False, "data": {"dataset": f"{layout}:{folder}", **data},
                    "train": {"epochs": 1, "batch_size": 4, "device": "cpu"}})
    assert result.status == "completed" and result.steps == steps
    assert result.config["num_classes"] == classes
    assert 0.0 <= result.acc_cls <= 1.0
    if layout == "vtab1k":
        assert result.config["train"]["lr"] == 1e-2 and len(result.per_class) == 4  # the kitti recipe's values


class _Offline:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.mark.parametrize(("name", "cls"), [("fgvc_aircraft", "FGVCAircraft"), ("food101", "Food101")])
def test_the_few_shot_sets_online_fail_offline_like_the_others(name: str, cls: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets, cls, _Offline)
    with pytest.raises(NetworkNeededError, match=rf"{name}: torchvision could not download.*needs a network.*"
                                                 r"work offline: mnist5k"):
        load(name)


def test_fgvc_aircraft_reads_torchvisions_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeAircraft:  # FGVCAircraft's layout: _image_files, _labels, classes
        classes = ("707-320", "727-200", "737-200")

        def __init__(self, root: str, split: str, download: bool) -> None:
            n = 6 if split == "trainval" else 3
            self._image_files = [str(png(tmp_path / split / f"{i}.png", i)) for i in range(n)]
            self._labels = [i % 3 for i in range(n)]

    monkeypatch.setattr(torchvision.datasets, "FGVCAircraft", FakeAircraft)
    splits = load("fgvc_aircraft")
    assert (len(splits.train), len(splits.test), splits.class_names) == (6, 3, list(FakeAircraft.classes))
