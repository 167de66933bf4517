"""The command line: `python -m gist_engine list | describe | ...`, the twin of what the app does."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from .backbones import BackboneError
from .build import build_model, describe_model
from .catalog import catalogue
from .config import ConfigError, ModelConfig, load_run_config, to_dict
from .data import import_benchmark, model_inputs
from .data.images import DatasetError
from .inspect.explain import attention_report
from .runs import STATUSES, RunError, RunManager, format_table, printable
from .runs.compare import run_compare
from .runs.gallery import (
    bundle_size,
    export_bundle,
    gallery_examples,
    import_gallery,
    import_gallery_entry,
    list_gallery,
    read_index,
    record,
    remove_gallery_example,
)
from .studies import (
    BACKENDS,
    STUDY_EXPORTS,
    StudyStore,
    create_study,
    export_study,
    export_study_bundle,
    format_study,
    get_study,
    list_studies,
    run_study,
    study_results,
)
from .studies.results import DELTA_METRICS
from .studies.spec import MAX_RUNS
from .train import COMPLETED, STOPPED, Trainer
from .train.checkpoint import CheckpointError, load_model, predict

logger = logging.getLogger(__name__)
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
LOG_LEVELS = {-1: logging.ERROR, 0: logging.INFO, 1: logging.DEBUG}  # -q, default, -v

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    """Register a sub-command handler in COMMANDS."""
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return register


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


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


@command("describe")
def _describe(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config, args.set)
    info = describe_model(build_model(cfg), cfg)
    if args.json:
        _print_json(info)
    else:
        print(info["summary"])
        size = f"{info['image_size']} px" if info.get("image_size") else f"max_length {info.get('max_length')} tokens"
        print(f"backbone {info['backbone']} @ {size}, method {info['tuner']} {info['tuner_args']}, "
              f"sequence {' + '.join(f'{n} {k}' for n, k in info['sequence_layout'])} = {info['seq_len']} tokens")
    return 0


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
        if phase not in ("evaluating", "probing") or self.bar.disable:
            return
        if self.eval_bar is None:
            what = "test images" if phase == "evaluating" else "probe images"
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


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def _summary_line(r) -> str:
    acc = "n/a" if r.acc_cls is None else f"{100 * r.acc_cls:.2f}% (best {100 * r.best_acc_cls:.2f}%)"
    gist = "" if r.acc_gist is None else f", Gist head {100 * r.acc_gist:.2f}%, agreement {100 * r.agreement:.1f}%"
    return (f"{r.status}: test accuracy {acc}{gist}; {r.steps} steps in {r.train_seconds:.1f} s "
            f"({r.images_per_second:.1f} img/s on {r.device}, {r.precision}); trainable {r.trainable_params:,} "
            f"of {r.total_params:,} (GIST adds {r.gist_params:,})")


def _output_dir(path: str) -> Path:
    """`--out`: a directory, created when missing; a file of that name is refused."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file of that name exists; give a directory")
    return out


@command("train")
def _train(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config, args.set)
    out = _output_dir(args.out)
    trainer = Trainer(cfg, callbacks=[ProgressBar(cfg.name or "")], run_dir=out)
    trainer.setup()
    logger.info("%s", trainer.data.summary())
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(trainer.config), sort_keys=False))
    result = trainer.run()
    _write_json(out / "result.json", result.to_dict())
    print(_summary_line(result))
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    print(f"wrote {out / 'result.json'}")
    return 0 if result.status in (COMPLETED, STOPPED) else 1


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config, args.set)
    out = _output_dir(args.out)
    summary = run_compare(cfg, args.seeds, out_dir=out,
                          callbacks=lambda seed, gist, c: [ProgressBar(f"seed {seed} {'GIST' if gist else 'plain'}")])
    _write_json(out / "compare.json", {k: v for k, v in summary.items() if k != "paired"})
    print(format_table(summary["paired"]))
    print(f"wrote {out / 'compare.json'}")
    return 0 if all(r["status"] == "completed" for r in summary["runs"]) else 1


