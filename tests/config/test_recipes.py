"""Recipes (`recipe: <name>`): merged under the config's own keys once in load_run_config, overrides win, the table
covers the release's 19 VTAB-1k tasks (JCruan519/GIST train_scripts/vit/train_vtab.sh)."""

from __future__ import annotations

import dataclasses

import pytest

from gist_engine import ConfigError, RunConfig, load_run_config
from gist_engine.config import DataConfig, TrainConfig, parse, to_dict
from gist_engine.config.recipes import PROTOCOL_KEYS, RECIPE_SOURCES, RECIPES, recipe_config

# The 19 VTAB-1k task folders of the release (${DATA_ROOT_PATH}/<folder> in train_vtab.sh).
TASKS = ("caltech101", "cifar", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397", "patch_camelyon",
         "eurosat", "resisc45", "diabetic_retinopathy", "clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc",
         "dsprites_ori", "smallnorb_azi", "smallnorb_ele")
# What each task must give (with gist_release under it) and the common part's protocol values.
TASK_FIELDS = ("num_classes", "drop_path_rate", "train.lr", "train.weight_decay")
COMMON_FIELDS = ("backbone", "image_size", "train.epochs", "train.warmup_epochs", "train.cooldown_epochs",
                 "train.batch_size", "train.lr_schedule", "train.warmup_lr", "train.min_lr", "train.drop_last",
                 "train.precision", "train.token_weight_decay", "train.eval_every")


def _get(mapping: dict, dotted: str):
    for part in dotted.split("."):
        mapping = mapping[part]
    return mapping


def _keys(mapping: dict, prefix: str = "") -> list[str]:
    """Dotted keys of a nested recipe mapping (method_args and gist are checked by parsing, not here)."""
    out = []
    for key, value in mapping.items():
        if isinstance(value, dict) and key in ("train", "data"):
            out += _keys(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


def _run_config_keys() -> set[str]:
    keys = set()
    for f in dataclasses.fields(RunConfig):
        keys.add(f.name)
        if f.name in ("train", "data"):
            keys |= {f"{f.name}.{g.name}" for g in dataclasses.fields(TrainConfig if f.name == "train" else DataConfig)}
    return keys


def _protocol_ready() -> bool:
    """True once the training-protocol keys (drop_path_rate, train.lr_schedule, ..., precision fp16) are merged."""
    precision = next(f for f in dataclasses.fields(TrainConfig) if f.name == "precision")
    return set(PROTOCOL_KEYS) <= _run_config_keys() and "fp16" in precision.metadata.get("choices", ())


needs_protocol = pytest.mark.skipif(not _protocol_ready(), reason="needs the training-protocol keys "
                                    "(drop_path_rate, train.lr_schedule, ..., precision fp16) in RunConfig")


@pytest.fixture
def known_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """gist_release and vtab1k/cifar with keys RunConfig has today (the real ones name the protocol keys too)."""
    monkeypatch.setitem(RECIPES, "gist_release", {
        "backbone": "test_vit", "pretrained": False, "image_size": 32, "method": "adapter",
        "method_args": {"variant": "gist"}, "gist": {"dropout": 0.1},
        "train": {"epochs": 100, "warmup_epochs": 10, "batch_size": 64, "eval_every": 1, "seed": 42}})
    monkeypatch.setitem(RECIPES, "vtab1k/cifar", {"num_classes": 100, "train": {"lr": 5e-3, "weight_decay": 5e-5}})


def test_a_recipe_is_applied_with_its_base(known_keys) -> None:
    cfg = load_run_config({"recipe": "vtab1k/cifar"})
    assert cfg.recipe == "vtab1k/cifar"
    assert (cfg.backbone, cfg.image_size, cfg.num_classes, cfg.method) == ("test_vit", 32, 100, "adapter")
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs, cfg.train.batch_size) == (5e-3, 5e-5, 100, 64)
    assert cfg.method_args.variant == "gist" and cfg.gist.dropout == 0.1
    assert cfg.data.dataset == "mnist5k", "the data is left to the user"
    assert load_run_config({}).recipe is None and load_run_config({}).train.lr == 1e-3, "no recipe: as today"


