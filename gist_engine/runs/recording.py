"""Recording the gallery: a store's runs exported as a bundle, and an index entry's recipe re-run into one.

The write side of `runs.gallery` (which lists, checks and imports bundles without torch): `export_bundle` reads a
store through a `RunReader` and notes the machine and the package versions it was recorded with (torch, timm);
`record` trains an entry's runs in a fresh store with a `RunManager` and exports them.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import shlex
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_dir
from ..config import ConfigError, load_run_config
from ..files import CHECKPOINT_NAME
from ..speed import usable_cpus
from ..status import ACTIVE, RunStatus
from ..train import package_versions
from .gallery import (
    EVALUATIONS_NAME,
    FORMAT,
    INDEX_NAME,
    LOCAL_COLUMNS,
    MANIFEST_NAME,
    METRICS_NAME,
    RUN_FILES,
    SNAPSHOT_DIR,
    GalleryError,
    bundle_size,
    default_gallery_dir,
    entry_kind,
    read_index,
)
from .manager import RunManager
from .pairs import format_table
from .reader import RunReader
from .store import EVAL_COLUMNS

logger = logging.getLogger(__name__)

RECORD_COMMAND = "python -m gist_engine runs gallery record {name}"


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
def _store_rows(mgr: RunReader, run_ids: Sequence[str]) -> tuple[list[dict], list[dict], Any, Any]:
    """The runs' rows, their groups' rows, metrics and evaluations frames, read in one snapshot of the store."""
    import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables

    runs, groups, metrics, evals = mgr.store.export_rows(run_ids)
    metrics = pd.DataFrame(metrics, columns=["run_id", "step", "key", "value"]).astype(
        {"run_id": "str", "step": "int64", "key": "str", "value": "float64"})
    evals = pd.DataFrame(evals, columns=list(EVAL_COLUMNS)).astype(
        {"step": "int64", "epoch": "float64", "acc_cls": "float64", "acc_gist": "float64", "agreement": "float64"})
    return runs, groups, metrics, evals


def _summary(mgr: RunReader, runs: list[dict], groups: list[dict]) -> dict[str, Any]:
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


def export_bundle(mgr: RunReader, ids: Sequence[str], out: str | Path, name: str, *, title: str = "",
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
    kind = entry_kind(entry)
    if kind is not None:
        if kind.record is None:
            raise GalleryError(f"gallery entry {name}: entries of kind {kind.name!r} are recorded by that layer's "
                               f"recording module (for studies: import gist_engine.studies.recording first)")
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
            bad = [f"{s.id} {s.status}: {s.error}" for s in snaps if s.status != RunStatus.COMPLETED]
            if bad:
                raise GalleryError(f"gallery entry {name}: runs did not complete: {'; '.join(bad)}")
            bundle = export_bundle(mgr, ids, out / name, name, title=entry.get("title", ""),
                                   description=entry.get("description", ""),
                                   command=RECORD_COMMAND.format(name=shlex.quote(name)), recipe=recipe)
        finally:
            mgr.shutdown()
    logger.info("gallery %s recorded in %.0f s", name, time.monotonic() - started)
    return bundle

__all__ = ["RECORD_COMMAND", "entry_config", "export_bundle", "machine_info", "record"]