@command("predict")
def _predict(args: argparse.Namespace) -> int:
    if args.text and args.image:
        raise ConfigError("predict: give --image FILE ... or --text TEXT ..., not both")
    if args.text_pair and not args.text:
        raise ConfigError("predict: --text-pair needs --text (the first text of each pair)")
    model, _ = load_model(args.run)
    modality = getattr(model, "modality", "image")
    if (args.text and modality != "text") or (args.image and modality == "text"):
        given, other = ("--text", "--image FILE ...") if args.text else ("--image", "--text TEXT ...")
        kind = {"image": "an image", "text": "a text"}.get(modality, modality)
        raise ConfigError(f"predict: {args.run} holds {kind} model, so {given} does not apply; give {other}")
    if args.text:  # a text model's checkpoint: classify the given texts
        return _predict_texts(model, args)
    if not args.image:
        raise ConfigError("predict: give --image FILE ... (or --text TEXT ... for a text model)")
    _, x = model_inputs(list(args.image), model.data_config)  # (B, 3, S, S): the shared decoder and transform
    results = predict(model, x, model.class_names, top_k=args.top_k)
    for path, item in zip(args.image, results, strict=True):
        item["image"] = str(path)
    _print_json(results if len(results) > 1 else results[0])
    return 0


def _predict_texts(model: Any, args: argparse.Namespace) -> int:
    """`predict --text ... [--text-pair ...]`: classify texts (or sentence pairs) with a text model's run."""
    pairs = list(args.text_pair) if args.text_pair else None
    results = predict(model, list(args.text), model.class_names, top_k=args.top_k, text_pairs=pairs)
    for i, item in enumerate(results):
        item["text"] = args.text[i]
        if pairs is not None:
            item["text_pair"] = pairs[i]
    _print_json(results if len(results) > 1 else results[0])
    return 0


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def attention_cli(run_dir: Path | None, config: Any, image_path: Path, out_dir: Path,
                  model: Any = None) -> dict[str, Any]:
    """The `attention` command: maps, figure and summary of one image for a run's or a config's model.

    Args:
        run_dir: A run directory: its model is loaded with `checkpoint.load_model` (trained parameters).
        config: Used without `run_dir`: a run or model config (mapping, YAML path, RunConfig/ModelConfig), the
            untrained model built with `build_model`.
        image_path: Any image PIL reads.
        out_dir: Where `maps.npz`, `attention.png`, `summary.json` go.
        model: An already loaded model; takes precedence over `run_dir` and `config` (which are then labels).

    Returns:
        The summary written to `summary.json`.
    """
    if model is None:
        if run_dir is not None:
            model, _ = load_model(run_dir)  # CheckpointError (a ValueError) when the run has no checkpoint
        elif config is not None:
            model = build_model(config if isinstance(config, ModelConfig) else load_run_config(config))
        else:
            raise ValueError("attention_cli: give a run directory or a config")
    if getattr(model, "modality", "image") == "text":
        raise ConfigError(f"attention: {run_dir or 'the config'} is a text model; this command draws image maps "
                          "(the app's Attention page shows a text model's token attention)")
    summary = attention_report(model, image_path, out_dir)  # the shared decoder (as predict); DatasetError if bad
    summary["image"] = str(image_path)
    if run_dir is not None:
        summary["run"] = str(run_dir)
    Path(out_dir, "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


@command("attention")
def _attention(args: argparse.Namespace) -> int:
    if (args.run is None) == (args.config is None):
        raise ConfigError("attention: give exactly one of --run DIR or --config FILE")
    config = load_run_config(args.config, args.set) if args.config else None
    summary = attention_cli(Path(args.run) if args.run else None, config, Path(args.image), Path(args.out))
    layers = summary.get("layers", [])
    for row in layers:
        print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    print(f"wrote {Path(args.out) / 'maps.npz'}, {Path(args.out) / 'attention.png'}, {Path(args.out) / 'summary.json'}")
    return 0


@command("runs")
def _runs(args: argparse.Namespace) -> int:
    mgr = RunManager(args.root, start=False)  # a view of the store: marks dead processes' runs interrupted
    try:
        return RUNS_COMMANDS[args.runs_command](mgr, args)
    except RunError as exc:  # unknown id, missing optional package, ...
        return fail(exc)
    finally:
        mgr.shutdown()


def _runs_list(mgr, args: argparse.Namespace) -> int:
    snaps = mgr.list(status=args.status, limit=args.limit)
    if args.json:
        _print_json([s.to_dict() for s in snaps])
        return 0
    print(f"{'id':<11} {'status':<11} {'progress':>8}  {'acc':>7}  {'best':>7}  {'group':<11} {'created':<16} name")
    for s in snaps:
        created = datetime.datetime.fromtimestamp(s.created).strftime("%Y-%m-%d %H:%M")
        print(f"{s.id:<11} {s.status:<11} {100 * s.progress:7.0f}%  {_percent(s.acc_cls):>7}  "
              f"{_percent(s.best_acc_cls):>7}  {s.group_id or '-':<11} {created:<16} {printable(s.name)}")
    return 0


def _runs_show(mgr, args: argparse.Namespace) -> int:
    if mgr.is_group(args.id):
        res = mgr.group_results(args.id)
        if args.json:
            _print_json({k: v for k, v in res.items() if k not in ("runs", "paired")} |
                        {"runs": [s.to_dict() for s in res["runs"]]})
        else:
            print(f"group {args.id} ({printable(res['group']['name'])}): seeds {res['group']['seeds']}")
            print(format_table(res["paired"]))
        return 0
    snap = mgr.get(args.id)
    if args.json:
        _print_json(snap.to_dict())
        return 0
    print(f"{snap.id} {printable(snap.name)}: {snap.status}, step {snap.step}/{snap.total_steps} "
          f"(epoch {snap.epoch:.2f})")
    print(f"  {snap.method}, GIST {'on' if snap.gist_enabled else 'off'}, seed {snap.seed}, group {snap.group_id}")
    print(f"  test accuracy {_percent(snap.acc_cls)} (best {_percent(snap.best_acc_cls)}); trainable "
          f"{snap.trainable_params}, GIST {snap.gist_params}")
    if snap.latest:
        print("  latest: " + ", ".join(f"{k} {v:.4g}" for k, v in snap.latest.items()))
    print(f"  directory {snap.run_dir}")
    if snap.error:
        print(f"  error: {snap.error}")
    return 0


def _runs_export(mgr, args: argparse.Namespace) -> int:
    where = mgr.export(args.id, to=args.to, path=args.out)
    print(f"exported {args.id} to {where}" if args.to != "mlflow" else f"exported {args.id} as MLflow run {where}")
    return 0


RUNS_COMMANDS: dict[str, Callable[[Any, argparse.Namespace], int]] = {
    "list": _runs_list, "show": _runs_show, "export": _runs_export}


@command("study")
def _study(args: argparse.Namespace) -> int:
    try:
        return STUDY_COMMANDS[args.study_command](args)
    except RunError as exc:  # a run of the study in a wrong state, a missing optional package
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _study_drive(args: argparse.Namespace, study_id: str) -> int:
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
    return 0 if get_study(study_id, args.root).status == "completed" else 1


def _study_run(args: argparse.Namespace) -> int:
    return _study_drive(args, create_study(args.spec, args.root, args.backend or "local", new=args.new,
                                           max_runs=args.max_runs))


def _study_resume(args: argparse.Namespace) -> int:
    with StudyStore(args.root) as s:  # an unknown id or a gallery example is refused by name before anything starts
        s.get(args.id)
        s.refuse_example(args.id, "resume")
    return _study_drive(args, args.id)


def _study_list(args: argparse.Namespace) -> int:
    studies = list_studies(args.root)
    if args.json:
        _print_json([s.to_dict() for s in studies])
        return 0
    print(f"{'id':<12} {'status':<12} {'backend':<8} {'cells':>5} {'runs':>5} {'done':>5}  {'created':<16} name")
    for s in studies:
        created = datetime.datetime.fromtimestamp(s.created).strftime("%Y-%m-%d %H:%M")
        print(f"{s.id:<12} {s.status:<12} {s.backend:<8} {s.cells:>5} {s.planned:>5} {s.settled:>5}  {created:<16} "
              f"{printable(s.name)}")
    return 0


def _study_show(args: argparse.Namespace) -> int:
    if args.json:
        info = get_study(args.id, args.root)
        cells = study_results(args.id, args.root, args.metric)
        _print_json(info.to_dict() | {"metric": args.metric, "cells": json.loads(cells.to_json(orient="records"))})
        return 0
    print(format_study(args.id, args.root, args.metric))
    return 0


def _study_export(args: argparse.Namespace) -> int:
    text = export_study(args.id, args.to, args.out, args.root, args.metric, args.rows, args.cols)
    if args.out:
        print(f"wrote {args.out}")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


STUDY_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _study_run, "resume": _study_resume, "list": _study_list, "show": _study_show, "export": _study_export}


