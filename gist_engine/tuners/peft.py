"""Any supported Hugging Face peft tuner type as a method: peft injects its layers into the backbone (its own
`BaseTuner`, as `get_peft_model` does), GIST adds its token and head on top, as for every other method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from ..config.peft import PEFT_TYPES, PeftMethodConfig
from .base import TunerSpec

ADAPTER_NAME = "default"  # peft's name of the one adapter (its parameters are named `...lora_A.default.weight`)
BACKBONE_ATTRIBUTE = {"image": "vit", "text": "backbone"}  # modality -> where GistViT / GistTextEncoder keep it


@dataclass
class PeftHandle:
    """What `apply_peft` leaves on the model as `model.peft`: peft's tuner (`BaseTuner`, e.g. `LoraModel`) around
    the backbone, kept outside the module tree so its parameters are not registered twice, and what it decided.

    Attributes:
        peft_type: The table name ("lora", "loha", ...).
        tuner: peft's tuner model; `tuner.model` is the backbone (the GistViT's own `vit`), injected in place.
        trainable: The parameters peft left trainable in the backbone (its adapters; biases with `bias: all`).
        rewritten: Frozen backbone parameters the type's initialisation changed (PiSSA, OLoRA, ...): saved in
            checkpoints beside the trained ones, so a reload gives the same logits.
        total_step_given: Whether the user set AdaLoRA's `total_step` (else the run's steps are used).
    """

    peft_type: str
    tuner: Any
    trainable: list[nn.Parameter]
    rewritten: list[nn.Parameter] = field(default_factory=list)
    total_step_given: bool = False


def peft_backbone(model: nn.Module) -> nn.Module:
    """The module peft wraps: a GistViT's timm ViT or a GistTextEncoder's Hugging Face encoder."""
    return getattr(model, BACKBONE_ATTRIBUTE[getattr(model, "modality", "image")])


def apply_peft(model: nn.Module, cfg: PeftMethodConfig) -> None:
    """Inject `cfg.peft_type` into the model's backbone with peft's own tuner class, in place.

    The default targets are the table's (`gist_engine.config.peft.TARGETS`) for the model's modality; peft marks
    only its adapters trainable (`_mark_only_adapters_as_trainable`), and that set is the method's trainable set.

    Raises:
        ConfigError: peft missing, or peft refusing the options or the targets (e.g. no module matched).
    """
    import peft  # optional dependency (the `peft` extra); the config parser has already checked it is there

    modality = getattr(model, "modality", "image")
    backbone = peft_backbone(model)
    config = cfg.peft_config(modality)
    before = {id(p): p.detach().clone() for p in backbone.parameters()}
    for p in backbone.parameters():
        p.requires_grad_(True)  # peft decides what trains (a frozen parameter would stay frozen otherwise)
    tuner_cls = peft.PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
    try:
        tuner = tuner_cls(backbone, config, ADAPTER_NAME)
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise ConfigError(f"method_args: peft could not add {cfg.peft_type} to {type(backbone).__name__}: "
                          f"{' '.join(str(exc).split())[:500]}") from None
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    with torch.no_grad():
        rewritten = [p for p in backbone.parameters() if not p.requires_grad and id(p) in before
                     and not torch.equal(before[id(p)], p)]
    model.peft = PeftHandle(cfg.peft_type, tuner, trainable, rewritten,
                            total_step_given=cfg.options.get("total_step") is not None)
    model.tuner_mixes_tokens = bool(PEFT_TYPES[cfg.peft_type].get("mixes_tokens"))  # read by speed.rows


def peft_trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters peft left trainable when it was applied."""
    return list(model.peft.trainable)


def prepare_peft_training(model: nn.Module, total_steps: int) -> None:
    """Before the first step: AdaLoRA's `total_step` becomes the run's optimisation steps unless the user set it.

    Raises:
        ConfigError: AdaLoRA's tinit + tfinal leave no step for the rank allocation.
    """
    handle: PeftHandle = model.peft
    if handle.peft_type != "adalora":
        return
    config = handle.tuner.peft_config[ADAPTER_NAME]
    if not handle.total_step_given:
        config.total_step = total_steps  # the RankAllocator reads this same object (budget_schedule)
    if config.tinit >= config.total_step - config.tfinal:
        raise ConfigError(f"method_args: AdaLoRA needs tinit < total_step - tfinal; tinit={config.tinit}, "
                          f"tfinal={config.tfinal}, total_step={config.total_step} (the run has {total_steps} "
                          "steps); lower tinit/tfinal or train longer")


def peft_after_step(model: nn.Module, step: int) -> None:
    """After each optimizer step, before the gradients are cleared: AdaLoRA's `update_and_allocate(step)`
    (importance scores from the gradients, rank budget, masking; peft's AdaLoraModel docstring). `step` counts
    from 0."""
    handle: PeftHandle = model.peft
    if handle.peft_type == "adalora":
        handle.tuner.update_and_allocate(step)


def identity_at_init(cfg: PeftMethodConfig) -> bool:
    """Whether the type starts at the base model: the table's claim, off when an option draws a random update
    (`init_weights`/`init_lora_weights`/`init_ia3_weights` false or "gaussian") or PiSSA-like inits keep it."""
    if not PEFT_TYPES[cfg.peft_type]["identity"]:
        return False
    for key in ("init_weights", "init_lora_weights", "init_ia3_weights"):
        if cfg.options.get(key) is False or cfg.options.get(key) == "gaussian":
            return False
    return True


SPEC = TunerSpec(
    config=PeftMethodConfig,
    apply=apply_peft,
    apply_text=apply_peft,
    trainable=peft_trainable,
    help="Any Hugging Face peft tuner type (method_args.peft_type: lora, loha, lokr, ia3, oft, boft, vera, ...).",
    identity_at_init=identity_at_init,
    on_train_start=prepare_peft_training,
    on_step_end=peft_after_step,
)
