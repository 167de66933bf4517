"""Named sets of config defaults (`recipe: <name>`): the official GIST release's VTAB-1k protocol, task by task.

Every value is read from the release, JCruan519/GIST at commit f184875 (values recorded, no code copied):
- `train_scripts/vit/train_vtab.sh`: per task --num-classes, --lr, --weight-decay, --drop-path, and for all tasks
  --epochs 100, --warmup-epochs 10, --warmup-lr 1e-7, --min-lr 1e-8, --img-size 224, --batch-size 32 on each of
  NODE_NUM=2 processes (torch.distributed.launch: 64 images per step), --opt adamw, --amp, --no-aug,
  --direct-resize, --mixup 0 --cutmix 0 --smoothing 0, --model vit_base_patch16_224_in21k, --tuning-mode gist_adapter.
- `train.py`: argument defaults the script leaves alone: --sched cosine, --cooldown-epochs 10, --seed 42; the loss
  in train_one_epoch (CE + 0.5 CE of the Gist head + 0.75 x both KLs at T = 3); an evaluation after every epoch;
  --amp = native torch.cuda.amp autocast (fp16) with timm's NativeScaler.
- `data/loader.py`: drop_last=is_training. `data/transforms_factory.py`: --no-aug / --direct-resize give Resize to
  (224, 224) + ToTensor + Normalize, no augmentation. `optim_factory.py`: no decay only on 1-D parameters, biases and
  the model's no_weight_decay() (pos_embed, cls_token, dist_token), so the Gist token is decayed.
- `models/vision_transformer.py`: the backbone's _cfg (mean = std = 0.5, bicubic, the AugReg in21k npz that timm now
  names vit_base_patch16_224.augreg_in21k); the GIST module (one token, uniform(-0.5, 0.5), dropout 0.1, the head
  shared); gist_Adapter (bottleneck 4, scale 0.1: this project's adapter variant `gist`).
The SSF scripts are not needed: the GIST script gives every per-task value. Preprocessing needs no key here: this
project always resizes directly (bicubic, antialiased) to `image_size`, normalises with the backbone's mean/std and
does not augment. Every other recipe is applied on top of `gist_release` (RECIPE_BASE); a config's own keys and
`key=value` overrides win over both (see `resolve_recipe`).

The few-shot recipes come from the authors' later repository JCruan519/PETRobustness at commit 7415a92,
`train_scripts/vit/train_fs.sh`: per dataset --num-classes, and for all --lr 1e-3, --weight-decay 1e-3, --drop-path
0.1, --gist_drop 0.9 (the rest as train_vtab.sh: 100 epochs, 10 warm-up, batch 32 x 2, fp16, 224 px, ViT-B/16
in21k). Its augmentation (--color-jitter 0.4, --aa rand-m9-mstd0.5) is not applied here; its tuning mode `gist2`
(an attention-based interaction with --gist_factor 0.25) is not this project's loss, which stays the release's BKLD.
The authors publish no FGVC (VPT's five datasets) script: no fgvc recipe.

A `vtab1k:` or `fewshot:` dataset applies the per-dataset values of its recipe (AUTO_KEYS: classes, drop-path, lr,
weight decay) by itself, under the config's own keys and any recipe it names (`dataset_recipe`); never the
release's backbone, image size, precision or epochs, so a CPU run stays runnable.
"""

from __future__ import annotations

import copy
import re
import typing
from typing import Any

RELEASE = "JCruan519/GIST@f184875"
SCRIPT = f"{RELEASE}:train_scripts/vit/train_vtab.sh"
FEWSHOT_SCRIPT = "JCruan519/PETRobustness@7415a92:train_scripts/vit/train_fs.sh"

# Keys the recipes use that the training-protocol options add (drop-path, timm's epoch schedule, fp16, ...).
PROTOCOL_KEYS = ("drop_path_rate", "train.lr_schedule", "train.warmup_lr", "train.min_lr", "train.cooldown_epochs",
                 "train.token_weight_decay", "train.drop_last")