@command("data")
def _data(args: argparse.Namespace) -> int:
    report = import_benchmark(args.kind, args.source, root=args.root, overwrite=args.overwrite,
                              from_hub=args.from_hub)
    print(report.table())
    print(f"{_count(len(report.rows), report.kind + ' dataset')} checked and installed in {report.seconds:.1f} s")
    return 0


def _add_data_parser(sub: Any) -> None:
    """`data import vtab1k|fgvc|fewshot <zip|dir>`: the benchmark importer (gist_engine.data.importer)."""
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


def _add_study_parser(sub: Any) -> None:
    """`study run | resume | list | show | export`."""
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
    backend.add_argument("--workers", type=_positive_int, default=1, help="local: runs at once per device")
    metric = argparse.ArgumentParser(add_help=False)
    metric.add_argument("--metric", choices=DELTA_METRICS, default="acc_cls",
                        help="accuracy compared (best_acc_cls: best evaluation, as VTAB-1k reports)")
    q = studies.add_parser("run", parents=[root, backend], help="run a study spec (continues a study with the "
                                                                  "same spec unless --new)")
    q.add_argument("spec", help="study spec YAML (see assets/studies/)")
    q.add_argument("--new", action="store_true", help="start a new study even if one has this spec")
    q.add_argument("--max-runs", type=_positive_int, default=MAX_RUNS, metavar="N",
                   help=f"the most runs the spec may plan (default {MAX_RUNS:,}; counted before anything is built)")
    q = studies.add_parser("resume", parents=[root, backend], help="continue a study; completed runs never rerun")
    q.add_argument("id", help="study id")
    q = studies.add_parser("list", parents=[root], help="studies, newest first")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = studies.add_parser("show", parents=[root, metric], help="per cell: accuracies, delta, CI, p, status")
    q.add_argument("id", help="study id")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = studies.add_parser("export", parents=[root, metric], help="the results as CSV, Markdown or LaTeX")
    q.add_argument("id", help="study id")
    q.add_argument("--to", choices=STUDY_EXPORTS, default="csv", help="format")
    q.add_argument("-o", "--out", default=None, help="file to write (default: print)")
    q.add_argument("--rows", default=None, help="md/latex: the axis along the rows")
    q.add_argument("--cols", default=None, help="md/latex: the axis along the columns")


