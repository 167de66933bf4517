"""`data import`: good zips and folders installed and readable; hostile zips refused with nothing written; the hub."""

from __future__ import annotations

import sys
import types
import zipfile
from pathlib import Path

import pytest

from gist_engine.cli import main
from gist_engine.config import DataConfig
from gist_engine.data import DatasetError, import_benchmark, load_dataset
from gist_engine.data.importer import BenchmarkLimits

from .benchmark_files import fewshot_set, fgvc_set, hostile_zip, vtab_task, zip_folder

HALF = (0.5, 0.5, 0.5)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    vtab_task(tmp_path / "src" / "vtab-1k", "kitti", 4)
    vtab_task(tmp_path / "src" / "vtab-1k", "dmlab", 6)
    return tmp_path / "src" / "vtab-1k"


def installed(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.name.startswith("."))


def test_a_vtab1k_zip_is_checked_and_installed(suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = zip_folder(suite, tmp_path / "vtab.zip", prefix="vtab-1k/")
    root = tmp_path / "data"
    report = import_benchmark("vtab1k", archive, root=root)
    assert [r["name"] for r in report.rows] == ["dmlab", "kitti"]
    kitti = report.rows[1]
    assert kitti["splits"] == {"train800": 8, "val200": 4, "train800val200": 12, "test": 8} and kitti["classes"] == 4
    assert kitti["dataset"] == f"vtab1k:{root / 'vtab-1k' / 'kitti'}"
    table = report.table()
    assert "kitti" in table and "train800 8, val200 4, train800val200 12, test 8" in table
    assert not [p for p in (root / "vtab-1k").iterdir() if p.name.startswith(".import-")]  # staging removed
    monkeypatch.setenv("GIST_DATA_DIR", str(root))
    splits = load_dataset(DataConfig(dataset="vtab1k:dmlab"), 8, HALF, HALF)
    assert (len(splits.train), len(splits.test)) == (18, 12)
    with pytest.raises(DatasetError, match=r"vtab1k dmlab is already installed .*--overwrite"):
        import_benchmark("vtab1k", archive, root=root)
    assert import_benchmark("vtab1k", archive, root=root, overwrite=True).rows


def test_a_folder_is_installed_with_its_lists_and_listed_images_only(suite: Path, tmp_path: Path) -> None:
    (suite / "kitti" / "notes.md").write_text("not listed")
    report = import_benchmark("vtab1k", suite, root=tmp_path / "data")
    assert len(report.rows) == 2
    kitti = tmp_path / "data" / "vtab-1k" / "kitti"
    assert (kitti / "train800val200.txt").is_file() and not (kitti / "notes.md").exists()
    assert len(list((kitti / "images").rglob("*.png"))) == 4 * 5
    assert (suite / "kitti" / "notes.md").exists()  # the source is untouched


def test_fgvc_and_fewshot_imports(tmp_path: Path) -> None:
    fgvc_set(tmp_path / "fg", "birds", [1, 2])
    fewshot_set(tmp_path / "fs", "oxford-pets", 3)
    fg = import_benchmark("fgvc", zip_folder(tmp_path / "fg", tmp_path / "fg.zip"), root=tmp_path / "data")
    assert fg.rows[0]["splits"] == {"train": 4, "val": 2, "test": 4}
    fs = import_benchmark("fewshot", tmp_path / "fs", root=tmp_path / "data")
    assert fs.rows[0]["splits"] == {"1-shot s0": 3, "1-shot s1": 3, "2-shot s0": 6, "val": 3, "test": 3}
    assert (tmp_path / "data/few-shot/oxford-pets/annotations/train_meta.list.num_shot_2.seed_0").is_file()


def test_an_undecodable_listed_image_installs_nothing(suite: Path, tmp_path: Path) -> None:
    (suite / "dmlab" / "images" / "test" / "0_0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match=r"vtab1k dmlab: 1 of .* image files cannot be read"):
        import_benchmark("vtab1k", zip_folder(suite, tmp_path / "v.zip"), root=tmp_path / "data")
    assert installed(tmp_path / "data") == ["vtab-1k"]  # neither task, no staging left


@pytest.mark.parametrize(("member", "symlink", "reason"), [
    ("../../evil.txt", False, r"path escapes the archive"),
    ("/etc/evil.txt", False, r"absolute path"),
    ("kitti/images/link.png", True, r"is a symbolic link"),
])
def test_hostile_zips_are_refused_with_nothing_written(suite: Path, tmp_path: Path, member: str, symlink: bool,
                                                       reason: str) -> None:
    archive = hostile_zip(tmp_path / "bad.zip", member, b"/etc/passwd", symlink, good=suite)
    with pytest.raises(DatasetError, match=rf"bad.zip: member .*{reason}.*nothing was installed"):
        import_benchmark("vtab1k", archive, root=tmp_path / "data" / "a" / "b")
    assert installed(tmp_path / "data") == ["a", "a/b", "a/b/vtab-1k"]
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "evil.txt").exists()


def test_zip_bombs_and_caps(suite: Path, tmp_path: Path) -> None:
    bomb = hostile_zip(tmp_path / "bomb.zip", "kitti/images/big.png", bytes(20 * 2**20), good=suite)
    with pytest.raises(DatasetError, match=r"compression ratio of .*:1, past 200:1 .*zip bomb"):
        import_benchmark("vtab1k", bomb, root=tmp_path / "data")
    archive = zip_folder(suite, tmp_path / "v.zip")
    with pytest.raises(DatasetError, match=r"entries; the benchmark cap is 10"):
        import_benchmark("vtab1k", archive, root=tmp_path / "data", limits=BenchmarkLimits(max_entries=10))
    with pytest.raises(DatasetError, match=r"unpacks to .* GiB; the cap is 0 GiB"):
        import_benchmark("vtab1k", archive, root=tmp_path / "data", limits=BenchmarkLimits(max_total_bytes=1000))
    with pytest.raises(DatasetError, match=r"not a readable zip"):
        import_benchmark("vtab1k", tmp_path / "v.zip" if (tmp_path / "v.zip").write_bytes(b"junk") else None,
                         root=tmp_path / "data")
    assert installed(tmp_path / "data") == ["vtab-1k"]


def test_a_corrupt_member_is_refused_and_nothing_installed(suite: Path, tmp_path: Path) -> None:
    archive = zip_folder(suite, tmp_path / "v.zip")
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("kitti/test.txt")
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the member's compressed bytes
    data[start + 2] ^= 0xFF
    (tmp_path / "corrupt.zip").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"corrupt.zip: member 'kitti/test.txt' cannot be extracted"):
        import_benchmark("vtab1k", tmp_path / "corrupt.zip", root=tmp_path / "data")
    assert installed(tmp_path / "data") == ["vtab-1k"]


