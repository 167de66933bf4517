"""The attention report of one image for a run's or a config's model, written to a folder (the `attention` command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..build import build_model
from ..config import ConfigError, ModelConfig, load_run_config
from ..train.checkpoint import load_model
from .explain import attention_report


def attention_summary(run_dir: Path | None, config: Any, image_path: Path, out_dir: Path,
                      model: Any = None) -> dict[str, Any]:
    """Maps, figure and summary of one image for a run's or a config's model.

    Args:
        run_dir: A run directory: its model is loaded with `checkpoint.load_model` (trained parameters).
        config: Used without `run_dir`: a run or model config (mapping, YAML path, RunConfig/ModelConfig), the
            untrained model built with `build_model`.
        image_path: Any image PIL reads.
        out_dir: Where `maps.npz`, `attention.png`, `summary.json` go.
        model: An already loaded model; takes precedence over `run_dir` and `config` (which are then labels).

    Returns:
        The summary written to `summary.json`.

    Raises:
        ValueError: Neither `run_dir` nor `config` (nor `model`) is given.
        ConfigError: The model is a text model (this report draws image maps).
        CheckpointError: The run has no loadable checkpoint.
        DatasetError: The image cannot be read.
    """
    if model is None:
        if run_dir is not None:
            model, _ = load_model(run_dir)  # CheckpointError (a ValueError) when the run has no checkpoint
        elif config is not None:
            model = build_model(config if isinstance(config, ModelConfig) else load_run_config(config))
        else:
            raise ValueError("attention_summary: give a run directory or a config")
    if getattr(model, "modality", "image") == "text":
        raise ConfigError(f"attention: {run_dir or 'the config'} is a text model; this command draws image maps "
                          "(the app's Attention page shows a text model's token attention)")
    summary = attention_report(model, image_path, out_dir)  # the shared decoder (as predict); DatasetError if bad
    summary["image"] = str(image_path)
    if run_dir is not None:
        summary["run"] = str(run_dir)
    write_text_atomic(Path(out_dir, "summary.json"), json.dumps(summary, indent=2))
    return summary
