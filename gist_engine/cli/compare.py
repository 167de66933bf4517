"""`compare`: one config with GIST off and on over N seeds in the foreground; writes OUT/compare.json."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._io import write_text_atomic
from ..config import load_run_config
from ..runs import format_table
from ..runs.compare import run_compare
from ..status import RunStatus
from .common import ProgressBar, add_config_args, output_dir, positive_int


def add_parser(sub: Any) -> None:
    """Add `compare` to the top parser's subparsers."""
    p = sub.add_parser("compare", help="the config with GIST off and on over N seeds; writes OUT/compare.json")
    add_config_args(p)
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (from train.seed on)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(handler=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    """Print the paired table; exit 0 when every run completed, else 1."""
    cfg = load_run_config(args.config, args.set)
    out = output_dir(args.out)
    summary = run_compare(cfg, args.seeds, out_dir=out,
                          callbacks=lambda seed, gist, c: [ProgressBar(f"seed {seed} {'GIST' if gist else 'plain'}")])
    write_text_atomic(out / "compare.json",
                      json.dumps({k: v for k, v in summary.items() if k != "paired"}, indent=2, default=str))
    print(format_table(summary["paired"]))
    print(f"wrote {out / 'compare.json'}")
    return 0 if all(r["status"] == RunStatus.COMPLETED for r in summary["runs"]) else 1
