"""`predict`: classify images (or texts, for a text model) with a trained run's checkpoint; prints JSON."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import ConfigError
from ..data import model_inputs
from ..train.checkpoint import load_model, predict
from .common import positive_int, print_json


def add_parser(sub: Any) -> None:
    """Add `predict` to the top parser's subparsers."""
    p = sub.add_parser("predict", help="classify images with a trained run's checkpoint")
    p.add_argument("--run", required=True, help="run directory (or checkpoint.safetensors)")
    p.add_argument("--image", nargs="+", help="image file(s)")
    p.add_argument("--text", nargs="+", help="text(s) to classify, for a text model's run")
    p.add_argument("--text-pair", nargs="+", help="the second text of each pair, for a model trained on sentence "
                   "pairs (text + text_pair); one per --text")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes listed per image")
    p.set_defaults(handler=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    """The top-k classes per image (or text); one object for one input, else a list."""
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
    print_json(results if len(results) > 1 else results[0])
    return 0


def _predict_texts(model: Any, args: argparse.Namespace) -> int:
    """`predict --text ... [--text-pair ...]`: classify texts (or sentence pairs) with a text model's run."""
    pairs = list(args.text_pair) if args.text_pair else None
    results = predict(model, list(args.text), model.class_names, top_k=args.top_k, text_pairs=pairs)
    for i, item in enumerate(results):
        item["text"] = args.text[i]
        if pairs is not None:
            item["text_pair"] = pairs[i]
    print_json(results if len(results) > 1 else results[0])
    return 0
