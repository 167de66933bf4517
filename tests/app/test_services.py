"""Tests for app/services.py, what the pages ask of the engine (tiny ViT, digits; no UI), and its data files."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import services
import yaml
from PIL import Image

import gist_engine as ge

ROOT = Path(__file__).resolve().parents[2]
TINY = {"backbone": "test_vit", "image_size": 32, "method": "linear", "data": {"dataset": "digits"},
        "train": {"epochs": 1, "batch_size": 16}}
DEMO = "CPU demo (DINOv2-S, MNIST, minutes)"
SMOKE = "Smoke test (tiny random ViT, seconds)"
LONGER = "CPU demo over 4 epochs (for plain vs GIST, 3 seeds: ~50 min)"


def test_demo_config_matches_the_shipped_yaml() -> None:
    shipped = yaml.safe_load((ROOT / "assets" / "configs" / "demo_cpu.yaml").read_text())
    demo = ge.load_run_config(services.demo_config())
    demo.train.attention_every = 0  # the app also records attention snapshots
    assert ge.load_run_config(shipped) == demo
    for preset in services.load_presets().values():
        ge.load_run_config(preset)


def _copy_assets(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "assets" / "configs", tmp_path / "configs")
    shutil.copy(ROOT / "assets" / "presets.yaml", tmp_path / "presets.yaml")
    return tmp_path / "presets.yaml"


def test_presets_are_read_from_the_yaml_files(tmp_path: Path) -> None:
    presets = services.load_presets()
    assert list(presets) == [DEMO, SMOKE, LONGER] and services.demo_config() == presets[DEMO]
    assert presets[SMOKE]["backbone"] == "test_vit" and presets[SMOKE]["train"]["epochs"] == 20
    index = _copy_assets(tmp_path)
    demo_file = tmp_path / "configs" / "demo_cpu.yaml"
    demo_file.write_text(demo_file.read_text().replace("lr: 0.005", "lr: 0.02"))
    changed = services.load_presets(index)
    assert changed[DEMO]["train"]["lr"] == 0.02 and presets[DEMO]["train"]["lr"] == 0.005
    assert changed[DEMO]["train"]["attention_every"] == 8  # the index's override on top of the file
    index.write_text(index.read_text().replace("attention_every: 8", "attention_every: 5"))
    assert services.load_presets(index)[DEMO]["train"]["attention_every"] == 5


def test_bad_presets_are_named(tmp_path: Path) -> None:
    index = _copy_assets(tmp_path)
    text = index.read_text()
    index.write_text(text.replace("    config: configs/smoke_digits.yaml", "    config: configs/smoke_digits.yaml\n"
                                  "    colour: red"))
    with pytest.raises(ValueError, match=r"presets\[1\]: unknown key\(s\) colour"):
        services.load_presets(index)
    index.write_text(text.replace("attention_every: 8", "attention_evry: 8"))
    with pytest.raises(ge.ConfigError, match=r"preset 'CPU demo .*demo_cpu\.yaml.*attention_evry"):
        services.load_presets(index)
    index.write_text(text)
    demo_file = tmp_path / "configs" / "demo_cpu.yaml"
    demo_file.write_text(demo_file.read_text().replace("temperature: 3.0", "temperature: -1.0"))
    with pytest.raises(ge.ConfigError, match=r"demo_cpu\.yaml.*temperature"):
        services.load_presets(index)


PUBLISHED_VTAB1K = (  # the values as first published in the app, (method, mean of 19 tasks, mean of group means)
    ("Full fine-tuning", 65.57, 68.97), ("Linear probe", 52.94, 57.64), ("VPT-Deep", 69.43, 71.97),
    ("BitFit", 62.05, 65.22), ("Adapter", 71.44, 73.86), ("LoRA", 72.25, 74.60), ("AdaptFormer", 72.32, 74.75),
    ("SSF", 73.10, 75.69), ("NOAH", 73.25, 75.48), ("FacT", 73.23, 75.55),
)


def test_published_numbers_load_from_the_data_file(tmp_path: Path) -> None:
    ref = services.load_published()
    assert [(r["method"], r["mean_of_tasks"], r["mean_of_group_means"]) for r in ref["rows"]] == list(PUBLISHED_VTAB1K)
    assert "NOAH table / V-PETL Bench compilation" in ref["source"] and "not measured" in ref["source"]
    assert "+2.25 points" in ref["claim"] and "+0.8K" in ref["claim"]
    assert list(ref["columns"].values()) == ["method (published)", "mean of 19 tasks %", "mean of group means %"]
    copy = tmp_path / "vtab1k.yaml"
    copy.write_text(services.PUBLISHED_FILE.read_text().replace("mean_of_tasks: 72.25", "mean_of_tasks: 72.5"))
    assert next(r for r in services.load_published(copy)["rows"] if r["method"] == "LoRA")["mean_of_tasks"] == 72.5
    copy.write_text(services.PUBLISHED_FILE.read_text().replace("mean_of_tasks: 72.25, ", ""))
    with pytest.raises(ValueError, match=r"rows\[5\]"):
        services.load_published(copy)
    # what the GIST authors published, as theirs: the paper's headline and the one per-task figure known
    paper = ref["gist_authors"]
    assert "GIST authors" in paper["source"] and "arXiv 2312.07255" in paper["source"]
    assert "not measured" in paper["source"]
    numbers = {r["result"]: r["number"] for r in paper["rows"]}
    assert numbers["Adapter inside GIST minus Adapter: mean VTAB-1k accuracy, ViT-B/16 (ImageNet-21k)"].startswith(
        "+2.25 points, for +0.8K parameters")
    assert [numbers[f"Diabetic Retinopathy (VTAB-1k): {m}"] for m in ("linear probe", "Adapter",
                                                                       "Adapter inside GIST")] == [
        "74.0 %", "75.6 %", "77.4 %"]
    assert all("not a paper table" in r["where"] for r in paper["rows"][1:])
    copy.write_text(services.PUBLISHED_FILE.read_text().replace('number: "74.0 %",', ""))
    with pytest.raises(ValueError, match=r"gist_authors\.rows\[1\]"):
        services.load_published(copy)


def test_yaml_and_cli_line_reproduce_the_config(tmp_path: Path) -> None:
    text = services.config_yaml({**TINY, "name": "x"})
    assert ge.load_run_config(yaml.safe_load(text)) == ge.load_run_config({**TINY, "name": "x"})
    line = services.cli_command({**TINY, "name": "x"}, "x.yaml")
    assert line == "python -m gist_engine train --config x.yaml --out runs/x"
    assert "compare --config x.yaml --seeds 3" in services.cli_command(TINY, "x.yaml", group_seeds=3)


def test_catalogue_sections_and_image_backbones() -> None:
    cat = services.catalogue()
    assert {"gist", "data", "train", "model"} <= set(cat["sections"])
    assert "temperature" in [f["name"] for f in cat["sections"]["gist"]]
    assert "dinov2_s14" in cat["image_backbones"] and all(b["patch_size"] for b in cat["image_backbones"].values())


def test_describe_and_estimate() -> None:
    info = services.describe_config(TINY)
    assert info["gist_params"] == 32 and info["num_classes"] == 10
    assert info["trainable_params"] - info["plain_trainable_params"] == 32
    assert [k for k, _ in info["sequence_layout"]] == ["CLS", "Gist", "patches"]
    est = services.estimate_run(TINY)
    assert est["seconds"] > 0 and est["steps"] == 90  # 1437 training digits / 16 per step


def test_models_are_cached_per_model_config() -> None:
    model = services.model_for_config(TINY)
    assert services.model_for_config({**TINY, "train": {"epochs": 3, "batch_size": 8}}) is model  # same model
    assert services.model_for_config({**TINY, "method": "bitfit"}) is not model


def test_dataset_preview_samples_and_uploads(tmp_path: Path) -> None:
    preview = services.dataset_preview("digits", per_class=2, size=16)
    assert len(preview["class_names"]) == 10 and preview["total"] == 1797
    assert preview["thumbnails"]["3"].shape == (2, 16, 16, 3)
    sample = ge.dataset_samples("digits", n=4, size=32)
    assert sample["images"].shape == (4, 32, 32, 3) and len(sample["labels"]) == 4
    names = [d["dataset"] for d in services.list_datasets(tmp_path)]
    assert "mnist5k" in names and not any(n.startswith(("imagefolder", "bbc")) for n in names)


def test_decode_image_caps_and_rejects() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buf, "PNG")
    assert ge.decode_image(buf.getvalue()).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="cap"):
        ge.decode_image(buf.getvalue(), max_pixels=100)
    with pytest.raises(ValueError, match="not an image"):
        ge.decode_image(b"hello")


def test_attention_and_attributions_for_an_untrained_config() -> None:
    image = np.random.default_rng(0).integers(0, 255, (50, 40, 3), dtype=np.uint8)
    maps = services.attention_for(TINY, image)
    assert maps.has_gist and maps.images.shape == (1, 32, 32, 3) and maps.cls_maps.shape[-2:] == (4, 4)
    attr, resized = services.attributions_for(TINY, image, n_steps=4)
    assert attr.cls_grid.shape == (1, 4, 4) and attr.gist_grid is not None and resized.shape == (32, 32, 3)
    assert services.overlay(resized, attr.cls_grid[0]).shape == (32, 32, 3)


def test_any_runs_pair_by_config_and_seed() -> None:
    def snap(run_id: str, seed: int, gist: bool, acc: float, lr: float = 1e-3) -> SimpleNamespace:
        cfg = {"train": {"seed": seed, "lr": lr}, "gist": {"enabled": gist}, "name": run_id}
        return SimpleNamespace(id=run_id, config=cfg, seed=seed, gist_enabled=gist, acc_cls=acc, best_acc_cls=acc,
                               status="completed", trainable_params=100 + 32 * gist, last_eval=None)

    out = ge.paired_result([snap("a", 0, False, 0.5), snap("b", 0, True, 0.6), snap("c", 1, False, 0.5),
                            snap("d", 1, True, 0.7), snap("e", 0, True, 0.9, lr=1.0)])
    assert out.delta("acc_cls")["n"] == 2 and out.delta("acc_cls")["mean"] == pytest.approx(0.15)
    assert out.extra_params == 32 and [r.id for r in out.unpaired] == ["e"]


def test_run_manager_records_attention_snapshots(tmp_path: Path) -> None:
    mgr = services.open_run_manager(tmp_path, torch_threads=0)
    try:
        run_id = mgr.submit({**TINY, "data": {"dataset": "digits", "train_size": 64, "test_size": 20},
                             "train": {"epochs": 1, "batch_size": 16, "attention_every": 2, "probe_images": 2}})
        snap = mgr.wait(run_id, timeout=120)
    finally:
        mgr.shutdown(timeout=30)
    assert snap.status == "completed", snap.error
    assert ge.list_snapshots(snap.run_dir) == [0, 2, 4]
    maps = ge.load_snapshot(snap.run_dir, 4)
    assert maps.images.shape == (2, 32, 32, 3) and maps.step == 4
    assert services.model_for_run(snap.run_dir).num_classes == 10
