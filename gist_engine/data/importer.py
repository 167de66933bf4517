"""Benchmark imports (`data import vtab1k|fgvc|fewshot`): a zip streamed member by member, or a folder; checked."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .benchmarks import (
    BENCHMARK_DIRS,
    FGVC_SPLITS,
    VTAB1K_TASKS,
    read_fewshot_folder,
    read_fgvc_folder,
    read_vtab1k_task,
)
from .images import MAX_IMAGE_PIXELS, DatasetError, FileSource, UnreadableImagesError, default_threads
from .readers import RawDataset, data_dir
from .upload import _is_symlink, _member_parts

logger = logging.getLogger(__name__)

MARKER = ".gist-import.json"  # written into every installed folder: only such folders are ever replaced
HUB_REPOS = {"vtab1k": "XiN0919/VTAB-1k"}  # prebuilt archives on the Hugging Face hub (dataset repos)
CHUNK = 1 << 20  # bytes read from a zip member at a time
MAX_FIND_DEPTH = 4  # folder levels searched for the datasets of a zip or folder


@dataclass(frozen=True)
class BenchmarkLimits:
    """Caps of a benchmark import, sized for the benchmarks (a VTAB-1k suite: ~400,000 files), checked before
    anything is written; every protection of the uploads (`UploadLimits`) stays: no absolute or `..` paths, no
    links, no encrypted members, per-member size and compression ratio, the unpacked total as declared and as read."""

    max_zip_bytes: int = 64 * 2**30  # the archive itself
    max_entries: int = 1_000_000  # members of the archive (files and folders)
    max_total_bytes: int = 128 * 2**30  # all members uncompressed, as declared and as read
    max_file_bytes: int = 64 * 2**20  # one member uncompressed
    max_ratio: float = 200.0  # uncompressed / compressed size of one member (list files compress ~10:1)
    max_pixels: int = MAX_IMAGE_PIXELS


@dataclass
class BenchmarkReport:
    """What `import_benchmark` found and installed: one row per dataset (splits with images and classes)."""

    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # name, classes, splits {file: images}, path, dataset
    skipped: int = 0  # hidden and __MACOSX members of a zip, not extracted
    seconds: float = 0.0

    def table(self) -> str:
        """The summary table: dataset, classes, images per split, fewest/most per class in training, `data.dataset`."""
        head = ("dataset", "classes", "images per split", "per class (train)", "data.dataset")
        lines = [head]
        for row in self.rows:
            splits = ", ".join(f"{k} {v:,}" for k, v in row["splits"].items())
            lines.append((row["name"], str(row["classes"]), splits, f"{row['min_per_class']}-{row['max_per_class']}",
                          row["dataset"]))
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        out.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"kind": self.kind, "rows": self.rows, "skipped": self.skipped, "seconds": self.seconds}


# ----------------------------------------------------------------------------------------------------
# Finding the datasets of a folder

def _is_vtab1k(folder: Path) -> bool:
    return folder.name in VTAB1K_TASKS and (folder / "test.txt").is_file()


def _is_fgvc(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FGVC_SPLITS)


def _is_fewshot(folder: Path) -> bool:
    return (folder / "annotations" / "test_meta.list").is_file()


# kind -> (is a dataset folder, its reader, its split files for the report)
KINDS: dict[str, tuple[Callable[[Path], bool], Callable[[Path], RawDataset]]] = {
    "vtab1k": (_is_vtab1k, read_vtab1k_task),
    "fgvc": (_is_fgvc, read_fgvc_folder),
    "fewshot": (_is_fewshot, read_fewshot_folder),
}


def find_datasets(root: Path, kind: str) -> list[Path]:
    """The dataset folders of `kind` at most MAX_FIND_DEPTH levels under `root` (links never followed)."""
    is_dataset = KINDS[kind][0]
    found, stack = [], [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        if is_dataset(folder):
            found.append(folder)
            continue
        if depth < MAX_FIND_DEPTH:
            stack += [(Path(e.path), depth + 1) for e in os.scandir(folder)
                      if e.is_dir(follow_symlinks=False) and not e.name.startswith((".", "__MACOSX"))]
    return sorted(found)


def _validate(folder: Path, kind: str, threads: int) -> tuple[RawDataset, dict[str, Any], set[Path]]:
    """Read one dataset folder with its reader (lists, labels, class counts, files present), decode every listed
    image through the shared pipeline, and count images per split and class."""
    raw = KINDS[kind][1](folder)
    pools = {"train": raw.train_beside_val or raw.train, "val": raw.val, "test": raw.test}
    if kind == "vtab1k":
        pools = {"train800": raw.train_beside_val, "val200": raw.val, "train800val200": raw.train, "test": raw.test}
    if kind == "fewshot":
        pools = {f"{k}-shot s{s}": read() for (k, s), read in raw.train_lists.items()} | {"val": raw.val,
                                                                                          "test": raw.test}
    files: set[Path] = set()
    for pool in pools.values():
        if pool is not None:
            files.update(pool.source.paths)
    ordered = sorted(files)
    source = FileSource(ordered)
    try:
        source.fetch(np.arange(len(ordered)), 8, threads=threads)  # a full decode of each, at 8 px (cheap to keep)
    except UnreadableImagesError as exc:
        raise DatasetError(f"{kind} {folder.name}: {exc}") from None
    train = pools["train800val200"] if kind == "vtab1k" else raw.train
    per_class = np.bincount(train.labels, minlength=len(raw.class_names))
    row = {"name": folder.name, "classes": len(raw.class_names),
           "splits": {k: len(p) for k, p in pools.items() if p is not None},
           "min_per_class": int(per_class.min()), "max_per_class": int(per_class.max()), "images": len(ordered)}
    if kind == "fewshot":
        short = [name for name, p in pools.items() if "shot" in name and
                 np.bincount(p.labels, minlength=len(raw.class_names)).min() < int(name.split("-")[0])]
        if short:
            logger.warning("fewshot %s: some classes have fewer images than the shots in %s", folder.name,
                           ", ".join(short))
    return raw, row, files


# ----------------------------------------------------------------------------------------------------
# Zips, streamed

def _open_archive(path: Path, limits: BenchmarkLimits) -> zipfile.ZipFile:
    if not path.is_file():
        raise DatasetError(f"{path} is neither a zip file nor a folder")
    size = path.stat().st_size
    if size > limits.max_zip_bytes:
        raise DatasetError(f"{path} is {size / 2**30:.1f} GiB; the benchmark cap is {limits.max_zip_bytes / 2**30:.0f} "
                           "GiB (unpack it and import the folder)")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not a readable zip archive ({exc})") from None


def extract_zip(path: Path, dest: Path, limits: BenchmarkLimits) -> int:
    """Extract a benchmark zip into the empty folder `dest`, member by member in CHUNK-sized reads (never a whole
    member, never the archive, in memory). Returns the hidden / __MACOSX members skipped.

    Raises:
        DatasetError: for an absolute or `..` path, a link, an encrypted member, too many members, a member or a
            total over the caps (as declared or as read) or a compression ratio past `max_ratio` (a zip bomb);
            what was extracted is the caller's to remove.
    """
    skipped = 0
    with _open_archive(path, limits) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise DatasetError(f"{path.name} has {len(infos):,} entries; the benchmark cap is {limits.max_entries:,}")
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_total_bytes:
            raise DatasetError(f"{path.name} unpacks to {declared / 2**30:.1f} GiB; the cap is "
                               f"{limits.max_total_bytes / 2**30:.0f} GiB")
        real_dest = dest.resolve()
        total = 0
        for info in infos:
            parts = _member_parts(info)
            if isinstance(parts, str):
                raise DatasetError(f"{path.name}: member {info.filename!r}: {parts}; nothing was installed")
            if _is_symlink(info):
                raise DatasetError(f"{path.name}: member {info.filename!r} is a symbolic link; nothing was installed")
            if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                skipped += 1
                continue
            if info.is_dir() or not parts:
                continue
            if info.flag_bits & 0x1:
                raise DatasetError(f"{path.name}: member {info.filename!r} is encrypted; nothing was installed")
            if info.file_size > limits.max_file_bytes:
                raise DatasetError(f"{path.name}: member {info.filename!r} is {info.file_size / 2**20:.0f} MiB; the "
                                   f"cap is {limits.max_file_bytes / 2**20:.0f} MiB")
            if info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise DatasetError(f"{path.name}: member {info.filename!r} has a compression ratio of "
                                   f"{info.file_size / max(info.compress_size, 1):.0f}:1, past "
                                   f"{limits.max_ratio:.0f}:1 (a zip bomb?); nothing was installed")
            target = dest.joinpath(*parts)
            if not target.resolve().is_relative_to(real_dest):  # belt and braces after _member_parts
                raise DatasetError(f"{path.name}: member {info.filename!r} would leave the import folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with archive.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        total += len(chunk)
                        if written > info.file_size or written > limits.max_file_bytes or \
                                total > limits.max_total_bytes:
                            raise DatasetError(f"{path.name}: member {info.filename!r} unpacks to more than its "
                                               "header declares or past the caps; nothing was installed")
                        out.write(chunk)
            except FileExistsError:
                raise DatasetError(f"{path.name}: member {info.filename!r} appears twice; nothing was "
                                   "installed") from None
            except (zipfile.BadZipFile, NotImplementedError, EOFError, zipfile.LargeZipFile) as exc:
                raise DatasetError(f"{path.name}: member {info.filename!r} cannot be extracted ({exc})") from None
    return skipped


# ----------------------------------------------------------------------------------------------------
# Installing

def _copy_listed(folder: Path, files: set[Path], target: Path) -> None:
    """Copy a dataset folder's list/split files and the images its lists name (nothing else) into `target`."""
    real, plain = folder.resolve(), os.path.normpath(folder)
    lists = [p for p in [*folder.glob("*.txt"), *folder.glob("*.json"), *folder.glob("annotations/*")]
             if p.is_file() and not p.is_symlink()]
    for path in sorted({*files, *lists}):
        norm = os.path.normpath(path)  # `images/../images/x.png` -> images/x.png; never leaves `target`
        rel = Path(os.path.relpath(norm, plain)) if norm.startswith(plain + os.sep) else \
            path.resolve().relative_to(real)  # the readers checked that it resolves inside the folder
        out = target / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)