RECIPES: dict[str, dict[str, Any]] = {
    # The common part of every VTAB-1k run of the release: train_vtab.sh (shared flags), train.py (defaults, loss),
    # data/loader.py (drop_last), optim_factory.py (decay on the Gist token), models/vision_transformer.py (GIST).
    "gist_release": {
        "backbone": "vit_base_patch16_224.augreg_in21k",  # train_vtab.sh --model vit_base_patch16_224_in21k
        "pretrained": True,                                # train_vtab.sh --pretrained
        "image_size": 224,                                 # train_vtab.sh --img-size 224
        "drop_path_rate": 0.0,                             # train.py --drop-path default None (no stochastic depth)
        "method": "adapter",                               # train_vtab.sh --tuning-mode gist_adapter
        "method_args": {"variant": "gist"},                # vision_transformer.py gist_Adapter(hidden_dim=4), x 0.1
        "gist": {"enabled": True, "length": 1, "init": 0.5, "dropout": 0.1, "shared_head": True,  # GIST(...)
                 "ce_weight": 0.5, "loss": "bkld", "loss_weight": 0.75, "temperature": 3.0},     # train_one_epoch
        "train": {
            "epochs": 100,                 # train_vtab.sh --epochs 100
            "warmup_epochs": 10,           # train_vtab.sh --warmup-epochs 10
            "cooldown_epochs": 10,         # train.py --cooldown-epochs default 10 (timm create_scheduler adds them)
            "lr_schedule": "cosine_epoch",  # train.py --sched default cosine, stepped once per epoch
            "warmup_lr": 1e-7,             # train_vtab.sh --warmup-lr 1e-7
            "min_lr": 1e-8,                # train_vtab.sh --min-lr 1e-8
            "batch_size": 64,              # train_vtab.sh --batch-size 32 x NODE_NUM=2 processes
            "drop_last": True,             # data/loader.py drop_last=is_training
            "precision": "fp16",           # train_vtab.sh --amp (train.py: native fp16 autocast + NativeScaler)
            "token_weight_decay": True,    # optim_factory.py: the 3-D Gist token is not in the no-decay groups
            "eval_every": 1,               # train.py: validate() after every epoch, best top-1 reported
            "seed": 42,                    # train.py --seed default 42
        },
    },
    # One entry per VTAB-1k task folder (the release's ${DATA_ROOT_PATH}/<folder>), each from its block in
    # train_vtab.sh: --num-classes, --drop-path, --lr, --weight-decay. data.dataset is left to the user
    # (vtab:<dir>/<folder>): no VTAB-1k data ships with this project.
    "vtab1k/caltech101": {"num_classes": 102, "drop_path_rate": 0.1, "train": {"lr": 1e-3, "weight_decay": 5e-2}},
    "vtab1k/cifar": {"num_classes": 100, "drop_path_rate": 0.0, "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/dtd": {"num_classes": 47, "drop_path_rate": 0.0, "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/oxford_flowers102": {"num_classes": 102, "drop_path_rate": 0.0,
                                 "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/oxford_iiit_pet": {"num_classes": 37, "drop_path_rate": 0.0, "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/svhn": {"num_classes": 10, "drop_path_rate": 0.0, "train": {"lr": 1e-2, "weight_decay": 5e-5}},
    "vtab1k/sun397": {"num_classes": 397, "drop_path_rate": 0.0, "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/patch_camelyon": {"num_classes": 2, "drop_path_rate": 0.0, "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/eurosat": {"num_classes": 10, "drop_path_rate": 0.2, "train": {"lr": 3e-3, "weight_decay": 5e-2}},
    "vtab1k/resisc45": {"num_classes": 45, "drop_path_rate": 0.1, "train": {"lr": 2e-3, "weight_decay": 5e-5}},
    "vtab1k/diabetic_retinopathy": {"num_classes": 5, "drop_path_rate": 0.2,
                                    "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/clevr_count": {"num_classes": 8, "drop_path_rate": 0.1, "train": {"lr": 2e-3, "weight_decay": 5e-2}},
    "vtab1k/clevr_dist": {"num_classes": 6, "drop_path_rate": 0.1, "train": {"lr": 5e-2, "weight_decay": 5e-2}},
    "vtab1k/dmlab": {"num_classes": 6, "drop_path_rate": 0.1, "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/kitti": {"num_classes": 4, "drop_path_rate": 0.0, "train": {"lr": 1e-2, "weight_decay": 5e-5}},
    "vtab1k/dsprites_loc": {"num_classes": 16, "drop_path_rate": 0.0, "train": {"lr": 1e-2, "weight_decay": 5e-5}},
    "vtab1k/dsprites_ori": {"num_classes": 16, "drop_path_rate": 0.2, "train": {"lr": 5e-3, "weight_decay": 5e-5}},
    "vtab1k/smallnorb_azi": {"num_classes": 18, "drop_path_rate": 0.1, "train": {"lr": 2e-2, "weight_decay": 5e-5}},
    "vtab1k/smallnorb_ele": {"num_classes": 9, "drop_path_rate": 0.2, "train": {"lr": 5e-3, "weight_decay": 5e-2}},
    # The few-shot lists' datasets (NOAH's folder names), from train_fs.sh: DATASET_LIST / NUM_CLASS_LIST, and for
    # all: --lr 1e-3, --weight-decay 1e-3, --drop-path 0.1, GIST_DROPOUT=0.9.
    **{f"fewshot/{name}": {"num_classes": classes, "drop_path_rate": 0.1, "gist": {"dropout": 0.9},
                           "train": {"lr": 1e-3, "weight_decay": 1e-3}}
       for name, classes in (("fgvc-aircraft", 100), ("food-101", 101), ("oxford-flowers102", 102),
                             ("oxford-pets", 37), ("stanford-cars", 196))},
}

# The release file(s) each recipe's values come from.
RECIPE_SOURCES: dict[str, str] = {
    "gist_release": f"{RELEASE}: train_scripts/vit/train_vtab.sh, train.py, data/loader.py, "
                    "data/transforms_factory.py, optim_factory.py, models/vision_transformer.py",
    **{name: f"{SCRIPT} (the {name.split('/', 1)[1]} block) on top of gist_release"
       for name in RECIPES if name.startswith("vtab1k/")},
    **{name: f"{FEWSHOT_SCRIPT} (DATASET_LIST / NUM_CLASS_LIST and the shared flags) on top of gist_release"
       for name in RECIPES if name.startswith("fewshot/")},
}

# A recipe whose name starts with a prefix here is applied on top of the named recipe.
RECIPE_BASE: dict[str, str] = {"vtab1k/": "gist_release", "fewshot/": "gist_release"}

# The keys a benchmark dataset takes from its recipe by itself (dotted: train.lr is {"train": {"lr": ...}}).
AUTO_KEYS = ("num_classes", "drop_path_rate", "train.lr", "train.weight_decay")

# `data.dataset` kind -> the recipe of each of its datasets, by the folder's name (lower case, letters and digits
# only: `Food-101` and `food101` are one dataset; VTAB-1k's task names are exact).
DATASET_RECIPES: dict[str, dict[str, str]] = {
    "vtab1k": {name.split("/", 1)[1]: name for name in RECIPES if name.startswith("vtab1k/")},
    "fewshot": {"fgvcaircraft": "fewshot/fgvc-aircraft", "food101": "fewshot/food-101",
                "oxfordflowers102": "fewshot/oxford-flowers102", "oxfordflowers": "fewshot/oxford-flowers102",
                "oxfordpets": "fewshot/oxford-pets", "stanfordcars": "fewshot/stanford-cars"},
}


class RecipeError(ValueError):
    """An unknown recipe name (load_run_config turns it into a ConfigError)."""


def deep_merge(under: typing.Mapping[str, Any], over: typing.Mapping[str, Any]) -> dict[str, Any]:
    """`under` with `over` on top: nested mappings merged key by key, any other value of `over` wins (None too)."""
    out = copy.deepcopy(dict(under))
    for key, value in over.items():
        if isinstance(value, typing.Mapping) and isinstance(out.get(key), typing.Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_config(name: str) -> dict[str, Any]:
    """The whole mapping of recipe `name`: its base recipe (RECIPE_BASE) with the entry on top; `recipe` not set.

    Raises:
        RecipeError: `recipe: unknown recipe 'x'; choose one of ...`.
    """
    if name not in RECIPES:
        raise RecipeError(f"recipe: unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    base = next((b for prefix, b in RECIPE_BASE.items() if name.startswith(prefix)), None)
    return deep_merge(recipe_config(base) if base else {}, RECIPES[name])


def dataset_recipe(dataset: object) -> tuple[str | None, dict[str, Any]]:
    """The recipe a `data.dataset` value brings by itself and its AUTO_KEYS values: `vtab1k:/d/vtab-1k/dtd` ->
    ("vtab1k/dtd", {"num_classes": 47, "drop_path_rate": 0.0, "train": {"lr": 5e-3, "weight_decay": 5e-5}});
    (None, {}) for any other dataset (an unknown task is refused when the data is read)."""
    if not isinstance(dataset, str):
        return None, {}
    kind, _, arg = dataset.partition(":")
    table = DATASET_RECIPES.get(kind)
    if not table or not arg:
        return None, {}
    folder = arg.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = table.get(folder if kind == "vtab1k" else re.sub(r"[^a-z0-9]", "", folder.lower()))
    if name is None:
        return None, {}
    values: dict[str, Any] = {}
    for key in AUTO_KEYS:
        head, _, tail = key.partition(".")
        value = RECIPES[name].get(head)
        if tail and isinstance(value, typing.Mapping) and tail in value:
            values.setdefault(head, {})[tail] = value[tail]
        elif not tail and value is not None:
            values[head] = value
    return name, values


def resolve_recipe(data: typing.Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping with its `recipe` (if any) merged under it: the mapping's own keys win.

    `method_args` comes from the recipe only when the merged `method` is the recipe's (a config that picks another
    tuner starts from that tuner's defaults, not from options it does not have). A benchmark dataset's own values
    (`dataset_recipe`) lie under both: the named recipe and the config's keys win over them.
    """
    section = data.get("data")
    _, auto = dataset_recipe(section.get("dataset") if isinstance(section, typing.Mapping) else None)
    name = data.get("recipe")
    if not isinstance(name, str):  # None: no recipe; anything else is refused by name when parsed
        return deep_merge(auto, data) if auto else dict(data)
    recipe = recipe_config(name)
    if data.get("method", recipe.get("method")) != recipe.get("method"):
        recipe.pop("method_args", None)
    return deep_merge(deep_merge(auto, recipe), data)


__all__ = ["AUTO_KEYS", "DATASET_RECIPES", "PROTOCOL_KEYS", "RECIPES", "RECIPE_BASE", "RECIPE_SOURCES", "RecipeError",
           "dataset_recipe", "deep_merge", "recipe_config", "resolve_recipe"]
