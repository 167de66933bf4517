"""`study run | resume | list | show | export`: paired sweeps over config keys and their results table."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from typing import Any

from tqdm import tqdm

from ..runs import printable
from ..status import StudyStatus
from ..studies import (
    BACKENDS,
    STUDY_EXPORTS,
    StudyStore,
    create_study,
    export_study,
    format_budget,
    format_study,
    get_study,
    list_studies,
    run_study,
    study_budget,
    study_results,
)
from ..studies.results import DELTA_METRICS, study_selection, study_tuning
from ..studies.spec import MAX_RUNS
from .common import positive_int, print_json

logger = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    """Add `study` and its sub-commands to the top parser's subparsers."""
    p = sub.add_parser("study", help="paired sweeps over config keys (local or Ray) and their results table")
    studies = p.add_subparsers(dest="study_command", required=True)
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", default=None, help="data directory (default: $GIST_DATA_DIR or the user data dir)")
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend", choices=tuple(BACKENDS), default=None,
                         help="where the runs execute (run: default local; resume: the study's last backend)")
    backend.add_argument("--address", default=None,
                         help="ray: cluster address (auto = the running cluster; default: start a local Ray)")
    backend.add_argument("--cpus-per-trial", type=float, default=1.0, help="ray: CPUs per run")
    backend.add_argument("--gpus-per-trial", type=float, default=0.0, help="ray: GPUs per run")
    backend.add_argument("--workers", type=positive_int, default=1, help="local: runs at once per device")
    metric = argparse.ArgumentParser(add_help=False)
    metric.add_argument("--metric", choices=DELTA_METRICS, default="acc_cls",
                        help="accuracy compared (best_acc_cls: best evaluation, as VTAB-1k reports)")
    q = studies.add_parser("run", parents=[root, backend], help="run a study spec (continues a study with the "
                                                                  "same spec unless --new)")
    q.add_argument("spec", help="study spec YAML (see assets/studies/)")
    q.add_argument("--new", action="store_true", help="start a new study even if one has this spec")
    q.add_argument("--max-runs", type=positive_int, default=MAX_RUNS, metavar="N",
                   help=f"the most runs the spec may plan (default {MAX_RUNS:,}; counted before anything is built)")
    q.set_defaults(handler=study_run)
    q = studies.add_parser("resume", parents=[root, backend], help="continue a study; completed runs never rerun")
    q.add_argument("id", help="study id")
    q.set_defaults(handler=study_resume)
    q = studies.add_parser("list", parents=[root], help="studies, newest first")
    q.add_argument("--groups", action="store_true",
                   help="also the paired groups ('plain vs GIST' launches: one-cell studies, kind group)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=study_list)
    by_epoch = argparse.ArgumentParser(add_help=False)
    by_epoch.add_argument("--by-epoch", action="store_true",
                          help="the verdict against the training budget: per cell, after each evaluated epoch of "
                               "the same runs (train.eval_every)")
    q = studies.add_parser("show", parents=[root, metric, by_epoch],
                           help="per cell: accuracies, delta, CI, p, status")
    q.add_argument("id", help="study id")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=study_show)
    q = studies.add_parser("export", parents=[root, metric, by_epoch], help="the results as CSV, Markdown or LaTeX")
    q.add_argument("id", help="study id")
    q.add_argument("--to", choices=STUDY_EXPORTS, default="csv", help="format")
    q.add_argument("-o", "--out", default=None, help="file to write (default: print)")
    q.add_argument("--rows", default=None, help="md/latex: the axis along the rows")
    q.add_argument("--cols", default=None, help="md/latex: the axis along the columns")
    q.set_defaults(handler=study_export)