def _may_install(dest: Path, overwrite: bool, kind: str) -> None:
    """Refuse to replace an installed dataset without `overwrite`, or a folder no import installed (no MARKER)."""
    if dest.exists() or dest.is_symlink():
        if not overwrite:
            raise DatasetError(f"{kind} {dest.name} is already installed in {dest}; pass --overwrite to replace it")
        if not (dest / MARKER).is_file() or dest.is_symlink():
            raise DatasetError(f"{dest} was not installed by `data import`; move it away yourself")


def _install(staged: Path, dest: Path, overwrite: bool, kind: str) -> None:
    """Move a checked folder into place; an existing one is replaced only when `overwrite` and it was installed
    by an import (it holds MARKER)."""
    _may_install(dest, overwrite, kind)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        os.replace(dest, old)
        os.replace(staged, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, dest)


def import_benchmark(kind: str, source: str | Path | None = None, *, root: str | Path | None = None,
                     overwrite: bool = False, from_hub: bool = False, limits: BenchmarkLimits | None = None,
                     threads: int | None = None) -> BenchmarkReport:
    """Check a benchmark (a zip or a folder holding one or more of its datasets) and install it under the data
    directory: `<root>/vtab-1k/<task>`, `<root>/fgvc/<name>`, `<root>/few-shot/<name>`.

    A zip is extracted entry by entry into a staging folder beside the install folder (BenchmarkLimits; any
    hostile member refuses the archive); a folder is read in place and only its list files and listed images are
    copied. Each dataset is read by its reader (list files, labels, class counts, files present) and every listed
    image is decoded through the shared pipeline before anything is installed; a failure installs nothing and
    removes only the staging folder it made.

    Args:
        kind: "vtab1k", "fgvc" or "fewshot".
        source: A zip file or a folder (not needed with `from_hub`).
        root: Where to install (default `data_dir()`, where `vtab1k:<task>` looks).
        overwrite: Replace datasets installed before by an import.
        from_hub: Fetch the prebuilt archive of HUB_REPOS through huggingface_hub first.
        limits: Caps of a zip (default BenchmarkLimits()).
        threads: Decoding threads (default: by CPU count).

    Returns:
        A BenchmarkReport with one row per dataset installed.

    Raises:
        DatasetError: naming the dataset and file at fault (or the hub download to make by hand, offline).
    """
    if kind not in KINDS:
        raise DatasetError(f"data import: unknown benchmark {kind!r}; choose one of {', '.join(KINDS)}")
    start = time.perf_counter()
    limits = limits or BenchmarkLimits()
    threads = threads or default_threads()
    base = Path(root) if root is not None else data_dir()
    install_root = base / BENCHMARK_DIRS[kind]
    if from_hub:
        source = fetch_from_hub(kind, base / "downloads")
    if source is None:
        raise DatasetError(f"data import {kind}: give a zip or a folder (or --from-hub)")
    source = Path(source).expanduser()
    report = BenchmarkReport(kind)
    install_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=install_root))
    try:
        if source.is_dir():
            folders = find_datasets(source, kind)
        else:
            report.skipped = extract_zip(source, staging / "zip", limits)
            folders = find_datasets(staging / "zip", kind) if (staging / "zip").is_dir() else []
        if not folders:
            raise DatasetError(f"data import {kind}: no {kind} dataset in {source} ({_expected(kind)})")
        names = [f.name for f in folders]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise DatasetError(f"data import {kind}: {source} holds {', '.join(twice)} more than once")
        for name in names:  # before anything is checked or moved: all or nothing
            _may_install(install_root / name, overwrite, kind)
        checked = []
        for folder in folders:
            _, row, files = _validate(folder, kind, threads)
            checked.append((folder, row, files))
        for folder, row, files in checked:
            staged = staging / "ready" / folder.name
            if source.is_dir():
                _copy_listed(folder, files, staged)
            else:
                staged.parent.mkdir(parents=True, exist_ok=True)
                os.replace(folder, staged)
            (staged / MARKER).write_text(json.dumps({"kind": kind, "source": str(source), "row": row}))
            dest = install_root / folder.name
            _install(staged, dest, overwrite, kind)
            row["path"] = str(dest)
            row["dataset"] = f"{kind}:{dest}"
            report.rows.append(row)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = round(time.perf_counter() - start, 2)
    return report


