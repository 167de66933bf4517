"""A run's config is parsed once: typed method_args from the tuner's own options class, no re-parse downstream."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from gist_engine import TUNERS, apply_tuner, build, build_model, load_run_config
from gist_engine.config import (
    METHOD_CONFIGS,
    VARIANTS,
    ConfigError,
    LoRAConfig,
    ModelConfig,
    Options,
    methods,
    options,
    run,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[2]

# (method, method_args) for every tuner, the adapter once per variant
CASES = [(m, {}) for m in METHOD_CONFIGS] + [("adapter", {"variant": v}) for v in VARIANTS] + [
    ("adapter", {"variant": "houlsby", "bottleneck": 3, "scale": 0.5}),
    ("lora", {"rank": 4, "targets": "qkv"}),
    ("vpt", {"length": 3, "deep": True}),
    ("ssf", {"init_std": 0.0}),
]

# (method, method_args, the message naming the key)
REFUSED = [
    ("linear", {"rank": 4}, "unknown config key 'method_args.rank'"),
    ("adapter", {"bottlenek": 4}, "unknown config key 'method_args.bottlenek'"),
    ("adapter", {"bottleneck": 0}, "method_args.bottleneck: 0 is out of range"),
    ("adapter", {"scale": "big"}, "method_args.scale: expected a number, got 'big'"),
    ("lora", {"rnak": 4}, "unknown config key 'method_args.rnak'"),
    ("lora", {"rank": "4"}, "method_args.rank: expected an integer"),
    ("lora", {"alpha": -1}, "method_args.alpha: -1.0 is out of range"),
    ("lora", {"targets": "qx"}, "method_args.targets: 'qx' must be distinct letters"),
    ("vpt", {"deep": "yes"}, "method_args.deep: expected true or false"),
    ("vpt", {"length": 0}, "method_args.length: 0 is out of range"),
    ("ssf", {"init_std": 2}, "method_args.init_std: 2.0 is out of range"),
    ("lora", 5, "method_args: expected a mapping, got int 5"),
]


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace `parse` wherever the engine calls it by one that records the class of every call."""
    calls: list[str] = []
    real = options.parse

    def counting(cls, data, prefix=""):
        calls.append(cls.__name__)
        return real(cls, data, prefix)

    for module in (options, methods, run, build):
        monkeypatch.setattr(module, "parse", counting)
    return calls


def escape(message: str) -> str:
    return message.replace("(", r"\(").replace(".", r"\.")


# (a) typed method_args ------------------------------------------------------------------------------------------
def test_method_args_are_the_tuners_typed_options():
    cfg = load_run_config({"method": "lora", "method_args": {"rank": 4}})
    assert isinstance(cfg.method_args, LoRAConfig)
    assert cfg.method_args.rank == 4 and cfg.method_args.alpha == 8.0 and cfg.method_args.targets == "qv"
    assert isinstance(load_run_config({}).method_args, METHOD_CONFIGS["adapter"])  # the default method


@pytest.mark.parametrize(("method", "args"), CASES)
def test_every_method_has_its_options_class(method, args):
    cfg = load_run_config({"method": method, "method_args": args})
    assert type(cfg.method_args) is METHOD_CONFIGS[method] is TUNERS[method].config
    assert all(getattr(cfg.method_args, k) == v for k, v in args.items())


def test_the_options_table_lists_every_tuner_in_order():
    assert list(METHOD_CONFIGS) == list(TUNERS)
    assert all(issubclass(cls, Options) and dataclasses.is_dataclass(cls) for cls in METHOD_CONFIGS.values())


# (b) parsed once ------------------------------------------------------------------------------------------------
def test_a_parsed_config_is_not_parsed_again(monkeypatch):
    cfg = load_run_config({"backbone": "test_vit", "method": "lora", "method_args": {"rank": 4}})
    calls = count_parses(monkeypatch)
    assert load_run_config(cfg) is cfg
    model = build_model(cfg)
    assert model.method_config is cfg.method_args  # the tuner got the typed options as they are
    trainer_view = dataclasses.replace(cfg, num_classes=3)  # how the trainer sets the dataset's classes
    assert trainer_view.method_args is cfg.method_args and trainer_view.num_classes == 3
    assert build.describe_model(model, cfg)["tuner_args"] == {"rank": 4, "alpha": 8.0, "targets": "qv",
                                                              "dropout": 0.0}
    assert calls == []


def test_a_mapping_is_parsed_once(monkeypatch, tmp_path):
    calls = count_parses(monkeypatch)
    build_model({"backbone": "test_vit", "method": "lora", "method_args": {"rank": 4}})
    assert calls.count("ModelConfig") == 1 and calls.count("LoRAConfig") == 1
    calls.clear()
    path = tmp_path / "run.yaml"
    path.write_text("backbone: test_vit\nmethod: vpt\nmethod_args: {length: 2}\ngist: {length: 2}\n")
    cfg = load_run_config(path)
    assert sorted(calls) == ["GistConfig", "RunConfig", "VPTConfig"]
    calls.clear()
    build_model(cfg)
    assert calls == []


