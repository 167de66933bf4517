"""Uploads: an ImageFolder zip (caps, no path escapes, verified images) and a text table, checked, stored atomically."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from .._io import atomic_dir, atomic_path
from .images import (
    IMAGE_DECODE_ERRORS,
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    DatasetError,
    decode_image,
    load_image_file,
    open_image,
)
from .readers import CONTROL_NAME, SKIPPED_NAMES, skip_reason
from .text import LABEL_COLUMN, PAIR_COLUMN, TEXT_COLUMN, parse_text_table

DATASETS_SUBDIR = "datasets"  # uploads live in <data_dir>/datasets/<name>/<class>/...
TEXT_UPLOAD_SUBDIR = "text_datasets"  # text tables live in <root>/text_datasets/<name>.jsonl
MAX_UPLOAD_BYTES = 100 * 2**20  # a text table
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
THUMB_SIZE = 64  # side of the preview thumbnails in the report
THUMBS_PER_CLASS = 4


# ----------------------------------------------------------------------------------------------------
# Image folders: a zip of class sub-folders

@dataclass(frozen=True)
class UploadLimits:
    """Caps applied before anything is decoded or written (defaults suit a teaching/research upload)."""

    max_zip_bytes: int = 200 * 2**20  # the archive itself
    max_entries: int = 20_000  # members of the archive (files and folders)
    max_total_bytes: int = 1 * 2**30  # all members uncompressed, as the archive declares and as read
    max_file_bytes: int = 32 * 2**20  # one member uncompressed
    max_ratio: float = 100.0  # uncompressed / compressed size of one member (zip bombs)
    max_pixels: int = MAX_IMAGE_PIXELS  # width * height of one image, checked from its header
    min_classes: int = 2
    min_per_class: int = 2  # fewer images than this in a class: the class is dropped with a reason


@dataclass
class ImportReport:
    """What `import_imagefolder_zip` found and did; `ok` is False when `errors` is non-empty (nothing written)."""

    name: str
    path: Path | None = None  # the stored folder, once written
    classes: dict[str, int] = field(default_factory=dict)  # accepted images per class, sorted by class name
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (archive member, reason)
    errors: list[str] = field(default_factory=list)  # fatal problems: nothing was written
    warnings: list[str] = field(default_factory=list)
    thumbnails: dict[str, list[np.ndarray]] = field(default_factory=dict)  # class -> (64, 64, 3) uint8 each
    skipped: int = 0  # __MACOSX metadata entries, skipped without a reason each (hidden entries are rejected)
    bytes_written: int = 0

    @property
    def ok(self) -> bool:
        """Whether the dataset was accepted (and written, unless it was a dry run)."""
        return not self.errors

    @property
    def accepted(self) -> int:
        """Accepted images over all classes."""
        return sum(self.classes.values())

    @property
    def dataset(self) -> str | None:
        """The `data.dataset` value that selects the stored folder, e.g. `imagefolder:/data/datasets/pets`."""
        return f"imagefolder:{self.path}" if self.path is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without thumbnails)."""
        return {"name": self.name, "ok": self.ok, "path": str(self.path) if self.path else None,
                "dataset": self.dataset, "classes": dict(self.classes), "accepted": self.accepted,
                "rejected": [list(r) for r in self.rejected], "errors": list(self.errors),
                "warnings": list(self.warnings), "bytes_written": self.bytes_written, "skipped": self.skipped}


def datasets_root(root: str | Path) -> Path:
    """The folder holding uploaded datasets: `<root>/datasets`."""
    return Path(root) / DATASETS_SUBDIR


def _member_parts(info: zipfile.ZipInfo) -> tuple[str, ...] | str:
    """The member's path components, or a rejection reason for an absolute or escaping path."""
    raw = info.filename
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        return "path escapes the archive (..)"
    if any(skip_reason(p) == CONTROL_NAME for p in parts):  # the folder readers skip the same names
        return CONTROL_NAME
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)  # 3 = Unix


