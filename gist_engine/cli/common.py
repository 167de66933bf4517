"""What the command modules share: JSON output, argparse types, the config arguments, the progress bar."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..config import ConfigError
from ..runs import RunManager

logger = logging.getLogger(__name__)


def print_json(obj: Any) -> None:
    """Print `obj` as indented JSON (anything JSON cannot encode as its str)."""
    print(json.dumps(obj, indent=2, default=str))


def fail(message: object) -> int:
    """Print `error: <message>` as one line on stderr (newlines folded); returns the exit status 2."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    return 2


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range (must be >= 1)")
    return value


def count(n: int, word: str) -> str:
    """(1, 'run') -> '1 run'; (3, 'run') -> '3 runs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def percent(value: float | None) -> str:
    """0.1234 -> '12.34%'; None -> '-'."""
    return "-" if value is None else f"{100 * value:.2f}%"


def add_config_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    """`--config FILE` and the repeatable `--set KEY=VALUE` of the commands that build a model."""
    p.add_argument("--config", required=required, help="YAML config file (defaults if omitted)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set gist.length=2 (repeatable)")


def output_dir(path: str) -> Path:
    """`--out`: a directory, created when missing; a file of that name is refused."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file of that name exists; give a directory")
    return out


RunsHandler = Callable[[RunManager, argparse.Namespace], int]


def with_manager(fn: RunsHandler) -> Callable[[argparse.Namespace], int]:
    """A `runs ...` handler given a RunManager on `--root` (a view of the store: no workers start), shut down after."""
    def handler(args: argparse.Namespace) -> int:
        mgr = RunManager(args.root, start=False)  # marks dead processes' runs interrupted
        try:
            return fn(mgr, args)
        finally:
            mgr.shutdown()
    return handler


class ProgressBar:
    """A tqdm bar over the optimisation steps, with the latest loss and accuracy (a trainer callback).

    Hidden when the log shows no INFO lines (`-q`).
    """

    def __init__(self, label: str = "") -> None:
        self.label, self.bar, self.postfix = label, None, {}
        self.eval_bar = None  # a second bar while the test split (or the accuracy probe) is evaluated

    def on_train_start(self, trainer) -> None:
        self.bar = tqdm(total=trainer.total_steps, desc=self.label or "train", unit="step", dynamic_ncols=True,
                        file=sys.stderr, disable=not logger.isEnabledFor(logging.INFO))

    def on_step_end(self, trainer, step: int, metrics: dict) -> None:
        self.postfix.update(loss=f"{metrics['total']:.3f}", img_s=f"{metrics['images_per_second']:.0f}")
        self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(1)

    def on_eval_end(self, trainer, step: int, metrics: dict) -> None:
        key = "acc" if metrics.get("split", "test") == "test" else metrics["split"]  # probe: the accuracy probe
        self.postfix[key] = f"{100 * metrics['acc_cls']:.1f}%"
        self.bar.set_postfix(self.postfix)

    def on_phase(self, trainer, phase: str, done: int, total: int) -> None:
        if phase not in ("evaluating", "validating", "probing") or self.bar.disable:
            return
        if self.eval_bar is None:
            what = {"evaluating": "test images", "validating": "validation images"}.get(phase, "probe images")
            self.eval_bar = tqdm(total=total, desc=f"  evaluating {total} {what}", unit="img", leave=False,
                                 dynamic_ncols=True, file=sys.stderr)
        self.eval_bar.update(done - self.eval_bar.n)
        if done >= total:
            self.eval_bar.close()
            self.eval_bar = None

    def on_train_end(self, trainer, result) -> None:
        if self.eval_bar is not None:
            self.eval_bar.close()
        self.bar.close()
