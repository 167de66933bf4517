"""A finished run's adapter as one zip: its trained parameters (safetensors) with its config, to use elsewhere."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError, safe_open

from .._io import atomic_path
from ..files import CHECKPOINT_NAME
from ..status import ACTIVE
from .store import RunError, RunSnapshot

# What the archive holds, by member name (the manifest lists the tensors and the run's numbers).
ADAPTER_FILE, CONFIG_FILE, MANIFEST_FILE = "adapter.safetensors", "config.yaml", "manifest.json"
ADAPTER_FORMAT = "gist-studio-adapter/1"
LOAD_HINT = ("gist_engine.load_model('adapter.safetensors') rebuilds the model: the backbone from config.yaml "
             "(downloaded or converted as for training), then these tensors")


def adapter_file_name(run: RunSnapshot) -> str:
    """The download's file name: `gist-adapter-<run id>.zip` (the id is checked, so the name is safe anywhere)."""
    return f"gist-adapter-{run.run_dir.name}.zip"


def _checked_checkpoint(run: RunSnapshot) -> tuple[Path, dict[str, Any], dict[str, list[int]]]:
    """The run's checkpoint file, its decoded config and its tensors' shapes; RunError naming what is missing."""
    what = f"run {run.id} ({run.name})"
    if run.status in ACTIVE:
        raise RunError(f"{what} is still {run.status}: its adapter can be downloaded once it has ended")
    path = run.run_dir / CHECKPOINT_NAME
    if not path.is_file():
        why = ("a gallery example keeps its curves and numbers, not its weights" if run.example else
               "a run writes one when it completes or is stopped; a failed or diverged run has none unless "
               "train.checkpoint_every wrote one before")
        raise RunError(f"{what} has no checkpoint, so there is no adapter to download ({run.status}: {why})")
    try:
        with safe_open(str(path), "numpy") as f:  # the header only: no tensor is read, nothing is unpickled
            meta = f.metadata() or {}
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (no __iter__)
        config = json.loads(meta["config"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{what}: its checkpoint {path.name} is not readable ({exc}); re-run it to train a new "
                       "one") from None
    return path, config, shapes


def adapter_archive(run: RunSnapshot, path: str | Path | None = None) -> bytes | Path:
    """Pack a finished run's trained parameters and config into one zip (bytes, or written to `path`).

    The members: `adapter.safetensors` (the run's checkpoint as written: the tuner's tensors, the head and the Gist
    token(s) by their plain timm names, its metadata carrying the config, package versions and class names;
    `gist_engine.load_model` reads it), `config.yaml` (the resolved run config, `num_classes` included: a valid
    `--config` of `python -m gist_engine train`) and `manifest.json` (run id, name, status, step, accuracies,
    the tensors' names and shapes, their parameter count, how to load).

    Args:
        run: The run's snapshot (`RunManager.get`); its folder was built from a checked id.
        path: Where to write the zip (atomically); None returns its bytes.

    Returns:
        The zip's bytes, or `path`.

    Raises:
        RunError: the run is still queued or running, has no checkpoint (failed, diverged, a gallery example) or
            its checkpoint is unreadable; the message names the run and why.
    """
    checkpoint, config, shapes = _checked_checkpoint(run)
    manifest = {"format": ADAPTER_FORMAT, "run_id": run.id, "name": run.name, "status": str(run.status),
                "step": run.step, "method": run.method, "gist": run.gist_enabled, "backbone": config.get("backbone"),
                "acc_cls": run.acc_cls, "acc_gist": run.acc_gist, "agreement": run.agreement,
                "parameters": sum(math.prod(s) for s in shapes.values()), "tensors": shapes, "load": LOAD_HINT}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.write(checkpoint, ADAPTER_FILE, compress_type=zipfile.ZIP_STORED)  # float tensors do not compress
        zf.writestr(CONFIG_FILE, yaml.safe_dump(config, sort_keys=False), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(MANIFEST_FILE, json.dumps(manifest, indent=2), compress_type=zipfile.ZIP_DEFLATED)
    if path is None:
        return buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)


__all__ = ["ADAPTER_FILE", "CONFIG_FILE", "MANIFEST_FILE", "adapter_archive", "adapter_file_name"]
