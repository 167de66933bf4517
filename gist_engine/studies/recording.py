"""Recording studies for the gallery: a study exported as a bundle of kind `study`, and an index entry's study re-run.

The write side of `studies.gallery` (whose hooks import such bundles without torch): `export_study_bundle` writes a
study's runs and rows with `runs.recording.export_bundle`; `record_study_entry` runs an entry's spec on the local
backend and exports it. Importing this module adds the record hook to the `study` kind.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from ..runs import RunManager, RunReader
from ..runs.gallery import KINDS, GalleryError, register_kind
from ..runs.recording import RECORD_COMMAND, export_bundle
from .driver import run_study
from .gallery import BUDGET_ROW_COLUMNS, KIND, LOCAL_COLUMNS, RESULT_COLUMNS
from .results import study_budget, study_results, study_tuning
from .store import COMPLETED, RUNNING, StudyStore

logger = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy numbers as Python ones, NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _results_rows(study_id: str, mgr: RunReader) -> list[dict[str, Any]]:
    """The study's table (final test accuracy) as JSON-ready rows: the columns of RESULT_COLUMNS and its axes."""
    table = study_results(study_id, mgr)
    columns = [*RESULT_COLUMNS[:2], *table.attrs["axes"], *RESULT_COLUMNS[2:]]
    return [{c: _plain(row[c]) for c in columns} for _, row in table.iterrows()]



def _budget_rows(study_id: str, mgr: RunReader) -> list[dict[str, Any]]:
    """The verdict per cell and evaluated epoch (final test accuracy) as JSON-ready rows: BUDGET_ROW_COLUMNS and the
    axes (`study_budget`)."""
    table = study_budget(study_id, mgr)
    columns = [*BUDGET_ROW_COLUMNS[:2], *table.attrs["axes"], *BUDGET_ROW_COLUMNS[2:]]
    return [{c: _plain(row[c]) for c in columns} for _, row in table.iterrows()]

def _tuning_rows(study_id: str, mgr: RunReader) -> list[dict[str, Any]]:
    """A tuned study's search per cell and arm (`study_tuning` without the per-trial curves, which the bundle's runs
    carry): the chosen values and their validation score; [] for a grid study."""
    return [{k: _plain(v) if not isinstance(v, dict | list) else v for k, v in row.items() if k != "curve"}
            for row in study_tuning(study_id, mgr)]


def export_study_bundle(mgr: RunReader, study_id: str, out: str | Path, name: str, *, title: str = "",
                        description: str = "", command: str = "", recipe: dict[str, Any] | None = None,
                        checkpoints: bool = False) -> Path:
    """Write a study of a store (its runs and rows) as a bundle folder `out` of kind `study` (replaced if there).

    Args:
        mgr: The store to read.
        study_id: The study.
        out: The bundle folder to write.
        name: The entry's name (letters, digits, `-`, `_`).
        title, description: What the gallery page shows (default title: "Study: <its name>", its description).
        command: The exact command that produced the study (kept in the manifest).
        recipe: How `record` reproduces it (`study`: the spec relative to the gallery folder, `checkpoints`).
        checkpoints: Copy the runs' checkpoints too (off: a bundle of numbers, a few kB per run).

    Returns:
        The bundle folder.

    Raises:
        StudyError: An unknown study. GalleryError: a study still running, or without runs.
    """
    with StudyStore(mgr) as s:
        info = s.get(study_id)
        if info.status == RUNNING:
            raise GalleryError(f"study {study_id} is still running; export it when it ends")
        study, links, run_ids = s.export_rows(study_id)
    if not run_ids:
        raise GalleryError(f"study {study_id} has no runs in {mgr.root}; run it before exporting it")
    row = {k: v for k, v in study.items() if k not in LOCAL_COLUMNS} | {"status": info.status}
    extra = {"kind": KIND, "study": row, "study_runs": links, "results": _results_rows(study_id, mgr),
             "budget": _budget_rows(study_id, mgr), "tuning": _tuning_rows(study_id, mgr)}
    return export_bundle(mgr, run_ids, out, name, title=title or f"Study: {info.name}",
                         description=description or info.spec.get("description", ""), command=command,
                         recipe=recipe, checkpoints=checkpoints, extra=extra)


def record_study_entry(entry: dict[str, Any], gallery_dir: Path, out: Path, work_dir: Path | None = None,
                       timeout: float | None = None) -> Path:
    """The record hook: run an index entry's study spec (`study:`, relative to the gallery folder) as a new study in
    a temporary data directory on the local backend, then export it to `out`.

    Args:
        entry: The index entry: name, title, description, study, checkpoints (default False).
        gallery_dir: The gallery folder (the spec path is relative to it).
        out: The bundle folder to write.
        work_dir: The data directory of the study (default: a new temporary folder, removed after). Given, the
            study of this spec stored there continues (its completed runs are kept: a recording cut short goes on
            where it stopped); without, a new study starts.
        timeout: Longest wait for the whole study, seconds (then its runs stop and recording fails).

    Raises:
        GalleryError: No such spec, or a study that did not complete.
    """
    name, spec = entry["name"], Path(gallery_dir) / entry["study"]
    if not spec.is_file():
        raise GalleryError(f"gallery entry {name}: study spec {spec} not found")
    checkpoints = bool(entry.get("checkpoints", False))
    recipe = {"study": entry["study"], "checkpoints": checkpoints}
    deadline = time.monotonic() + timeout if timeout else None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"gist-gallery-{name}-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        study_id = run_study(spec, root, "local", new=work_dir is None,
                             should_stop=(lambda: time.monotonic() > deadline) if deadline else None)
        with RunManager(root, start=False) as mgr:
            info = StudyStore(mgr).get(study_id)
            if info.status != COMPLETED:
                raise GalleryError(f"gallery entry {name}: study {study_id} ended {info.status} "
                                   f"({', '.join(f'{v} {k}' for k, v in sorted(info.counts.items()) if v)})")
            bundle = export_study_bundle(mgr, study_id, out, name, title=entry.get("title", ""),
                                         description=entry.get("description", ""),
                                         command=RECORD_COMMAND.format(name=shlex.quote(name)), recipe=recipe,
                                         checkpoints=checkpoints)
    logger.info("gallery %s (study) recorded in %.0f s", name, time.monotonic() - started)
    return bundle


register_kind(dataclasses.replace(KINDS[KIND], record=record_study_entry))

__all__ = ["export_study_bundle", "record_study_entry"]
