"""`method: peft`: every supported Hugging Face peft type equals peft's own model with GIST off (same randomised
adapter weights, speed wrappers installed), counts match peft's, GIST trains on top, checkpoints reload, refusals."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import sys

import peft
import pytest
import torch

from gist_engine import build_model, count_parameters, speed
from gist_engine.config import ConfigError, load_run_config, to_dict
from gist_engine.config.peft import PEFT_TYPES, PLUMBING, TARGETS, describe_peft_types
from gist_engine.train import Trainer
from gist_engine.train.checkpoint import CheckpointError, load_model, load_trainable_state, read_checkpoint
from gist_engine.tuners.peft import peft_backbone
from tests.toydata import squares_splits

D, HEAD = 32, 32 * 10 + 10  # test_vit / test_bert width and 10-class head
# Options the tiny models (D=32, FFN 64) need where the table's defaults assume ViT-S/BERT-base widths.
TINY = {"c3a": {"block_size": 8}, "road": {"group_size": 8}, "miss": {"r": 8}, "shira": {"r": 2},
        "randlora": {"r": 4}, "vera": {"r": 16}, "waveft": {"n_frequency": 256}}
TYPES = list(PEFT_TYPES)


def args_for(peft_type: str) -> dict:
    return {"peft_type": peft_type, **TINY.get(peft_type, {})}


def build(peft_type: str, backbone: str, gist: bool, seed: int = 0, method: str = "peft"):
    return build_model({"backbone": backbone, "method": method,
                        "method_args": args_for(peft_type) if method == "peft" else {},
                        "gist": {"enabled": gist, "dropout": 0.0}}, seed=seed)


def randomise_(model, seed: int = 1) -> None:
    """Move every trained parameter off its initialisation (zero LoRA B, unit IA3 vectors, zero OFT skew)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def inputs(model, backbone: str):
    if backbone == "test_vit":
        return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return model.tokenize(["The bank cut interest rates.", "A striker scored twice.", "Hi"], max_length=16)


def peft_reference(peft_type: str, backbone: str):
    """The same backbone and head (method linear, same seed) wrapped by peft's own `get_peft_model`, with the
    config built here from peft's class: the table's targets and defaults, then the test's options."""
    ref = build(peft_type, backbone, gist=False, method="linear")
    entry = PEFT_TYPES[peft_type]
    modality = "image" if backbone == "test_vit" else "text"
    kwargs = {**TARGETS[modality][entry["targets"]], **entry["defaults"], **TINY.get(peft_type, {})}
    if peft_type == "adalora":
        kwargs["total_step"] = 1
    wrapped = peft.get_peft_model(peft_backbone(ref), getattr(peft, entry["config"])(**kwargs))
    peft_count = wrapped.get_nb_trainable_parameters()[0]  # peft's own count, before the head trains again
    ref.get_classifier().requires_grad_(True)  # the new head trains whatever the method (peft froze it)
    return ref, peft_count


@pytest.mark.parametrize("backbone", ["test_vit", "test_bert"])
@pytest.mark.parametrize("peft_type", TYPES)
def test_gist_off_equals_peft_own_model_with_the_same_weights(peft_type, backbone):
    ours = build(peft_type, backbone, gist=False)
    randomise_(ours)
    ref, peft_count = peft_reference(peft_type, backbone)
    assert count_parameters(ours)[0] == peft_count + HEAD == count_parameters(ref)[0]
    ref.load_state_dict(ours.state_dict())  # the same (randomised) adapter weights, head and backbone
    speed.install(ours, "cpu", cpu_threads=None)  # as the trainer installs them
    ours.eval(), ref.eval()
    x = inputs(ours, backbone)
    with torch.inference_mode():
        got, want = ours(x).cls_logits, ref(x).cls_logits
    assert want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    y = torch.tensor([0, 1, 2])
    grads = []
    for model in (ours, ref):  # and the same gradients for every trained parameter, by the names as built
        torch.nn.functional.cross_entropy(model(x).cls_logits, y).backward()
        grads.append({n: p.grad for n, p in speed.plain_named_parameters(model) if p.requires_grad})
    assert list(grads[0]) == list(grads[1])
    for name, g in grads[1].items():
        # float32 sums in another order (fused attention, head rows): to 1e-3 of the tensor's largest entry (and
        # 5e-6 absolute: GLoRA's scalar gradients are of order 1e-6, float32 rounding of a sum of larger terms)
        assert (grads[0][name] - g).abs().max() <= 1e-3 * g.abs().max() + 5e-6, name


