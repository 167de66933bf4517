"""Which parameters train and which AdamW decays follow from the modules (tuner layers, the model's tokens), not
from parameter names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gist_engine import build_model
from gist_engine.train import param_groups
from gist_engine.tuners import TunerLayer, mark_trainable, no_weight_decay_parameters
from gist_engine.tuners.base import tuner_layer_parameters


def ids(params) -> set[int]:
    return {id(p) for p in params}


@pytest.mark.parametrize("method", ["adapter", "lora", "vpt", "ssf"])
def test_a_method_trains_its_tuner_layers_and_the_task_parameters(method):
    model = build_model({"backbone": "test_vit", "method": method}, seed=0)
    trained = ids(p for p in model.parameters() if p.requires_grad)
    assert trained == ids(model.task_parameters()) | ids(tuner_layer_parameters(model))
    assert ids(model.task_parameters()) >= ids([model.gist_token, *model.vit.head.parameters()])


def test_a_tuner_layer_renamed_still_trains():
    """A layer is found by its type: the attribute it hangs from does not matter."""

    class Scale(TunerLayer):
        trained_names = ("gain",)

        def __init__(self, base_layer: nn.Module) -> None:
            super().__init__()
            self.base_layer, self.gain = base_layer, nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.base_layer(x) * self.gain

    model = build_model({"backbone": "test_vit", "method": "linear"}, seed=0)
    model.vit.blocks[0].mlp.some_odd_name = Scale(nn.Identity())
    mark_trainable(model, tuner_layer_parameters(model))
    assert model.vit.blocks[0].mlp.some_odd_name.gain.requires_grad
    assert not model.vit.blocks[0].mlp.fc1.weight.requires_grad


def test_no_decay_covers_tokens_of_the_model_and_of_tuner_layers():
    model = build_model({"backbone": "test_vit_reg", "method": "vpt", "method_args": {"deep": True}}, seed=0)
    exempt = ids(no_weight_decay_parameters(model))
    vit = model.vit
    assert ids([model.gist_token, vit.cls_token, vit.reg_token, vit.pos_embed]) <= exempt
    prompts = [b.prompt for b in vit.blocks]
    assert ids(prompts) <= exempt
    decay, no_decay = param_groups(model, 0.1)
    assert ids(prompts) <= ids(no_decay["params"]) and not ids(prompts) & ids(decay["params"])
    assert id(vit.head.weight) in ids(decay["params"]) and id(vit.head.bias) in ids(no_decay["params"])


def test_full_fine_tuning_decays_weight_matrices_but_no_token():
    model = build_model({"backbone": "test_vit_reg", "method": "full"}, seed=0)
    decay, no_decay = (ids(g["params"]) for g in param_groups(model, 0.1))
    assert id(model.vit.patch_embed.proj.weight) in decay and id(model.vit.blocks[0].attn.qkv.weight) in decay
    for token in (model.vit.cls_token, model.vit.reg_token, model.vit.pos_embed, model.gist_token):
        assert id(token) in no_decay
