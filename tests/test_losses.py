"""The GIST objective against hand computations on fixed logits, for every interaction loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gist_engine import INTERACTION_LOSSES, LOSS_TERMS, GistConfig, gist_loss, loss_contributions, loss_weights

CLS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
GIST = [[1.0, 1.5, 0.0], [-0.5, 0.4, 2.0]]
TARGET = [0, 2]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ce(z: np.ndarray, y: list[int]) -> float:
    return float(np.mean([-math.log(softmax(z)[i, t]) for i, t in enumerate(y)]))


def kl(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a * np.log(a / b)).sum(-1)))


def reference(loss: str, temperature: float) -> dict[str, float]:
    s, g = np.array(CLS), np.array(GIST)
    p, q = softmax(s / temperature), softmax(g / temperature)
    m = (p + q) / 2
    d = {"bkld": kl(p, q) + kl(q, p), "kl": kl(p, q), "reverse_kl": kl(q, p),
         "js": 0.5 * kl(p, m) + 0.5 * kl(q, m), "mse": float(np.mean(((p - q) ** 2).sum(-1))), "none": 0.0}[loss]
    return {"ce_cls": ce(s, TARGET), "ce_gist": ce(g, TARGET), "kl_cls_gist": kl(p, q), "kl_gist_cls": kl(q, p),
            "interaction": d}


@pytest.mark.parametrize("loss", list(INTERACTION_LOSSES))
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_every_loss_equals_hand_computation(loss, temperature):
    cfg = GistConfig(loss=loss, temperature=temperature, ce_weight=0.5, loss_weight=0.75)
    terms = gist_loss(torch.tensor(CLS), torch.tensor(GIST), torch.tensor(TARGET), cfg)
    ref = reference(loss, temperature)
    assert tuple(terms) == LOSS_TERMS
    for key, value in ref.items():
        assert terms[key].item() == pytest.approx(value, rel=1e-5, abs=1e-7), key
    total = ref["ce_cls"] + 0.5 * ref["ce_gist"] + 0.75 * ref["interaction"]
    assert terms["total"].item() == pytest.approx(total, rel=1e-5)


def test_paper_default_total_by_hand():
    """CE(cls) + 0.5 CE(gist) + 0.75 (KL(p||q) + KL(q||p)), T = 3: the release's numbers."""
    terms = gist_loss(torch.tensor(CLS), torch.tensor(GIST), torch.tensor(TARGET), GistConfig())
    ref = reference("bkld", 3.0)
    expected = ref["ce_cls"] + 0.5 * ref["ce_gist"] + 0.75 * (ref["kl_cls_gist"] + ref["kl_gist_cls"])
    assert terms["total"].item() == pytest.approx(expected, rel=1e-6)


def test_gist_off_is_plain_cross_entropy():
    terms = gist_loss(torch.tensor(CLS), None, torch.tensor(TARGET), GistConfig())
    assert terms["total"].item() == pytest.approx(reference("none", 1.0)["ce_cls"], rel=1e-6)
    assert terms["interaction"].item() == 0.0


def test_gradient_flows_into_both_heads_without_stop_gradient():
    s = torch.tensor(CLS, requires_grad=True)
    g = torch.tensor(GIST, requires_grad=True)
    cfg = GistConfig(ce_weight=0.0)  # only CE(cls) and the interaction: g gets gradient only from the KL
    gist_loss(s, g, torch.tensor(TARGET), cfg)["total"].backward()
    assert g.grad.abs().sum() > 0 and s.grad.abs().sum() > 0


def test_bf16_logits_are_computed_in_float32_and_stay_finite():
    s = torch.tensor([[80.0, -80.0, 0.0]], dtype=torch.bfloat16)
    g = torch.tensor([[-80.0, 80.0, 0.0]], dtype=torch.bfloat16)
    terms = gist_loss(s, g, torch.tensor([0]), GistConfig(temperature=1.0))
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in terms.values())


def test_the_loss_reads_the_gist_options_its_caller_passes():
    """The run config's `gist` section is the loss's own config: its weights and temperature, nothing off a model."""
    import inspect

    from gist_engine import build, load_run_config, losses

    run = load_run_config({"gist": {"loss": "js", "temperature": 2.0, "ce_weight": 0.25, "loss_weight": 1.5}})
    terms = gist_loss(torch.tensor(CLS), torch.tensor(GIST), torch.tensor(TARGET), run.gist)
    ref = reference("js", 2.0)
    expected = ref["ce_cls"] + 0.25 * ref["ce_gist"] + 1.5 * ref["interaction"]
    assert terms["total"].item() == pytest.approx(expected, rel=1e-5)
    for module in (losses, build):
        assert "gist_cfg" not in inspect.getsource(module), module.__name__


@pytest.mark.parametrize("loss", sorted(INTERACTION_LOSSES))
def test_the_weighted_contributions_add_up_to_the_total(loss):
    cfg = GistConfig(loss=loss, ce_weight=0.4, loss_weight=0.7, temperature=2.0)
    g = torch.Generator().manual_seed(1)
    terms = gist_loss(torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g),
                      torch.randint(0, 5, (8,), generator=g), cfg)
    parts = loss_contributions(terms, cfg)
    assert torch.allclose(sum(parts.values()), terms["total"], rtol=1e-6)
    weights = loss_weights(cfg)
    assert weights["ce_cls"] == 1.0 and weights["ce_gist"] == 0.4 and list(parts) == list(weights)
    assert all(w == 0.7 for k, w in weights.items() if k not in ("ce_cls", "ce_gist"))
    assert ("interaction" in weights) == (loss in ("js", "mse")) and (len(weights) == 2) == (loss == "none")


def test_loss_weights_of_a_stored_mapping_take_the_engine_defaults():
    default = GistConfig()
    assert loss_weights({}) == {"ce_cls": 1.0, "ce_gist": default.ce_weight, "kl_cls_gist": default.loss_weight,
                                "kl_gist_cls": default.loss_weight}
    assert loss_weights({"loss": "kl", "loss_weight": 2.0, "an_old_key": 1}) == {
        "ce_cls": 1.0, "ce_gist": default.ce_weight, "kl_cls_gist": 2.0}
    assert loss_weights(None) == loss_weights({"enabled": False}) == {"ce_cls": 1.0}
    series = {"ce_cls": np.array([1.0, 2.0]), "ce_gist": np.array([0.0, 4.0])}
    plain = loss_contributions(series, None)
    assert list(plain) == ["ce_cls"] and np.array_equal(plain["ce_cls"], series["ce_cls"])
    with pytest.raises(KeyError):
        loss_contributions(series, {"loss": "bkld"})  # the KL terms are missing
