"""bf16 frozen weights and norms: what they change (speed) and what they must not (the numbers, to bf16's precision)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gist_engine import speed
from gist_engine.config import ConfigError, load_run_config
from gist_engine.data import DatasetSplits
from gist_engine.inspect import compute_attention_maps
from gist_engine.speed.precision import cast_frozen_, mixed_dtype, resolve_frozen_dtype
from gist_engine.train import Trainer
from tests.models import model, step_for
from tests.toydata import squares_splits

CPU = torch.device("cpu")
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def toy_data(device: str = "cpu") -> DatasetSplits:
    return squares_splits(36, 16, device)


# ------------------------------------------------------------------------------------------ bf16 frozen weights
def test_cast_frozen_stores_only_the_frozen_weights_in_bf16():
    net = model()
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    cast = cast_frozen_(net)
    assert cast > 0 and trainable
    for name, p in net.named_parameters():
        assert p.dtype == (torch.float32 if name in trainable else torch.bfloat16), name
    assert mixed_dtype(net) is torch.bfloat16 and mixed_dtype(model()) is None


def test_bf16_frozen_weights_train_like_fp32_frozen_weights_under_bf16_autocast():
    """Autocast rounds every frozen matmul weight to bf16 anyway: the losses agree to bf16's precision."""
    a, b = model(), model()
    start = [p.detach().clone() for p in a.parameters()]
    cast_frozen_(b)
    step_a, step_b = step_for(a, CPU, "bf16"), step_for(b, CPU, "bf16")
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        x, y = torch.randn(6, 3, 32, 32, generator=g), torch.randint(0, 10, (6,), generator=g)
        la, lb = step_a(x, y), step_b(x, y)
        assert torch.isfinite(lb).all()
        torch.testing.assert_close(lb, la, rtol=3e-2, atol=3e-2)
    trained = [(pa, pb, s) for pa, pb, s in zip(a.parameters(), b.parameters(), start, strict=True)
               if pa.requires_grad]
    assert all(pb.dtype == torch.float32 for _, pb, _ in trained)  # the optimiser's weights stay float32
    moved_a = torch.cat([(pa - s).flatten() for pa, _, s in trained])
    moved_b = torch.cat([(pb - s).flatten() for _, pb, s in trained])
    assert (moved_b - moved_a).norm() < 0.1 * moved_a.norm()  # the same updates, to bf16 rounding (3% here)


def test_attention_maps_of_a_model_with_bf16_frozen_weights_are_float32_and_close():
    net = model().eval()
    ref = compute_attention_maps(net, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                                 with_images=False)
    cast_frozen_(net)
    maps = compute_attention_maps(net, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                                  with_images=False)
    for name in ("cls_maps", "gist_maps", "cls_logits", "gist_logits"):
        got = getattr(maps, name)
        assert got.dtype == np.float32 and np.isfinite(got).all(), name
        np.testing.assert_allclose(got, getattr(ref, name), atol=0.05, err_msg=name)


def test_frozen_dtype_settings():
    cuda, cpu = torch.device("cuda"), CPU
    assert resolve_frozen_dtype("auto", cuda, "bf16") is torch.bfloat16
    assert resolve_frozen_dtype("auto", cuda, "fp32") is None and resolve_frozen_dtype("auto", cpu, "bf16") is None
    assert resolve_frozen_dtype("fp32", cuda, "bf16") is None
    assert resolve_frozen_dtype("bf16", cpu, "bf16") is torch.bfloat16
    with pytest.raises(ConfigError, match=r"frozen_dtype.*precision bf16"):
        load_run_config({"train": {"frozen_dtype": "bf16", "precision": "fp32"}})
    trainer = Trainer({"backbone": "test_vit", "train": {"frozen_dtype": "bf16", "device": "cpu"}},
                      data=toy_data())  # precision auto is fp32 on the CPU
    with pytest.raises(ConfigError, match=r"frozen_dtype.*fp32 on cpu"):
        trainer.setup()


def test_a_trainer_run_with_bf16_frozen_weights_on_cpu(tmp_path):
    cfg = {"backbone": "test_vit", "method": "adapter",
           "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "precision": "bf16", "frozen_dtype": "bf16",
                     "device": "cpu", "attention_every": 3}}
    trainer = Trainer(cfg, data=toy_data(), run_dir=tmp_path)
    result = trainer.run()
    assert result.status == "completed", result.error
    assert mixed_dtype(trainer.model) is torch.bfloat16
    assert all(math.isfinite(s["total"]) for s in result.history["steps"])
    assert (tmp_path / "attention").is_dir() and any((tmp_path / "attention").glob("step_*.npz"))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda_only)])
@pytest.mark.parametrize("method", ["adapter", "lora", "vpt", "ssf"])
def test_the_fast_path_model_equals_the_stock_model_in_bf16(device, method):
    """bf16 frozen weights under bf16 autocast: the trainer's model (bf16 frozen norms, packed qkv, the row
    shortcuts) against timm's modules and the whole forward, to bf16's precision."""
    dev = torch.device(device)
    nets = [model(method=method).to(dev) for _ in range(2)]
    for net, fast in zip(nets, (False, True), strict=True):
        speed.install(net, dev, precision="bf16", frozen_dtype="bf16", cpu_threads=None, stock_modules=not fast)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, 32, 32, generator=g).to(dev), torch.randint(0, 10, (6,), generator=g).to(dev)
    losses = []
    for net in nets:
        with torch.autocast(device, dtype=torch.bfloat16):
            out = net(x)
        loss = torch.nn.functional.cross_entropy(out.cls_logits.float(), y) + out.gist_logits.float().square().mean()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=2e-2, atol=2e-2)
    for (name, a), b in zip(nets[0].named_parameters(), nets[1].parameters(), strict=True):
        if a.requires_grad:
            assert b.grad.dtype == torch.float32, name
            scale = a.grad.abs().max().clamp_min(1e-3)
            assert (b.grad - a.grad).abs().max() <= 0.1 * scale, name
