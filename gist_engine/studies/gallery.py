"""Studies in the gallery: a study exported as a bundle of kind `study`, imported as a read-only example.

A study bundle is a runs bundle (see `gist_engine.runs.gallery`) of the study's runs, their groups, metrics and
evaluations (checkpoints left out unless asked for), whose manifest also holds

    kind        "study"
    study       the study's row of the `studies` table (its spec, status, counts of cells and runs)
    study_runs  its rows of `study_runs` (every attempt of every planned run)
    results     the results table at export (one row per cell: axis values, means, GIST - plain, 95% CI, p)

Importing it (`runs gallery import`, the Gallery page) inserts the runs as read-only examples and the study rows,
the study's name starting with "example · "; the study is then read-only (its runs are examples): deleting, resuming
or running it again is refused, and `runs gallery remove NAME` takes the study out with its runs. An index entry
`study: <spec>` (relative to the gallery folder) is recorded by running that spec in a temporary data directory
(`study run`) and exporting it. Importing this module registers the kind (`gist_engine.studies` imports it).
"""

from __future__ import annotations

import logging
import math
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import safe_load_json
from ..runs import RunManager, check_name, is_id, printable
from ..runs.gallery import (
    EXAMPLE_PREFIX,
    RECORD_COMMAND,
    BundleKind,
    GalleryError,
    export_bundle,
    register_kind,
)
from .driver import run_study
from .results import study_results
from .spec import ARMS, StudyError, load_study_spec
from .store import COMPLETED, RUNNING, StudyStore
from .tune import FINAL, TRIAL

logger = logging.getLogger(__name__)

KIND = "study"
LOCAL_COLUMNS = ("owner_pid", "owner_host", "heartbeat")  # the exporting driver's; not carried
RESULT_COLUMNS = ("cell", "label", "n", "plain_mean", "gist_mean", "delta_mean", "delta_ci_low", "delta_ci_high",
                  "p_value", "significance")


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy numbers as Python ones, NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _results_rows(study_id: str, mgr: RunManager) -> list[dict[str, Any]]:
    """The study's table (final test accuracy) as JSON-ready rows: the columns of RESULT_COLUMNS and its axes."""
    table = study_results(study_id, mgr)
    columns = [*RESULT_COLUMNS[:2], *table.attrs["axes"], *RESULT_COLUMNS[2:]]
    return [{c: _plain(row[c]) for c in columns} for _, row in table.iterrows()]


def export_study_bundle(mgr: RunManager, study_id: str, out: str | Path, name: str, *, title: str = "",
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
    extra = {"kind": KIND, "study": row, "study_runs": links, "results": _results_rows(study_id, mgr)}
    return export_bundle(mgr, run_ids, out, name, title=title or f"Study: {info.name}",
                         description=description or info.spec.get("description", ""), command=command,
                         recipe=recipe, checkpoints=checkpoints, extra=extra)


def _insert_rows(mgr: RunManager, manifest: dict[str, Any], bundle: Path) -> bool:
    """The import hook: add the study's rows (read-only: its runs are examples) when missing; whether it added."""
    study, links = manifest["study"], manifest.get("study_runs") or []
    with StudyStore(mgr) as s:
        added = s.import_rows(study | {"name": EXAMPLE_PREFIX + study["name"], "heartbeat": study.get("finished")},
                              links)
    if added:
        logger.info("gallery %s: study %s imported into %s", manifest["name"], study["id"], mgr.root)
    return added > 0


def _validate(manifest: dict[str, Any], run_ids: set[str], mgr: RunManager | None) -> None:
    """The validate hook: the study's id, name and spec (nesting and size counted by `load_study_spec`, reading no
    files), its `study_runs` rows (this study, runs of the bundle, cells and seeds as integers, known arms), and,
    given the store, no study of the store's own with that id."""
    study, links = manifest.get("study"), manifest.get("study_runs") or []
    if not isinstance(study, dict) or not isinstance(links, list) or not all(isinstance(r, dict) for r in links):
        raise GalleryError("study: expected the study's row and a list of study_runs rows")
    study_id = study.get("id")
    if not is_id(study_id, "study"):
        shown = f"'{printable(study_id)}'" if isinstance(study_id, str) else repr(study_id)
        raise GalleryError(f"study: {shown} is not a study id (the letter s and 10 lowercase hex digits); the bundle "
                           "is refused, nothing was imported")
    try:
        check_name(study.get("name"), "study name")
    except ValueError as exc:
        raise GalleryError(f"study {study_id}: {exc}") from None
    spec = study.get("spec")
    spec = safe_load_json(spec, f"study {study_id}: spec") if isinstance(spec, str) else spec
    if not isinstance(spec, dict):
        raise GalleryError(f"study {study_id}: its spec is not a mapping")
    parsed = load_study_spec(spec, read_files=False)  # StudyError (a ConfigError): too many runs, a bad key
    try:  # a study recorded before the plain arm was shared planned it per cell: either plan is the spec's
        parsed.as_stored(study.get("planned"))
        planned_ok = True
    except StudyError:
        planned_ok = False
    if study.get("cells") != parsed.n_cells or not planned_ok:
        raise GalleryError(f"study {study_id}: cells {study.get('cells')!r} and planned {study.get('planned')!r} "
                           f"do not match its spec ({parsed.n_cells} cells, {parsed.planned} runs)")
    for link in links:
        ok = (link.get("study_id") == study_id and link.get("run_id") in run_ids and link.get("arm") in ARMS
              and all(isinstance(link.get(k), int) and not isinstance(link.get(k), bool)
                      for k in ("cell", "seed", "attempt")))
        trial, params = link.get("trial", 0), link.get("params")
        ok = ok and link.get("role", FINAL) in (TRIAL, FINAL) and isinstance(trial, int) and not isinstance(
            trial, bool) and trial >= 0 and (params is None or (isinstance(params, str) and isinstance(
                safe_load_json(params, f"study {study_id}: a trial's params"), dict)))  # a tuned study's trials
        if not ok:
            raise GalleryError(f"study {study_id}: a study_runs row names another study, a run not in the bundle, "
                               "or a malformed cell, seed, arm, attempt, role, trial or params; the bundle is "
                               "refused")
    if mgr is not None:
        s = StudyStore(mgr)
        if s.exists(study_id) and s.example(study_id) != manifest.get("name"):
            raise GalleryError(f"study {study_id} of {manifest.get('name')} is already in {mgr.root} as a study of "
                               "its own; import into another data directory")


def _remove_rows(mgr: RunManager, name: str, run_ids: list[str]) -> None:
    """The removal hook: forget the studies whose runs are those of the example `name` (before the runs go)."""
    with StudyStore(mgr) as s:
        for study_id in s.studies_of_runs(run_ids):
            s.delete(study_id, examples=True)


def record_study_entry(entry: dict[str, Any], gallery_dir: Path, out: Path, work_dir: Path | None = None,
                       timeout: float | None = None) -> Path:
    """The record hook: run an index entry's study spec (`study:`, relative to the gallery folder) as a new study in
    a temporary data directory on the local backend, then export it to `out`.

    Args:
        entry: The index entry: name, title, description, study, checkpoints (default False).
        gallery_dir: The gallery folder (the spec path is relative to it).
        out: The bundle folder to write.
        work_dir: The data directory of the study (default: a new temporary folder, removed after).
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
        study_id = run_study(spec, root, "local", new=True,
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


register_kind(BundleKind(KIND, imported=_insert_rows, removing=_remove_rows, record=record_study_entry,
                         validate=_validate))

__all__ = ["KIND", "export_study_bundle", "record_study_entry"]
