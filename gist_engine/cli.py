"""The command line: `python -m gist_engine list | describe | ...`, the twin of what the app does."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .backbones import BACKBONES, BackboneError, backbone_info
from .config import ConfigError, RunConfig, describe_fields, load_run_config
from .losses import INTERACTION_LOSS_HELP

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    """Register a sub-command handler in COMMANDS."""
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return register


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def catalogue() -> dict[str, Any]:
    """Everything selectable: backbones, tuners (options, variants), interaction losses, datasets, config keys."""
    from .tuners import describe_tuners

    out = {
        "backbones": {name: backbone_info(name) for name in BACKBONES},
        "tuners": describe_tuners(),
        "losses": dict(INTERACTION_LOSS_HELP),
        "config": describe_fields(RunConfig),
    }
    try:
        from .data import describe_datasets
    except ImportError:  # the dataset registry is optional for model-only installs
        out["datasets"] = {}
    else:
        out["datasets"] = describe_datasets()
    return out


@command("list")
def _list(args: argparse.Namespace) -> int:
    cat = catalogue()
    if args.json:
        _print_json(cat)
        return 0
    print("Backbones:")
    for name, info in cat["backbones"].items():
        print(f"  {name:14s} {info['title']}  [{'offline' if info['offline'] else 'needs network'}]")
    print("  (or any timm ViT name, e.g. vit_base_patch16_224.augreg_in21k — needs a network for its weights)")
    print("Tuners (method):")
    for name, info in cat["tuners"].items():
        print(f"  {name:14s} {info['help']}")
        for opt in info["options"]:
            print(f"      {opt['name']}={opt['default']!r}: {opt['help']}")
    print("Interaction losses (gist.loss):")
    for name, text in cat["losses"].items():
        print(f"  {name:14s} {text}")
    if cat["datasets"]:
        print("Datasets (data.dataset):")
        for name, info in cat["datasets"].items():
            print(f"  {name:14s} {info.get('title', '')}  source: {info.get('source', '')}")
    return 0


@command("describe")
def _describe(args: argparse.Namespace) -> int:
    from .build import build_model, describe_model

    cfg = load_run_config(args.config, args.set)
    info = describe_model(build_model(cfg), cfg)
    if args.json:
        _print_json(info)
    else:
        print(info["summary"])
        print(f"backbone {info['backbone']} @ {info['image_size']} px, method {info['tuner']} {info['tuner_args']}, "
              f"sequence {' + '.join(f'{n} {k}' for n, k in info['sequence_layout'])} = {info['seq_len']} tokens")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="python -m gist_engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser, required: bool = False) -> None:
        p.add_argument("--config", required=required, help="YAML config file (defaults if omitted)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set gist.length=2 (repeatable)")

    p = sub.add_parser("list", help="backbones, tuners, losses and datasets")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("describe", help="build the model of a config and print its parameter counts")
    config_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a bad config or input, with the reason on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, BackboneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
