"""`runs gallery list | import | export | record | remove`: the recorded examples (see gist_engine.runs.gallery)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ..config import ConfigError, selection_label
from ..runs import RunManager, printable
from ..runs.gallery import (
    bundle_size,
    gallery_examples,
    import_gallery,
    import_gallery_entry,
    list_gallery,
    read_index,
    remove_gallery_example,
)
from ..runs.pairs import points
from ..runs.recording import export_bundle, record
from ..studies import export_study_bundle
from .common import count, percent, print_json, with_manager


def add_parser(runs: Any) -> Any:
    """Add `gallery` and its sub-commands to `runs`' subparsers; returns the gallery's subparsers."""
    p = runs.add_parser("gallery", help="recorded example runs: list, import into the store, export, re-record")
    sub = p.add_subparsers(dest="gallery_command", required=True)

    def gallery_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--gallery", default=None, help="gallery folder (default: the shipped assets/gallery)")

    q = sub.add_parser("list", help="the gallery's entries: machine, date, version, command, numbers")
    gallery_arg(q)
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=with_manager(gallery_list))
    q = sub.add_parser("import", help="import entries into the store as read-only examples (twice changes nothing)")
    q.add_argument("names", nargs="*", help="entry names")
    q.add_argument("--all", action="store_true", help="every recorded entry")
    gallery_arg(q)
    q.set_defaults(handler=with_manager(gallery_import))
    q = sub.add_parser("export", help="write runs or groups (or a study) of the store as a gallery bundle")
    q.add_argument("ids", nargs="*", help="run ids and/or group ids")
    q.add_argument("--study", default=None, metavar="ID", help="export this study (its runs and rows) instead")
    q.add_argument("--with-checkpoints", action="store_true",
                   help="with --study: copy the runs' checkpoints too (default: numbers only, a few kB per run)")
    q.add_argument("--name", required=True, help="the entry's name (letters, digits, - and _)")
    q.add_argument("--out", required=True, help="folder that receives the bundle folder NAME/")
    q.add_argument("--title", default=None, help="title shown in the gallery")
    q.add_argument("--description", default=None, help="one or two sentences shown in the gallery")
    q.add_argument("--recorded-command", default=None,
                   help="the command that produced the runs (kept in the manifest; default: this export command)")
    q.set_defaults(handler=with_manager(gallery_export))
    q = sub.add_parser("record", help="re-run entries' recipes (gallery.yaml) in a temporary store; write bundles")
    q.add_argument("names", nargs="*", help="entry names")
    q.add_argument("--all", action="store_true", help="every entry of the index")
    gallery_arg(q)
    q.add_argument("--out", default=None, help="folder for the bundles (default: the gallery folder itself)")
    q.add_argument("--work-dir", default=None, metavar="DIR",
                   help="data directory the runs are recorded in, kept after (default: a temporary one); for a "
                        "study entry, the same command again continues its study there (completed runs are kept)")
    q.set_defaults(handler=with_manager(gallery_record))
    q = sub.add_parser("remove", help="take an imported example out of the store (its runs and files)")
    q.add_argument("name", help="entry name")
    q.set_defaults(handler=with_manager(gallery_remove))
    return sub


def gallery_list(mgr: RunManager, args: argparse.Namespace) -> int:
    """`runs gallery list [--json]`: each entry's state in this store, machine, versions, command and numbers."""
    bundles = list_gallery(args.gallery)
    imported = gallery_examples(mgr)
    if args.json:
        print_json([{k: v for k, v in b.items() if k not in ("groups", "runs")} | {"imported": b["name"] in imported}
                     for b in bundles])
        return 0
    for b in bundles:
        state = "imported" if b["name"] in imported else ("not imported" if b["recorded"] else "not recorded")
        print(printable(f"{b['name']}: {b['title']} [{state}]"))
        if not b["recorded"]:
            continue
        m, v = b["machine"], b["versions"]
        print(f"  {count(len(b['runs']), 'run')}, {b['size_bytes'] / 1e6:.2f} MB; recorded {b['date']} on {m['cpu']} "
              f"({m['cores']} cores), gist_engine {v.get('gist_engine')}, torch {v.get('torch')}")
        print(f"  command: {printable(b['command'])}")
        if b.get("kind") == "study":  # a study: one line per cell of its table
            _gallery_study_cells(b)
            continue
        for r in b["summary"]["runs"]:
            gist = f", Gist head {percent(r['acc_gist'])}" if r["acc_gist"] is not None else ""
            label = f" ({selection_label('test')})" if r.get("selected_on") == "test" else ""
            print(f"    seed {r['seed']} {'GIST' if r['gist_enabled'] else 'plain':5s}: test accuracy "
                  f"{percent(r['acc_cls'])}{label}{gist}")
    return 0


