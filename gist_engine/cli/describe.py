"""`list` (everything selectable) and `describe` (a config's model and its parameter counts)."""

from __future__ import annotations

import argparse
from typing import Any

from ..build import build_model, describe_model
from ..catalog import catalogue
from ..config import load_run_config
from .common import add_config_args, print_json


def add_parser(sub: Any) -> None:
    """Add `list` and `describe` to the top parser's subparsers."""
    p = sub.add_parser("list", help="backbones, tuners, losses and datasets")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=list_command)
    p = sub.add_parser("describe", help="build the model of a config and print its parameter counts")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=describe_command)


def list_command(args: argparse.Namespace) -> int:
    """`list [--json]`: backbones, text backbones, tuners with their options, losses and datasets."""
    cat = catalogue()
    if args.json:
        print_json(cat)
        return 0
    print("Backbones:")
    for name, info in cat["backbones"].items():
        print(f"  {name:14s} {info['title']}  [{'offline' if info['offline'] else 'needs network'}]")
    print("  (or any timm ViT name, e.g. vit_base_patch16_224.augreg_in21k — needs a network for its weights)")
    print("Text backbones (GistTextEncoder):")
    for name, info in cat["text_backbones"].items():
        print(f"  {name:14s} {info['title']}  [{'offline' if info['offline'] else 'needs network'}]")
    print("  (or hf:<BERT/RoBERTa-family hub name or folder>, e.g. hf:bert-base-uncased — hub names need a network)")
    print("Tuners (method):")
    for name, info in cat["tuners"].items():
        print(f"  {name:14s} {info['help']}")
        for opt in info["options"]:
            print(f"      {opt['name']}={opt['default']!r}: {opt['help']}")
        for peft_type, row in info.get("peft_types", {}).get("types", {}).items():  # method: peft's types
            print(f"      peft_type={peft_type}: {row['help']} Options: "
                  f"{', '.join(o['name'] for o in row['options']) or '(peft not installed)'}")
    print("Interaction losses (gist.loss):")
    for name, text in cat["losses"].items():
        print(f"  {name:14s} {text}")
    if cat["datasets"]:
        print("Datasets (data.dataset):")
        for name, info in cat["datasets"].items():
            print(f"  {name:14s} {info.get('title', '')}  source: {info.get('source', '')}")
    return 0


def describe_command(args: argparse.Namespace) -> int:
    """`describe [--config FILE] [--set K=V] [--json]`: the built model's summary and token layout."""
    cfg = load_run_config(args.config, args.set)
    info = describe_model(build_model(cfg), cfg)
    if args.json:
        print_json(info)
    else:
        print(info["summary"])
        size = f"{info['image_size']} px" if info.get("image_size") else f"max_length {info.get('max_length')} tokens"
        print(f"backbone {info['backbone']} @ {size}, method {info['tuner']} {info['tuner_args']}, "
              f"sequence {' + '.join(f'{n} {k}' for n, k in info['sequence_layout'])} = {info['seq_len']} tokens")
    return 0