def _common_root(paths: list[tuple[str, ...]]) -> int:
    """1 when every file sits under one top folder that itself holds class folders (a zipped folder), else 0."""
    if paths and len({p[0] for p in paths}) == 1 and any(len(p) >= 3 for p in paths):
        return 1
    return 0


def _check_image(data: bytes, limits: UploadLimits, name: str) -> tuple[str | None, np.ndarray | None]:
    """(rejection reason or None, a thumbnail): the shared decoder's checks (format, pixel cap), PIL verify,
    then the full decode that makes the thumbnail (the image as a model sees it, at THUMB_SIZE)."""
    try:
        with open_image(data, limits.max_pixels, name) as img:
            img.verify()  # structure and checksums, no decode
        return None, load_image_file(data, THUMB_SIZE, limits.max_pixels, name).permute(1, 2, 0).numpy()
    except DatasetError as exc:
        return str(exc).removeprefix(f"cannot read image {name}: "), None
    except (*IMAGE_DECODE_ERRORS, struct.error) as exc:
        return f"corrupt image: {exc}", None


def _open_zip(source: bytes | str | Path | BinaryIO, limits: UploadLimits) -> zipfile.ZipFile | str:
    """The open archive, or a fatal error message (too large, not a zip)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size, fh = len(source), io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            return f"{path} is not a file"
        size, fh = path.stat().st_size, path.open("rb")
    else:
        fh = source
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(0)
    if size > limits.max_zip_bytes:
        return f"the archive is {size / 2**20:.1f} MiB; the cap is {limits.max_zip_bytes / 2**20:.0f} MiB"
    try:
        return zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"not a readable zip archive ({exc})"


def import_imagefolder_zip(source: bytes | str | Path | BinaryIO, name: str, root: str | Path,
                           limits: UploadLimits | None = None, overwrite: bool = False,
                           dry_run: bool = False) -> ImportReport:
    """Validate a zip of class sub-folders and store it under `<root>/datasets/<name>/<class>/...`.

    Layout accepted: `<class>/<image>` or one top folder `<top>/<class>/<image>` (deeper sub-folders are kept).
    Every member is checked before anything is written: the archive size and member count, absolute paths,
    `..` components and symlinks (rejected), each member's size and compression ratio, the total unpacked size
    (as declared and as actually read), the extension, and the image itself (pixel cap, PIL verify, full
    decode). Bad members are listed with a reason and skipped; a fatal problem (not a zip, caps exceeded,
    fewer than two classes, name taken) writes nothing. The write is atomic (a temp folder, then a rename).

    Args:
        source: The zip as bytes, a path or a binary file object.
        name: The dataset's name: letters, digits, `_`, `.`, `-` (1-64 characters, not starting with a symbol).
        root: The data directory (the app's GIST_DATA_DIR).
        limits: Caps (default `UploadLimits()`).
        overwrite: Replace an existing dataset of that name.
        dry_run: Validate only; nothing is written (`path` stays None).

    Returns:
        An ImportReport; `report.dataset` is the `data.dataset` value selecting it.
    """
    limits = limits or UploadLimits()
    report = ImportReport(name=name)
    if not NAME_PATTERN.match(name or ""):
        report.errors.append(f"dataset name {name!r}: use 1-64 letters, digits, '_', '.', '-' (starting with a "
                             "letter or digit)")
        return report
    dest = datasets_root(root) / name
    if dest.exists() and not overwrite and not dry_run:
        report.errors.append(f"a dataset named {name!r} already exists ({dest}); choose another name")
        return report
    archive = _open_zip(source, limits)
    if isinstance(archive, str):
        report.errors.append(archive)
        return report
    with archive:
        infos = archive.infolist()
        problem = _archive_problem(infos, limits)
        if problem:
            report.errors.append(problem)
            return report
        files = _screen_members(infos, report)
        accepted = _read_members(archive, files, limits, report)
    if accepted is None:
        return report
    accepted = _keep_classes(accepted, limits, report)
    if accepted is None:
        return report
    if dry_run:
        return report
    _write(dest, accepted, report, overwrite)
    return report


Entry = tuple[zipfile.ZipInfo, tuple[str, ...]]  # (zip entry, its path parts)
Member = tuple[zipfile.ZipInfo, tuple[str, ...], bytes]  # (zip entry, path below the common top folder, its bytes)


def _archive_problem(infos: list[zipfile.ZipInfo], limits: UploadLimits) -> str | None:
    """Why the whole archive is refused from its directory alone (entry count, declared unpacked size), or None."""
    if len(infos) > limits.max_entries:
        return f"the archive has {len(infos):,} entries; the cap is {limits.max_entries:,}"
    declared = sum(i.file_size for i in infos)
    if declared > limits.max_total_bytes:
        return (f"the archive unpacks to {declared / 2**20:.1f} MiB; the cap is "
                f"{limits.max_total_bytes / 2**20:.0f} MiB")
    return None


def _screen_members(infos: list[zipfile.ZipInfo], report: ImportReport) -> list[Entry]:
    """The file entries worth reading, with their path parts; the others are counted as skipped (the readers' own
    skipped names) or listed as rejected with the reason (unsafe path, link, encrypted, hidden or system file)."""
    files: list[Entry] = []
    for info in infos:
        if info.is_dir():
            continue
        parts = _member_parts(info)
        skipped = None if isinstance(parts, str) else next(filter(None, map(skip_reason, parts)), None)
        if isinstance(parts, str):
            report.rejected.append((info.filename, parts))
        elif any(p in SKIPPED_NAMES for p in parts):  # the folder readers skip them too (skip_reason)
            report.skipped += 1
        elif _is_symlink(info):
            report.rejected.append((info.filename, "symbolic link"))
        elif info.flag_bits & 0x1:
            report.rejected.append((info.filename, "encrypted"))
        elif skipped:
            report.rejected.append((info.filename, skipped))
        else:
            files.append((info, parts))
    return files


def _member_problem(info: zipfile.ZipInfo, rel: tuple[str, ...], limits: UploadLimits) -> str | None:
    """Why one entry is rejected before it is read (layout, extension, size, compression ratio), or None."""
    if len(rel) < 2:
        return "not inside a class folder (expected <class>/<image>)"
    if not info.filename.lower().endswith(IMAGE_EXTENSIONS):
        return f"not an image file (extension {PurePosixPath(info.filename).suffix or 'none'!s})"
    if info.file_size > limits.max_file_bytes:
        return f"{info.file_size / 2**20:.1f} MiB uncompressed; the cap is {limits.max_file_bytes / 2**20:.0f} MiB"
    if info.file_size > limits.max_ratio * max(info.compress_size, 1):
        return (f"compresses {info.file_size / max(info.compress_size, 1):.0f}:1 in the zip, past the "
                f"{limits.max_ratio:.0f}:1 allowed for one file (a guard against zip bombs); image data "
                "compresses far less, so this file is mostly something else, such as a large metadata "
                "or text chunk: re-save the image without its metadata")
    return None


def _read_members(archive: zipfile.ZipFile, files: list[Entry],
                  limits: UploadLimits, report: ImportReport) -> list[Member] | None:
    """Read and check each screened entry (never more bytes than the caps allow, whatever the headers say):
    the accepted images with their class thumbnails; None when the archive must be refused (an entry unpacks to
    more than it declares)."""
    strip = _common_root([p for _, p in files])
    accepted: list[Member] = []
    read_total = 0
    for info, parts in files:
        rel = parts[strip:]
        reason = _member_problem(info, rel, limits)
        if reason:
            report.rejected.append((info.filename, reason))
            continue
        try:
            with archive.open(info) as fh:
                data = fh.read(limits.max_file_bytes + 1)  # never more than the cap, whatever the header says
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            report.rejected.append((info.filename, f"cannot be extracted ({exc})"))
            continue
        read_total += len(data)
        if len(data) > limits.max_file_bytes or read_total > limits.max_total_bytes:
            report.errors.append(f"{info.filename} unpacks to more than its header declares; the archive "
                                 "was refused")
            return None
        reason, thumb = _check_image(data, limits, info.filename)
        if reason:
            report.rejected.append((info.filename, reason))
            continue
        accepted.append((info, rel, data))
        thumbs = report.thumbnails.setdefault(rel[0], [])
        if len(thumbs) < THUMBS_PER_CLASS:
            thumbs.append(thumb)
    return accepted


def _keep_classes(accepted: list[Member], limits: UploadLimits, report: ImportReport) -> list[Member] | None:
    """Drop the classes with fewer than `limits.min_per_class` images (with a warning) and record the class
    counts; None when fewer than `limits.min_classes` classes remain (the error says so)."""
    counts: dict[str, int] = {}
    for _, rel, _ in accepted:
        counts[rel[0]] = counts.get(rel[0], 0) + 1
    small = sorted(c for c, n in counts.items() if n < limits.min_per_class)
    for c in small:
        report.warnings.append(f"class {c!r} has {counts[c]} image(s) (< {limits.min_per_class}); it was dropped")
        report.thumbnails.pop(c, None)
    report.classes = {c: counts[c] for c in sorted(counts) if c not in small}
    if len(report.classes) < limits.min_classes:
        found = ", ".join(report.classes) or "none"
        report.errors.append(f"{len(report.classes)} class folder(s) with images ({found}); classification "
                             f"needs at least {limits.min_classes} (expected <class>/<image> entries)")
        return None
    report.warnings += [f"class {c!r} has only {n} images: its test split will be tiny"
                        for c, n in report.classes.items() if n < 5]
    return [a for a in accepted if a[1][0] not in small]


def _write(dest: Path, accepted: list, report: ImportReport, overwrite: bool) -> None:
    with atomic_dir(dest, replace=overwrite) as tmp:
        for _, rel, data in accepted:
            target = tmp.joinpath(*rel)
            if tmp.resolve() not in target.resolve().parents:  # belt and braces after the checks above
                raise DatasetError(f"refusing to write outside the dataset folder: {'/'.join(rel)}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            report.bytes_written += len(data)
    report.path = dest


def list_uploaded_datasets(root: str | Path) -> list[dict[str, Any]]:
    """Datasets stored by `import_imagefolder_zip` under `<root>/datasets`, newest first: name, path, `dataset`
    (the `data.dataset` value), classes {class: images}, images, `created` (when stored, seconds since the epoch)."""
    base = datasets_root(root)
    if not base.is_dir():
        return []
    out = []
    for entry in sorted(base.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        classes = {c.name: sum(1 for f in c.rglob("*") if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS))
                   for c in sorted(entry.iterdir()) if c.is_dir() and not c.name.startswith(".")}
        out.append({"name": entry.name, "path": str(entry), "dataset": f"imagefolder:{entry}",
                    "classes": classes, "images": sum(classes.values()), "created": entry.stat().st_mtime})
    return sorted(out, key=lambda d: -d["created"])  # stable: equal times keep the names' order


def delete_uploaded_dataset(name: str, root: str | Path) -> Path:
    """Remove an upload stored by `import_imagefolder_zip` (its folder `<root>/datasets/<name>`); runs trained on
    it keep their results. Returns the folder removed.

    Raises:
        DatasetError: when `name` is not an upload there.
    """
    path = datasets_root(root) / name
    if not NAME_PATTERN.match(name) or not path.is_dir():
        raise DatasetError(f"no uploaded dataset {name!r} in {datasets_root(root)}")
    shutil.rmtree(path)
    return path


# ----------------------------------------------------------------------------------------------------
# Text tables: a CSV/TSV/JSONL table checked and stored as JSONL

@dataclass
class TextImportReport:
    """What `import_text_table` found and did; `ok` is False when `errors` is non-empty (nothing written)."""

    name: str
    path: Path | None = None
    classes: dict[str, int] = field(default_factory=dict)  # documents per class
    dropped_rows: int = 0  # rows with an empty text or label
    pairs: bool = False  # whether it is a sentence-pair table (text_pair column)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the table was accepted (and written, unless it was a dry run)."""
        return not self.errors

    @property
    def dataset(self) -> str | None:
        """The `data.dataset` value that selects the stored table, e.g. `textfile:/data/text_datasets/x.jsonl`."""
        return f"textfile:{self.path}" if self.path is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"name": self.name, "ok": self.ok, "path": str(self.path) if self.path else None,
                "dataset": self.dataset, "classes": dict(self.classes), "documents": sum(self.classes.values()),
                "dropped_rows": self.dropped_rows, "pairs": self.pairs, "errors": list(self.errors),
                "warnings": list(self.warnings)}


