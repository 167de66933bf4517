"""Background runs that survive: a SQLite run store, the RunManager (queue, workers, stop, recovery), groups, export.

Layout under the data directory (`data_dir()`: `$GIST_DATA_DIR`, else the user data dir):

    runs.sqlite3          the store (WAL): runs, metrics (run, step, key, value), evaluations, studies (a paired
                          group is a one-cell study of kind `group`)
    runs/<run_id>/        checkpoint.safetensors, resume.safetensors, result.json, attention/ snapshots
    exports/              default target of `RunManager.export`

Modules: `store` (schema, migrations, the writer connection and the reader pool), `recorder` (the trainer callback
that writes a run's metrics), `execute` (the one execution path of every run, local or Ray: config to result.json
to final status), `workers` (the worker pool: queue, device slots, threads, heartbeat, recovery), `records` (a
run's folder and snapshot, the outcomes not written yet), `reader` (RunReader: every read of the store, the verdict
of a group and the exports, without torch), `manager` (RunManager: a RunReader that also submits, stops and
resumes), `compare` (paired configs, `run_compare` in the foreground), `pairs` (the verdict: `PairedResult` from any
set of runs, and its text), `stats` (the one t-interval, clipped, and the paired delta), `export` (CSV/Parquet tables
and MLflow), `ids` (the id formats, names as text, removals and copies kept inside the data directory), `gallery`
(recorded bundles: listed, checked, imported), `recording` (bundles exported and recorded), `queue` (a queued
run's place and ETA) and `adapter` (a finished run's trained tensors and config as one zip). The engine's background
threads live here.

Importing the package imports none of its modules (PEP 562, as `gist_engine` itself): `reader`, `records`, `store`,
`pairs`, `stats`, `ids`, `export` and `gallery` read the store, the verdict and the gallery without torch;
`RunManager`, `compare`, `recorder`, `execute` and `workers` import the trainer (torch) when first used.
"""

from .._lazy import lazy_exports

EXPORTS: dict[str, tuple[str, ...]] = {
    ".adapter": ("adapter_archive", "adapter_file_name"),
    ".compare": ("paired_configs", "run_compare", "summarise"),
    ".export": ("EXPORT_FORMATS", "read_export"),
    ".ids": ("InvalidId", "check_id", "check_name", "is_id", "printable"),
    ".manager": ("RunManager",),
    ".pairs": ("ArmRun", "PairedResult", "SeedPair", "format_table", "paired_result"),
    ".reader": ("RunReader",),
    ".queue": ("QueuePlace", "queue_place"),
    ".recorder": ("StoreWriter",),
    ".records": ("ACTIVE", "RESUMABLE", "STATUSES", "STEP_KEYS"),
    ".stats": ("DELTA_BOUNDS", "Interval", "clip_interval", "interval_note", "paired_delta", "t_interval"),
    ".store": ("MIGRATIONS", "SCHEMA_VERSION", "RunError", "RunNotFound", "RunSnapshot", "RunStore", "StoreError",
               "data_dir"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), EXPORTS)
