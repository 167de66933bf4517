"""Tests for gist_engine.studio, the engine-side helpers of the app (tiny ViT, digits; no UI)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

import gist_engine as ge
from gist_engine import studio

ROOT = Path(__file__).resolve().parents[1]
TINY = {"backbone": "test_vit", "image_size": 32, "method": "linear", "data": {"dataset": "digits"},
        "train": {"epochs": 1, "batch_size": 16}}


def test_demo_config_matches_the_shipped_yaml() -> None:
    shipped = yaml.safe_load((ROOT / "assets" / "configs" / "demo_cpu.yaml").read_text())
    demo = ge.load_run_config(studio.DEMO_CONFIG)
    demo.train.attention_every = 0  # the app also records attention snapshots
    assert ge.load_run_config(shipped) == demo
    for preset in studio.PRESETS.values():
        ge.load_run_config(preset)


def test_yaml_and_cli_line_reproduce_the_config(tmp_path: Path) -> None:
    text = studio.config_yaml({**TINY, "name": "x"})
    assert ge.load_run_config(yaml.safe_load(text)) == ge.load_run_config({**TINY, "name": "x"})
    line = studio.cli_command({**TINY, "name": "x"}, "x.yaml")
    assert line == "python -m gist_engine train --config x.yaml --out runs/x"
    assert "compare --config x.yaml --seeds 3" in studio.cli_command(TINY, "x.yaml", group_seeds=3)


def test_catalogue_sections_and_image_backbones() -> None:
    cat = studio.studio_catalogue()
    assert {"gist", "data", "train", "model"} <= set(cat["sections"])
    assert "temperature" in [f["name"] for f in cat["sections"]["gist"]]
    assert "dinov2_s14" in cat["image_backbones"] and all(b["patch_size"] for b in cat["image_backbones"].values())


def test_describe_and_estimate() -> None:
    info = studio.describe_config(TINY)
    assert info["gist_params"] == 32 and info["num_classes"] == 10
    assert info["trainable_params"] - info["plain_trainable_params"] == 32
    assert [k for k, _ in info["sequence_layout"]] == ["CLS", "Gist", "patches"]
    est = studio.estimate_run(TINY)
    assert est["seconds"] > 0 and est["steps"] == 90  # 1437 training digits / 16 per step


def test_dataset_preview_samples_and_uploads(tmp_path: Path) -> None:
    preview = studio.dataset_preview("digits", per_class=2, size=16)
    assert len(preview["class_names"]) == 10 and preview["total"] == 1797
    assert preview["thumbnails"]["3"].shape == (2, 16, 16, 3)
    sample = studio.dataset_samples("digits", n=4, size=32)
    assert sample["images"].shape == (4, 32, 32, 3) and len(sample["labels"]) == 4
    names = [d["dataset"] for d in studio.list_datasets(tmp_path)]
    assert "mnist5k" in names and not any(n.startswith(("imagefolder", "bbc")) for n in names)


def test_decode_image_caps_and_rejects() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buf, "PNG")
    assert studio.decode_image(buf.getvalue()).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="cap"):
        studio.decode_image(buf.getvalue(), max_pixels=100)
    with pytest.raises(ValueError, match="not an image"):
        studio.decode_image(b"hello")


def test_attention_and_attributions_for_an_untrained_config() -> None:
    image = np.random.default_rng(0).integers(0, 255, (50, 40, 3), dtype=np.uint8)
    maps = studio.attention_for(TINY, image)
    assert maps.has_gist and maps.images.shape == (1, 32, 32, 3) and maps.cls_maps.shape[-2:] == (4, 4)
    attr, resized = studio.attributions_for(TINY, image, n_steps=4)
    assert attr.cls_grid.shape == (1, 4, 4) and attr.gist_grid is not None and resized.shape == (32, 32, 3)
    assert studio.overlay(resized, attr.cls_grid[0]).shape == (32, 32, 3)


def test_pair_runs_pairs_by_config_and_seed() -> None:
    def snap(run_id: str, seed: int, gist: bool, acc: float, lr: float = 1e-3) -> SimpleNamespace:
        cfg = {"train": {"seed": seed, "lr": lr}, "gist": {"enabled": gist}, "name": run_id}
        return SimpleNamespace(id=run_id, config=cfg, seed=seed, gist_enabled=gist, acc_cls=acc, best_acc_cls=acc,
                               status="completed", trainable_params=100 + 32 * gist, last_eval=None)

    out = studio.pair_runs([snap("a", 0, False, 0.5), snap("b", 0, True, 0.6), snap("c", 1, False, 0.5),
                            snap("d", 1, True, 0.7), snap("e", 0, True, 0.9, lr=1.0)])
    assert out["delta_acc_cls"]["n"] == 2 and out["delta_acc_cls"]["mean"] == pytest.approx(0.15)
    assert out["extra_params"] == 32 and out["unpaired"] == ["e"]


def test_run_manager_records_attention_snapshots(tmp_path: Path) -> None:
    mgr = studio.open_run_manager(tmp_path, torch_threads=0)
    try:
        run_id = mgr.submit({**TINY, "data": {"dataset": "digits", "train_size": 64, "test_size": 20},
                             "train": {"epochs": 1, "batch_size": 16, "attention_every": 2, "probe_images": 2}})
        snap = mgr.wait(run_id, timeout=120)
    finally:
        mgr.shutdown(timeout=30)
    assert snap.status == "completed", snap.error
    assert studio.run_snapshots(snap.run_dir) == [0, 2, 4]
    maps = studio.run_snapshot(snap.run_dir, 4)
    assert maps.images.shape == (2, 32, 32, 3) and maps.step == 4
    assert studio.model_for_run(snap.run_dir).num_classes == 10