# ----------------------------------------------------------------------------------- runs gallery ...
def _gallery_list(mgr, args: argparse.Namespace) -> int:
    bundles = list_gallery(args.gallery)
    imported = gallery_examples(mgr)
    if args.json:
        _print_json([{k: v for k, v in b.items() if k not in ("groups", "runs")} | {"imported": b["name"] in imported}
                     for b in bundles])
        return 0
    for b in bundles:
        state = "imported" if b["name"] in imported else ("not imported" if b["recorded"] else "not recorded")
        print(printable(f"{b['name']}: {b['title']} [{state}]"))
        if not b["recorded"]:
            continue
        m, v = b["machine"], b["versions"]
        print(f"  {_count(len(b['runs']), 'run')}, {b['size_bytes'] / 1e6:.2f} MB; recorded {b['date']} on {m['cpu']} "
              f"({m['cores']} cores), gist_engine {v.get('gist_engine')}, torch {v.get('torch')}")
        print(f"  command: {printable(b['command'])}")
        if b.get("kind") == "study":  # a study: one line per cell of its table
            _gallery_study_cells(b)
            continue
        for r in b["summary"]["runs"]:
            gist = f", Gist head {_percent(r['acc_gist'])}" if r["acc_gist"] is not None else ""
            print(f"    seed {r['seed']} {'GIST' if r['gist_enabled'] else 'plain':5s}: test accuracy "
                  f"{_percent(r['acc_cls'])}{gist}")
    return 0


