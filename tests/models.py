"""Small models and training steps shared by the tests: tiny random ViTs with a tuner, and the trainer's step."""

from __future__ import annotations

import torch
from torch import nn

from gist_engine import speed
from gist_engine.build import build_model
from gist_engine.train import param_groups
from gist_engine.train.step import TrainStep, make_optimizer


def build(method: str, method_args: dict) -> nn.Module:
    """A tiny random ViT (32 px, 10 classes) with `method` and GIST on, seed 0."""
    return build_model({"backbone": "test_vit", "pretrained": False, "image_size": 32, "num_classes": 10,
                        "method": method, "method_args": method_args, "gist": {"enabled": True}}, seed=0)


def randomise(module: nn.Module, names: tuple[str, ...], std: float = 0.5, seed: int = 1) -> None:
    """Non-zero values for the named parameters (LoRA's B starts at zero, SSF at identity when init_std is 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if any(n in name for n in names):
                p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if "scale" in name else 0.0))


def model(seed: int = 0, method: str = "adapter") -> nn.Module:
    """The tiny test ViT with `method` and GIST (no Gist dropout), in training mode."""
    return build_model({"backbone": "test_vit", "method": method, "gist": {"dropout": 0.0}}, seed=seed).train()


def step_for(net: nn.Module, device: torch.device, precision: str, **shortcuts) -> TrainStep:
    """The trainer's step for `net`: AdamW over its parameter groups, gradient clipping at 1; `shortcuts` (compile,
    backend, mode, cuda_graph) installed by `speed.install_step`."""
    opt = make_optimizer(param_groups(net, 1e-4), 1e-2, device)
    params = [p for g in opt.param_groups for p in g["params"]]
    return speed.install_step(TrainStep(net, opt, params, device, precision, grad_clip=1.0, gist=net.gist_cfg),
                              **shortcuts)