@pytest.mark.parametrize("peft_type", TYPES)
def test_gist_adds_its_token_and_the_same_loss_terms(peft_type):
    plain, gist = build(peft_type, "test_vit", gist=False), build(peft_type, "test_vit", gist=True)
    assert count_parameters(gist)[0] == count_parameters(plain)[0] + D
    assert gist.gist_parameter_count() == D and gist.gist_token.requires_grad
    trained = {n for n, p in gist.named_parameters() if p.requires_grad}
    assert {"gist_token", "vit.head.weight", "vit.head.bias"} <= trained
    assert not gist.vit.cls_token.requires_grad and not gist.vit.patch_embed.proj.weight.requires_grad
    x = inputs(gist, "test_vit")
    out = gist(x)
    assert out.gist_logits is not None and out.gist_logits.shape == out.cls_logits.shape == (3, 10)


@pytest.mark.parametrize("peft_type", TYPES)
def test_identity_at_init_is_as_the_table_says(peft_type):
    base = build(peft_type, "test_vit", gist=False, seed=1, method="linear").eval()
    tuned = build(peft_type, "test_vit", gist=False, seed=1).eval()
    x = inputs(base, "test_vit")
    with torch.no_grad():
        same = torch.allclose(base(x).cls_logits, tuned(x).cls_logits, atol=1e-5)
    assert same == PEFT_TYPES[peft_type]["identity"]


TRAINED_TYPES = ["lora", "adalora", "loha", "lokr", "ia3", "oft", "boft", "hra", "vera", "fourierft", "ln_tuning",
                 "c3a", "shira", "road"]


@pytest.fixture(scope="module")
def toy_data():
    return squares_splits(48, 16)


