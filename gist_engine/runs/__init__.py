"""Background runs that survive: a SQLite run store, the RunManager (queue, workers, stop, recovery), groups, export.

Layout under the data directory (`data_dir()`: `$GIST_DATA_DIR`, else the user data dir):

    runs.sqlite3          the store (WAL): runs, metrics (run, step, key, value), evaluations, groups
    runs/<run_id>/        checkpoint.safetensors, resume.safetensors, result.json, attention/ snapshots
    exports/              default target of `RunManager.export`

Modules: `store` (schema, migrations, the writer connection and the reader pool), `recorder` (the trainer callback
that writes a run's metrics), `manager` (RunManager: queue, workers, heartbeat, recovery, paired groups), `compare`
(paired configs and their statistics, `run_compare` in the foreground), `stats` (paired delta statistics), `export`
(CSV/Parquet tables and MLflow), `ids` (the id formats, names as text, removals and copies kept inside the data
directory). The engine's background threads live here.
"""

from .compare import format_table, paired_configs, run_compare, summarise
from .export import EXPORT_FORMATS, read_export
from .ids import InvalidId, check_id, check_name, is_id, printable
from .manager import ACTIVE, RESUMABLE, STATUSES, STEP_KEYS, RunManager
from .recorder import StoreWriter
from .stats import paired_delta
from .store import MIGRATIONS, SCHEMA_VERSION, RunError, RunNotFound, RunSnapshot, RunStore, StoreError, data_dir

__all__ = ["ACTIVE", "EXPORT_FORMATS", "MIGRATIONS", "RESUMABLE", "SCHEMA_VERSION", "STATUSES", "STEP_KEYS",
           "InvalidId", "RunError", "RunManager", "RunNotFound", "RunSnapshot", "RunStore", "StoreError", "StoreWriter",
           "check_id", "check_name", "data_dir", "format_table", "is_id", "paired_configs", "paired_delta", "printable",
           "read_export", "run_compare", "summarise"]