def test_overrides_give_a_new_validated_config():
    cfg = load_run_config({"method": "lora", "method_args": {"rank": 4}})
    other = load_run_config(cfg, ["method_args.rank=2", "gist.length=3"])
    assert other is not cfg and other.method_args.rank == 2 and other.gist.length == 3
    assert cfg.method_args.rank == 4 and cfg.gist.length == 1  # the original is untouched
    with pytest.raises(ConfigError, match=escape("method_args.rank: 0 is out of range")):
        load_run_config(cfg, ["method_args.rank=0"])
    with pytest.raises(ConfigError, match=escape("unknown config key 'method_args.rank'")):
        load_run_config(cfg, ["method=vpt"])  # rank was given: it is not a VPT option
    assert isinstance(load_run_config(load_run_config({}), ["method=vpt"]).method_args, METHOD_CONFIGS["vpt"])


# (c) refused by name ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "args", "message"), REFUSED)
def test_bad_method_args_are_refused_by_name(method, args, message):
    with pytest.raises(ConfigError, match=escape(message)):
        load_run_config({"method": method, "method_args": args})
    with pytest.raises(ConfigError, match=escape(message)):
        ModelConfig(method=method, method_args=args)


def test_apply_tuner_still_takes_a_mapping():
    model = build_model({"backbone": "test_vit", "method": "linear"})
    assert apply_tuner(model, "lora", {"rank": 2}) == LoRAConfig(rank=2)
    with pytest.raises(ConfigError, match=escape("unknown config key 'method_args.rnak'")):
        apply_tuner(build_model({"backbone": "test_vit", "method": "linear"}), "lora", {"rnak": 2})
    with pytest.raises(ConfigError, match="method: unknown tuner 'prefix'"):
        apply_tuner(model, "prefix", {})


def test_changing_the_method_rereads_its_options():
    cfg = load_run_config({"method": "adapter"})
    assert isinstance(dataclasses.replace(cfg, method="lora").method_args, LoRAConfig)  # nothing was given
    with pytest.raises(ConfigError, match=escape("unknown config key 'method_args.variant'")):
        dataclasses.replace(load_run_config({"method_args": {"variant": "gist"}}), method="lora")


# (d) to_dict / load round trip ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "args"), CASES)
def test_to_dict_and_load_round_trip(method, args):
    cfg = load_run_config({"name": "x", "method": method, "method_args": args, "train": {"lr": 0.01}})
    data = to_dict(cfg)
    assert data["method_args"] == args  # written back as it was given
    assert json.loads(json.dumps(data)) == data and yaml.safe_load(yaml.safe_dump(data)) == data  # plain data
    again = load_run_config(data)
    assert again == cfg and to_dict(again) == data
    assert load_run_config(json.loads(json.dumps(data))) == cfg


def test_to_dict_writes_changed_options_too():
    cfg = load_run_config({"method": "lora", "method_args": {"rank": 4}})
    cfg.method_args.alpha = 2.0
    assert to_dict(cfg)["method_args"] == {"rank": 4, "alpha": 2.0}
    assert to_dict(LoRAConfig(dropout=0.1)) == {"dropout": 0.1}  # built directly: what differs from the defaults


@pytest.mark.parametrize("cls", list(METHOD_CONFIGS.values()))
def test_options_equal_the_mapping_that_parses_to_them(cls):
    """Every options class keeps Options.__eq__ (declared @dataclass(eq=False))."""
    default = cls()
    assert default == {} and default == cls() and default != {"no_such_key": 1} and default != object()
    assert default == options.parse(cls, to_dict(default))


# (e) the config layer stands alone --------------------------------------------------------------------------------
def test_config_imports_neither_torch_nor_tuners_nor_model():
    """`gist_engine.config` loaded on its own (a bare parent package, so gist_engine/__init__ does not run)."""
    code = textwrap.dedent("""
        import pathlib, sys, types
        pkg = types.ModuleType("gist_engine")
        pkg.__path__ = [str(pathlib.Path("gist_engine").resolve())]
        sys.modules["gist_engine"] = pkg
        import gist_engine.config
        cfg = gist_engine.config.load_run_config({"method": "lora", "method_args": {"rank": 4}})
        assert cfg.method_args.rank == 4
        heavy = ("torch", "timm", "numpy", "gist_engine.tuners", "gist_engine.model", "gist_engine.losses")
        bad = sorted(m for m in sys.modules if m.startswith(heavy))
        assert not bad, bad
        print(sorted(m for m in sys.modules if m.startswith("gist_engine")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "'gist_engine.config.run'" in out.stdout and "gist_engine.tuners" not in out.stdout