@pytest.mark.parametrize("peft_type", TRAINED_TYPES)
def test_one_epoch_with_gist_then_the_checkpoint_reloads_to_the_same_logits(peft_type, toy_data, tmp_path):
    cfg = load_run_config({"backbone": "test_vit", "method": "peft",
                           "method_args": {**args_for(peft_type)}, "gist": {"dropout": 0.0},
                           "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3}})
    trainer = Trainer(cfg, run_dir=tmp_path, data=toy_data)
    result = trainer.run()
    assert result.status == "completed" and result.steps == 3, result.error
    assert all(torch.isfinite(torch.tensor(s["total"])) for s in result.history["steps"])
    assert result.acc_cls is not None and result.acc_gist is not None
    assert result.versions["peft"] == importlib.metadata.version("peft")
    model, loaded = load_model(tmp_path)
    assert loaded.method_args.peft_type == peft_type
    speed.install(model, "cpu", cpu_threads=None)
    x, _ = next(toy_data.test.batches(8))
    trainer.model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(model(x).cls_logits, trainer.model(x).cls_logits, rtol=0, atol=1e-6)
    tensors, meta = read_checkpoint(tmp_path)
    assert meta["config"]["method_args"]["peft_type"] == peft_type
    assert set(tensors) >= {"gist_token", "vit.head.weight"}


def test_adalora_allocates_ranks_during_training(toy_data, tmp_path):
    cfg = load_run_config({"backbone": "test_vit", "method": "peft",
                           "method_args": {"peft_type": "adalora", "init_r": 6, "target_r": 2, "tinit": 1,
                                           "tfinal": 1, "deltaT": 1},
                           "train": {"epochs": 2, "batch_size": 16}})
    trainer = Trainer(cfg, data=toy_data)
    trainer.run()
    handle = trainer.model.peft
    assert handle.tuner.peft_config["default"].total_step == 6  # the run's steps (2 epochs x 3)
    kept = [int((m.lora_E["default"] != 0).sum()) for m in trainer.model.modules() if hasattr(m, "lora_E")]
    assert kept and sum(kept) < 6 * len(kept)  # the budget cut ranks below init_r


def test_adalora_with_no_room_for_allocation_is_refused(toy_data):
    cfg = load_run_config({"backbone": "test_vit", "method": "peft",
                           "method_args": {"peft_type": "adalora", "tinit": 50, "tfinal": 50},
                           "train": {"epochs": 1, "batch_size": 16}})
    with pytest.raises(ConfigError, match="tinit"):
        Trainer(cfg, data=toy_data).run()


def test_pissa_rewrites_the_base_and_the_checkpoint_keeps_it(toy_data, tmp_path):
    cfg = load_run_config({"backbone": "test_vit", "method": "peft",
                           "method_args": {"peft_type": "lora", "init_lora_weights": "pissa_niter_2", "r": 4},
                           "train": {"epochs": 1, "batch_size": 16}})
    trainer = Trainer(cfg, run_dir=tmp_path, data=toy_data)
    trainer.run()
    rewritten = trainer.model.peft.rewritten
    assert len(rewritten) == 2 * 4  # the four target weights of both blocks
    tensors, _ = read_checkpoint(tmp_path)
    assert any(k.endswith("base_layer.weight") for k in tensors)
    model, _ = load_model(tmp_path)
    x, _ = next(toy_data.test.batches(8))
    trainer.model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(model(x).cls_logits, trainer.model(x).cls_logits, rtol=0, atol=1e-6)


def test_a_checkpoint_of_one_type_refuses_another(toy_data, tmp_path):
    cfg = load_run_config({"backbone": "test_vit", "method": "peft", "method_args": {"peft_type": "lora"},
                           "train": {"epochs": 1, "batch_size": 16}})
    Trainer(cfg, run_dir=tmp_path, data=toy_data).run()
    tensors, meta = read_checkpoint(tmp_path)
    other = build("loha", "test_vit", gist=True)
    with pytest.raises(CheckpointError, match=r"holds lora .*this model has peft type loha"):
        load_trainable_state(other, tensors, source="ckpt", config=meta["config"])
    with pytest.raises(CheckpointError, match="no peft adapters"):
        load_trainable_state(build("lora", "test_vit", gist=True, method="adapter"), tensors, config=meta["config"])


# ------------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(("args", "match"), [
    ({"peft_type": "nonsense"}, r"unknown or unsupported peft type 'nonsense'.*supported: lora"),
    ({"peft_type": "prefix_tuning"}, r"'prefix_tuning' is for language models only \(learned key/value prefixes"),
    ({"peft_type": "PROMPT_TUNING"}, "for language models only"),
    ({"peft_type": "loha", "rank": 4}, r"unknown config key 'method_args.rank' for peft type loha; valid keys: "
                                       r"peft_type, .*\br\b"),
    ({"peft_type": "lora", "task_type": "SEQ_CLS"}, "peft's plumbing"),
    ({"peft_type": "lora", "r": "four"}, r"method_args.r: expected int"),
    ({"peft_type": "lora", "init_lora_weights": "eva"}, "needs|data pass"),
    ({"peft_type": "boft", "boft_block_size": 0, "boft_block_num": 0}, "BOFTConfig refuses"),
])
def test_bad_options_are_refused_by_name(args, match):
    with pytest.raises(ConfigError, match=match):
        load_run_config({"method": "peft", "method_args": args})


def test_missing_peft_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ImportError
    with pytest.raises(ConfigError, match=r"needs the peft package.*pip install 'gist-studio\[peft\]'"):
        load_run_config({"method": "peft", "method_args": {"peft_type": "lora"}})


def test_types_are_case_insensitive_and_the_config_round_trips():
    cfg = load_run_config({"method": "peft", "method_args": {"peft_type": "LoHa", "r": 4, "alpha": 8}})
    assert cfg.method_args.peft_type == "loha" and cfg.method_args.options == {"r": 4, "alpha": 8}
    assert to_dict(cfg)["method_args"] == {"peft_type": "loha", "r": 4, "alpha": 8}
    assert load_run_config(to_dict(cfg)).method_args == cfg.method_args