def _gallery_study_cells(bundle: dict[str, Any]) -> None:
    """The cells of a study bundle's table: mean test accuracy of both arms and GIST - plain with its 95% CI."""
    print(f"  study {bundle['study']['id']} ({printable(bundle['study']['name'])}): {bundle['study']['cells']} cells, "
          f"{bundle['study']['planned']} runs")
    for r in bundle.get("results") or []:
        ci = (f" [{100 * r['delta_ci_low']:+.2f}, {100 * r['delta_ci_high']:+.2f}]"
              if r.get("delta_ci_low") is not None else "")
        delta = f"{100 * r['delta_mean']:+.2f}{ci} points" if r.get("delta_mean") is not None else "-"
        print(f"    {printable(r['label'])}: plain {_percent(r['plain_mean'])}, GIST {_percent(r['gist_mean'])}, "
              f"GIST - plain {delta} ({r['n']} seeds)")


def _gallery_import(mgr, args: argparse.Namespace) -> int:
    if bool(args.names) == args.all:
        raise ConfigError("runs gallery import: give entry names (see `runs gallery list`) or --all, not both")
    results = (import_gallery(mgr, args.gallery) if args.all
               else [import_gallery_entry(mgr, name, args.gallery) for name in args.names])
    for r in results:
        what = "imported" if r["imported"] else "already imported"
        groups = f", group {', '.join(r['groups'])}" if r["groups"] else ""
        print(f"{r['name']}: {what} ({_count(len(r['runs']), 'run')}{groups})")
    return 0


def _gallery_export(mgr, args: argparse.Namespace) -> int:
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


def _gallery_record(mgr, args: argparse.Namespace) -> int:
    names = [e["name"] for e in read_index(args.gallery)] if args.all else args.names
    if not names or (args.all and args.names):
        raise ConfigError("runs gallery record: give entry names (see gallery.yaml) or --all, not both")
    for name in names:
        out = record(name, args.gallery, out_dir=args.out)
        print(f"wrote {out} ({bundle_size(out) / 1e6:.2f} MB)")
    return 0


def _gallery_remove(mgr, args: argparse.Namespace) -> int:
    removed = remove_gallery_example(mgr, args.name)
    print(f"removed the example {args.name} ({_count(len(removed), 'run')}) from {mgr.root}")
    return 0


GALLERY_COMMANDS: dict[str, Callable[[Any, argparse.Namespace], int]] = {
    "list": _gallery_list, "import": _gallery_import, "export": _gallery_export, "record": _gallery_record,
    "remove": _gallery_remove}


def _runs_gallery(mgr, args: argparse.Namespace) -> int:
    return GALLERY_COMMANDS[args.gallery_command](mgr, args)


RUNS_COMMANDS["gallery"] = _runs_gallery


def _gallery_parser(runs: Any) -> Any:
    """`runs gallery list | import | export | record | remove`: the recorded examples (see gist_engine.runs.gallery);
    returns its subparsers."""
    p = runs.add_parser("gallery", help="recorded example runs: list, import into the store, export, re-record")
    sub = p.add_subparsers(dest="gallery_command", required=True)

    def gallery_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--gallery", default=None, help="gallery folder (default: the shipped assets/gallery)")

    q = sub.add_parser("list", help="the gallery's entries: machine, date, version, command, numbers")
    gallery_arg(q)
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = sub.add_parser("import", help="import entries into the store as read-only examples (twice changes nothing)")
    q.add_argument("names", nargs="*", help="entry names")
    q.add_argument("--all", action="store_true", help="every recorded entry")
    gallery_arg(q)
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
    q = sub.add_parser("record", help="re-run entries' recipes (gallery.yaml) in a temporary store; write bundles")
    q.add_argument("names", nargs="*", help="entry names")
    q.add_argument("--all", action="store_true", help="every entry of the index")
    gallery_arg(q)
    q.add_argument("--out", default=None, help="folder for the bundles (default: the gallery folder itself)")
    q = sub.add_parser("remove", help="take an imported example out of the store (its runs and files)")
    q.add_argument("name", help="entry name")
    return sub


