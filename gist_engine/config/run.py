"""The run configuration tree: model (backbone, method, GIST), data and training options, parsed once per run."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .methods import parse_method_args
from .options import ConfigError, Options, apply_overrides, load_yaml, option, parse, to_dict
from .recipes import RECIPES, RecipeError, resolve_recipe

# Keys may be extended, never renamed.

INTERACTION_LOSS_NAMES = ("bkld", "kl", "reverse_kl", "js", "mse", "none")
LR_SCHEDULES = ("cosine", "cosine_epoch")
SELECT_ON = ("auto", "val", "test", "last")  # train.select_on: which evaluation picks the reported epoch
# How each resolved `train.select_on` is shown wherever a run's accuracy is (CLI, store, app, exports): selecting the
# epoch on the test split flatters the run (the test split chose it), so it says so.
SELECTION_LABELS = {"val": "selected on validation", "test": "selected on test (optimistic)", "last": "last epoch"}


def selection_label(selected_on: str | None) -> str | None:
    """The words shown beside a run's accuracy for its resolved `train.select_on` ("val", "test", "last"):
    `SELECTION_LABELS`; None for None (a run recorded before selection was stored). An unknown value is shown as
    it is."""
    if selected_on is None:
        return None
    return SELECTION_LABELS.get(selected_on, str(selected_on))


@dataclass
class GistConfig:
    """The Gist token and the knowledge-interaction loss (Ruan et al., 2023)."""

    enabled: bool = option(True, "Add the Gist token and the interaction loss; off = the plain PEFT method.")
    length: int = option(1, "Number of Gist tokens L; with L > 1 their outputs are averaged.", min=1, max=64)
    init: float = option(0.5, "The Gist token is initialised uniform(-init, init).", min=0.0, max=10.0)
    dropout: float = option(0.1, "Dropout on the Gist token in training (the authors' later scripts use 0.9 for "
                            "few-shot and 0.98 for VTAB-1k).", min=0.0, max=0.98)
    shared_head: bool = option(True, "One head for CLS and Gist (as the paper); false = a separate Gist head.")
    ce_weight: float = option(0.5, "Weight of the cross-entropy of the Gist head's prediction.", min=0.0, max=100.0)
    loss: str = option("bkld", "Interaction loss between the CLS and Gist predictions.",
                       choices=INTERACTION_LOSS_NAMES)
    loss_weight: float = option(0.75, "Weight of the interaction loss.", min=0.0, max=100.0)
    temperature: float = option(3.0, "Softmax temperature T of the interaction loss.", min=0.0, max=1000.0,
                                min_exclusive=True)


@dataclass
class ModelConfig:
    """Everything needed to build a GistViT: backbone, PEFT method and GIST options."""

    backbone: str = option("dinov2_s14", "A registered backbone, or a timm model name (hub weights need a network).")
    pretrained: bool = option(True, "Load pretrained weights; false = random init (tests, speed measurements).")
    weights: str | None = option(None, "A local weights file (.safetensors, .pth/.bin, ViT .npz) for the backbone.")
    image_size: int = option(0, "Input size in pixels; 0 = the backbone's default.", min=0, max=4096)
    num_classes: int | None = option(None, "Classes of the new head; empty = the dataset's (10 without one).",
                                     min=2, max=100_000)
    method: str = option("adapter", "PEFT method (tuner) name; see `python -m gist_engine list`.")
    method_args: Options = option({}, "Options of the tuner, e.g. {variant: gist} or {rank: 8}.")
    gist: GistConfig = option(GistConfig(), "Gist token and interaction loss options.")
    drop_path_rate: float = option(0.0, "Stochastic depth (timm's drop_path_rate, [0, 1)): the attention and MLP "
                                   "branches of block i are dropped per sample with rate i / (depth - 1) x this in "
                                   "training; adapters beside them and prompts are not (the release's train.py "
                                   "--drop-path). Image backbones only.", min=0.0, max=1.0)

    def __post_init__(self) -> None:
        """Type `method_args` with the options class of `method` (METHOD_CONFIGS): parsed here, once."""
        self.method_args = parse_method_args(self.method, self.method_args)
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate: {self.drop_path_rate!r} is out of range (must be >= 0 and < 1)")


@dataclass
class DataConfig:
    """Which dataset and which part of it (VTAB-1k style sizes, few-shot)."""

    dataset: str = option("mnist5k", "Dataset name (see `list`), or imagefolder:<dir>, vtab:<dir>, "
                          "vtab1k:<root>/<task>, fgvc:<dir>, fewshot:<dir>.")
    train_size: int | None = option(None, "Training images drawn (seeded) from the train split; empty = all.",
                                    min=1)
    val_size: int = option(0, "Validation images held out of the train split (0 = none). The protocol switch of the "
                           "benchmarks: vtab1k: 0 = train800val200 -> test, > 0 = train800 -> val200; fgvc: 0 = "
                           "train + val -> test, > 0 = train -> val; fewshot: > 0 evaluates on val_meta.list.",
                           min=0)
    test_size: int | None = option(None, "Test images drawn (seeded) from the test split; empty = all.", min=1)
    few_shot: int | None = option(None, "k training images per class (seeded); empty = off. fewshot: datasets: the "
                                  "standard list's shots (1, 2, 4, 8, 16).", min=1)
    seed: int = option(0, "Seed of the subsampling (the split itself is fixed per dataset); fewshot: datasets: the "
                       "standard list's seed (0, 1, 2).", min=0)
    max_length: int = option(128, "Text datasets: tokens per document after truncation, [CLS] and [SEP] included "
                             "(the Gist token comes on top); ignored for images.", min=4, max=8192)

    def validate(self) -> None:
        """few_shot and train_size both choose the training images: one of them."""
        if self.few_shot is not None and self.train_size is not None:
            raise ConfigError("data: set few_shot (k images per class) or train_size, not both")


@dataclass
class TrainConfig:
    """The optimisation schedule and where it runs."""

    epochs: int = option(1, "Passes over the training set.", min=1, max=100_000)
    batch_size: int = option(32, "Images per optimisation step.", min=1, max=65_536)
    lr: float = option(1e-3, "Peak learning rate (AdamW).", min=0.0, max=10.0, min_exclusive=True)
    weight_decay: float = option(1e-4, "AdamW weight decay (not on biases, norms, tokens, prompts).",
                                 min=0.0, max=10.0)
    warmup_epochs: float = option(0.0, "Linear warm-up length in epochs before the cosine decay.", min=0.0)
    lr_schedule: str = option("cosine", "cosine: per-step linear warm-up from 1e-4 x lr, cosine to 0 at the end; "
                              "cosine_epoch: timm 0.6.13's CosineLRScheduler as the release steps it, once per epoch: "
                              "warm-up from warmup_lr over warmup_epochs, a cosine over `epochs` (warm-up included) "
                              "down to min_lr, then cooldown_epochs epochs at min_lr.",
                              choices=LR_SCHEDULES)
    warmup_lr: float = option(1e-7, "cosine_epoch: the learning rate of epoch 0, where the warm-up starts "
                              "(timm's warmup_lr_init).", min=0.0, max=10.0)
    min_lr: float = option(1e-8, "cosine_epoch: the learning rate the cosine ends at and the cool-down keeps "
                           "(timm's lr_min).", min=0.0, max=10.0)
    cooldown_epochs: int = option(0, "cosine_epoch: epochs at min_lr after `epochs` (the run lasts epochs + "
                                  "cooldown_epochs epochs); must be 0 with the cosine schedule.", min=0,
                                  max=100_000)
    token_weight_decay: bool = option(False, "Decay the Gist token(s) and VPT's prompts like weight matrices (the "
                                      "release decays the Gist token); false = no decay on them.")
    drop_last: bool = option(False, "Drop the last partial training batch of every epoch (the release does).")
    eval_every: int = option(1, "Evaluate on the test split every N epochs (and always at the end).", min=1)
    select_on: str = option("auto", "Which evaluation picks the reported epoch and the checkpoint kept: val (best "
                            "validation accuracy; the validation split is evaluated after every epoch), test (best "
                            "test accuracy, as the release reports: optimistic, labelled so), last (the last "
                            "epoch), or auto: val when the run has a validation split (data.val_size > 0), else "
                            "last.", choices=SELECT_ON)
    early_stop_patience: int = option(0, "Stop after this many validation evaluations in a row without a gain in "
                                      "validation accuracy (the run ends completed, with a note); needs a "
                                      "validation split (data.val_size > 0); 0 = off.", min=0, max=100_000)
    evaluate_test: bool = option(True, "Evaluate the test split; false (a tuning trial) never loads nor reads it: "
                                 "the run is measured on its validation split only (needs data.val_size > 0).")
    seed: int = option(0, "Seed of the initialisation and the data order (same for plain and GIST runs).", min=0)
    device: str = option("auto", "auto (CUDA when present), cpu or cuda.", choices=("auto", "cpu", "cuda"))
    precision: str = option("auto", "auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, or fp16 (fp16 autocast with a "
                            "gradient scaler, as the release trains; no CUDA graphs).",
                            choices=("auto", "fp32", "bf16", "fp16"))
    frozen_dtype: str = option("auto", "Storage of the frozen backbone weights: fp32, bf16 (needs precision bf16; "
                               "autocast rounds them to bf16 for every matmul anyway, and the residual stream then "
                               "runs in bf16 too), or auto (bf16 when training in bf16 on CUDA).",
                               choices=("auto", "fp32", "bf16"))
    max_steps: int | None = option(None, "Stop after this many optimisation steps (empty = no limit).", min=1)
    grad_clip: float | None = option(None, "Clip the gradient norm to this value (empty = off).", min=0.0,
                                     min_exclusive=True)
    attention_every: int = option(0, "Record CLS/Gist attention maps of a probe batch every K steps (0 = off).",
                                  min=0)
    probe_images: int = option(4, "Images in the attention probe batch.", min=1, max=64)
    probe_every: int = option(0, "Accuracy probe: evaluate both heads on a fixed set of held-out training-split "
                              "images (never the test set) every N steps and at step 0, recorded as evaluations of "
                              "split 'probe' (the accuracy curve of a short run); 0 = off. Inference only: the "
                              "training itself is unchanged.", min=0)
    probe_size: int = option(128, "Accuracy probe: how many train-split images it holds, drawn (seeded by data.seed, "
                             "class proportions kept) from those the training subset leaves out; the validation "
                             "split is used instead when the training subset is the whole train split.", min=1,
                             max=65_536)
    checkpoint_every: int = option(0, "Write a resumable checkpoint every N epochs (0 = only the final one).",
                                   min=0)
    log_every: int = option(0, "Read the loss terms back from the device every N steps: every step is still "
                            "reported (in a burst), a non-finite loss at its exact step; 0 = auto: 1 on CPU, 10 on "
                            "CUDA.", min=0, max=10_000)
    compile: bool = option(False, "Compile the forward + loss with torch.compile (falls back to eager with a "
                           "warning if compiling fails); pays off on long GPU runs.")
    cuda_graph: bool = option(False, "On CUDA, capture the whole training step (forward, backward, AdamW) as a "
                              "CUDA graph per batch shape after 3 eager steps and replay it: no Python per kernel, "
                              "for small batches whose steps the CPU cannot launch fast enough; image models only. "
                              "Experimental (see README, Speed); ignored with train.compile, whose modes do this "
                              "themselves.")
    eval_batch_size: int = option(0, "Images per evaluation batch; 0 = auto: 1024 on CUDA, 64 on CPU.",
                                  min=0, max=65_536)
    cpu_threads: int = option(0, "torch threads on CPU; 0 = auto: the CPUs this process may use, less those other "
                              "processes keep busy (chosen once per process).", min=0, max=1024)

    def validate(self) -> None:
        """bf16 frozen weights only under bf16 autocast; a cool-down only with the epoch schedule."""
        if self.frozen_dtype == "bf16" and self.precision in ("fp32", "fp16"):
            raise ConfigError("train.frozen_dtype: bf16 frozen weights need train.precision bf16 (or auto on CUDA); "
                              f"precision is {self.precision}")
        if self.cooldown_epochs and self.lr_schedule != "cosine_epoch":
            raise ConfigError(f"train.cooldown_epochs: {self.cooldown_epochs} cool-down epochs need "
                              f"train.lr_schedule cosine_epoch (it is {self.lr_schedule}); set it to 0 or use "
                              "cosine_epoch")
        if not self.evaluate_test and self.select_on == "test":
            raise ConfigError("train.select_on: test needs the test split, but train.evaluate_test is false; select "
                              "on val (or auto) or evaluate the test split")

    @property
    def total_epochs(self) -> int:
        """Epochs the run lasts: `epochs`, plus `cooldown_epochs` with the cosine_epoch schedule."""
        return self.epochs + (self.cooldown_epochs if self.lr_schedule == "cosine_epoch" else 0)


@dataclass
class RunConfig(ModelConfig):
    """A whole run: the model (top-level keys), the data and the training schedule."""

    name: str | None = option(None, "A label for the run (shown in the run list).")
    recipe: str | None = option(None, "A named set of defaults applied under this config's own keys (they and any "
                                "override win): gist_release (the official release's VTAB-1k protocol) or "
                                "vtab1k/<task> (its per-task values), fewshot/<dataset> (the authors' few-shot "
                                "script); see docs/recipes.md. A vtab1k: or fewshot: dataset applies its "
                                "recipe's lr, weight decay, drop-path and classes by itself.", choices=tuple(RECIPES))
    data: DataConfig = option(DataConfig(), "Dataset and protocol options.")
    train: TrainConfig = option(TrainConfig(), "Optimisation options.")

    def validate(self) -> None:
        """Selecting on validation, early stopping and a run without the test split need a validation split."""
        tc = self.train
        if self.data.val_size:
            return
        for key, used in (("select_on: val", tc.select_on == "val"),
                          (f"early_stop_patience: {tc.early_stop_patience}", tc.early_stop_patience > 0),
                          ("evaluate_test: false", not tc.evaluate_test)):
            if used:
                raise ConfigError(f"train.{key} needs a validation split, but data.val_size is 0; set data.val_size "
                                  "> 0 (VTAB-1k: train800 -> val200, FGVC: train -> val, elsewhere images held out "
                                  "of the train split)")


def load_run_config(source: str | Path | typing.Mapping[str, Any] | RunConfig | None = None,
                    overrides: typing.Iterable[str] = ()) -> RunConfig:
    """A validated RunConfig from a YAML file, a mapping or a RunConfig, with `key=value` overrides applied.

    A RunConfig without overrides is returned as it is (it was validated when it was parsed); with overrides it is
    written out (`to_dict`), changed and parsed again. A `recipe` (given in the source or by an override) is merged
    under the result here, once, before parsing (`gist_engine.config.recipes.resolve_recipe`); the RunConfig keeps
    `recipe` and the resolved values. Raises ConfigError naming the offending key.
    """
    overrides = list(overrides)
    if isinstance(source, RunConfig):
        if not overrides:
            return source
        data = to_dict(source)
    elif isinstance(source, (str, Path)):
        data = load_yaml(source)
    else:
        data = dict(source or {})
    data = apply_overrides(data, overrides)
    try:
        data = resolve_recipe(data)
    except RecipeError as exc:
        raise ConfigError(str(exc)) from None
    return parse(RunConfig, data)


def _known_keys(cls: type, data: typing.Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """`data` without the keys `cls` (a config dataclass) does not define, at any depth of its sections (gist, data,
    train); `method_args` is kept whole (its keys depend on the method). Returns (kept, the dotted keys left out)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            dropped.append(dotted)
            continue
        section = hints[key]
        if dataclasses.is_dataclass(section) and not issubclass(section, Options) and isinstance(value, typing.Mapping):
            value, more = _known_keys(section, value, f"{dotted}.")
            dropped += more
        kept[key] = value
    return kept, dropped


def read_stored_config(data: typing.Mapping[str, Any]) -> tuple[RunConfig | None, str | None]:
    """A stored run's config parsed leniently, for reading a run store: never raises for what a store may hold.

    Args:
        data: The config as the store (or a result.json) holds it (`to_dict` of the RunConfig it ran with).

    Returns:
        (config, note): (the RunConfig, None) when it parses as it is; (the RunConfig, a note naming the keys left
        out) when it parses once the keys this release does not know are left out (written by another release);
        (None, a note saying why) when it still does not parse (a value this release refuses, an optional library
        missing, e.g. peft for a peft run): the mapping then stays the run's config as recorded. Parsing a peft
        method imports peft (its options are checked by peft's own classes); every other method imports nothing.
    """
    if not isinstance(data, typing.Mapping):
        return None, f"the stored config is not a mapping ({type(data).__name__}); shown as recorded"
    try:
        return load_run_config(data), None
    except ConfigError as exc:
        why = str(exc)
    known, dropped = _known_keys(RunConfig, data)
    if dropped:
        try:
            return load_run_config(known), f"keys this release does not know were left out: {', '.join(dropped)}"
        except ConfigError as exc:
            why = str(exc)
    return None, f"the stored config does not parse in this release ({why}); shown as recorded"