def _gallery_study_cells(bundle: dict[str, Any]) -> None:
    """The cells of a study bundle's table: mean test accuracy of both arms and GIST - plain with its 95% CI."""
    print(f"  study {bundle['study']['id']} ({printable(bundle['study']['name'])}): {bundle['study']['cells']} cells, "
          f"{bundle['study']['planned']} runs")
    for r in bundle.get("results") or []:
        low, high = r.get("delta_ci_low"), r.get("delta_ci_high")
        ci = f" [{points(low)}, {points(high)}]" if low is not None else ""
        delta = f"{points(r['delta_mean'])}{ci} points" if r.get("delta_mean") is not None else "-"
        print(f"    {printable(r['label'])}: plain {percent(r['plain_mean'])}, GIST {percent(r['gist_mean'])}, "
              f"GIST - plain {delta} ({r['n']} seeds)")
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for r in bundle.get("budget") or []:  # the verdict after each evaluated epoch, when there are several
        by_cell.setdefault(str(r.get("label")), []).append(r)
    for label, rows in by_cell.items():
        if len(rows) > 1:
            shown = ", ".join(f"{r.get('epoch'):g}: {points(r['delta_mean'])}" for r in rows
                              if isinstance(r.get("epoch"), (int, float)) and isinstance(r.get("delta_mean"), float))
            print(f"    {printable(label)}: GIST - plain after epoch {shown} (points; `study show ID --by-epoch`)")


def gallery_import(mgr: RunManager, args: argparse.Namespace) -> int:
    """`runs gallery import NAME ... | --all`: into the store as read-only examples."""
    if bool(args.names) == args.all:
        raise ConfigError("runs gallery import: give entry names (see `runs gallery list`) or --all, not both")
    results = (import_gallery(mgr, args.gallery) if args.all
               else [import_gallery_entry(mgr, name, args.gallery) for name in args.names])
    for r in results:
        what = "imported" if r["imported"] else "already imported"
        groups = f", group {', '.join(r['groups'])}" if r["groups"] else ""
        print(f"{r['name']}: {what} ({count(len(r['runs']), 'run')}{groups})")
    return 0


def gallery_export(mgr: RunManager, args: argparse.Namespace) -> int:
    """`runs gallery export ID ... | --study ID --name NAME --out DIR`: a bundle folder OUT/NAME."""
    command = args.recorded_command or "python -m gist_engine " + shlex.join(sys.argv[1:])
    if bool(args.ids) == bool(args.study):
        raise ConfigError("runs gallery export: give run/group ids or --study ID, not both")
    if args.with_checkpoints and not args.study:
        raise ConfigError("runs gallery export: --with-checkpoints is for --study (run bundles always have them)")
    if args.study:
        out = export_study_bundle(mgr, args.study, Path(args.out) / args.name, args.name, title=args.title or "",
                                  description=args.description or "", command=command,
                                  checkpoints=args.with_checkpoints)
    else:
        out = export_bundle(mgr, args.ids, Path(args.out) / args.name, args.name, title=args.title or "",
                            description=args.description or "", command=command)
    print(f"wrote {out} ({bundle_size(out) / 1e6:.2f} MB)")
    return 0


def gallery_record(mgr: RunManager, args: argparse.Namespace) -> int:
    """`runs gallery record NAME ... | --all`: re-run the entries' recipes and write their bundles."""
    names = [e["name"] for e in read_index(args.gallery)] if args.all else args.names
    if not names or (args.all and args.names):
        raise ConfigError("runs gallery record: give entry names (see gallery.yaml) or --all, not both")
    for name in names:
        out = record(name, args.gallery, out_dir=args.out, work_dir=args.work_dir)
        print(f"wrote {out} ({bundle_size(out) / 1e6:.2f} MB)")
    return 0


def gallery_remove(mgr: RunManager, args: argparse.Namespace) -> int:
    """`runs gallery remove NAME`: an imported example's runs and files out of the store."""
    removed = remove_gallery_example(mgr, args.name)
    print(f"removed the example {args.name} ({count(len(removed), 'run')}) from {mgr.root}")
    return 0
