"""Studies: paired sweeps of any config keys over seeds, run locally or on Ray, stored with the runs, read as tables.

A study spec (YAML) names a base run config, a `grid` of config keys to lists of values, `seeds` and `paired`
(plain and GIST per seed, the default). Every cell of the grid runs both arms for every seed, the plain arm once per
seed across axes of gist.* keys that cannot change it (`StudySpec.shared_axes`); the runs are ordinary
runs of the run store (`runs.sqlite3`), linked to their study in `studies` / `study_runs` (schema version 2), so
the app's Live, Compare and Runs pages show them while they train, whichever backend executes them.

Public API (what the CLI and the app's Studies page use):

- `load_study_spec(path | mapping, max_runs=MAX_RUNS) -> StudySpec`: parse and validate a spec (every key and grid
  value by name), its size counted first (`count_runs`: cells x seeds x arms, by arithmetic) and refused above the
  cap before anything is built; `load_uploaded_spec(bytes, file name)`: a spec from outside, which reads no files
  (`base:` names a built-in config or is inline).
- `create_study(spec, root) -> id`, `run_study(spec | id, root, backend=...) -> id` (blocking),
  `start_study(...) -> StudyJob` (a background thread), `resume_study(id, root)`: completed runs never run again;
  a failed run is retried `retries` times, then the study goes on without it.
- `stop_study_cell(id, cell, manager)`: stop a cell's queued and running runs in one call.
- `list_studies(root)`, `get_study(id, root) -> StudyInfo`, `delete_study(id, root)`.
- `study_runs(id, root)`: one row per planned run (cell, seed, arm, run id, status, accuracies): the grid of
  statuses; `study_results(id, root)`: one row per cell (per-seed accuracies of both arms, mean GIST - plain with
  its 95% CI (clipped) and paired-test p, status counts; a cell over 2 paired seeds carries `FEW_SEEDS_NOTE`);
  `study_matrix(results, rows, cols)`, `study_curve(results, axis)`; `study_budget(id, root)`: one row per cell
  and evaluated epoch (the same runs read after each epoch: GIST - plain against the training budget);
  `export_study(id, to="csv" | "md" | "latex")`, `format_study(id)` (the CLI's text).
- `export_study_bundle(mgr, id, out, name)`: a study as a gallery bundle of kind `study` (imported by
  `runs.gallery.import_gallery_entry` as a read-only example study: `StudyInfo.example` names its entry).
  `gallery` holds the kind's import, validation and removal hooks (registered when this package is imported, no
  torch); `recording` its export and record hook (registered when it is imported).
- `BACKENDS`: "local" (the RunManager's worker threads) and "ray" (one Ray task per run; `pip install .[ray]`).
- Tuned studies (a `tune:` block, `TuneSpec`): each arm of each cell tuned on the validation split with the same
  budget (trials: runs of role `trial` in `study_runs`, schema version 5), then its choice trained over the seeds;
  `study_tuning(id)`: per cell and arm the chosen values, validation score and trial curves; `study_verdicts(id)`:
  per cell the `PairedResult` of the final runs; `study_selection(spec)`: how the reported epochs were selected.

`root` is the data directory of the run store (default `$GIST_DATA_DIR` or the user data dir), a `RunStore`, or a
`RunReader` / `RunManager` (its store is used).

Importing the package imports its modules on first use of a name (PEP 562, as `gist_engine` itself), except
`gallery` (torch-free), which registers the `study` kind of gallery bundles: `store`, `results`, `spec` and `gallery`
read studies without torch; `driver`, `backends`, `ray_backend` and `recording` import the trainer.
"""

from .._lazy import lazy_exports
from . import gallery as gallery  # registers the `study` kind of gallery bundles (torch-free)

EXPORTS: dict[str, tuple[str, ...]] = {
    ".backends": ("BACKENDS", "LocalBackend", "RayBackend", "ray_available"),
    ".driver": ("StudyJob", "create_study", "delete_study", "resume_study", "run_study", "start_study",
                "stop_study_cell"),
    ".recording": ("export_study_bundle",),
    ".results": ("FEW_SEEDS_MARK", "FEW_SEEDS_NOTE", "STUDY_EXPORTS", "budget_table", "export_study", "format_budget",
                 "format_study", "study_budget", "study_curve", "study_matrix", "study_results", "study_runs",
                 "study_selection", "study_tuning", "study_verdicts"),
    ".spec": ("ARMS", "MAX_RUNS", "STUDY_KEYS", "Cell", "PlannedRun", "StudyError", "StudySpec", "count_runs",
              "load_study_spec", "load_uploaded_spec"),
    ".store": ("STUDY_STATUSES", "StudyInfo", "StudyStore", "get_study", "list_studies"),
    ".tune": ("TuneSpec",),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), EXPORTS)
