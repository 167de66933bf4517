"""speed.install: for every tuner and variant, GIST on and off, the installed model computes the plain model's logits
and gradients (float32, CPU); its wrappers show in print(model); `disabled` runs the plain code; names are kept."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gist_engine import build_model, gist_loss, speed
from gist_engine.train.checkpoint import load_trainable_state, trainable_state
from gist_engine.tuners import TUNERS

# every tuner and variant: (method, method_args)
CASES = [
    ("linear", {}),
    ("full", {}),
    ("bitfit", {}),
    ("adapter", {"variant": "gist"}),
    ("adapter", {"variant": "houlsby"}),
    ("adapter", {"variant": "adaptformer"}),
    ("lora", {}),
    ("lora", {"targets": "qkv", "rank": 2}),
    ("vpt", {"length": 3}),
    ("vpt", {"length": 3, "deep": True}),
    ("ssf", {}),
    ("peft", {"peft_type": "lora"}),
    ("peft", {"peft_type": "ln_tuning"}),
]
IDS = [f"{m}-{'-'.join(f'{k}={v}' for k, v in a.items())}" for m, a in CASES]
# the wrappers install puts in each model (beyond the packed attention of every block and the last block's rows)
WRAPPERS = {"adapter-variant=gist": ["SharedUpAdapterBlock"], "adapter-variant=houlsby": ["FoldedScaleAdapter"],
            "adapter-variant=adaptformer": ["SharedUpAdapterBlock"], "ssf-": ["FusedSSF"]}


def test_every_tuner_is_covered():
    assert {m for m, _ in CASES} == set(TUNERS)


def build(method: str, args: dict, gist: bool, backbone: str = "test_vit") -> nn.Module:
    model = build_model({"backbone": backbone, "method": method, "method_args": args,
                         "gist": {"enabled": gist, "dropout": 0.0}}, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # off the identity init (zero LoRA B, zero-init adapters), so every path carries a signal
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def loss_and_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[tuple, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same dropout masks (a text encoder's own dropout) for both models
    out = model(x)
    gist_loss(out.cls_logits, out.gist_logits, y, model.gist_cfg)["total"].backward()
    grads = {n: p.grad for n, p in speed.plain_named_parameters(model) if p.requires_grad}
    return tuple(o.detach() for o in out if o is not None), grads


@pytest.mark.parametrize("backbone", ["test_vit", "test_vit_reg"])
@pytest.mark.parametrize("gist", [False, True])
@pytest.mark.parametrize(("method", "args"), CASES, ids=IDS)
def test_the_installed_model_equals_the_plain_model(method, args, gist, backbone):
    plain = build(method, args, gist, backbone).train()
    fast = copy.deepcopy(plain)
    report = speed.install(fast, "cpu", cpu_threads=None)
    depth = len(plain.vit.blocks)
    assert report.packed_attention == report.fused_attention == depth
    assert report.head_rows == plain.head_rows
    text = repr(fast)
    assert "PackedQKVAttention(" in text and "BlockRows(" in text
    for name in WRAPPERS.get(IDS[CASES.index((method, args))], []):
        assert f"{name}(" in text, name
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2])
    want, want_grads = loss_and_grads(plain, x, y)
    got, got_grads = loss_and_grads(fast, x, y)
    assert len(got) == len(want) == (2 if gist else 1)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert list(got_grads) == list(want_grads) and want_grads
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
    plain.eval(), fast.eval()
    with torch.inference_mode():
        torch.testing.assert_close(fast(x).cls_logits, plain(x).cls_logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("method", "args"), CASES, ids=IDS)
def test_disabled_runs_the_plain_code_bit_for_bit_and_install_is_idempotent(method, args):
    plain = build(method, args, gist=True).train()
    fast = copy.deepcopy(plain)
    speed.install(fast, "cpu", cpu_threads=None)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1])
    want, want_grads = loss_and_grads(plain, x, y)
    with speed.disabled(fast):
        got, got_grads = loss_and_grads(fast, x, y)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=0, atol=0, msg=name)
    assert all(m.enabled for m in fast.modules() if isinstance(m, speed.SpeedWrapper))  # restored
    text = repr(fast)
    speed.install(fast, "cpu", cpu_threads=None)
    assert repr(fast) == text


def test_parameters_keep_their_objects_order_and_checkpoint_names():
    plain = build("adapter", {}, gist=True)
    fast = copy.deepcopy(plain)
    before = list(fast.parameters())
    speed.install(fast, "cpu", cpu_threads=None)
    assert all(a is b for a, b in zip(fast.parameters(), before, strict=True))
    assert [n for n, _ in speed.plain_named_parameters(fast)] == [n for n, _ in plain.named_parameters()]
    state = trainable_state(fast)
    assert list(state) == list(trainable_state(plain))
    load_trainable_state(plain, state)  # a checkpoint of the installed model fits the model as built, and back
    load_trainable_state(fast, trainable_state(plain))


def test_bf16_frozen_weights_need_bf16_precision_and_nothing_changes_before_the_error():
    model = build("adapter", {}, gist=True)
    text = repr(model)
    with pytest.raises(ValueError, match="frozen_dtype"):
        speed.install(model, "cpu", precision="fp32", frozen_dtype="bf16", cpu_threads=None)
    assert repr(model) == text and speed.mixed_dtype(model) is None
    report = speed.install(model, "cpu", precision="bf16", frozen_dtype="bf16", cpu_threads=None)
    assert report.frozen_dtype == "bfloat16" and report.cast_parameters > 0 and report.low_precision_norms > 0
    assert "LowPrecisionLayerNorm(" in repr(model) and speed.mixed_dtype(model) is torch.bfloat16
    assert "frozen weights bfloat16" in report.summary()


def test_stock_modules_keep_timm_s_attention_and_the_whole_blocks():
    model = build("lora", {}, gist=True)
    report = speed.install(model, "cpu", precision="bf16", frozen_dtype="bf16", cpu_threads=None,
                           stock_modules=True)
    assert report.fused_attention == len(model.vit.blocks) and report.packed_attention == 0
    assert report.head_rows is None and report.low_precision_norms == 0
    text = repr(model)
    assert "PackedQKVAttention(" not in text and "BlockRows(" not in text and "LowPrecisionLayerNorm(" not in text


@pytest.mark.parametrize(("method", "args"), [("adapter", {"variant": "gist"}), ("adapter", {"variant": "houlsby"}),
                                              ("ssf", {}), ("lora", {}), ("vpt", {"deep": True})])
def test_the_installed_text_model_equals_the_plain_text_model(method, args):
    plain = build_model({"backbone": "test_bert", "method": method, "method_args": args, "num_classes": 3,
                         "gist": {"dropout": 0.0}}, seed=0).train()
    fast = copy.deepcopy(plain)
    report = speed.install(fast, "cpu", cpu_threads=None)
    assert report.fused_attention == 0 and report.head_rows is None  # timm's ViT shortcuts do not apply
    batch = plain.tokenize(["a good film", "terrible plot and acting", "fine"], max_length=16)
    y = torch.tensor([0, 1, 2])
    want, want_grads = loss_and_grads(plain, batch, y)
    got, got_grads = loss_and_grads(fast, batch, y)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
