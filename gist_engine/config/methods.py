"""Every tuner's options (the typed `method_args`), one table from method name to options class, and their parser."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from .options import ConfigError, Options, option, parse, to_dict
from .peft import PeftMethodConfig

# The adapter designs: variant -> (default bottleneck, default output scale, zero-init up-projection, where it sits)
VARIANTS: dict[str, dict] = {
    "gist": {"bottleneck": 4, "scale": 0.1, "zero_init": False, "sites": ("attn", "mlp"),
             "help": "GIST's release: one adapter per block, read from the block input, added beside both "
                     "sub-layers."},
    "houlsby": {"bottleneck": 8, "scale": 1.0, "zero_init": True, "sites": ("after_mlp",),
                "help": "Houlsby/NOAH style: a residual bottleneck applied to the FFN output."},
    "adaptformer": {"bottleneck": 8, "scale": 0.1, "zero_init": True, "sites": ("mlp",),
                    "help": "AdaptFormer: a bottleneck beside the MLP, zero-initialised up-projection."},
}


@dataclass(eq=False)
class LinearConfig(Options):
    """Linear probing has no options."""


@dataclass(eq=False)
class FullConfig(Options):
    """Full fine-tuning has no options."""


@dataclass(eq=False)
class BitFitConfig(Options):
    """BitFit has no options."""


@dataclass(eq=False)
class AdapterConfig(Options):
    """Options of the bottleneck adapter."""

    variant: str = option("gist", "Adapter design: " + " ".join(f"{k}: {v['help']}" for k, v in VARIANTS.items()),
                          choices=tuple(VARIANTS))
    bottleneck: int | None = option(None, "Bottleneck width; empty = the variant's default (gist 4, houlsby 8, "
                                    "adaptformer 8).", min=1, max=4096)
    scale: float | None = option(None, "Output scale; empty = the variant's default (gist 0.1, houlsby 1, "
                                 "adaptformer 0.1).", min=0.0, max=100.0)
    dropout: float = option(0.0, "Dropout inside the bottleneck.", min=0.0, max=0.9)

    def resolved(self) -> tuple[int, float, bool, tuple[str, ...]]:
        """(bottleneck, scale, zero_init, sites) with the variant's defaults filled in."""
        v = VARIANTS[self.variant]
        bottleneck = v["bottleneck"] if self.bottleneck is None else self.bottleneck
        scale = v["scale"] if self.scale is None else self.scale
        return bottleneck, scale, v["zero_init"], v["sites"]


@dataclass(eq=False)
class LoRAConfig(Options):
    """Options of LoRA."""

    rank: int = option(8, "Rank r of the low-rank update B @ A.", min=1, max=1024)
    alpha: float = option(8.0, "Scaling numerator: the update is multiplied by alpha / rank.", min=0.0, max=1e4)
    targets: str = option("qv", "Which slices of the fused qkv projection get an update: letters from q, k, v.")
    dropout: float = option(0.0, "Dropout on the LoRA input.", min=0.0, max=0.9)

    def validate(self) -> None:
        """Targets must be a non-empty set of q/k/v."""
        if not self.targets or set(self.targets) - set("qkv") or len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"method_args.targets: {self.targets!r} must be distinct letters from 'qkv', e.g. 'qv'")


@dataclass(eq=False)
class VPTConfig(Options):
    """Options of VPT."""

    length: int = option(10, "Number of prompt tokens.", min=1, max=1024)
    deep: bool = option(False, "Deep VPT: new prompts at every block; shallow: prompts at the input only.")
    dropout: float = option(0.0, "Dropout on the prompt tokens.", min=0.0, max=0.9)


@dataclass(eq=False)
class SSFConfig(Options):
    """Options of SSF."""

    init_std: float = option(0.02, "Std of the init: scale ~ N(1, std), shift ~ N(0, std); 0 = identity.",
                             min=0.0, max=1.0)


# method name -> its options class; the tuners table (gist_engine.tuners.TUNERS) has the same names in this order.
METHOD_CONFIGS: dict[str, type[Options]] = {
    "linear": LinearConfig,
    "full": FullConfig,
    "bitfit": BitFitConfig,
    "adapter": AdapterConfig,
    "lora": LoRAConfig,
    "vpt": VPTConfig,
    "ssf": SSFConfig,
    "peft": PeftMethodConfig,  # any supported Hugging Face peft type (gist_engine.config.peft.PEFT_TYPES)
}


def parse_method_args(method: str, args: typing.Mapping[str, Any] | Options | None) -> Options:
    """The typed options of `method`: an object of its class is returned as it is, anything else is parsed once.

    Args:
        method: A name in METHOD_CONFIGS.
        args: A mapping (e.g. from YAML), the method's options object, another method's options (re-read as a
            mapping, as an override that changes `method` would), or None for the defaults.

    Raises:
        ConfigError: "method: unknown tuner ..." or naming the offending `method_args.<key>`.
    """
    if method not in METHOD_CONFIGS:
        raise ConfigError(f"method: unknown tuner {method!r}; choose one of {', '.join(METHOD_CONFIGS)}")
    cls = METHOD_CONFIGS[method]
    if isinstance(args, cls):
        return args
    if isinstance(args, Options):
        args = to_dict(args)
    return parse(cls, args or {}, prefix="method_args")