def test_from_hub_goes_through_huggingface_hub(suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def snapshot_download(repo_id: str, repo_type: str, allow_patterns: list[str], local_dir: Path) -> str:
        calls.append((repo_id, repo_type))
        Path(local_dir).mkdir(parents=True)
        zip_folder(suite, Path(local_dir) / "vtab-1k.zip", prefix="vtab-1k/")
        return str(local_dir)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    report = import_benchmark("vtab1k", root=tmp_path / "data", from_hub=True)
    assert calls == [("XiN0919/VTAB-1k", "dataset")] and len(report.rows) == 2

    def offline(**kwargs: object) -> str:
        raise OSError("no network")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=offline))
    with pytest.raises(DatasetError, match=r"the hub cannot be reached \(OSError\); download the dataset repo "
                                           r"XiN0919/VTAB-1k .* then run `python -m gist_engine data import vtab1k"):
        import_benchmark("vtab1k", root=tmp_path / "data2", from_hub=True)
    with pytest.raises(DatasetError, match=r"no prebuilt archive is known"):
        import_benchmark("fgvc", root=tmp_path / "data2", from_hub=True)


def test_the_cli_prints_the_table_and_fails_in_one_line(suite: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "import", "vtab1k", str(suite), "--root", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["dataset", "classes"] and "2 vtab1k datasets checked" in out
    assert main(["data", "import", "fgvc", str(suite), "--root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data import fgvc: no fgvc dataset in") and err.count("\n") == 1