def _count(n: int, word: str) -> str:
    """(1, 'run') -> '1 run'; (3, 'run') -> '3 runs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _root_everywhere(*commands: argparse.ArgumentParser) -> None:
    """Give each command a `--root` that fills its group's `--root` (`runs list --root DIR`)."""
    for q in commands:
        q.add_argument("--root", default=argparse.SUPPRESS, help="data directory (as `runs --root`)")


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range (must be >= 1)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = CliParser(prog="python -m gist_engine", description=__doc__)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
                           help="log DEBUG lines too")
    verbosity.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                           help="log errors only (no progress bars)")
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
    p = sub.add_parser("train", help="fine-tune one config; writes OUT/result.json and the checkpoint")
    config_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p = sub.add_parser("compare", help="the config with GIST off and on over N seeds; writes OUT/compare.json")
    config_args(p)
    p.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds (from train.seed on)")
    p.add_argument("--out", required=True, help="output directory")
    p = sub.add_parser("predict", help="classify images with a trained run's checkpoint")
    p.add_argument("--run", required=True, help="run directory (or checkpoint.safetensors)")
    p.add_argument("--image", nargs="+", help="image file(s)")
    p.add_argument("--text", nargs="+", help="text(s) to classify, for a text model's run")
    p.add_argument("--text-pair", nargs="+", help="the second text of each pair, for a model trained on sentence "
                   "pairs (text + text_pair); one per --text")
    p.add_argument("--top-k", type=_positive_int, default=5, help="classes listed per image")
    p = sub.add_parser("attention", help="CLS vs Gist attention maps, rollout and summary for one image")
    p.add_argument("--run", help="run directory (its checkpoint); or --config for an untrained model")
    config_args(p)
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--out", required=True, help="output directory for maps.npz, attention.png, summary.json")
    p = sub.add_parser("runs", help="the run store of the app: list, show and export background runs")
    p.add_argument("--root", default=None, help="data directory (default: $GIST_DATA_DIR or the user data dir)")
    runs = p.add_subparsers(dest="runs_command", required=True)
    q = runs.add_parser("list", help="runs, newest first")
    q.add_argument("--status", default=None, choices=STATUSES, help="only runs with this status")
    q.add_argument("--limit", type=_positive_int, default=None, help="at most this many runs")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = runs.add_parser("show", help="one run (or a group's paired statistics)")
    q.add_argument("id", help="run id or group id")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = runs.add_parser("export", help="a run or group to CSV/Parquet tables or to MLflow")
    q.add_argument("id", help="run id or group id")
    q.add_argument("--to", choices=("csv", "parquet", "mlflow"), default="csv", help="export format")
    q.add_argument("--out", default=None, help="folder to write (mlflow: tracking folder or URI)")
    _add_study_parser(sub)
    _add_data_parser(sub)
    gallery = _gallery_parser(runs)
    # `runs list --root DIR` as well as `runs --root DIR list` (like `study`)
    _root_everywhere(*(q for name, q in runs.choices.items() if name != "gallery"), *gallery.choices.values())
    return parser


USER_ERRORS = (ConfigError, BackboneError, DatasetError, CheckpointError, RunError)  # exit 2 with their message


class CliParser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one `error: ...` line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def fail(message: object) -> int:
    """Print `error: <message>` as one line on stderr (newlines folded); returns the exit status 2."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a bad config or input, with the reason on one stderr line)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbosity)
    logger.debug("command %s: %s", args.command, vars(args))
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as exc:
        return fail(exc)
    except BrokenPipeError:  # the reader stopped reading: __main__ ends quietly with status 1
        raise
    except OSError as exc:  # a path the user gave: missing, a file where a folder belongs, no permission, disk full
        logger.debug("%s", exc, exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}; check the path and its permissions (and the free disk space)")


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to `sys.stderr` as it is at each record (tests and tools replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler sets it; the property always answers sys.stderr
        pass


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter(LOG_FORMAT))


def configure_logging(verbosity: int = 0) -> None:
    """Show the engine's log on stderr: -1 errors only (`-q`), 0 INFO and up (default), 1 DEBUG too (`-v`).

    The only place that configures logging handlers: one handler on the root logger (other libraries' warnings
    keep reaching it; `-q` lowers them to errors too), the level on the `gist_engine` logger. Calling it again
    replaces the previous setting.
    """
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    root.setLevel(logging.ERROR if verbosity < 0 else logging.WARNING)
    logging.getLogger("gist_engine").setLevel(LOG_LEVELS[max(-1, min(1, verbosity))])
