"""The gallery of recorded runs: small versioned bundles exported from a run store, imported as read-only examples.

A bundle is one folder (format `gist-studio-gallery/1`):

    <name>/manifest.json        format, name, title, description, date, machine, versions, command, recipe, the
                                store rows of its groups and runs, and a summary of their numbers
    <name>/metrics.parquet      run_id, step, key, value (every step metric, as stored)
    <name>/evaluations.parquet  run_id, step, split, epoch, acc_cls, acc_gist, agreement, n, per_class (JSON text)
    <name>/runs/<run_id>/       result.json, checkpoint.safetensors (the trainable parameters only; optional) and
                                attention/ (the float16 snapshots of the probe batch); never resume.safetensors

A gallery folder holds bundles and `gallery.yaml`, the index of entries with the recipe each one is recorded from
(`record` re-runs a recipe and writes its bundle: `python -m gist_engine runs gallery record --all`).

A bundle's manifest may name a `kind` other than plain runs (no `kind`): a layer above the runs registers it with
`register_kind` (gist_engine.studies registers `study`: a study's rows beside its runs). Its hooks add the kind's
rows on import, take them out on removal, and record the index entries that name the kind (`study: <spec>`).

Imported runs keep their ids and are owned by `gallery:<name>` (`manager.EXAMPLE_OWNER`): the RunManager refuses
to delete, resume or re-run them (`remove_gallery_example` takes a whole example out of a store), and their names and
group names start with "example · ". Importing twice changes nothing; importing a re-recorded bundle replaces
the older version of that example.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import os
import platform
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from .._io import atomic_dir
from ..config import ConfigError, load_run_config, safe_load_json
from ..speed import usable_cpus
from ..train import package_versions
from ..train.checkpoint import CHECKPOINT_NAME
from .ids import check_name, copy_tree, is_id, printable, remove_tree
from .manager import ACTIVE, EXAMPLE_OWNER, RESULT_NAME, RUNS_DIR, RunManager
from .pairs import format_table
from .store import EVAL_COLUMNS, RunError

logger = logging.getLogger(__name__)

FORMAT = "gist-studio-gallery/1"
INDEX_NAME = "gallery.yaml"
MANIFEST_NAME = "manifest.json"
METRICS_NAME = "metrics.parquet"
EVALUATIONS_NAME = "evaluations.parquet"
EXAMPLE_PREFIX = "example · "  # in front of an imported run's and group's name
RUN_FILES = (RESULT_NAME, CHECKPOINT_NAME)  # besides attention/*.npz; resume.safetensors stays out
SNAPSHOT_DIR = "attention"
LOCAL_COLUMNS = ("owner", "owner_pid", "owner_host", "heartbeat", "stop_requested")  # set by the importing store
RECORD_COMMAND = "python -m gist_engine runs gallery record {name}"
# Caps a bundle is checked against before anything of it is read into memory or copied.
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_BUNDLE_BYTES = 8 * 2**30  # every file of the bundle together
MAX_BUNDLE_FILES = 100_000
MAX_TABLE_ROWS = 50_000_000  # rows of metrics.parquet or evaluations.parquet (read from the Parquet footer)
MANIFEST_DEPTH = 8  # nesting of a manifest (its deepest part, a group's summary, nests 4 levels)
ENTRY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a bundle's (an entry's) name
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a file of attention/


class GalleryError(RunError):
    """A bundle or gallery that cannot be used (missing, unknown format, clashing ids); the message says why."""


@dataclass(frozen=True)
class BundleKind:
    """A kind of bundle beyond plain runs, handled by a layer above the runs (see `register_kind`).

    Attributes:
        name: The manifest's `kind`, and the key that marks an index entry of this kind (`study: <spec>`).
        imported: (store, manifest, bundle folder) -> whether it added rows; called after the bundle's runs are
            in the store, on every import (so it must be idempotent).
        removing: (store, entry name, run ids) -> None; called before an example's runs leave the store.
        record: (index entry, gallery folder, bundle folder to write, work dir or None, timeout or None) -> the
            bundle folder: re-run the entry's recipe and export it.
        validate: (manifest, run ids of the bundle, the store to import into or None) -> None: check the kind's
            part of a manifest (ids, names, sizes; clashes with the store's own rows) before anything on disk
            changes; raises GalleryError (or a ConfigError) naming the problem.
    """

    name: str
    imported: Callable[[RunManager, dict[str, Any], Path], bool]
    removing: Callable[[RunManager, str, list[str]], None]
    record: Callable[[dict[str, Any], Path, Path, Path | None, float | None], Path]
    validate: Callable[[dict[str, Any], set[str], RunManager | None], None] | None = None


KINDS: dict[str, BundleKind] = {}  # kind name -> its hooks; plain-run bundles have no kind


def register_kind(kind: BundleKind) -> None:
    """Handle bundles (and index entries) of `kind.name` with its hooks; registering a name again replaces it."""
    KINDS[kind.name] = kind


def _entry_kind(entry: dict[str, Any]) -> BundleKind | None:
    """The registered kind an index entry names (a key such as `study`), or None for a run recipe (`config`)."""
    return next((KINDS[k] for k in KINDS if entry.get(k)), None)


def _bundle_kind(manifest: dict[str, Any], path: Path) -> BundleKind | None:
    kind = manifest.get("kind")
    if kind is None:
        return None
    if kind not in KINDS:
        raise GalleryError(f"{path}: bundle kind {kind!r} is not known here (known: {', '.join(KINDS) or 'none'}); "
                           "import it with the full gist_engine package")
    return KINDS[kind]


# ---------------------------------------------------------------------------------------------- the folder
def default_gallery_dir() -> Path:
    """The shipped gallery: `$GIST_GALLERY_DIR`, else `assets/gallery` of a checkout, else the installed app's.

    The installed app (`gist_studio`) is located with `importlib.util.find_spec`, never imported.
    """
    if os.environ.get("GIST_GALLERY_DIR"):
        return Path(os.environ["GIST_GALLERY_DIR"])
    checkout = Path(__file__).resolve().parents[2] / "assets" / "gallery"
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec("gist_studio")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "assets" / "gallery"
    return checkout


def read_index(gallery_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The entries of `gallery.yaml`: name, title, description, config (relative to the folder), overrides, seeds;
    or, instead of config/overrides/seeds, the key of a registered kind (`study: <spec>`) and its options.

    Raises:
        GalleryError: No index, or an entry without a name, or without a config or a registered kind's key.
    """
    folder = Path(gallery_dir) if gallery_dir is not None else default_gallery_dir()
    path = folder / INDEX_NAME
    if not path.is_file():
        raise GalleryError(f"no gallery index at {path}; give the gallery folder (--gallery DIR)")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = doc.get("entries") or []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not (entry.get("config") or _entry_kind(entry)):
            raise GalleryError(f"{path}: entry {i + 1} needs a name and one of: {', '.join(['config', *KINDS])}")
    return entries


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """A bundle's manifest, read within bounds: at most `MAX_MANIFEST_BYTES`, nested at most `MANIFEST_DEPTH`
    levels, a mapping of the known format; never through a link.

    Raises:
        GalleryError: No manifest (or a link), too large, too deep, not JSON, or an unknown format; one line.
    """
    path = Path(bundle) / MANIFEST_NAME
    if path.is_symlink():
        raise GalleryError(f"{path} is a link; a gallery bundle holds plain files only")
    if not path.is_file():
        raise GalleryError(f"{bundle} is not a gallery bundle (no {MANIFEST_NAME}); record it first")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise GalleryError(f"{path}: {size:,} bytes, more than a manifest may have ({MAX_MANIFEST_BYTES:,})")
    try:
        manifest = safe_load_json(path.read_bytes(), str(path), MANIFEST_DEPTH,
                                  hint="a gallery manifest nests 4 levels; re-record the bundle")
    except ConfigError as exc:
        raise GalleryError(str(exc)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise GalleryError(f"{path}: format {found!r} is not {FORMAT!r}; upgrade gist_engine or re-record the "
                           "bundle")
    return manifest


def _rows(manifest: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    rows = manifest.get(key)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise GalleryError(f"{path}: {key} must be a list of rows (mappings)")
    return rows


def _check_ids(rows: list[dict[str, Any]], kind: str, where: str) -> list[str]:
    """The rows' `id`s, each in the id format of `kind` and distinct (GalleryError naming the first bad one)."""
    ids = [r.get("id") for r in rows]
    bad = next((i for i in ids if not is_id(i, kind)), None)
    if bad is not None or any(i is None for i in ids):
        shown = f"'{printable(bad)}'" if isinstance(bad, str) else repr(bad)
        raise GalleryError(f"{where}: {shown} is not a {kind} id (10 lowercase hex digits"
                           f"{', after the letter ' + kind[0] if kind != 'run' else ''}); the bundle is refused, "
                           "nothing was imported")
    if len(set(ids)) != len(ids):
        raise GalleryError(f"{where}: a {kind} id appears twice; the bundle is refused, nothing was imported")
    return ids


def _check_files(path: Path, run_ids: set[str]) -> None:
    """Every entry of the bundle folder: plain files and folders only (no links, devices, pipes), the known layout
    (manifest, the two tables, runs/<run id of the manifest>/{result.json, checkpoint.safetensors, attention/}),
    names of plain text, at most `MAX_BUNDLE_FILES` entries and `MAX_BUNDLE_BYTES` bytes."""
    allowed_top = {MANIFEST_NAME: "file", METRICS_NAME: "file", EVALUATIONS_NAME: "file", "runs": "dir"}
    count = total = 0
    for folder, dirs, files in os.walk(path, followlinks=False):
        rel_folder = Path(folder).relative_to(path)
        depth = len(rel_folder.parts)
        for entry_name in (*dirs, *files):
            entry = Path(folder) / entry_name
            rel = rel_folder / entry_name
            shown = printable(str(rel))
            count += 1
            if count > MAX_BUNDLE_FILES:
                raise GalleryError(f"{path}: more than {MAX_BUNDLE_FILES:,} files; the bundle is refused")
            if entry.is_symlink():
                raise GalleryError(f"{path}: {shown} is a link; a gallery bundle holds plain files only (links are "
                                   "never followed); the bundle is refused, nothing was imported")
            is_dir = entry.is_dir()
            if not is_dir and not entry.is_file():
                raise GalleryError(f"{path}: {shown} is not a plain file; the bundle is refused")
            if depth == 0:
                ok = allowed_top.get(entry_name) == ("dir" if is_dir else "file")
            elif depth == 1:  # runs/<run id>
                ok = is_dir and entry_name in run_ids
            elif depth == 2:  # runs/<run id>/<file or attention>
                ok = (entry_name == SNAPSHOT_DIR) if is_dir else entry_name in RUN_FILES
            else:  # runs/<run id>/attention/<file>
                ok = depth == 3 and not is_dir and FILE_NAME.fullmatch(entry_name) is not None
            if not ok:
                raise GalleryError(f"{path}: unexpected entry {shown!r} (a bundle holds {MANIFEST_NAME}, "
                                   f"{METRICS_NAME}, {EVALUATIONS_NAME} and runs/<run id of the manifest>/); the "
                                   "bundle is refused, nothing was imported")
            if not is_dir:
                total += entry.stat().st_size
                if total > MAX_BUNDLE_BYTES:
                    raise GalleryError(f"{path}: more than {MAX_BUNDLE_BYTES / 2**30:g} GiB of files; the bundle "
                                       "is refused")
    for name in (METRICS_NAME, EVALUATIONS_NAME):
        if not (path / name).is_file():
            raise GalleryError(f"{path}: no {name}; re-record the bundle")


def _read_tables(path: Path, run_ids: set[str]) -> tuple[Any, Any]:
    """The bundle's metrics and evaluations frames, their row counts checked from the Parquet footers first and
    every row's run id one of the bundle's own."""
    import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables
    import pyarrow.parquet as pq  # on use, with pandas

    frames = []
    for name, columns in ((METRICS_NAME, ("run_id", "step", "key", "value")), (EVALUATIONS_NAME, EVAL_COLUMNS)):
        try:
            meta = pq.ParquetFile(path / name)
            rows, found = meta.metadata.num_rows, set(meta.schema_arrow.names)
        except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
            raise GalleryError(f"{path / name}: not a Parquet table ({type(exc).__name__}); re-record the "
                               "bundle") from None
        if rows > MAX_TABLE_ROWS:
            raise GalleryError(f"{path / name}: {rows:,} rows, more than {MAX_TABLE_ROWS:,}; the bundle is refused")
        missing = [c for c in columns if c not in found]
        if missing:
            raise GalleryError(f"{path / name}: no column {missing[0]!r}; re-record the bundle")
        frame = pd.read_parquet(path / name, columns=list(columns))
        strays = sorted({str(r) for r in frame["run_id"]} - run_ids)
        if strays:
            raise GalleryError(f"{path / name}: rows of run '{printable(strays[0])}', which is not a run of the "
                               "bundle; the bundle is refused, nothing was imported")
        frames.append(frame)
    return frames[0], frames[1]


def check_bundle(bundle: str | Path, mgr: RunManager | None = None) -> dict[str, Any]:
    """Validate a bundle whole before anything on disk changes; returns its manifest.

    Checks: the manifest (`read_manifest`: size, nesting, format); the entry name; every run and group id in its
    format (`ids.check_id`: never a path) and distinct; every run's group among the bundle's groups; run and group
    names as text (no control characters); the registered kind's part (`BundleKind.validate`, given `mgr`, the
    store to import into, when there is one); the files (no links or special files, the known layout, names, count
    and total size).

    Raises:
        GalleryError: naming the first problem; nothing has been written.
    """
    path = Path(bundle)
    manifest = read_manifest(path)
    name = manifest.get("name")
    if not isinstance(name, str) or not ENTRY_NAME.fullmatch(name):
        shown = f"'{printable(name)}'" if isinstance(name, str) else repr(name)
        raise GalleryError(f"{path}: entry name {shown} is not letters, digits, '-' and '_' (at most 64)")
    runs, groups = _rows(manifest, "runs", path), _rows(manifest, "groups", path)
    run_ids = set(_check_ids(runs, "run", f"{path}: runs"))
    group_ids = set(_check_ids(groups, "group", f"{path}: groups"))
    for row, what in [*((r, "run") for r in runs), *((g, "group") for g in groups)]:
        try:
            check_name(row.get("name"), f"{what} name")
        except ValueError as exc:
            raise GalleryError(f"{path}: {what} {row['id']}: {exc}") from None
        if what == "run" and row.get("group_id") is not None and row["group_id"] not in group_ids:
            raise GalleryError(f"{path}: run {row['id']} names group {row['group_id']!r}, which is not in the "
                               "bundle; the bundle is refused")
    kind = _bundle_kind(manifest, path)
    if kind is not None and kind.validate is not None:
        try:
            kind.validate(manifest, run_ids, mgr)
        except ConfigError as exc:
            raise GalleryError(f"{path}: {exc}") from None
    _check_files(path, run_ids)
    return manifest


def bundle_size(bundle: str | Path) -> int:
    """Bytes of every file in a bundle folder."""
    return sum(p.stat().st_size for p in Path(bundle).rglob("*") if p.is_file())


def list_gallery(gallery_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The gallery's entries in index order (then bundles missing from the index), each a manifest plus `path`,
    `size_bytes` and `recorded` (False for an index entry not recorded yet: only name, title, description)."""
    folder = Path(gallery_dir) if gallery_dir is not None else default_gallery_dir()
    entries = read_index(folder) if (folder / INDEX_NAME).is_file() else []
    names = [e["name"] for e in entries]
    names += sorted(p.parent.name for p in folder.glob(f"*/{MANIFEST_NAME}") if p.parent.name not in names)
    index = {e["name"]: e for e in entries}
    out = []
    for name in names:
        path = folder / name
        if (path / MANIFEST_NAME).is_file():
            info = read_manifest(path) | {"recorded": True, "size_bytes": bundle_size(path)}
        else:
            info = {"name": name, "title": index[name].get("title", name),
                    "description": index[name].get("description", ""), "recorded": False, "size_bytes": 0}
        out.append(info | {"path": path})
    return out


def find_bundle(name: str, gallery_dir: str | Path | None = None) -> Path:
    """The folder of a recorded entry (a name of the gallery, or a bundle folder's path: one with a `/`)."""
    if (Path(name) / MANIFEST_NAME).is_file() or "/" in name or os.sep in name:
        return Path(name)  # read_manifest says when it is not a bundle
    folder = Path(gallery_dir) if gallery_dir is not None else default_gallery_dir()
    recorded = [b["name"] for b in list_gallery(folder) if b["recorded"]]
    if name not in recorded:
        raise GalleryError(f"no gallery entry {name!r} in {folder}; entries: {', '.join(recorded) or 'none'}")
    return folder / name


# ---------------------------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    """The machine a bundle is recorded on: CPU model, logical cores, usable cores, OS, the GPU when present."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux: platform's answer stands
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable_cpus(), "os": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ----------------------------------------------------------------------------------------------- export
def _store_rows(mgr: RunManager, run_ids: Sequence[str]) -> tuple[list[dict], list[dict], Any, Any]:
    """The runs' rows, their groups' rows, metrics and evaluations frames, read in one snapshot of the store."""
    import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables

    runs, groups, metrics, evals = mgr.store.export_rows(run_ids)
    metrics = pd.DataFrame(metrics, columns=["run_id", "step", "key", "value"]).astype(
        {"run_id": "str", "step": "int64", "key": "str", "value": "float64"})
    evals = pd.DataFrame(evals, columns=list(EVAL_COLUMNS)).astype(
        {"step": "int64", "epoch": "float64", "acc_cls": "float64", "acc_gist": "float64", "agreement": "float64"})
    return runs, groups, metrics, evals


def _summary(mgr: RunManager, runs: list[dict], groups: list[dict]) -> dict[str, Any]:
    """The numbers the gallery page shows: per run its accuracies, per group the paired delta."""
    out: dict[str, Any] = {"runs": [{k: r.get(k) for k in ("id", "name", "seed", "gist_enabled", "status", "acc_cls",
                                                           "best_acc_cls", "acc_gist", "agreement", "step",
                                                           "trainable_params", "selected_on", "val_acc")}
                                    for r in runs]}
    out["groups"] = []
    for g in groups:
        res = mgr.group_results(g["id"])
        out["groups"].append({"id": g["id"], "name": g["name"], "delta_acc_cls": res.get("delta_acc_cls"),
                              "text": format_table(res["paired"])})
    return out


def export_bundle(mgr: RunManager, ids: Sequence[str], out: str | Path, name: str, *, title: str = "",
                  description: str = "", command: str = "", recipe: dict[str, Any] | None = None,
                  checkpoints: bool = True, extra: dict[str, Any] | None = None) -> Path:
    """Write runs (and whole groups) of a store as a bundle folder `out` (replaced when it exists).

    Args:
        mgr: The store to read.
        ids: Run ids and/or group ids (a group brings all its runs).
        out: The bundle folder to write.
        name: The entry's name (letters, digits, `-`, `_`); imported runs are owned by `gallery:<name>`.
        title, description: What the gallery page shows.
        command: The exact command that produced the runs (kept in the manifest).
        recipe: How `record` reproduces it (config, overrides, seeds), when it came from the index.
        checkpoints: Copy each run's checkpoint (its trainable parameters); without, a bundle holds numbers only.
        extra: More manifest keys, from the layer that exports a registered kind (`kind` and its rows).

    Returns:
        The bundle folder.

    Raises:
        GalleryError: No ids, a bad name, a run that is still queued or running, or `out` exists and is not a
            bundle (a folder this function did not write is never replaced). RunNotFound: an unknown id.
    """
    if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise GalleryError(f"bundle name {name!r}: use letters, digits, '-' and '_'")
    if not ids:
        raise GalleryError("export: give at least one run or group id")
    out = Path(out)
    if out.is_symlink() or (out.exists() and not (out / MANIFEST_NAME).is_file()):  # never delete what it did not write
        raise GalleryError(f"{out} exists and is not a gallery bundle; give another --out folder or --name")
    run_ids: list[str] = []
    for some_id in ids:
        members = [s.id for s in mgr.list(group_id=some_id)] if mgr.is_group(some_id) else [mgr.get(some_id).id]
        run_ids += [r for r in members if r not in run_ids]
    runs, groups, metrics, evals = _store_rows(mgr, run_ids)
    busy = [r["id"] for r in runs if r["status"] in ACTIVE]
    if busy:
        raise GalleryError(f"runs {', '.join(busy)} are still {'/'.join(ACTIVE)}; export them when they end")
    with atomic_dir(out, replace=True) as tmp:  # beside `out`: renamed into place at the end
        for r in runs:
            src, dst = mgr.run_dir(r["id"]), tmp / "runs" / r["id"]
            dst.mkdir(parents=True)
            for file_name in RUN_FILES:
                if (src / file_name).is_file() and (checkpoints or file_name != CHECKPOINT_NAME):
                    shutil.copy2(src / file_name, dst / file_name)
            if (src / SNAPSHOT_DIR).is_dir():  # float16 maps and uint8 probe images, as recorded
                shutil.copytree(src / SNAPSHOT_DIR, dst / SNAPSHOT_DIR)
        metrics.to_parquet(tmp / METRICS_NAME, index=False)
        evals.to_parquet(tmp / EVALUATIONS_NAME, index=False)
        manifest = {
            "format": FORMAT, "name": name, "title": title or name, "description": description,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(), "versions": package_versions(), "command": command, "recipe": recipe,
            "groups": groups, "runs": [{k: v for k, v in r.items() if k not in LOCAL_COLUMNS} for r in runs],
            "summary": _summary(mgr, runs, groups), **(extra or {})}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    logger.info("gallery bundle %s: %d runs, %d bytes", out, len(runs), bundle_size(out))
    return out


# ----------------------------------------------------------------------------------------------- import
def gallery_examples(mgr: RunManager) -> dict[str, list[str]]:
    """The examples in a store: entry name -> its run ids."""
    out: dict[str, list[str]] = {}
    for run_id, owner in mgr.store.runs_owned_like(EXAMPLE_OWNER):
        out.setdefault(owner.removeprefix(EXAMPLE_OWNER), []).append(run_id)
    return out


def import_gallery_entry(mgr: RunManager, bundle: str | Path, gallery_dir: str | Path | None = None) -> dict[str, Any]:
    """Import a bundle into a store as read-only examples (idempotent).

    Args:
        mgr: The store to write.
        bundle: An entry name of the gallery or a bundle folder.
        gallery_dir: The gallery folder for a name (default `default_gallery_dir()`).

    Returns:
        `{"name", "runs": [ids], "groups": [ids], "imported": bool}`; `imported` is False when the same
        recording was there already. An older recording of the same entry is replaced.

    Raises:
        GalleryError: Not a bundle, or one of its run ids is a run of this store's own (not an example).
    """
    path = find_bundle(str(bundle), gallery_dir)
    manifest = check_bundle(path, mgr)  # the whole bundle, before anything on disk changes
    kind = _bundle_kind(manifest, path)
    name, owner = manifest["name"], EXAMPLE_OWNER + manifest["name"]
    run_ids = [r["id"] for r in manifest["runs"]]
    group_ids = [g["id"] for g in manifest["groups"]]
    result = {"name": name, "runs": run_ids, "groups": group_ids, "imported": False}
    clash = mgr.store.not_owned_by(run_ids, group_ids, owner)
    if clash:
        raise GalleryError(f"runs (or groups) {', '.join(clash)} of {name} are already in "
                           f"{mgr.root} as runs of its own (the store it was recorded in?); import into another data "
                           "directory")
    present = gallery_examples(mgr).get(name, [])
    if sorted(present) == sorted(run_ids):  # the kind's rows are added when missing (an import cut short)
        return result | {"imported": bool(kind and kind.imported(mgr, manifest, path))}
    metrics, evals = _read_tables(path, set(run_ids))
    import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables

    if present:
        logger.info("gallery %s: replacing the older recording (%d runs)", name, len(present))
        remove_gallery_example(mgr, name)
    runs_root = mgr.root / RUNS_DIR
    runs_root.mkdir(parents=True, exist_ok=True)
    copied = []
    try:
        for run_id in run_ids:
            src, dst = path / "runs" / run_id, mgr.run_dir(run_id)  # run_dir: the id checked again
            if src.is_dir():
                remove_tree(dst, runs_root)  # a left-over folder of this id (the clash check found no run of it)
                copy_tree(src, dst, runs_root)
                copied.append(dst)
        mgr.store.import_rows(
            [g | {"name": EXAMPLE_PREFIX + g["name"]} for g in manifest["groups"]],
            [r | {"name": EXAMPLE_PREFIX + r["name"], "owner": owner, "heartbeat": r.get("finished")}
             for r in manifest["runs"]],
            [(str(a), int(b), str(k), None if pd.isna(v) else float(v))
             for a, b, k, v in metrics.itertuples(index=False)],
            [tuple(None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in row)
             for row in evals[list(EVAL_COLUMNS)].itertuples(index=False)])
    except BaseException:
        for dst in copied:
            remove_tree(dst, runs_root)
        raise
    if kind is not None:
        kind.imported(mgr, manifest, path)
    logger.info("gallery %s: imported %d runs into %s", name, len(run_ids), mgr.root)
    return result | {"imported": True}


def import_gallery(mgr: RunManager, gallery_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Import every recorded entry of a gallery (see `import_gallery_entry`)."""
    return [import_gallery_entry(mgr, b["path"]) for b in list_gallery(gallery_dir) if b["recorded"]]


def remove_gallery_example(mgr: RunManager, name: str) -> list[str]:
    """Take an imported example (its runs, files and groups) out of a store; returns the run ids removed.

    Raises:
        GalleryError: No example of that name in the store.
    """
    run_ids = gallery_examples(mgr).get(name)
    if not run_ids:
        raise GalleryError(f"no gallery example {name!r} in {mgr.root}; imported: "
                           f"{', '.join(gallery_examples(mgr)) or 'none'}")
    groups = {mgr.get(r).group_id for r in run_ids} - {None}
    for kind in KINDS.values():  # e.g. the study whose runs these are
        kind.removing(mgr, name, run_ids)
    for run_id in run_ids:
        mgr.delete(run_id, examples=True)
    mgr.store.delete_empty_groups(groups)
    return run_ids


# ----------------------------------------------------------------------------------------------- record
def entry_config(entry: dict[str, Any], gallery_dir: str | Path) -> Any:
    """The RunConfig of an index entry: its config file (relative to the gallery folder) and overrides."""
    path = Path(gallery_dir) / entry["config"]
    if not path.is_file():
        raise ConfigError(f"gallery entry {entry['name']}: config {path} not found")
    return load_run_config(path, list(entry.get("overrides") or []))


def record(name: str, gallery_dir: str | Path | None = None, out_dir: str | Path | None = None,
           work_dir: str | Path | None = None, timeout: float | None = None) -> Path:
    """Re-run an index entry's recipe in a fresh store and write its bundle (an entry of a registered kind, such
    as `study: <spec>`, by that kind's `record` hook).

    Args:
        name: The entry of `gallery.yaml`.
        gallery_dir: The gallery folder with the index (default `default_gallery_dir()`).
        out_dir: Where the bundle folder goes (default: the gallery folder, replacing the shipped bundle).
        work_dir: The temporary data directory of the runs (default: a new temporary folder, removed after).
        timeout: Longest wait for each run (a kind's hook: for the whole recording), seconds.

    Returns:
        The bundle folder.

    Raises:
        GalleryError: An unknown entry or a run that did not complete.
    """
    folder = Path(gallery_dir) if gallery_dir is not None else default_gallery_dir()
    entries = {e["name"]: e for e in read_index(folder)}
    if name not in entries:
        raise GalleryError(f"no entry {name!r} in {folder / INDEX_NAME}; entries: {', '.join(entries)}")
    entry = entries[name]
    out = Path(out_dir) if out_dir is not None else folder
    kind = _entry_kind(entry)
    if kind is not None:
        return kind.record(entry, folder, out / name, Path(work_dir) if work_dir is not None else None, timeout)
    cfg = entry_config(entry, folder)
    seeds = int(entry.get("seeds") or 0)
    recipe = {"config": entry["config"], "overrides": list(entry.get("overrides") or []), "seeds": seeds}
    with tempfile.TemporaryDirectory(prefix=f"gist-gallery-{name}-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        started = time.monotonic()
        mgr = RunManager(root)
        try:
            ids = [mgr.submit_group(cfg, seeds)] if seeds else [mgr.submit(cfg)]
            snaps = [mgr.wait(s.id, timeout=timeout) for i in ids for s in
                     (mgr.list(group_id=i) if mgr.is_group(i) else [mgr.get(i)])]
            bad = [f"{s.id} {s.status}: {s.error}" for s in snaps if s.status != "completed"]
            if bad:
                raise GalleryError(f"gallery entry {name}: runs did not complete: {'; '.join(bad)}")
            bundle = export_bundle(mgr, ids, out / name, name, title=entry.get("title", ""),
                                   description=entry.get("description", ""),
                                   command=RECORD_COMMAND.format(name=shlex.quote(name)), recipe=recipe)
        finally:
            mgr.shutdown()
    logger.info("gallery %s recorded in %.0f s", name, time.monotonic() - started)
    return bundle


__all__ = [
    "EXAMPLE_PREFIX",
    "FORMAT",
    "INDEX_NAME",
    "KINDS",
    "MANIFEST_NAME",
    "RECORD_COMMAND",
    "BundleKind",
    "GalleryError",
    "bundle_size",
    "check_bundle",
    "default_gallery_dir",
    "entry_config",
    "export_bundle",
    "find_bundle",
    "gallery_examples",
    "import_gallery",
    "import_gallery_entry",
    "list_gallery",
    "machine_info",
    "read_index",
    "read_manifest",
    "record",
    "register_kind",
    "remove_gallery_example",
]
