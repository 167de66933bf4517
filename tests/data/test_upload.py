"""Tests for the ImageFolder zip import: a good upload, and hostile or broken archives refused with reasons."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gist_engine.data.upload import UploadLimits, import_imagefolder_zip, list_uploaded_datasets


def _png(colour: int = 128, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None,
         compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name) if ".." in name or name.startswith("/") else name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def _good(extra: dict[str, bytes] | None = None, top: str = "") -> bytes:
    entries = {f"{top}{c}/{i}.png": _png(40 * k + i) for k, c in enumerate(("cat", "dog")) for i in range(3)}
    return _zip({**entries, **(extra or {})})


def test_good_upload_is_stored_and_selectable(tmp_path: Path) -> None:
    report = import_imagefolder_zip(_good({"pets/README.txt": b"hi"}, top="pets/"), "pets", tmp_path)
    assert report.ok, report.errors
    assert report.classes == {"cat": 3, "dog": 3}
    assert report.path == tmp_path / "datasets" / "pets"
    assert sorted(p.name for p in (report.path / "cat").iterdir()) == ["0.png", "1.png", "2.png"]
    assert report.dataset == f"imagefolder:{report.path}"
    assert report.thumbnails["cat"][0].shape == (64, 64, 3)
    listed = list_uploaded_datasets(tmp_path)
    assert [d["name"] for d in listed] == ["pets"] and listed[0]["images"] == 6
    assert report.to_dict()["accepted"] == 6
    assert report.rejected == [("pets/README.txt", "not inside a class folder (expected <class>/<image>)")]


def test_uploaded_folder_loads_as_imagefolder(tmp_path: Path) -> None:
    from gist_engine import DataConfig, load_dataset

    report = import_imagefolder_zip(_good(), "pets", tmp_path)
    data = load_dataset(DataConfig(dataset=report.dataset), 16, (0.5,) * 3, (0.5,) * 3)
    assert data.class_names == ["cat", "dog"]


@pytest.mark.parametrize(("name", "reason"), [
    ("../evil.png", "escapes"),
    ("cat/../../evil.png", "escapes"),
    ("/etc/evil.png", "absolute"),
    ("C:/evil.png", "absolute"),
    ("cat/notes.txt", "not an image"),
    ("cat/broken.png", "not an image PIL can read"),
    ("stray.png", "not inside a class folder"),
    ("cat/.hidden.png", "hidden"),
])
def test_bad_members_are_rejected_with_reasons(tmp_path: Path, name: str, reason: str) -> None:
    data = b"hello" if name.endswith((".txt", "broken.png")) else _png()
    report = import_imagefolder_zip(_good({name: data}), "pets", tmp_path)
    assert report.ok, report.errors
    assert [(n, r) for n, r in report.rejected if reason in r], report.rejected
    assert report.classes == {"cat": 3, "dog": 3}
    assert not (tmp_path / "evil.png").exists() and not Path("/etc/evil.png").exists()


@pytest.mark.parametrize("bad", ["cat/a\nb.png", "cat/e\x1b[2J.png", "c\x07t/0.png", "cat/del\x7f.png"])
def test_a_control_character_in_a_name_is_refused_alike_by_the_upload_and_imagefolder(tmp_path: Path, bad: str,
                                                                                       caplog) -> None:
    from gist_engine.data.readers import CONTROL_NAME, read_imagefolder

    report = import_imagefolder_zip(_good({bad: _png()}), "pets", tmp_path)
    assert report.ok and [n for n, r in report.rejected if r == CONTROL_NAME] == [bad], report.rejected
    folder = tmp_path / "folder"  # the same files as a folder on disk, read by `imagefolder:`
    for k, c in enumerate(("cat", "dog")):
        for i in range(3):
            (folder / c).mkdir(parents=True, exist_ok=True)
            (folder / c / f"{i}.png").write_bytes(_png(40 * k + i))
    (folder / bad).parent.mkdir(parents=True, exist_ok=True)
    (folder / bad).write_bytes(_png())
    with caplog.at_level("WARNING", logger="gist_engine"):
        raw = read_imagefolder(str(folder))
    assert raw.class_names == ["cat", "dog"] and raw.skipped.get(CONTROL_NAME) == 1, raw.skipped
    assert len(raw.train.labels) == 6
    said = [r.getMessage() for r in caplog.records if CONTROL_NAME in r.getMessage()]
    assert said and "\x1b" not in said[0] and "\n" not in said[0], said


def test_truncated_image_is_rejected(tmp_path: Path) -> None:
    report = import_imagefolder_zip(_good({"cat/cut.png": _png(size=64)[:-40]}), "pets", tmp_path)
    assert any(n == "cat/cut.png" and ("corrupt" in r or "PIL" in r) for n, r in report.rejected), report.rejected


def test_symlinks_are_rejected(tmp_path: Path) -> None:
    report = import_imagefolder_zip(_zip({f"{c}/{i}.png": _png() for c in "ab" for i in range(2)},
                                         symlinks={"a/link.png": "/etc/passwd"}), "links", tmp_path)
    assert ("a/link.png", "symbolic link") in report.rejected
    assert report.ok and not (report.path / "a" / "link.png").exists()


def test_zip_bomb_ratio_and_size_caps(tmp_path: Path) -> None:
    bomb = _good({"cat/bomb.png": b"\0" * 5_000_000})
    report = import_imagefolder_zip(bomb, "bomb", tmp_path)
    assert any("past the 100:1 allowed for one file" in r for n, r in report.rejected if n == "cat/bomb.png"), \
        report.rejected
    report = import_imagefolder_zip(bomb, "bomb2", tmp_path, UploadLimits(max_total_bytes=1_000_000))
    assert not report.ok and "unpacks to" in report.errors[0]
    report = import_imagefolder_zip(bomb, "bomb3", tmp_path, UploadLimits(max_zip_bytes=1000))
    assert not report.ok and "cap" in report.errors[0]
    assert not (tmp_path / "datasets" / "bomb3").exists()


def test_a_png_with_a_large_text_chunk_is_named_for_what_it_is(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * 2_000_000)  # a real, decodable PNG that compresses ~1000:1 in a zip
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "PNG", pnginfo=info)
    report = import_imagefolder_zip(_good({"cat/notes.png": buf.getvalue()}), "chunk", tmp_path)
    reason = dict(report.rejected)["cat/notes.png"]
    assert "large metadata or text chunk" in reason and "re-save the image without its metadata" in reason, reason
    assert "zip bomb?" not in reason


def test_too_many_entries(tmp_path: Path) -> None:
    report = import_imagefolder_zip(_good(), "many", tmp_path, UploadLimits(max_entries=3))
    assert not report.ok and "entries" in report.errors[0]


def test_pixel_cap(tmp_path: Path) -> None:
    report = import_imagefolder_zip(_good(), "px", tmp_path, UploadLimits(max_pixels=100))
    assert not report.ok  # every image is 16x16 = 256 pixels: no class left
    assert all("exceeds the cap" in r for _, r in report.rejected)


def test_one_class_not_a_zip_and_bad_name(tmp_path: Path) -> None:
    one = import_imagefolder_zip(_zip({f"cat/{i}.png": _png() for i in range(3)}), "one", tmp_path)
    assert not one.ok and "at least 2" in one.errors[0]
    assert not (tmp_path / "datasets" / "one").exists()
    assert "not a readable zip" in import_imagefolder_zip(b"not a zip", "x", tmp_path).errors[0]
    assert "dataset name" in import_imagefolder_zip(_good(), "../up", tmp_path).errors[0]


def test_name_taken_and_overwrite(tmp_path: Path) -> None:
    assert import_imagefolder_zip(_good(), "pets", tmp_path).ok
    again = import_imagefolder_zip(_good(), "pets", tmp_path)
    assert not again.ok and "already exists" in again.errors[0]
    assert import_imagefolder_zip(_good(), "pets", tmp_path, overwrite=True).ok


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    report = import_imagefolder_zip(_good(), "dry", tmp_path, dry_run=True)
    assert report.ok and report.path is None and not (tmp_path / "datasets").exists()
