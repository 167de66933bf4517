"""Tiny benchmark fixtures in the field's exact layouts: VTAB-1k tasks, VPT's FGVC JSON splits, few-shot lists."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

VTAB_SIZES = {"train800": 2, "val200": 1, "test": 2}  # images per class in each list


def png(path: Path, seed: int, size: int = 8) -> Path:
    """A small RGB PNG of seeded noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def vtab_task(suite: Path, task: str, classes: int, sizes: dict[str, int] = VTAB_SIZES) -> Path:
    """`<suite>/<task>/images/<list>/<i>.png` and the four list files (train800val200 = train800 + val200)."""
    root = suite / task
    lists: dict[str, list[str]] = {}
    n = 0
    for name, per_class in sizes.items():
        rows = lists.setdefault(name, [])
        for c in range(classes):
            for k in range(per_class):
                rel = f"images/{name}/{c}_{k}.png"
                png(root / rel, n)
                n += 1
                rows.append(f"{rel} {c}")
    lists["train800val200"] = lists["train800"] + lists["val200"]
    for name, rows in lists.items():
        (root / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return root


def fgvc_set(parent: Path, name: str, ids: list[int], sizes: tuple[int, int, int] = (2, 1, 2),
             images: str = "images") -> Path:
    """`<parent>/<name>/{train,val,test}.json` ({path: class id}) with the images under `<name>/<images>/`."""
    root = parent / name
    n = 0
    for split, per_class in zip(("train", "val", "test"), sizes, strict=True):
        entries = {}
        for c in ids:
            for k in range(per_class):
                rel = f"{c:03d}.class/{split}_{k}.jpg"
                path = root / images / rel if images else root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((8, 8, 3), (n * 7) % 256, dtype=np.uint8)).save(path, format="JPEG")
                n += 1
                entries[rel] = c
        (root / f"{split}.json").write_text(json.dumps(entries))
    return root


def fewshot_set(parent: Path, name: str, classes: int, lists: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (1, 1)),
                pool: int = 3) -> Path:
    """`<parent>/<name>/images/<c>/<k>.png` (`pool` per class), annotations/train_meta.list.num_shot_k.seed_s
    (k per class, seed-dependent picks), val_meta.list (1 per class) and test_meta.list (the rest)."""
    root = parent / name
    n = 0
    for c in range(classes):
        for k in range(pool + 2):
            png(root / "images" / f"c{c}" / f"{k}.png", 1000 + n)
            n += 1
    ann = root / "annotations"
    ann.mkdir(parents=True)
    for shots, seed in lists:
        rows = [f"c{c}/{(seed + j) % pool}.png {c}" for c in range(classes) for j in range(shots)]
        (ann / f"train_meta.list.num_shot_{shots}.seed_{seed}").write_text("\n".join(rows) + "\n")
    (ann / "val_meta.list").write_text("\n".join(f"c{c}/{pool}.png {c}" for c in range(classes)) + "\n")
    (ann / "test_meta.list").write_text("\n".join(f"c{c}/{pool + 1}.png {c}" for c in range(classes)) + "\n")
    return root


def zip_folder(folder: Path, dest: Path, prefix: str = "") -> Path:
    """A zip of everything under `folder` (paths relative to it, under `prefix`)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, prefix + path.relative_to(folder).as_posix())
    return dest


def hostile_zip(dest: Path, name: str, data: bytes = b"x", symlink: bool = False, good: Path | None = None) -> Path:
    """A zip holding a good suite (when given) and one hostile member `name` (a symlink entry when `symlink`)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        if good is not None:
            for path in sorted(good.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(good).as_posix())
        info = zipfile.ZipInfo(name)
        if symlink:
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
    dest.write_bytes(buffer.getvalue())
    return dest