def import_text_table(source: bytes | str | Path, name: str, root: str | Path, filename: str | None = None,
                      overwrite: bool = False, dry_run: bool = False, min_per_class: int = 3) -> TextImportReport:
    """Check a CSV/TSV/JSONL table (`text`, `label`, optional `text_pair`) and store it as `<root>/text_datasets/
    <name>.jsonl` (atomically).

    Args:
        source: The file's bytes or a path.
        name: The dataset's name (letters, digits, `_`, `.`, `-`; 1-64 characters).
        root: The data directory (the app's GIST_DATA_DIR).
        filename: The uploaded file's name when `source` is bytes (its extension picks the format).
        overwrite: Replace an existing dataset of that name.
        dry_run: Check only; nothing is written.
        min_per_class: Classes with fewer documents are an error (each class needs train and test documents).
    """
    report = TextImportReport(name=name)
    if not NAME_PATTERN.match(name or ""):
        report.errors.append(f"dataset name {name!r}: use 1-64 letters, digits, '_', '.', '-'")
        return report
    dest = Path(root) / TEXT_UPLOAD_SUBDIR / f"{name}.jsonl"
    if dest.exists() and not overwrite and not dry_run:
        report.errors.append(f"a text dataset named {name!r} already exists ({dest}); choose another name")
        return report
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    if len(data) > MAX_UPLOAD_BYTES:
        report.errors.append(f"the file is {len(data) / 2**20:.1f} MiB; the cap is {MAX_UPLOAD_BYTES / 2**20:.0f} MiB")
        return report
    try:
        names, texts, labels, dropped = parse_text_table(Path(filename or str(source)), data)
    except DatasetError as exc:
        report.errors.append(str(exc))
        return report
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(names))
    report.classes = {n: int(c) for n, c in zip(names, counts, strict=True)}
    report.dropped_rows, report.pairs = dropped, texts.pairs is not None
    if dropped:
        report.warnings.append(f"{dropped} row(s) with an empty text or label were dropped")
    small = [n for n, c in report.classes.items() if c < min_per_class]
    if len(names) < 2 or small:
        report.errors.append(f"{len(names)} class(es); classification needs at least 2, each with >= "
                             f"{min_per_class} documents" + (f" (too few: {', '.join(small)})" if small else ""))
        return report
    if dry_run:
        return report
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for i, (text, label) in enumerate(zip(texts.texts, labels, strict=True)):
            row = {TEXT_COLUMN: text, LABEL_COLUMN: names[label]}
            if texts.pairs is not None:
                row[PAIR_COLUMN] = texts.pairs[i]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    report.path = dest
    return report


def list_text_datasets(root: str | Path) -> list[dict[str, Any]]:
    """Tables stored by `import_text_table`: name, path and the `data.dataset` value of each."""
    base = Path(root) / TEXT_UPLOAD_SUBDIR
    if not base.is_dir():
        return []
    return [{"name": p.stem, "path": str(p), "dataset": f"textfile:{p}"} for p in sorted(base.glob("*.jsonl"))]


__all__ = ["MAX_UPLOAD_BYTES", "TEXT_UPLOAD_SUBDIR", "ImportReport", "TextImportReport", "UploadLimits",
           "datasets_root", "decode_image", "import_imagefolder_zip", "import_text_table", "list_text_datasets",
           "list_uploaded_datasets"]
