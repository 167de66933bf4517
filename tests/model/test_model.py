"""GistViT: parity with plain timm when GIST is off, where the Gist token sits, its heads and options."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from gist_engine import GistConfig, GistViT, build_model


def tiny_vit(**kwargs) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0, **kwargs)


def block_input(model: GistViT, x: torch.Tensor) -> torch.Tensor:
    """The token sequence entering the first block."""
    seen = {}
    handle = model.vit.blocks[0].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen["x"]


@pytest.mark.parametrize("kwargs", [{}, {"reg_tokens": 2, "init_values": 1e-5}, {"no_embed_class": True}])
def test_gist_off_equals_plain_timm(kwargs, images):
    vit = tiny_vit(**kwargs)
    model = GistViT(copy.deepcopy(vit), num_classes=5, gist=GistConfig(enabled=False)).eval()
    vit.reset_classifier(5)
    vit.head.load_state_dict(model.vit.head.state_dict())
    vit.eval()
    out = model(images)
    assert out.gist_logits is None
    torch.testing.assert_close(out.cls_logits, vit(images), rtol=0, atol=1e-6)


def test_gist_token_sits_after_prefix_without_position_embedding(images):
    for kwargs, prefix in [({}, 1), ({"reg_tokens": 2}, 3)]:
        model = GistViT(tiny_vit(**kwargs), num_classes=5, gist=GistConfig(length=2)).eval()
        x = block_input(model, images)  # (B, P + G + N, D)
        n = model.vit.patch_embed.num_patches
        assert x.shape == (4, prefix + 2 + n, 32)
        assert model.gist_slice == slice(prefix, prefix + 2)
        # exactly the token: no position embedding added, no dropout in eval
        torch.testing.assert_close(x[:, prefix:prefix + 2], model.gist_token.expand(4, -1, -1), rtol=0, atol=0)
        plain = model.vit._pos_embed(model.vit.patch_embed(images))  # (B, P + N, D)
        torch.testing.assert_close(x[:, :prefix], plain[:, :prefix])
        torch.testing.assert_close(x[:, prefix + 2:], plain[:, prefix:])
        assert model.vit.pos_embed.shape == tiny_vit(**kwargs).pos_embed.shape  # no entries added for Gist


def test_gist_token_init_and_dropout_only_in_training(images):
    model = GistViT(tiny_vit(), num_classes=5, gist=GistConfig(init=0.5, dropout=0.5))
    token = model.gist_token.detach()
    assert token.abs().max() <= 0.5 and token.std() > 0.2  # uniform(-0.5, 0.5): std ~ 0.29
    model.train()
    x = block_input(model, images)[:, 1]  # (B, D)
    assert (x == 0).any(), "dropout zeroes some Gist entries in training"
    model.eval()
    torch.testing.assert_close(block_input(model, images)[:, 1], token[:, 0].expand(4, -1))


def test_heads_shared_and_separate_and_mean_of_gist_outputs(images):
    model = GistViT(tiny_vit(), num_classes=5, gist=GistConfig(length=3, dropout=0.0)).eval()
    feats = model.forward_features(images)  # (B, 1 + 3 + N, D)
    out = model(images)
    torch.testing.assert_close(out.cls_logits, model.vit.head(feats[:, 0]))
    torch.testing.assert_close(out.gist_logits, model.vit.head(feats[:, 1:4].mean(1)))
    assert model.gist_parameter_count() == 3 * 32

    sep = GistViT(tiny_vit(), num_classes=5, gist=GistConfig(shared_head=False)).eval()
    out = sep(images)
    feats = sep.forward_features(images)
    torch.testing.assert_close(out.gist_logits, sep.gist_head(feats[:, 1]))
    assert sep.gist_parameter_count() == 32 + 32 * 5 + 5


def test_gist_token_changes_cls_output_through_attention(images):
    """No attention mask: the Gist token interacts with every token, CLS included."""
    vit = tiny_vit()
    on = GistViT(copy.deepcopy(vit), 5, GistConfig()).eval()
    off = GistViT(copy.deepcopy(vit), 5, GistConfig(enabled=False)).eval()
    off.vit.head.load_state_dict(on.vit.head.state_dict())
    assert not torch.allclose(on(images).cls_logits, off(images).cls_logits)


def test_backbone_without_class_token_is_refused():
    with pytest.raises(ValueError, match="class token"):
        GistViT(tiny_vit(class_token=False, global_pool="avg"), num_classes=5)


def test_sequence_layout_and_build_model_data_config():
    model = build_model({"backbone": "test_vit_reg", "method": "vpt", "method_args": {"length": 3},
                         "gist": {"length": 2}})
    assert model.sequence_layout() == [("CLS", 1), ("registers", 2), ("Gist", 2), ("prompts", 3), ("patches", 16)]
    assert model.num_extra_tokens == 8
    assert model.data_config == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "image_size": 32}
