"""GIST on text encoders: parity with the plain encoder, padding masks, every text tuner, token attention, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from gist_engine import TUNERS, BackboneError, GistConfig, build_model, count_parameters, gist_loss
from gist_engine.backbones import create_text_backbone, load_tokenizer
from gist_engine.backbones import text as text_backbones
from gist_engine.build import describe_model
from gist_engine.inspect.text import capture_text_attention, compute_token_attention
from gist_engine.text_model import GistTextEncoder
from gist_engine.train.checkpoint import load_model, predict
from gist_engine.tuners import parse_tuner_args

TEXTS = ["The bank cut interest rates.", "A much longer sentence about the striker who scored twice in the final.",
         "Hi"]
# test_bert: D=32, 2 layers, FFN 64, 2 heads, 10 classes -> head 330 parameters; GIST adds D.
D, LAYERS, FFN, HEAD = 32, 2, 64, 32 * 10 + 10
BIASES = D + LAYERS * (3 * D + D + D + FFN + D + D)  # embedding LN + q,k,v, attn dense, attn LN, FFN in/out, LN
SSF = 2 * D + LAYERS * 2 * (3 * D + D + D + FFN + D + D)  # scale + shift after the same ops
# (method, method_args, trainable parameters without GIST; None = all, name predicate of the tuned parameters)
CASES = [
    ("linear", {}, HEAD, lambda n: False),
    ("full", {}, None, lambda n: True),
    ("bitfit", {}, HEAD + BIASES, lambda n: n.endswith(".bias")),
    ("adapter", {"variant": "gist"}, HEAD + LAYERS * (D * 4 + 4 + 4 * D + D), lambda n: ".adapter." in n),
    ("adapter", {"variant": "houlsby"}, HEAD + LAYERS * (D * 8 + 8 + 8 * D + D), lambda n: ".adapter." in n),
    ("adapter", {"variant": "adaptformer"}, HEAD + LAYERS * (D * 8 + 8 + 8 * D + D), lambda n: ".adapter." in n),
    ("lora", {"rank": 8}, HEAD + LAYERS * 2 * (8 * D + D * 8), lambda n: ".lora_" in n),
    ("lora", {"rank": 2, "targets": "qkv"}, HEAD + LAYERS * 3 * (2 * D + D * 2), lambda n: ".lora_" in n),
    ("vpt", {"length": 3}, HEAD + 3 * D, lambda n: n.endswith(".prompt")),
    ("vpt", {"length": 3, "deep": True}, HEAD + LAYERS * 3 * D, lambda n: n.endswith(".prompt")),
    ("ssf", {}, HEAD + SSF, lambda n: ".ssf_" in n),
    # peft's LoRA (r 8) on query, key, value, attention.output.dense, intermediate.dense, output.dense
    ("peft", {"peft_type": "lora"}, HEAD + LAYERS * 8 * (4 * (D + D) + (D + FFN) + (FFN + D)),
     lambda n: ".lora_" in n),
    ("peft", {"peft_type": "ia3"}, HEAD + LAYERS * (D + D + D + FFN), lambda n: ".ia3_l." in n),
]
IDS = [f"{m}-{'-'.join(f'{k}={v}' for k, v in a.items())}" for m, a, _, _ in CASES]


def build(method="linear", args=None, gist=True, seed=0, backbone="test_bert", **gist_opts) -> GistTextEncoder:
    return build_model({"backbone": backbone, "method": method, "method_args": args or {},
                        "gist": {"enabled": gist, "dropout": 0.0, **gist_opts}}, seed=seed)


@pytest.fixture(scope="module")
def minilm():
    """The offline all-MiniLM-L6-v2 encoder, loaded once for this module (never modified by a tuner)."""
    return create_text_backbone("minilm_l6")


def _batch(model: GistTextEncoder, texts=TEXTS, max_length=32):
    return model.tokenize(texts, max_length=max_length)


# ----------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("backbone", ["test_bert", "test_roberta"])
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_gist_off_equals_the_plain_encoder(backbone, impl):
    model = build(gist=False, backbone=backbone).eval()
    model.backbone.config._attn_implementation = impl
    batch = _batch(model)
    assert batch["attention_mask"].min() == 0  # the batch is padded
    with torch.no_grad():
        ours = model.forward_features(batch["input_ids"], batch["attention_mask"])
        plain = model.backbone(**batch).last_hidden_state
    torch.testing.assert_close(ours, plain, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_minilm_parity_and_its_shape(minilm):
    model = GistTextEncoder(minilm, 5, GistConfig(enabled=False), tokenizer=load_tokenizer("minilm_l6")).eval()
    assert (model.embed_dim, len(model.layers), minilm.config.num_attention_heads) == (384, 6, 12)
    batch = _batch(model)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(**batch), minilm(**batch).last_hidden_state, atol=1e-5,
                                   rtol=0)
        out = model(batch)
    assert out.gist_logits is None and out.cls_logits.shape == (3, 5)


# ----------------------------------------------------------------------------------------------- masks
@pytest.mark.slow
def test_padding_changes_nothing_and_gist_is_never_masked(minilm):
    model = GistTextEncoder(minilm, 5, GistConfig(dropout=0.0), tokenizer=load_tokenizer("minilm_l6")).eval()
    batch = _batch(model)
    with torch.no_grad(), capture_text_attention(model) as capture:
        padded = model(batch)
        attn = capture.stacked()  # (L, B, H, T, T), T = 1 + G + longest - 1
        alone = [model(_batch(model, [t])) for t in TEXTS]
    assert minilm.config._attn_implementation == "sdpa"  # restored after the capture
    for i, out in enumerate(alone):  # the same logits whether a text is padded in a batch or alone
        torch.testing.assert_close(padded.cls_logits[i], out.cls_logits[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(padded.gist_logits[i], out.gist_logits[0], atol=1e-4, rtol=0)
    _, mask = model.embed(batch["input_ids"], batch["attention_mask"])  # (B, T): 1 + Gist + tokens
    assert mask[:, 1].all()  # the Gist slot is attended in every row, padded texts included
    keys = mask.bool()[None, :, None, None, :].expand_as(attn)  # (L, B, H, T, T) by key
    assert attn[~keys].abs().max() == 0  # padded positions get no attention
    assert (attn[..., 1] > 0).all()  # every query attends to the Gist token
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))


def test_embed_inserts_gist_after_cls_without_position():
    model = build(gist=True, length=2).eval()
    batch = _batch(model)
    x, mask = model.embed(batch["input_ids"], batch["attention_mask"])
    plain = model.backbone.embeddings(input_ids=batch["input_ids"])  # (B, L, D)
    assert x.shape == (3, plain.shape[1] + 2, D)
    torch.testing.assert_close(x[:, 0], plain[:, 0])
    torch.testing.assert_close(x[:, 1:3], model.gist_token.expand(3, -1, -1))  # no position embedding added
    torch.testing.assert_close(x[:, 3:], plain[:, 1:])  # text tokens keep their positions
    assert torch.equal(mask[:, 1:3], torch.ones(3, 2, dtype=mask.dtype))
    assert torch.equal(mask[:, 3:], batch["attention_mask"][:, 1:])


# ----------------------------------------------------------------------------------------------- tuners
def test_every_tuner_has_a_text_case():
    assert {m for m, *_ in CASES} == {n for n, s in TUNERS.items() if s.apply_text is not None} == set(TUNERS)


@pytest.mark.parametrize(("method", "args", "expected", "is_tuned"), CASES, ids=IDS)
def test_text_tuner_counts_identity_and_one_training_step(method, args, expected, is_tuned):
    model = build(method, args, gist=True)
    trainable, total = count_parameters(model)
    assert trainable == (total if expected is None else expected + D)
    for name, p in model.named_parameters():
        task = name.startswith(("head.", "gist_token"))
        assert p.requires_grad == (task or is_tuned(name)), name
    # identity at init where the spec promises it (against the same seed without the tuner, GIST off)
    batch = _batch(model)
    base, tuned = build(gist=False, seed=1).eval(), build(method, args, gist=False, seed=1).eval()
    with torch.no_grad():
        same = torch.allclose(base(batch).cls_logits, tuned(batch).cls_logits, atol=1e-6)
    assert same == TUNERS[method].identity_at_init(parse_tuner_args(method, args))
    # one AdamW step: gradients reach exactly the trainable parameters and the loss goes down on the batch
    model.train()
    for m in model.modules():  # no dropout: the same batch twice must be comparable
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    y = torch.tensor([0, 1, 2])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(batch)
    loss = gist_loss(out.cls_logits, out.gist_logits, y, model.gist_cfg)["total"]
    loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    opt.step()
    with torch.no_grad():
        out = model(batch)
        after = gist_loss(out.cls_logits, out.gist_logits, y, model.gist_cfg)["total"]
    assert after < loss


def test_vpt_slots_sit_after_cls_and_gist():
    model = build("vpt", {"length": 3}).eval()
    assert model.sequence_layout()[:3] == [("CLS", 1), ("Gist", 1), ("prompts", 3)]
    batch = _batch(model)
    with torch.no_grad(), capture_text_attention(model) as capture:
        model(batch)
    assert capture.stacked().shape[-1] == batch["input_ids"].shape[1] + 1 + 3


def test_describe_reports_the_text_sequence():
    cfg = {"backbone": "test_bert", "method": "vpt", "method_args": {"length": 4}, "data": {"max_length": 48}}
    from gist_engine.config import load_run_config

    run = load_run_config(cfg)
    info = describe_model(build_model(run), run)
    assert (info["image_size"], info["max_length"], info["seq_len"]) == (None, 48, 48 + 1 + 4)


def test_hub_names_fail_fast_offline(monkeypatch):
    monkeypatch.setattr(text_backbones, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(BackboneError, match="minilm_l6"):
        create_text_backbone("hf:nobody/no-such-bert-model")
    with pytest.raises(BackboneError, match="unknown text backbone"):
        create_text_backbone("not_a_text_model")
    with pytest.raises(BackboneError, match="weights"):
        build_model({"backbone": "test_bert", "weights": "x.safetensors"})


# ----------------------------------------------------------------------------------------------- attention
def test_token_attention_rows_sum_to_one():
    model = build("lora", gist=True, length=2).train()
    att = compute_token_attention(model, "Shares rose after the merger.")
    assert model.training and model.backbone.config._attn_implementation == "sdpa"  # state restored
    assert att.tokens[:3] == ["[CLS]", "[GIST0]", "[GIST1]"] and att.tokens[-1] == "[SEP]"
    assert att.kinds[:3] == ["CLS", "Gist", "Gist"]
    n_tokens = len(att.tokens)
    assert att.cls.shape == att.gist.shape == (LAYERS, 2, n_tokens)
    for rows in (att.cls, att.gist, att.cls_rollout, att.gist_rollout):
        np.testing.assert_allclose(rows.sum(-1), 1.0, atol=1e-5)
    strip = att.strip("gist", layer=-1)
    assert list(strip.columns) == ["position", "token", "kind", "weight"] and len(strip) == n_tokens
    assert att.heatmap("cls", by="layer").shape == (LAYERS, n_tokens)
    assert att.heatmap("cls", by="head", layer=0).shape == (2, n_tokens)
    frame = att.frame()
    assert len(frame) == 2 * (LAYERS * 2 * n_tokens + LAYERS * n_tokens)
    assert set(att.prediction()) == {"cls", "gist"}
    plain = compute_token_attention(build(gist=False), "Shares rose.")
    assert plain.gist is None and "[GIST]" not in plain.tokens
    with pytest.raises(ValueError, match="no Gist token"):
        plain.strip("gist")


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture
def text_csv(tmp_path):
    rows = [{"text": f"{w} news item number {i}", "label": w} for i in range(6) for w in ("sport", "money", "film")]
    path = tmp_path / "tiny.csv"
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_cli_train_compare_and_predict_on_text(tmp_path, text_csv, capsys):
    from gist_engine.cli import main

    cfg = {"backbone": "test_bert", "method": "adapter", "data": {"dataset": f"textfile:{text_csv}",
                                                                   "max_length": 16},
           "train": {"epochs": 2, "batch_size": 4, "lr": 0.01, "device": "cpu"}}
    path = tmp_path / "text.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "completed" and result["acc_gist"] is not None
    assert result["dataset"]["modality"] == "text" and result["dataset"]["sizes"]["test"] == 3
    model, _ = load_model(tmp_path / "run")
    assert isinstance(model, GistTextEncoder) and model.class_names == ["film", "money", "sport"]
    top = predict(model, ["sport news item", "film news"], model.class_names, top_k=2)
    assert len(top) == 2 and top[0]["top"][0]["class"] in model.class_names and "gist_top" in top[0]
    assert main(["compare", "--config", str(path), "--seeds", "1", "--out", str(tmp_path / "cmp")]) == 0
    summary = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["gist"] for r in summary["runs"]] == [False, True] and summary["extra_params"] == D
    capsys.readouterr()
