"""The one image decoder: right pixel values for awkward files, clear refusals, and folder walks that stay put."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from gist_engine import DataConfig, load_dataset
from gist_engine.data import readers
from gist_engine.data.images import (
    IMAGE_FORMATS,
    MAX_IMAGE_PIXELS,
    DatasetError,
    ImageFileError,
    decode_image,
    load_image_file,
)
from gist_engine.data.readers import read_imagefolder, skip_reason
from gist_engine.data.upload import import_imagefolder_zip
from tests import image_files
from tests.image_files import H, W


def _load(dataset: str, size: int = 16):
    return load_dataset(DataConfig(dataset=dataset), size, (0.5,) * 3, (0.5,) * 3)


# ------------------------------------------------------------------------------------------------ decoded values

def test_16bit_png_is_scaled_not_saturated(tmp_path: Path) -> None:
    rgb = decode_image(image_files.sixteen_bit(tmp_path / "a.png", 8000))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert rgb[1, 0, 0] == round(8000 * 255 / 65535) == 31  # was 255 (clipped) before
    assert rgb[0, 0, 0] == round(8300 * 255 / 65535) == 32  # the texture survives as one level


def test_rgba_stroke_is_composited_over_white(tmp_path: Path) -> None:
    rgb = decode_image(image_files.rgba_stroke(tmp_path / "s.png"))
    assert (rgb[0, 0] == 255).all()  # the transparent background is white
    assert (rgb[H // 2, W // 2] == 0).all()  # the stroke stays black (it was all black before: stroke gone)
    assert 0 < (rgb == 0).all(axis=-1).mean() < 0.5


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = image_files.exif_rotated(tmp_path / "r.jpg")
    rgb = decode_image(path)
    assert rgb.shape == (W, H, 3)  # upright: stored sideways (H, W), Orientation=6 turns it
    with Image.open(path) as img:
        np.testing.assert_array_equal(rgb, np.asarray(ImageOps.exif_transpose(img).convert("RGB")))
    assert rgb[1, H // 2, 0] > 180 and rgb[-2, H // 2, 1] > 200  # red half on top after the turn


@pytest.mark.parametrize(("make", "pixel", "expected"), [
    (image_files.palette_transparent, (0, 0), (255, 255, 255)),  # the transparent index: white
    (image_files.palette_transparent, (H // 2, W // 2), (0, 0, 255)),
    (image_files.cmyk_jpeg, (H // 2, 2), (0, 255, 255)),  # cyan
    (image_files.cmyk_jpeg, (H // 2, W - 2), (255, 255, 255)),
    (image_files.one_bit, (0, 0), (0, 0, 0)),
    (image_files.one_bit, (H // 2, W // 2), (255, 255, 255)),
    (image_files.grey_alpha, (H // 2, 2), (40, 40, 40)),  # opaque dark grey
    (image_files.grey_alpha, (H // 2, W - 2), (255, 255, 255)),  # transparent: white
    (image_files.float_tiff, (0, W - 1), (255, 255, 255)),  # F in 0..1: x 255
    (image_files.float_tiff, (0, 0), (0, 0, 0)),
    (image_files.int_tiff, (0, W - 1), (255, 255, 255)),  # I with 16-bit values: x 255 / 65535
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_modes_become_rgb(tmp_path: Path, make, pixel, expected) -> None:
    suffix = ".jpg" if "jpeg" in make.__name__ else ".tif" if "tiff" in make.__name__ else ".png"
    rgb = decode_image(make(tmp_path / f"x{suffix}"))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb[pixel].astype(int), expected, atol=3)


def test_float_and_int_outside_their_range_are_min_max_scaled(tmp_path: Path) -> None:
    Image.fromarray(np.array([[-2.0, 0.0, 6.0]], np.float32), "F").save(tmp_path / "f.tif")
    assert decode_image(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 64, 255]
    Image.fromarray(np.array([[-50, 0, 150]], np.int32), "I").save(tmp_path / "i.tif")
    assert decode_image(tmp_path / "i.tif")[0, :, 0].tolist() == [0, 64, 255]


def test_grey_and_rgb_are_unchanged(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "a.png"), a)
    Image.fromarray(a[..., 0]).save(tmp_path / "g.png")
    np.testing.assert_array_equal(decode_image((tmp_path / "g.png").read_bytes()), np.repeat(a[..., :1], 3, -1))


# ------------------------------------------------------------------------------------------------ refusals

def _problem(source, **kwargs) -> ImageFileError:
    with pytest.raises(ImageFileError) as info:
        load_image_file(source, 16, **kwargs)
    assert isinstance(info.value, DatasetError) and "\n" not in str(info.value)
    return info.value


def test_refusals_name_the_file_the_problem_and_what_to_do(tmp_path: Path) -> None:
    good = image_files.rgba_stroke(tmp_path / "good.png").read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes(good[:len(good) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    Image.new("RGB", (8, 8)).save(tmp_path / "icon.ico")
    cases = {"empty.png": "empty", "cut.png": "truncated or corrupt", "text.jpg": "not an image PIL can read",
             "icon.ico": "format not allowed", "nowhere.png": "missing or unreadable"}
    for name, problem in cases.items():
        err = _problem(tmp_path / name)
        assert err.problem == problem and name in str(err) and " - " in str(err), str(err)
    assert "ICO" in str(_problem(tmp_path / "icon.ico")) and "ICO" not in IMAGE_FORMATS
    assert _problem(tmp_path).problem == "not a regular file"  # a folder
    assert _problem(b"", name="upload.png").problem == "empty"


def test_pixel_cap_is_checked_from_the_header(tmp_path: Path) -> None:
    """An 88-Mpx PNG is refused before decoding: its pixel data is a single row, so a decode would fail as truncated
    (and allocate 88 MB first); the refusal names the cap instead."""
    big = image_files.png_header_only(tmp_path / "big.png", 11000, 8000)
    err = _problem(big)
    assert err.problem == "too many pixels" and "11000x8000" in str(err) and f"{MAX_IMAGE_PIXELS:,}" in str(err)
    assert _problem(image_files.one_bit(tmp_path / "small.png"), max_pixels=100).problem == "too many pixels"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    assert _problem(tmp_path / "pipe.png").problem == "not a regular file"  # opening it would block forever


# ------------------------------------------------------------------------------------------------ through the readers

def test_16bit_two_class_folder_is_not_all_white(tmp_path: Path) -> None:
    """Dark (8,000) vs bright (60,000) 16-bit images: the classes differ after loading (both were 255 before)."""
    (tmp_path / "dark").mkdir()
    (tmp_path / "bright").mkdir()
    for i in range(5):
        image_files.sixteen_bit(tmp_path / "dark" / f"{i}.png", 8000 + 10 * i)
        image_files.sixteen_bit(tmp_path / "bright" / f"{i}.png", 60000 - 10 * i)
    splits = _load(f"imagefolder:{tmp_path}")
    images, labels = splits.train.images.float(), splits.train.labels
    dark, bright = images[labels == splits.class_names.index("dark")], images[labels == 0]
    assert splits.class_names == ["bright", "dark"]
    assert 30 <= dark.mean() <= 33 and 230 <= bright.mean() <= 234


def test_rgba_stroke_stays_visible_in_a_dataset(tmp_path: Path) -> None:
    for c in ("a", "b"):
        for i in range(3):
            (tmp_path / c).mkdir(exist_ok=True)
            image_files.rgba_stroke(tmp_path / c / f"{i}.png")
    images = _load(f"imagefolder:{tmp_path}", size=W).train.images
    assert (images < 64).any() and (images > 250).any()  # dark stroke pixels on a white background


# ------------------------------------------------------------------------------------------------ folder walks

def _folder(root: Path, classes: dict[str, int]) -> Path:
    for k, (name, n) in enumerate(classes.items()):
        for i in range(n):
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8), 40 * k + i).save(root / name / f"{i}.png")
    return root


def test_a_link_loop_yields_each_image_once_with_its_own_label(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    (root / "cat" / "loop").symlink_to("..")  # cat/loop -> the dataset root: was 492 samples from 12 images
    raw = read_imagefolder(str(root))
    assert len(raw.train) == 12 and np.bincount(raw.train.labels).tolist() == [6, 6]
    paths = raw.train.source.paths
    assert len(set(paths)) == 12
    assert [p.parent.name for p in paths] == [raw.class_names[y] for y in raw.train.labels]
    assert raw.skipped == {"link to a folder (not followed)": 1}


def test_links_out_of_the_root_are_not_followed(tmp_path: Path, caplog) -> None:
    root = _folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    outside = _folder(tmp_path / "elsewhere", {"x": 4})
    (root / "cat" / "far.png").symlink_to(outside / "x" / "0.png")
    (root / "cat" / "near.png").symlink_to(root / "dog" / "0.png")  # a file link inside the root: kept
    (root / "dog" / "more").symlink_to(outside / "x")
    (root / "bird").symlink_to(outside / "x")  # a class folder that is a link: not a class
    with caplog.at_level("INFO", logger="gist_engine"):
        raw = read_imagefolder(str(root))
    assert raw.class_names == ["cat", "dog"] and np.bincount(raw.train.labels).tolist() == [4, 3]
    assert raw.skipped == {"link pointing outside the dataset folder": 1, "link to a folder (not followed)": 2}
    assert any("skipped" in r.message and r.levelname == "WARNING" for r in caplog.records)


def test_macos_and_hidden_entries_are_skipped_and_counted(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    _folder(root / "__MACOSX", {"cat": 2})
    (root / "cat" / "._0.png").write_bytes(b"AppleDouble")
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / "notes.txt").write_text("hi")
    splits = _load(f"imagefolder:{root}")
    assert splits.class_names == ["cat", "dog"]
    assert splits.info["skipped"] == {"macOS metadata (__MACOSX)": 1, "hidden file or folder": 2,
                                      "other file type (by extension)": 1}


def test_upload_and_folder_readers_share_the_skip_rule(tmp_path: Path) -> None:
    assert skip_reason("__MACOSX") and skip_reason(".hidden") and skip_reason("cat") is None
    buf = io.BytesIO()
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    with zipfile.ZipFile(buf, "w") as zf:
        for c in ("cat", "dog"):
            for i in range(2):
                zf.writestr(f"{c}/{i}.png", png.getvalue())
                zf.writestr(f"__MACOSX/{c}/._{i}.png", b"AppleDouble")
        zf.writestr("cat/.hidden.png", png.getvalue())
    report = import_imagefolder_zip(buf.getvalue(), "pets", tmp_path)
    assert report.ok and report.classes == {"cat": 2, "dog": 2} and report.skipped == 4
    assert report.rejected == [("cat/.hidden.png", "hidden file or folder")]
    assert read_imagefolder(str(report.path)).class_names == ["cat", "dog"]


def test_the_walk_is_bounded(tmp_path: Path, monkeypatch) -> None:
    root = _folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    deep = root / "cat" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    Image.new("L", (8, 8)).save(deep / "x.png")
    assert len(read_imagefolder(str(root)).train) == 7
    monkeypatch.setattr(readers, "MAX_WALK_DEPTH", 2)
    with pytest.raises(DatasetError, match=r"deeper than 2 levels"):
        read_imagefolder(str(root))
    monkeypatch.setattr(readers, "MAX_WALK_DEPTH", 32)
    monkeypatch.setattr(readers, "MAX_WALK_ENTRIES", 5)
    with pytest.raises(DatasetError, match=r"more than 5 entries"):
        read_imagefolder(str(root))


def test_proc_self_ends_quickly_with_a_clear_error(tmp_path: Path) -> None:
    """`train imagefolder:/proc/self` used to walk the whole machine through /proc/self/root (killed at 240 s)."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    with pytest.raises(DatasetError, match="pseudo filesystem"):
        read_imagefolder("/proc/self")
    out = subprocess.run([sys.executable, "-m", "gist_engine", "train", "--set", "backbone=test_vit", "--set",
                          "data.dataset=imagefolder:/proc/self", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error:") and "pseudo filesystem" in out.stderr
    assert "Traceback" not in out.stderr


def test_vtab_lists_stay_inside_the_task_folder(tmp_path: Path) -> None:
    root = _folder(tmp_path / "task", {"images": 2})
    (root / "test.txt").write_text("images/0.png 0\n")
    (root / "train800val200.txt").write_text("images/1.png 1\n../elsewhere.png 0\n")
    Image.new("L", (8, 8)).save(tmp_path / "elsewhere.png")
    with pytest.raises(DatasetError, match=r"line 2: '\.\./elsewhere\.png' lies outside"):
        readers.read_vtab(str(root))


def test_same_tensor_from_path_and_bytes(tmp_path: Path) -> None:
    path = image_files.exif_rotated(tmp_path / "r.jpg")
    assert torch.equal(load_image_file(path, 16), load_image_file(path.read_bytes(), 16))
