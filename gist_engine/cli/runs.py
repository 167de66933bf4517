"""`runs list | show | export | gallery ...`: the app's run store from the command line."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from ..runs import STATUSES, RunManager, format_table, printable
from . import gallery
from .common import percent, positive_int, print_json, with_manager

# `runs list`'s column of how each run's accuracy was selected (train.select_on, resolved)
SELECTED_ON = {"val": "validation", "test": "test (optimistic)", "last": "last epoch"}


def add_parser(sub: Any) -> None:
    """Add `runs` and its sub-commands (and `runs gallery ...`) to the top parser's subparsers."""
    p = sub.add_parser("runs", help="the run store of the app: list, show and export background runs")
    p.add_argument("--root", default=None, help="data directory (default: $GIST_DATA_DIR or the user data dir)")
    runs = p.add_subparsers(dest="runs_command", required=True)
    q = runs.add_parser("list", help="runs, newest first")
    q.add_argument("--status", default=None, choices=STATUSES, help="only runs with this status")
    q.add_argument("--limit", type=positive_int, default=None, help="at most this many runs")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=with_manager(runs_list))
    q = runs.add_parser("show", help="one run (or a group's paired statistics)")
    q.add_argument("id", help="run id or group id")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=with_manager(runs_show))
    q = runs.add_parser("export", help="a run or group to CSV/Parquet tables or to MLflow")
    q.add_argument("id", help="run id or group id")
    q.add_argument("--to", choices=("csv", "parquet", "mlflow"), default="csv", help="export format")
    q.add_argument("--out", default=None, help="folder to write (mlflow: tracking folder or URI)")
    q.set_defaults(handler=with_manager(runs_export))
    galleries = gallery.add_parser(runs)
    # `runs list --root DIR` as well as `runs --root DIR list` (like `study`)
    for q in (*(q for name, q in runs.choices.items() if name != "gallery"), *galleries.choices.values()):
        q.add_argument("--root", default=argparse.SUPPRESS, help="data directory (as `runs --root`)")


def runs_list(mgr: RunManager, args: argparse.Namespace) -> int:
    """`runs list [--status S] [--limit N] [--json]`: newest first."""
    snaps = mgr.list(status=args.status, limit=args.limit)
    if args.json:
        print_json([s.to_dict() for s in snaps])
        return 0
    print(f"{'id':<11} {'status':<11} {'progress':>8}  {'acc':>7}  {'selected on':<17}  {'best':>7}  {'group':<11} "
          f"{'created':<16} name")
    for s in snaps:
        created = datetime.datetime.fromtimestamp(s.created).strftime("%Y-%m-%d %H:%M")
        print(f"{s.id:<11} {s.status:<11} {100 * s.progress:7.0f}%  {percent(s.acc_cls):>7}  "
              f"{SELECTED_ON.get(s.selected_on, '-'):<17}  {percent(s.best_acc_cls):>7}  {s.group_id or '-':<11} "
              f"{created:<16} {printable(s.name)}")
    return 0


def runs_show(mgr: RunManager, args: argparse.Namespace) -> int:
    """`runs show ID [--json]`: one run, or a group's paired statistics."""
    if mgr.is_group(args.id):
        res = mgr.group_results(args.id)
        if args.json:
            print_json({k: v for k, v in res.items() if k not in ("runs", "paired")} |
                       {"runs": [s.to_dict() for s in res["runs"]]})
        else:
            print(f"group {args.id} ({printable(res['group']['name'])}): seeds {res['group']['seeds']}")
            print(format_table(res["paired"]))
        return 0
    snap = mgr.get(args.id)
    if args.json:
        print_json(snap.to_dict())
        return 0
    print(f"{snap.id} {printable(snap.name)}: {snap.status}, step {snap.step}/{snap.total_steps} "
          f"(epoch {snap.epoch:.2f})")
    print(f"  {snap.method}, GIST {'on' if snap.gist_enabled else 'off'}, seed {snap.seed}, group {snap.group_id}")
    selected = f", {snap.selection} at epoch {snap.selected_epoch:g}" if snap.selected_epoch is not None else ""
    print(f"  test accuracy {percent(snap.acc_cls)} (best {percent(snap.best_acc_cls)}{selected}); trainable "
          f"{snap.trainable_params}, GIST {snap.gist_params}")
    if snap.val_acc is not None:
        print(f"  validation accuracy {percent(snap.val_acc)}")
    if snap.note:
        print(f"  note: {snap.note}")
    if snap.latest:
        print("  latest: " + ", ".join(f"{k} {v:.4g}" for k, v in snap.latest.items()))
    print(f"  directory {snap.run_dir}")
    if snap.error:
        print(f"  error: {snap.error}")
    return 0


def runs_export(mgr: RunManager, args: argparse.Namespace) -> int:
    """`runs export ID [--to csv|parquet|mlflow] [--out DIR]`."""
    where = mgr.export(args.id, to=args.to, path=args.out)
    print(f"exported {args.id} to {where}" if args.to != "mlflow" else f"exported {args.id} as MLflow run {where}")
    return 0