def _expected(kind: str) -> str:
    return {"vtab1k": "expected task folders such as dtd/ holding train800.txt, val200.txt, train800val200.txt, "
                      "test.txt and images/",
            "fgvc": "expected dataset folders holding train.json, val.json, test.json and their images",
            "fewshot": "expected dataset folders holding annotations/test_meta.list, "
                       "annotations/train_meta.list.num_shot_<k>.seed_<s> and images/"}[kind]


def fetch_from_hub(kind: str, folder: Path) -> Path:
    """Download the prebuilt archive of `kind` (HUB_REPOS) with huggingface_hub; the zip's path.

    Raises:
        DatasetError: no prebuilt archive for `kind`, or the download failed (one line saying what to download
            and where to put it).
    """
    repo = HUB_REPOS.get(kind)
    if repo is None:
        raise DatasetError(f"data import {kind}: no prebuilt archive is known on the hub; import a zip or folder")
    manual = (f"download the dataset repo {repo} (https://huggingface.co/datasets/{repo}) where there is a "
              f"network, then run `python -m gist_engine data import {kind} <its zip>`")
    try:
        import huggingface_hub  # heavy, and only --from-hub needs it (installed with timm)

        local = Path(huggingface_hub.snapshot_download(repo_id=repo, repo_type="dataset", allow_patterns=["*.zip"],
                                                       local_dir=folder / repo.replace("/", "--")))
    except ImportError:
        raise DatasetError(f"data import {kind} --from-hub needs huggingface_hub (pip install huggingface_hub); or "
                           f"{manual}") from None
    except Exception as exc:  # offline: LocalEntryNotFoundError, ConnectionError, HTTP errors, ...
        raise DatasetError(f"data import {kind} --from-hub: the hub cannot be reached ({type(exc).__name__}); "
                           f"{manual}") from None
    zips = sorted(local.rglob("*.zip"))
    if len(zips) != 1:
        raise DatasetError(f"data import {kind} --from-hub: expected one zip in {repo}, found {len(zips)} in {local}; "
                           f"import the right one by hand: {manual}")
    return zips[0]


__all__ = ["BenchmarkLimits", "BenchmarkReport", "fetch_from_hub", "find_datasets", "import_benchmark"]
