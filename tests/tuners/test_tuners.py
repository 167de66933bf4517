"""Every PEFT method, with and without GIST: what it trains, exact parameter counts, identity at init, learning."""

from __future__ import annotations

import pytest
import torch

from gist_engine import TUNERS, build_model, count_parameters, gist_loss
from gist_engine.build import parameter_summary
from gist_engine.tuners import parse_tuner_args

# test_vit: D=32, 2 blocks, MLP hidden 64, patch 8 (3x8x8 conv), 10 classes -> head 330 parameters.
D, DEPTH, HIDDEN, HEAD = 32, 2, 64, 32 * 10 + 10
# (method, method_args, trainable parameters without GIST, predicate on the names of trained backbone params)
CASES = [
    ("linear", {}, HEAD, lambda n: False),
    ("full", {}, None, lambda n: True),
    ("bitfit", {}, HEAD + DEPTH * (D + 3 * D + D + D + HIDDEN + D) + D + D, lambda n: n.endswith(".bias")),
    ("adapter", {"variant": "gist"}, HEAD + DEPTH * (D * 4 + 4 + 4 * D + D), lambda n: ".adapter." in n),
    ("adapter", {"variant": "houlsby"}, HEAD + DEPTH * (D * 8 + 8 + 8 * D + D), lambda n: ".adapter." in n),
    ("adapter", {"variant": "adaptformer"}, HEAD + DEPTH * (D * 8 + 8 + 8 * D + D), lambda n: ".adapter." in n),
    ("adapter", {"variant": "houlsby", "bottleneck": 2}, HEAD + DEPTH * (D * 2 + 2 + 2 * D + D),
     lambda n: ".adapter." in n),
    ("lora", {"rank": 8}, HEAD + DEPTH * 2 * (8 * D + D * 8), lambda n: ".lora_" in n),
    ("lora", {"rank": 2, "targets": "qkv"}, HEAD + DEPTH * 3 * (2 * D + D * 2), lambda n: ".lora_" in n),
    ("vpt", {"length": 5}, HEAD + 5 * D, lambda n: n.endswith(".prompt")),
    ("vpt", {"length": 5, "deep": True}, HEAD + DEPTH * 5 * D, lambda n: n.endswith(".prompt")),
    ("ssf", {}, HEAD + 2 * (D + DEPTH * (D + D + 3 * D + D + HIDDEN + D) + D), lambda n: ".ssf_" in n),
    # peft's LoRA (r 8) on attn.qkv, attn.proj, mlp.fc1, mlp.fc2; IA3 on attn.qkv's output and mlp.fc2's input
    ("peft", {"peft_type": "lora"}, HEAD + DEPTH * 8 * ((D + 3 * D) + (D + D) + (D + HIDDEN) + (HIDDEN + D)),
     lambda n: ".lora_" in n),
    ("peft", {"peft_type": "ia3"}, HEAD + DEPTH * (3 * D + HIDDEN), lambda n: ".ia3_l." in n),
]
IDS = [f"{m}-{'-'.join(f'{k}={v}' for k, v in a.items())}" for m, a, _, _ in CASES]


def build(method, args, gist=True, seed=0, **gist_opts):
    return build_model({"backbone": "test_vit", "method": method, "method_args": args,
                        "gist": {"enabled": gist, "dropout": 0.0, **gist_opts}}, seed=seed)


def test_every_tuner_is_covered():
    assert {m for m, *_ in CASES} == set(TUNERS)


@pytest.mark.parametrize(("method", "args", "expected", "is_tuned"), CASES, ids=IDS)
@pytest.mark.parametrize("gist", [False, True])
def test_trainable_set_and_exact_counts(method, args, expected, is_tuned, gist):
    model = build(method, args, gist)
    trainable, total = count_parameters(model)
    if expected is None:
        expected = total - (D if gist else 0)
    assert trainable == expected + (D if gist else 0)
    assert model.gist_parameter_count() == (D if gist else 0)
    for name, p in model.named_parameters():
        task = name.startswith(("vit.head.", "gist_token"))
        assert p.requires_grad == (task or is_tuned(name)), name
    assert not model.vit.cls_token.requires_grad or method == "full"
    assert f"trainable params: {trainable:,} || all params: {total:,}" in parameter_summary(model)


def test_gist_adapter_matches_the_paper_count_on_vit_b():
    """GIST_METHOD.md: 6,916 parameters per block for D=768, 82,992 on ViT-B; the Gist token adds 768."""
    model = build_model({"backbone": "vit_base_patch16_224", "pretrained": False, "image_size": 32,
                         "num_classes": 100, "method": "adapter"})
    adapter = sum(p.numel() for n, p in model.named_parameters() if ".adapter." in n)
    assert adapter == 82_992
    assert model.gist_parameter_count() == 768
    assert count_parameters(model)[0] == 82_992 + 768 + 768 * 100 + 100


@pytest.mark.parametrize(("method", "args", "expected", "is_tuned"), CASES, ids=IDS)
def test_identity_at_init_where_promised(method, args, expected, is_tuned, images):
    spec = TUNERS[method]
    base = build("linear", {}, gist=False, seed=1).eval()
    tuned = build(method, args, gist=False, seed=1).eval()
    same = torch.allclose(base(images).cls_logits, tuned(images).cls_logits, atol=1e-6)
    assert same == spec.identity_at_init(parse_tuner_args(method, args))


@pytest.mark.parametrize(("method", "args", "expected", "is_tuned"), CASES, ids=IDS)
@pytest.mark.parametrize("gist", [False, True])
def test_gradients_reach_exactly_the_trainable_parameters(method, args, expected, is_tuned, gist, images):
    model = build(method, args, gist).train()
    out = model(images)
    gist_loss(*out, torch.tensor([0, 1, 2, 3]), model.gist_cfg)["total"].backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    assert model.vit.head.weight.grad.abs().sum() > 0
    if gist:
        assert model.gist_token.grad.abs().sum() > 0
    tuned = [p.grad for n, p in model.named_parameters() if is_tuned(n) and not n.startswith("vit.head.")]
    assert not tuned or any(g.abs().sum() > 0 for g in tuned)


@pytest.mark.parametrize(("method", "args", "expected", "is_tuned"), CASES, ids=IDS)
def test_one_step_lowers_the_loss(method, args, expected, is_tuned):
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    model = build(method, args, gist=True).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(2):
        loss = gist_loss(*model(x), y, model.gist_cfg)["total"]
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[1] < losses[0]
