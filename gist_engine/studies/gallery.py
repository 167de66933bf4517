"""Studies in the gallery: a study exported as a bundle of kind `study`, imported as a read-only example.

A study bundle is a runs bundle (see `gist_engine.runs.gallery`) of the study's runs, their groups, metrics and
evaluations (checkpoints left out unless asked for), whose manifest also holds

    kind        "study"
    study       the study's row of the `studies` table (its spec, status, counts of cells and runs)
    study_runs  its rows of `study_runs` (every attempt of every planned run)
    results     the results table at export (one row per cell: axis values, means, GIST - plain, 95% CI, p)
    budget      the same verdict after each evaluated epoch (`study_budget`: one row per cell and epoch), which
                the Gallery page draws without importing the bundle
    tuning      a tuned study's search per cell and arm (`study_tuning` without the trial curves: the chosen
                values, their validation accuracy, trials settled and pruned); [] for a grid study

Importing it (`runs gallery import`, the Gallery page) inserts the runs as read-only examples and the study rows,
the study's name starting with "example · "; the study is then read-only (its runs are examples): deleting, resuming
or running it again is refused, and `runs gallery remove NAME` takes the study out with its runs. An index entry
`study: <spec>` (relative to the gallery folder) is recorded by running that spec in a temporary data directory
(`study run`) and exporting it. Importing this module registers the kind's import, validation and removal hooks
(`gist_engine.studies` imports it; no torch); `studies.recording` adds its export and record hook.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import safe_load_json
from ..runs.gallery import EXAMPLE_PREFIX, BundleKind, GalleryError, register_kind
from ..runs.ids import check_name, is_id, printable
from ..runs.reader import RunReader
from ..runs.store import STUDY_KIND
from .spec import ARMS, StudyError, load_study_spec
from .store import StudyStore

if TYPE_CHECKING:  # the removal hook is called with the RunManager that deletes the example's runs
    from ..runs.manager import RunManager
from .tune import FINAL, TRIAL

logger = logging.getLogger(__name__)

KIND = "study"
LOCAL_COLUMNS = ("owner_pid", "owner_host", "heartbeat")  # the exporting driver's; not carried
RESULT_COLUMNS = ("cell", "label", "n", "plain_mean", "gist_mean", "delta_mean", "delta_ci_low", "delta_ci_high",
                  "p_value", "significance")
BUDGET_ROW_COLUMNS = ("cell", "label", "epoch", "step", "n", "plain_mean", "plain_ci_low", "plain_ci_high", "gist_mean",
                  "gist_ci_low", "gist_ci_high", "delta_mean", "delta_ci_low", "delta_ci_high", "p_value",
                  "significance")


def _insert_rows(mgr: RunReader, manifest: dict[str, Any], bundle: Path) -> bool:
    """The import hook: add the study's rows (read-only: its runs are examples) when missing; whether it added."""
    study, links = manifest["study"], manifest.get("study_runs") or []
    with StudyStore(mgr) as s:
        added = s.import_rows(study | {"name": EXAMPLE_PREFIX + study["name"], "heartbeat": study.get("finished"),
                                       "kind": STUDY_KIND}, links)
    if added:
        logger.info("gallery %s: study %s imported into %s", manifest["name"], study["id"], mgr.root)
    return added > 0


def _validate(manifest: dict[str, Any], run_ids: set[str], mgr: RunReader | None) -> None:
    """The validate hook: the study's id, name and spec (nesting and size counted by `load_study_spec`, reading no
    files), its `study_runs` rows (this study, runs of the bundle, cells and seeds as integers, known arms), and,
    given the store, no study of the store's own with that id."""
    study, links = manifest.get("study"), manifest.get("study_runs") or []
    if not isinstance(study, dict) or not isinstance(links, list) or not all(isinstance(r, dict) for r in links):
        raise GalleryError("study: expected the study's row and a list of study_runs rows")
    for key, what in (("budget", "one per cell and epoch"), ("tuning", "one per cell and arm of a tuned study")):
        rows = manifest.get(key, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise GalleryError(f"{key}: expected a list of rows ({what}); the bundle is refused")
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


register_kind(BundleKind(KIND, imported=_insert_rows, removing=_remove_rows, validate=_validate))

__all__ = ["KIND", "LOCAL_COLUMNS", "RESULT_COLUMNS"]
