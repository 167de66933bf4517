"""`data import vtab1k|fgvc|fewshot <zip|dir>`: the benchmark importer (gist_engine.data.importer)."""

from __future__ import annotations

import argparse
from typing import Any

from ..data import import_benchmark
from .common import count


def add_parser(sub: Any) -> None:
    """Add `data import` to the top parser's subparsers."""
    p = sub.add_parser("data", help="benchmark datasets: import VTAB-1k, FGVC or few-shot into the data directory")
    q = p.add_subparsers(dest="data_command", required=True).add_parser(
        "import", help="check a benchmark zip or folder (every list, label and image) and install it")
    q.add_argument("kind", choices=("vtab1k", "fgvc", "fewshot"), help="the layout")
    q.add_argument("source", nargs="?", help="a zip or a folder holding one or more of its datasets")
    q.add_argument("--from-hub", action="store_true", help="vtab1k: fetch the prebuilt zip (XiN0919/VTAB-1k) "
                   "through huggingface_hub")
    q.add_argument("--overwrite", action="store_true", help="replace datasets installed before")
    q.add_argument("--root", default=None, help="install under this data directory (default: $GIST_DATA_DIR or "
                   "the user cache dir, where vtab1k:<task> looks)")
    q.set_defaults(handler=import_command)


def import_command(args: argparse.Namespace) -> int:
    """Print the per-dataset table and the count installed."""
    report = import_benchmark(args.kind, args.source, root=args.root, overwrite=args.overwrite,
                              from_hub=args.from_hub)
    print(report.table())
    print(f"{count(len(report.rows), report.kind + ' dataset')} checked and installed in {report.seconds:.1f} s")
    return 0