def test_the_configs_own_keys_win(known_keys) -> None:
    cfg = load_run_config({"recipe": "vtab1k/cifar", "image_size": 48, "train": {"lr": 0.1}, "gist": {"length": 2}})
    assert (cfg.image_size, cfg.train.lr, cfg.train.weight_decay) == (48, 0.1, 5e-5)
    assert (cfg.gist.length, cfg.gist.dropout) == (2, 0.1), "nested mappings merge key by key"
    plain = load_run_config({"recipe": "vtab1k/cifar", "method": "lora"})
    assert plain.method == "lora" and plain.method_args.rank == 8, "another tuner starts from its own defaults"


def test_overrides_win_and_can_pick_the_recipe(known_keys) -> None:
    cfg = load_run_config({"recipe": "vtab1k/cifar", "train": {"lr": 0.1}}, ["train.lr=0.2", "num_classes=10"])
    assert (cfg.train.lr, cfg.num_classes, cfg.train.weight_decay) == (0.2, 10, 5e-5)
    picked = load_run_config({"train": {"epochs": 3}}, ["recipe=vtab1k/cifar"])
    assert (picked.recipe, picked.train.lr, picked.train.epochs) == ("vtab1k/cifar", 5e-3, 3)
    again = load_run_config(picked, ["train.lr=0.3"])  # a parsed config re-read with an override
    assert (again.recipe, again.train.lr, again.train.epochs, again.num_classes) == ("vtab1k/cifar", 0.3, 3, 100)


def test_an_unknown_recipe_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"recipe: unknown recipe 'vtab1k/imagenet'; choose one of gist_release, "):
        load_run_config({"recipe": "vtab1k/imagenet"})
    with pytest.raises(ConfigError, match="recipe: expected a string"):
        load_run_config({"recipe": 3})


def test_a_stored_config_reads_as_what_ran(known_keys) -> None:
    cfg = load_run_config({"recipe": "vtab1k/cifar", "train": {"lr": 0.1}})
    stored = to_dict(cfg)
    assert stored["recipe"] == "vtab1k/cifar" and stored["num_classes"] == 100 and stored["train"]["lr"] == 0.1
    assert parse(RunConfig, stored) == cfg and load_run_config(stored) == cfg


def test_the_table_covers_the_19_tasks_with_every_field() -> None:
    assert sorted(n for n in RECIPES if n.startswith("vtab1k/")) == sorted(f"vtab1k/{t}" for t in TASKS)
    assert set(RECIPE_SOURCES) == set(RECIPES) and all("JCruan519/" in s for s in RECIPE_SOURCES.values())
    for field in COMMON_FIELDS:
        _get(RECIPES["gist_release"], field)
    for task in TASKS:
        entry, full = RECIPES[f"vtab1k/{task}"], recipe_config(f"vtab1k/{task}")
        for field in TASK_FIELDS:
            _get(entry, field)
        assert all(_get(full, f) == _get(RECIPES["gist_release"], f) for f in COMMON_FIELDS)
        assert "dataset" not in full.get("data", {}), "no VTAB-1k data ships offline"
    base = RECIPES["gist_release"]
    assert base["backbone"] == "vit_base_patch16_224.augreg_in21k" and base["image_size"] == 224
    assert [_get(base, f"train.{k}") for k in ("epochs", "warmup_epochs", "cooldown_epochs", "batch_size")] == \
        [100, 10, 10, 64]
    # train_vtab.sh: 10 of the 19 tasks use drop-path; e.g. the cifar and clevr_dist blocks.
    assert sum(RECIPES[f"vtab1k/{t}"]["drop_path_rate"] > 0 for t in TASKS) == 10
    assert recipe_config("vtab1k/cifar")["train"] | {} == {**base["train"], "lr": 5e-3, "weight_decay": 5e-5}
    assert (RECIPES["vtab1k/clevr_dist"]["num_classes"], RECIPES["vtab1k/clevr_dist"]["train"]["lr"]) == (6, 5e-2)


def test_the_table_names_only_known_keys() -> None:
    """Every key is a RunConfig key today or one of the protocol keys of the brief (BRIEF18.md)."""
    known = _run_config_keys() | set(PROTOCOL_KEYS)
    for name, entry in RECIPES.items():
        unknown = set(_keys(entry)) - known
        assert not unknown, f"{name}: {sorted(unknown)}"


@needs_protocol
@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_parses(name: str) -> None:
    cfg = load_run_config({"recipe": name})
    full = recipe_config(name)
    assert cfg.recipe == name and cfg.backbone == full["backbone"] and cfg.train.lr == full["train"].get("lr", 1e-3)
    assert to_dict(cfg)["train"]["precision"] == "fp16"
