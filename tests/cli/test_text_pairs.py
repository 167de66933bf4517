"""`predict` on sentence pairs: a pair model takes --text with --text-pair; each kind of model refuses the other."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from gist_engine.cli import main
from gist_engine.train.checkpoint import load_model, predict


def _table(path, pairs: bool) -> str:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "text_pair", "label"] if pairs else ["text", "label"])
        for i in range(24):
            row = [f"the cat sat {i}", f"a cat was sitting {i}" if i % 2 else f"stocks fell {i}"]
            w.writerow([*row, "same" if i % 2 else "different"] if pairs else [row[0], "a" if i % 2 else "b"])
    return str(path)


def _train(tmp_path, name: str, pairs: bool) -> str:
    out = tmp_path / name
    assert main(["-q", "train", "--set", "backbone=test_bert", "--set", "method=linear",
                 "--set", f"data.dataset=textfile:{_table(tmp_path / f'{name}.csv', pairs)}",
                 "--set", "data.max_length=16", "--set", "train.batch_size=8", "--set", "train.max_steps=1",
                 "--out", str(out)]) == 0
    return str(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("text_pairs")
    return {"pair": _train(tmp, "pair", True), "single": _train(tmp, "single", False)}


def test_a_pair_model_predicts_pairs(runs, capsys):
    capsys.readouterr()
    assert main(["predict", "--run", runs["pair"], "--text", "the cat sat", "the dog ran",
                 "--text-pair", "a cat was sitting", "stocks fell"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["text_pair"] for r in out] == ["a cat was sitting", "stocks fell"]
    assert {r["top"][0]["class"] for r in out} <= {"same", "different"}
    model, _ = load_model(runs["pair"])
    assert model.text_pairs is True
    want = predict(model, ["the cat sat"], model.class_names, text_pairs=["a cat was sitting"])[0]
    assert want["top"] == out[0]["top"]  # the API gives what the CLI prints
    with torch.inference_mode():  # the second text reaches the model, as its second segment
        batch = model.tokenize(["the cat sat"], ["a cat was sitting"])
        other = model(model.tokenize(["the cat sat"], ["stocks fell"])).cls_logits
        assert int(batch["token_type_ids"].max()) == 1 and not torch.allclose(model(batch).cls_logits, other)


@pytest.mark.parametrize("run, args, message", [
    ("pair", ["--text", "the cat sat"], "trained on sentence pairs (text + text_pair), so one text alone"),
    ("single", ["--text", "the cat sat", "--text-pair", "a cat"], "trained on single texts, not sentence pairs"),
    ("pair", ["--text", "a", "b", "--text-pair", "c"], "2 text(s) but 1 text pair(s)"),
    ("pair", ["--text-pair", "c"], "--text-pair needs --text"),
])
def test_texts_that_do_not_fit_the_model_are_refused(runs, capsys, run, args, message):
    capsys.readouterr()
    assert main(["predict", "--run", runs[run], *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: predict: ") and message in err, err
