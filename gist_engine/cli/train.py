"""`train`: fine-tune one config in the foreground; writes OUT/config.yaml, OUT/result.json and the checkpoint."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import yaml

from .._io import write_text_atomic
from ..config import load_run_config, selection_label, to_dict
from ..train import COMPLETED, STOPPED, Trainer
from .common import ProgressBar, add_config_args, output_dir

logger = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    """Add `train` to the top parser's subparsers."""
    p = sub.add_parser("train", help="fine-tune one config; writes OUT/result.json and the checkpoint")
    add_config_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(handler=train_command)


def summary_line(r) -> str:
    """One line of a TrainResult: status, test accuracy (best; how the epoch was selected when not the last one),
    Gist head, validation accuracy, steps, speed, parameter counts and a note (an early stop)."""
    acc = "n/a" if r.acc_cls is None else f"{100 * r.acc_cls:.2f}% (best {100 * r.best_acc_cls:.2f}%)"
    if r.selected_on != "last":  # "selected on test (optimistic)" wherever such a figure shows
        acc += f" [{selection_label(r.selected_on)}, epoch {r.selected_epoch}]"
    gist = "" if r.acc_gist is None else f", Gist head {100 * r.acc_gist:.2f}%, agreement {100 * r.agreement:.1f}%"
    val = "" if r.val_acc is None else f", validation accuracy {100 * r.val_acc:.2f}%"
    note = "" if not r.note else f"; {r.note}"
    return (f"{r.status}: test accuracy {acc}{gist}{val}; {r.steps} steps in {r.train_seconds:.1f} s "
            f"({r.images_per_second:.1f} img/s on {r.device}, {r.precision}); trainable {r.trainable_params:,} "
            f"of {r.total_params:,} (GIST adds {r.gist_params:,}){note}")


def train_command(args: argparse.Namespace) -> int:
    """Exit 0 when the run completed or was stopped, 1 when it failed or diverged (its error on stderr)."""
    cfg = load_run_config(args.config, args.set)
    out = output_dir(args.out)
    trainer = Trainer(cfg, callbacks=[ProgressBar(cfg.name or "")], run_dir=out)
    trainer.setup()
    logger.info("%s", trainer.data.summary())
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(trainer.config), sort_keys=False))
    result = trainer.run()
    write_text_atomic(out / "result.json", json.dumps(result.to_dict(), indent=2, default=str))
    print(summary_line(result))
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    print(f"wrote {out / 'result.json'}")
    return 0 if result.status in (COMPLETED, STOPPED) else 1
