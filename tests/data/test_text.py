"""Text datasets: offline corpora with exact counts, folders and tables, tokenised splits, uploads, clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from gist_engine import DATASETS, DataConfig, DatasetError, describe_datasets, load_dataset
from gist_engine.backbones import backbone_data_config, load_tokenizer
from gist_engine.data import NetworkNeededError, TextSplit, import_text_table, list_text_datasets

BBC = {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}  # 2,225 articles
BBC_TEST = {"business": 102, "entertainment": 77, "politics": 83, "sports": 102, "tech": 80}  # round(20%)
TWEETS = {"negative": 15978, "neutral": 14454, "positive": 6811}  # 37,243 distinct tweets


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("minilm_l6")


def load(tok, dataset: str, max_length: int = 32, **kw):
    return load_dataset(DataConfig(dataset=dataset, max_length=max_length, **kw), 0, (), (), tokenizer=tok)


# ----------------------------------------------------------------------------------------------- corpora
@pytest.mark.slow
def test_bbc_news_exact_counts_and_few_shot(tok):
    data = load(tok, "bbc_news")
    assert data.class_names == sorted(BBC)
    assert data.test.class_counts() == BBC_TEST
    assert data.train.class_counts() == {c: BBC[c] - BBC_TEST[c] for c in BBC}
    assert data.info["modality"] == "text" and data.info["sizes"] == {"train": 1781, "val": 0, "test": 444}
    few = load(tok, "bbc_news", few_shot=8, seed=3)
    assert few.train.class_counts() == dict.fromkeys(BBC, 8)
    assert few.test.class_counts() == BBC_TEST  # the test split never depends on data.seed
    again = load(tok, "bbc_news", few_shot=8, seed=3)
    assert again.train.raw(range(40)) == few.train.raw(range(40))


@pytest.mark.slow
def test_tweets_sentiment_exact_counts_and_train_size(tok):
    data = load(tok, "tweets_sentiment", train_size=1000, test_size=300)
    assert data.class_names == list(TWEETS)
    assert len(data.train) == 1000 and len(data.test) == 300
    counts = data.train.class_counts()
    total = sum(TWEETS.values())
    assert all(abs(counts[c] - 1000 * n / total) <= 1 for c, n in TWEETS.items())  # stratified
    from gist_engine.data.text import read_tweets_sentiment

    raw = read_tweets_sentiment()
    assert dict(zip(raw.class_names, torch.bincount(torch.from_numpy(raw.train.labels)).tolist(),
                    strict=True)) == TWEETS


def test_registry_lists_text_datasets():
    info = describe_datasets()
    assert {n for n, s in DATASETS.items() if s.modality == "text"} == {"bbc_news", "tweets_sentiment", "textfolder",
                                                                           "textfile", "glue"}
    assert info["bbc_news"]["modality"] == "text" and info["mnist5k"]["modality"] == "image"
    assert info["bbc_news"]["installed"] and info["tweets_sentiment"]["installed"]


# ----------------------------------------------------------------------------------------------- your data
def test_textfolder_reads_sorted_classes(tmp_path, tok):
    for c, n in (("b_cls", 5), ("a_cls", 6)):
        (tmp_path / c).mkdir()
        for i in range(n):
            (tmp_path / c / f"{i:02d}.txt").write_text(f"document {i} of {c}")
    (tmp_path / "a_cls" / "notes.md").write_text("not a .txt file: skipped")
    data = load(tok, f"textfolder:{tmp_path}")
    assert data.class_names == ["a_cls", "b_cls"]
    assert sum(data.train.class_counts().values()) + sum(data.test.class_counts().values()) == 11
    (tmp_path / "b_cls" / "extra").mkdir()
    with pytest.raises(DatasetError, match="two class folders"):
        load(tok, f"textfolder:{tmp_path / 'a_cls'}")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_textfile_tables(tmp_path, tok, suffix):
    rows = [{"text": f"row {i}", "label": i % 3 * 5} for i in range(30)] + [{"text": "", "label": 0}]
    frame = pd.DataFrame(rows)
    path = tmp_path / f"t{suffix}"
    if suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    data = load(tok, f"textfile:{path}")
    assert data.class_names == ["0", "5", "10"]  # numeric labels sorted as numbers
    assert len(data.train) + len(data.test) == 30  # the empty text was dropped


def test_textfile_errors_name_the_problem(tmp_path, tok):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"sentence": ["a", "b"], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"missing column.*text"):
        load(tok, f"textfile:{path}")
    with pytest.raises(DatasetError, match="no such file"):
        load(tok, f"textfile:{tmp_path / 'none.csv'}")
    two = tmp_path / "two.csv"  # one row per class: nothing is left for a test split
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_csv(two, index=False)
    with pytest.raises(DatasetError, match=r"split is empty \(too few documents per class\?\)") as refused:
        load(tok, f"textfile:{two}")
    assert "images" not in str(refused.value)


def test_modalities_must_match(tok):
    with pytest.raises(DatasetError, match=r"text dataset.*text backbone"):
        load_dataset(DataConfig(dataset="bbc_news"), 32, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(DatasetError, match="image dataset"):
        load(tok, "digits")
    assert backbone_data_config("minilm_l6") == {"modality": "text", "tokenizer": "minilm_l6", "image_size": 0,
                                                 "mean": (), "std": ()}


def test_glue_fails_clearly_offline(monkeypatch, tok):
    import gist_engine.backbones.hub as backbones

    monkeypatch.setattr(backbones, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(NetworkNeededError, match=r"glue:sst2 .*(datasets|reached)"):
        load(tok, "glue:sst2")
    with pytest.raises(DatasetError, match="unknown task"):
        load(tok, "glue:nope")


# ----------------------------------------------------------------------------------------------- splits
def test_text_split_batches(tok):
    texts = ["a", "a b c d e f g h", "a b", "x y z"]
    enc = tok(texts, padding="longest", truncation=True, max_length=16, return_tensors="pt")
    split = TextSplit({k: enc[k] for k in ("input_ids", "attention_mask")}, torch.tensor([0, 1, 0, 1]), ["n", "p"],
                      texts, "cpu")
    batches = list(split.batches(2))
    assert [b[0]["input_ids"].shape[1] for b in batches] == [10, 5]  # cut to each batch's longest text
    assert batches[0][0]["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 7
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    order1 = [y.tolist() for _, y in split.batches(3, shuffle=True, generator=gen())]
    order2 = [y.tolist() for _, y in split.batches(3, shuffle=True, generator=gen())]
    assert order1 == order2 and [len(o) for o in order1] == [3, 1]
    assert len(list(split.batches(3, drop_last=True))) == 1
    assert split.raw([1, 3]) == ["a b c d e f g h", "x y z"] and split.class_counts() == {"n": 2, "p": 2}


def test_truncation_to_max_length(tok):
    data = load(tok, "bbc_news", max_length=24, few_shot=2)
    x, _ = next(data.train.batches(10))
    assert x["input_ids"].shape[1] == 24 and data.info["truncated_share"] == 1.0


# ----------------------------------------------------------------------------------------------- uploads
def test_import_text_table(tmp_path, tok):
    table = "text,label\nGreat phone,pos\nAwful phone,neg\nLovely,pos\nBad,neg\nFine,pos\nMeh,neg\n,neg\n"
    report = import_text_table(table.encode(), "reviews", tmp_path, filename="up.csv")
    assert report.ok and report.classes == {"neg": 3, "pos": 3} and report.dropped_rows == 1
    assert json.loads(report.path.read_text().splitlines()[0]) == {"text": "Great phone", "label": "pos"}
    assert list_text_datasets(tmp_path) == [{"name": "reviews", "path": str(report.path), "dataset": report.dataset}]
    data = load(tok, report.dataset)
    assert data.class_names == ["neg", "pos"]
    assert not import_text_table(table.encode(), "reviews", tmp_path, filename="up.csv").ok  # name taken
    assert "at least 2" in import_text_table(b"text,label\na,x\nb,x\nc,x\n", "one", tmp_path,
                                             filename="o.csv").errors[0]
    assert not import_text_table(b"", "../bad", tmp_path).ok


def test_previews_and_catalogue():
    from gist_engine import catalogue, dataset_preview, text_dataset_preview

    preview = text_dataset_preview("bbc_news", per_class=2, chars=40)
    assert preview["counts"] == BBC and preview["total"] == 2225
    assert all(len(v) == 2 and len(v[0]) <= 43 for v in preview["samples"].values())
    with pytest.raises(DatasetError, match="no images"):
        dataset_preview("bbc_news")  # the image preview fails clearly instead of crashing
    cat = catalogue()
    assert "minilm_l6" in cat["text_backbones"] and "minilm_l6" not in cat["backbones"]
    assert cat["tuners"]["lora"]["text"] is True