def drive(args: argparse.Namespace, study_id: str) -> int:
    """Run or resume a study with a progress bar over its runs; prints the results; 0 when every run completed."""
    options = {"address": args.address, "cpus_per_trial": args.cpus_per_trial,
               "gpus_per_trial": args.gpus_per_trial, "workers": args.workers}
    print(f"study {study_id}")
    sys.stdout.flush()
    bar = tqdm(desc="study runs", unit="run", total=get_study(study_id, args.root).planned, dynamic_ncols=True,
               file=sys.stderr, disable=not logger.isEnabledFor(logging.INFO))

    def progress(settled: int, planned: int) -> None:
        bar.total = planned
        bar.n = settled
        bar.refresh()

    backend = args.backend or get_study(study_id, args.root).backend
    try:
        run_study(study_id, args.root, backend, progress=progress, **options)
    except KeyboardInterrupt:  # the driver has marked the study and its runs interrupted (resumable)
        bar.close()
        print(f"error: interrupted; `python -m gist_engine study resume {study_id}` continues the study (completed "
              "runs are kept)", file=sys.stderr)
        return 130
    finally:
        bar.close()
    print(format_study(study_id, args.root))
    return 0 if get_study(study_id, args.root).status == StudyStatus.COMPLETED else 1


def study_run(args: argparse.Namespace) -> int:
    """`study run SPEC`: create (or continue) the study of a spec and run it."""
    return drive(args, create_study(args.spec, args.root, args.backend or "local", new=args.new,
                                           max_runs=args.max_runs))


def study_resume(args: argparse.Namespace) -> int:
    """`study resume ID`: continue a study; completed runs never rerun."""
    with StudyStore(args.root) as s:  # an unknown id or a gallery example is refused by name before anything starts
        s.get(args.id)
        s.refuse_example(args.id, "resume")
        s.refuse_group(args.id, "resume")
    return drive(args, args.id)


def study_list(args: argparse.Namespace) -> int:
    """`study list [--groups] [--json]`: newest first; with --groups the paired groups too (a `kind` column)."""
    studies = list_studies(args.root, groups=args.groups)
    if args.json:
        print_json([s.to_dict() for s in studies])
        return 0
    kind = f"{'kind':<6} " if args.groups else ""
    print(f"{'id':<12} {kind}{'status':<12} {'backend':<8} {'cells':>5} {'runs':>5} {'done':>5}  {'created':<16} name")
    for s in studies:
        created = datetime.datetime.fromtimestamp(s.created).strftime("%Y-%m-%d %H:%M")
        kind = f"{s.kind:<6} " if args.groups else ""
        print(f"{s.id:<12} {kind}{s.status:<12} {s.backend:<8} {s.cells:>5} {s.planned:>5} {s.settled:>5}  "
              f"{created:<16} {printable(s.name)}")
    return 0


def study_show(args: argparse.Namespace) -> int:
    """`study show ID [--metric M] [--by-epoch] [--json]`: per cell accuracies, delta, CI, p and status; with
    --by-epoch per cell and evaluated epoch (`study_budget`; JSON: `epochs`, one record per cell and epoch)."""
    if args.json:
        info = get_study(args.id, args.root)
        if args.by_epoch:
            rows = study_budget(args.id, args.root, args.metric)
            print_json(info.to_dict() | {"metric": args.metric, "epochs": json.loads(rows.to_json(orient="records"))})
            return 0
        cells = study_results(args.id, args.root, args.metric)
        with StudyStore(args.root) as s:
            spec = s.spec(args.id)
        print_json(info.to_dict() | {"metric": args.metric, "selection": study_selection(spec),
                                     "cells": json.loads(cells.to_json(orient="records")),
                                     "tuning": study_tuning(args.id, args.root)})
        return 0
    print((format_budget if args.by_epoch else format_study)(args.id, args.root, args.metric))
    return 0


def study_export(args: argparse.Namespace) -> int:
    """`study export ID --to csv|md|latex [--by-epoch] [-o FILE]`: the results table (or the verdict by epoch)."""
    text = export_study(args.id, args.to, args.out, args.root, args.metric, args.rows, args.cols, args.by_epoch)
    if args.out:
        print(f"wrote {args.out}")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0
