"""`attention`: CLS vs Gist attention maps, rollout, figure and per-layer summary for one image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_run_config
from ..inspect.report import attention_summary
from .common import add_config_args


def add_parser(sub: Any) -> None:
    """Add `attention` to the top parser's subparsers."""
    p = sub.add_parser("attention", help="CLS vs Gist attention maps, rollout and summary for one image")
    p.add_argument("--run", help="run directory (its checkpoint); or --config for an untrained model")
    add_config_args(p)
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--out", required=True, help="output directory for maps.npz, attention.png, summary.json")
    p.set_defaults(handler=attention_command)


def attention_command(args: argparse.Namespace) -> int:
    """Print one line per layer; write maps.npz, attention.png and summary.json under --out."""
    if (args.run is None) == (args.config is None):
        raise ConfigError("attention: give exactly one of --run DIR or --config FILE")
    config = load_run_config(args.config, args.set) if args.config else None
    summary = attention_summary(Path(args.run) if args.run else None, config, Path(args.image), Path(args.out))
    layers = summary.get("layers", [])
    for row in layers:
        print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    print(f"wrote {Path(args.out) / 'maps.npz'}, {Path(args.out) / 'attention.png'}, {Path(args.out) / 'summary.json'}")
    return 0
