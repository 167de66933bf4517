"""Background runs that survive: a SQLite run store, the RunManager (queue, workers, stop, recovery), groups, export.

Layout under the data directory (`data_dir()`: `$GIST_DATA_DIR`, else the user data dir):

    runs.sqlite3          the store (WAL): runs, metrics (run, step, key, value), evaluations, groups
    runs/<run_id>/        checkpoint.safetensors, resume.safetensors, result.json, attention/ snapshots
    exports/              default target of `RunManager.export`

Modules: `store` (schema, migrations, the writer connection and the reader pool), `recorder` (the trainer callback
that writes a run's metrics), `manager` (RunManager: queue, workers, heartbeat, recovery, paired groups), `compare`
(paired configs, `run_compare` in the foreground), `pairs` (the verdict: `PairedResult` from any set of runs, and its
text), `stats` (the one t-interval, clipped, and the paired delta), `export` (CSV/Parquet tables and MLflow), `ids`
(the id formats, names as text, removals and copies kept inside the data directory). The engine's background threads
live here.
"""

from .compare import paired_configs, run_compare, summarise
from .export import EXPORT_FORMATS, read_export
from .ids import InvalidId, check_id, check_name, is_id, printable
from .manager import ACTIVE, RESUMABLE, STATUSES, STEP_KEYS, RunManager
from .pairs import ArmRun, PairedResult, SeedPair, format_table, paired_result
from .recorder import StoreWriter
from .stats import DELTA_BOUNDS, Interval, clip_interval, interval_note, paired_delta, t_interval
from .store import MIGRATIONS, SCHEMA_VERSION, RunError, RunNotFound, RunSnapshot, RunStore, StoreError, data_dir

__all__ = ["ACTIVE", "DELTA_BOUNDS", "EXPORT_FORMATS", "MIGRATIONS", "RESUMABLE", "SCHEMA_VERSION", "STATUSES",
           "STEP_KEYS", "ArmRun", "Interval", "InvalidId", "PairedResult", "RunError", "RunManager", "RunNotFound",
           "RunSnapshot", "RunStore", "SeedPair", "StoreError", "StoreWriter", "check_id", "check_name",
           "clip_interval", "data_dir", "format_table", "interval_note", "is_id", "paired_configs", "paired_delta",
           "paired_result", "printable", "read_export", "run_compare", "summarise", "t_interval"]