def test_the_catalogue_lists_each_type_with_options_from_peft_field_metadata():
    info = describe_peft_types()
    assert info["pinned"] == "0.21.0" and set(info["types"]) == set(PEFT_TYPES)
    lora = {o["name"]: o for o in info["types"]["lora"]["options"]}
    assert {"r", "lora_alpha", "use_dora", "use_rslora", "init_lora_weights", "target_modules"} <= set(lora)
    field = next(f for f in dataclasses.fields(peft.LoraConfig) if f.name == "use_dora")
    assert lora["use_dora"]["help"] == " ".join(field.metadata["help"].split())
    assert not set(lora) & PLUMBING
    assert lora["target_modules"]["default"] == ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]


def test_the_built_in_peft_study_sweeps_types_through_a_named_axis():
    from pathlib import Path

    from gist_engine.studies.spec import load_study_spec

    spec = load_study_spec(Path(__file__).resolve().parents[2] / "assets" / "studies" / "peft_methods.yaml")
    cells = {c.values["method"]: c.config for c in spec.cells()}
    peft_types = {label: cfg.method_args.peft_type for label, cfg in cells.items() if cfg.method == "peft"}
    assert len(peft_types) >= 8 and all(label == t for label, t in peft_types.items())
    assert cells["adapter"].method == "adapter" and spec.seeds == [0, 1, 2] and spec.paired
    assert len(spec.planned_runs()) == len(cells) * 3 * 2


def test_a_stored_peft_run_stays_listable_without_peft(tmp_path):
    import subprocess

    from gist_engine import RunManager

    mgr = RunManager(tmp_path, start=False)  # queued only: nothing trains
    run_id = mgr.submit({"backbone": "test_vit", "method": "peft", "method_args": {"peft_type": "loha", "r": 4},
                         "data": {"dataset": "digits"}})
    mgr.shutdown(timeout=10)
    code = ("import sys; sys.modules['peft'] = None\n"  # `import peft` now fails, as where it is not installed
            "from gist_engine import RunManager\n"
            f"runs = RunManager({str(tmp_path)!r}, start=False).list()\n"
            "print([(r.id, r.config_dict['method_args']['peft_type']) for r in runs])\n"
            "assert runs[0].config is None and 'peft package' in runs[0].config_note, runs[0].config_note\n"
            "assert 'peft' not in sys.modules or sys.modules['peft'] is None\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"('{run_id}', 'loha')" in out.stdout


def test_list_and_describe_json_show_the_peft_types_and_peft_s_count(tmp_path):
    import json
    import subprocess

    run = [sys.executable, "-m", "gist_engine"]
    out = subprocess.run([*run, "list", "--json"], capture_output=True, text=True, timeout=300)
    types = json.loads(out.stdout)["tuners"]["peft"]["peft_types"]["types"]
    assert set(types) == set(PEFT_TYPES) and any(o["name"] == "use_dora" for o in types["lora"]["options"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backbone: test_vit\nmethod: peft\nmethod_args: {peft_type: LoKr, r: 4}\n")
    out = subprocess.run([*run, "describe", "--config", str(cfg), "--json"], capture_output=True, text=True,
                         timeout=300)
    info = json.loads(out.stdout)
    _, peft_count = peft_reference_for("lokr", {"r": 4})
    assert info["tuner_args"] == {"peft_type": "lokr", "r": 4}
    assert info["trainable_params"] == peft_count + HEAD + D


def peft_reference_for(peft_type: str, options: dict):
    ref = build(peft_type, "test_vit", gist=False, method="linear")
    entry = PEFT_TYPES[peft_type]
    config = getattr(peft, entry["config"])(**{**TARGETS["image"][entry["targets"]], **entry["defaults"], **options})
    return ref, peft.get_peft_model(peft_backbone(ref), config).get_nb_trainable_parameters()[0]


def test_a_trained_first_norm_switches_off_the_gradient_rows_shortcut_and_the_report_says_so():
    lora = speed.install(build("lora", "test_vit", gist=True), "cpu", cpu_threads=None)
    ln = speed.install(build("ln_tuning", "test_vit", gist=True), "cpu", cpu_threads=None)
    assert lora.grad_rows == (1, 2) and "first block gradient rows" in lora.summary()
    assert ln.grad_rows is None and "first block gradient rows" not in ln.summary()
