"""Config validation: unknown keys and bad values are rejected by name; YAML is read safely; overrides apply."""

from __future__ import annotations

import pytest

from gist_engine import ConfigError, RunConfig, build_model, load_run_config
from gist_engine.config import apply_overrides, describe_fields, to_dict

BAD = [
    ({"gist": {"lenght": 2}}, "unknown config key 'gist.lenght'"),
    ({"bakbone": "x"}, "unknown config key 'bakbone'"),
    ({"method_args": {"rank": 4}}, "unknown config key 'method_args.rank'"),
    ({"method": "prefix"}, "method: unknown tuner 'prefix'"),
    ({"method": "lora", "method_args": {"rank": 0}}, "method_args.rank: 0 is out of range"),
    ({"method": "lora", "method_args": {"targets": "qq"}}, "method_args.targets"),
    ({"method": "adapter", "method_args": {"variant": "nope"}}, "method_args.variant: 'nope' is not one of"),
    ({"gist": {"temperature": 0}}, "gist.temperature: 0.0 is out of range"),
    ({"gist": {"loss": "hinge"}}, "gist.loss: 'hinge' is not one of"),
    ({"gist": {"length": 0}}, "gist.length: 0 is out of range"),
    ({"gist": {"dropout": 1.5}}, "gist.dropout: 1.5 is out of range"),
    ({"gist": {"enabled": "yes"}}, "gist.enabled: expected true or false"),
    ({"gist": 3}, "gist: expected a mapping"),
    ({"num_classes": 1}, "num_classes: 1 is out of range"),
    ({"image_size": 22.5}, "image_size: expected an integer"),
    ({"train": {"lr": float("nan")}}, "train.lr: expected a finite number"),
    ({"train": {"lr": -1}}, "train.lr: -1.0 is out of range"),
    ({"train": {"device": "tpu"}}, "train.device: 'tpu' is not one of"),
    ({"data": {"few_shot": 0}}, "data.few_shot: 0 is out of range"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_configs_are_rejected_by_name(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_run_config(data)


def test_defaults_round_trip_and_overrides():
    cfg = load_run_config({"method": "lora"}, ["gist.length=2", "method_args={rank: 4}", "train.lr=0.01"])
    assert cfg.gist.length == 2 and cfg.method_args == {"rank": 4} and cfg.train.lr == 0.01
    assert load_run_config(to_dict(cfg)) == cfg
    assert isinstance(cfg, RunConfig) and cfg.gist.loss == "bkld" and cfg.gist.temperature == 3.0


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["gist.length"])
    with pytest.raises(ConfigError, match="is not a mapping"):
        apply_overrides({"gist": 3}, ["gist.length=2"])


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gist: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_run_config(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_run_config(tmp_path / "missing.yaml")
    path.write_text("backbone: test_vit\nmethod: vpt\nmethod_args: {length: 2, deep: true}\n")
    assert build_model(load_run_config(path)).num_prompt_tokens == 2


def test_every_field_has_help():
    for field in describe_fields(RunConfig):
        assert field["help"], field["name"]


def test_example_configs_are_valid():
    from pathlib import Path

    configs = sorted(Path("assets/configs").glob("*.yaml"))
    assert len(configs) >= 2
    for path in configs:
        cfg = load_run_config(path)
        assert cfg.name, path


@pytest.mark.parametrize("text, value", [("5e-5", 5e-5), ("1E3", 1000.0), ("+2.5e+1", 25.0), (".5", 0.5),
                                         ("3", 3.0)])
def test_a_numeric_string_is_a_number_for_float_options(text, value):
    """PyYAML (YAML 1.1) reads `5e-5` as a string; a float option takes it as the number it is."""
    assert load_run_config({"gist": {"temperature": text}}).gist.temperature == value
    assert load_run_config({}, [f"gist.temperature={text}"]).gist.temperature == value


@pytest.mark.parametrize("text", ["fast", "nan", "inf", "1_000", "5e", "0x10", ""])
def test_other_strings_are_not_numbers(text):
    with pytest.raises(ConfigError, match=r"train\.lr: expected a number"):
        load_run_config({"train": {"lr": text}})


def test_a_config_nested_too_deeply_is_refused_by_name(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("method_args: " + "{a: " * 40 + "1" + "}" * 40)
    with pytest.raises(ConfigError, match="nests more than 32 levels"):
        load_run_config(path)
