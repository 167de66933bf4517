"""`method: peft`: Hugging Face peft's tuner types as GIST methods: the literal table of supported types (pinned to the
peft version of the lock), their default targets, and the options parser that checks `method_args` against the
type's own peft config dataclass."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import types
import typing
from collections.abc import Mapping
from typing import Any

from .options import ConfigError, Options, option

PEFT_VERSION = "0.21.0"  # the peft of requirements.txt; the tables below were checked against it
INSTALL_HINT = "pip install 'gist-studio[peft]' (or pip install peft==0.21.0)"

# Default target modules by backbone family and target set. timm ViT names (`blocks.<i>.attn.qkv`, ...) and the
# BERT/RoBERTa names of Hugging Face's encoders (`encoder.layer.<i>.attention.self.query`, ...). A list entry
# matches a module whose name is the entry or ends with "." + entry (peft's rule), so "attn.proj" never matches
# the patch embedding's `patch_embed.proj`; a string is a regular expression the whole name must match.
TARGETS: dict[str, dict[str, dict[str, Any]]] = {
    "image": {
        "linears": {"target_modules": ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]},
        "ia3": {"target_modules": ["attn.qkv", "mlp.fc2"], "feedforward_modules": ["mlp.fc2"]},
        "norms": {"target_modules": r"blocks\.\d+\.norm[12]|norm"},  # a regex (full match): not patch_embed.norm
    },
    "text": {
        "linears": {"target_modules": ["query", "key", "value", "attention.output.dense", "intermediate.dense",
                                       "output.dense"]},
        "ia3": {"target_modules": ["key", "value", "output.dense"], "feedforward_modules": ["output.dense"]},
        "norms": {"target_modules": ["output.LayerNorm"]},
    },
}

TARGET_WHY: dict[str, str] = {
    "linears": "every Linear of every block (timm: attn.qkv, attn.proj, mlp.fc1, mlp.fc2; BERT: query, key, value, "
               "attention.output.dense, intermediate.dense, output.dense): the layers the method was designed to "
               "update; nothing before the blocks, so the patch/token embedding stays frozen and the speed "
               "shortcuts of the first block stay exact",
    "ia3": "IA³'s own sites: the key/value projections rescaled at their output (timm's fused attn.qkv: q, k and v "
           "together) and the feed-forward hidden activations rescaled at mlp.fc2's input (feedforward_modules); "
           "for BERT, peft's own default (key, value, output.dense)",
    "norms": "every LayerNorm of the blocks (timm: norm1, norm2 and the final norm; BERT: the two output "
             "LayerNorms of each layer): LN-tuning trains the norms' affine parameters",
}

# The supported peft types (peft 0.21.0): name (PeftType, lower case) -> its peft config class, default targets,
# our defaults (only where peft's own default does not fit a ViT-S/BERT-base width), identity at step 0, and help;
# `mixes_tokens`: the type's layers mix tokens (or batch rows), so the speed shortcuts that compute only some rows
# (`speed.rows`) are not installed for it (the run's speed report shows head_rows and grad_rows as None).
PEFT_TYPES: dict[str, dict[str, Any]] = {
    "lora": {"config": "LoraConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "LoRA: a low-rank update B A of each target weight (DoRA: use_dora, rsLoRA: use_rslora, "
                     "PiSSA/OLoRA: init_lora_weights)."},
    "adalora": {"config": "AdaLoraConfig", "targets": "linears", "defaults": {}, "identity": True,
                "help": "AdaLoRA: SVD-form LoRA whose ranks are re-allocated by importance during training "
                        "(update_and_allocate every step; total_step defaults to the run's steps)."},
    "loha": {"config": "LoHaConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "LoHa: a Hadamard product of two low-rank updates (LyCORIS)."},
    "lokr": {"config": "LoKrConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "LoKr: a Kronecker product of a small and a low-rank matrix (LyCORIS)."},
    "ia3": {"config": "IA3Config", "targets": "ia3", "defaults": {}, "identity": True,
            "help": "IA³: learned vectors rescale the keys, values and feed-forward activations."},
    "oft": {"config": "OFTConfig", "targets": "linears", "defaults": {}, "identity": True,
            "help": "OFT: a block-diagonal orthogonal rotation of each target weight."},
    "boft": {"config": "BOFTConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "BOFT: a butterfly-factorised orthogonal rotation of each target weight."},
    "hra": {"config": "HRAConfig", "targets": "linears", "defaults": {}, "identity": True,
            "help": "HRA: a chain of Householder reflections of each target weight."},
    "vera": {"config": "VeraConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "VeRA: frozen shared random low-rank matrices, trained scaling vectors."},
    "vblora": {"config": "VBLoRAConfig", "targets": "linears", "defaults": {"vector_length": 32}, "identity": False,
               "help": "VB-LoRA: LoRA factors composed from a shared vector bank (vector_length 32 divides the "
                       "ViT-S/BERT widths; peft's 256 does not divide 384)."},
    "fourierft": {"config": "FourierFTConfig", "targets": "linears", "defaults": {}, "identity": False,
                  "help": "FourierFT: learned coefficients of a sparse 2-D Fourier spectrum of each weight update."},
    "ln_tuning": {"config": "LNTuningConfig", "targets": "norms", "defaults": {}, "identity": True,
                  "help": "LN-tuning: train copies of the LayerNorms' affine parameters."},
    "c3a": {"config": "C3AConfig", "targets": "linears", "defaults": {"block_size": 64}, "identity": False,
            "help": "C3A: block-circulant weight updates computed by FFT (block_size 64 divides the ViT-S/BERT "
                    "widths; peft's 256 does not divide 384)."},
    "randlora": {"config": "RandLoraConfig", "targets": "linears", "defaults": {}, "identity": True,
                 "help": "RandLoRA: full-rank updates from frozen random bases with trained scalings."},
    "shira": {"config": "ShiraConfig", "targets": "linears", "defaults": {}, "identity": True,
              "help": "SHiRA: a sparse high-rank update of a fixed random mask of each weight."},
    "road": {"config": "RoadConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "RoAd: learned 2-D rotations of pairs of output features."},
    "miss": {"config": "MissConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "MiSS: a shared small matrix expanded over the weight (formerly Bone)."},
    "waveft": {"config": "WaveFTConfig", "targets": "linears", "defaults": {}, "identity": True,
               "help": "WaveFT: learned sparse wavelet coefficients of each weight update."},
    "delora": {"config": "DeloraConfig", "targets": "linears", "defaults": {}, "identity": True,
               "help": "DeLoRA: a normalised, bounded low-rank update (decoupled angle and strength)."},
    "gralora": {"config": "GraloraConfig", "targets": "linears", "defaults": {}, "identity": True,
                "help": "GraLoRA: LoRA split into k x k granular sub-blocks."},
    "adamss": {"config": "AdamssConfig", "targets": "linears", "defaults": {}, "identity": True,
               "help": "AdaMSS: updates in several adaptive subspaces of each weight's singular vectors."},
    "beft": {"config": "BeftConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "BEFT: trains added bias terms of the target projections only (for few-shot data)."},
    "lily": {"config": "LilyConfig", "targets": "linears", "defaults": {}, "identity": True, "mixes_tokens": True,
             "help": "Lily: low-rank adapters interconnected across layers (shared up-projections mixed by a router "
                     "averaged over the whole batch and sequence: outputs depend on the batch)."},
    "frod": {"config": "FrodConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "FRoD: a hierarchical joint decomposition of each weight family across layers, a sparse "
                     "trained update on it."},
    "pvera": {"config": "PveraConfig", "targets": "linears", "defaults": {}, "identity": True,
              "help": "PVeRA: VeRA with probabilistic (sampled) scaling vectors."},
    "glora": {"config": "GloraConfig", "targets": "linears", "defaults": {}, "identity": True,
              "help": "GLoRA: a generalised low-rank update that scales and shifts both weights and activations."},
    "unilora": {"config": "UniLoraConfig", "targets": "linears", "defaults": {}, "identity": False,
                "help": "UniLoRA: every LoRA factor drawn from one shared trained vector."},
    "hira": {"config": "HiraConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "HiRA: a high-rank update as the Hadamard product of the frozen weight and a low-rank matrix."},
    "osf": {"config": "OSFConfig", "targets": "linears", "defaults": {}, "identity": True,
            "help": "OSF: trains each weight only in the orthogonal complement of its top singular subspace."},
    "tinylora": {"config": "TinyLoraConfig", "targets": "linears", "defaults": {}, "identity": True,
                 "help": "TinyLoRA: a few trained scalars steering frozen low-rank SVD directions."},
    "psoft": {"config": "PsoftConfig", "targets": "linears", "defaults": {}, "identity": True,
              "help": "PSOFT: an orthogonal rotation inside each weight's principal subspace."},
    "peanut": {"config": "PeanutConfig", "targets": "linears", "defaults": {}, "identity": True,
               "help": "PEANuT: a small network of the frozen weight gives each weight update."},
    "supertuning": {"config": "SupertuningConfig", "targets": "linears", "defaults": {}, "identity": True,
                    "help": "Super-Tuning: trained scalings of a weight's fixed super-position basis."},
    "deft": {"config": "DeftConfig", "targets": "linears", "defaults": {}, "identity": True,
             "help": "DEFT: a decompositional update that projects out part of each weight and adds a low-rank one."},
}

# peft types that need a causal/seq2seq language model (prompts, prefixes, token embeddings, routers): refused.
LM_ONLY: dict[str, str] = {
    "prompt_tuning": "learns virtual token embeddings fed to a language model's word embeddings; for a ViT use "
                     "method: vpt",
    "multitask_prompt_tuning": "prompt tuning shared across language-model tasks (needs task ids)",
    "p_tuning": "a prompt encoder producing virtual tokens for a language model's embeddings",
    "prefix_tuning": "learned key/value prefixes written into a transformers model's past_key_values",
    "adaption_prompt": "LLaMA-Adapter: gated prompts inside the attention of decoder language models",
    "xlora": "a router mixing LoRA adapters of a transformers language model (needs its config and hidden states)",
    "poly": "multi-task routing of LoRA modules by task id for seq2seq language models",
    "cpt": "context-aware prompt tuning of a causal language model's inputs",
    "cartridge": "a trained KV-cache prefix of a causal language model",
    "trainable_tokens": "trains selected rows of a language model's token-embedding matrix",
    "shadow": "needs a decoder language model's transformer backbone",
}

# Fields of every peft config that are peft's plumbing or need objects/data outside a run config: never user keys.
PLUMBING = frozenset({
    "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
    "inference_mode", "modules_to_save", "layers_pattern", "megatron_config", "megatron_core", "loftq_config",
    "runtime_config", "eva_config", "corda_config", "lora_ga_config", "velora_config", "monteclora_config",
    "arrow_config", "kasa_config", "alora_invocation_tokens", "trainable_token_indices", "layer_replication",
    "ensure_weight_tying", "use_qalora", "qalora_group_size", "target_parameters", "use_bdlora",
})

# LoRA initialisations that need a data pass or a quantised model: refused by name (the others are accepted).
DATA_INITS: dict[str, str] = {
    "eva": "EVA initialises from activations of a data pass (peft.initialize_lora_eva_weights)",
    "corda": "CorDA initialises from a data pass (peft's preprocess_corda)",
    "loftq": "LoftQ initialises for a quantised base model (loftq_config)",
    "lora_ga": "LoRA-GA initialises from gradients of a data pass",
}


def peft_installed_version() -> str | None:
    """The installed peft's version, read from its metadata (peft itself is not imported); None if absent."""
    try:
        return importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        return None


def peft_config_class(peft_type: str) -> type:
    """peft's config class of a supported type (imports peft).

    Raises:
        ConfigError: peft is not installed (with how to install it), or `peft_type` is not in PEFT_TYPES.
    """
    name = normalise_peft_type(peft_type)
    try:
        import peft  # optional dependency (the `peft` extra): imported only to build or check a peft method
    except ImportError:
        raise ConfigError(f"method: peft needs the peft package, which is not installed; {INSTALL_HINT}") from None
    return getattr(peft, PEFT_TYPES[name]["config"])


def normalise_peft_type(peft_type: Any) -> str:
    """A supported peft type's table name from any case ("LoHa", "LN_TUNING"); refuses the others by name.

    Raises:
        ConfigError: an LM-only type (with why), or a name not in this version's table (with the list).
    """
    if not isinstance(peft_type, str) or not peft_type.strip():
        raise ConfigError(f"method_args.peft_type: give a peft type name, e.g. lora; got {peft_type!r}; "
                          f"supported: {', '.join(PEFT_TYPES)}")
    name = peft_type.strip().lower().replace("-", "_")
    if name in LM_ONLY:
        raise ConfigError(f"method_args.peft_type: {peft_type!r} is for language models only ({LM_ONLY[name]}); "
                          f"supported on ViTs and BERT encoders: {', '.join(PEFT_TYPES)}")
    if name not in PEFT_TYPES:
        raise ConfigError(f"method_args.peft_type: unknown or unsupported peft type {peft_type!r} (peft "
                          f"{PEFT_VERSION}); supported: {', '.join(PEFT_TYPES)}")
    return name


def user_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a peft config class a user may set (`PLUMBING` left out), in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.name not in PLUMBING]


def _check_type(value: Any, tp: Any, key: str) -> None:
    """Check `value` against a peft field annotation: unions, Literal, bool/int/float/str, lists and dicts."""
    if isinstance(tp, str) or tp is Any:
        return  # an annotation peft left unevaluated: peft's own __post_init__ checks it
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                _check_type(value, arg, key)
                return
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of "
                          f"{_type_text(tp)}")
    if origin is typing.Literal:  # peft writes a family as a template: "pissa_niter_[number of iters]"
        stems = [a.split("[")[0] for a in typing.get_args(tp) if isinstance(a, str) and "[" in a]
        if isinstance(value, str) and any(value.startswith(stem) and len(value) > len(stem) for stem in stems):
            return
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, typing.get_args(tp)))}")
        return
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif origin in (list, tuple) or tp in (list, tuple):
        ok = isinstance(value, list)
        if ok and typing.get_args(tp):
            for item in value:
                _check_type(item, typing.get_args(tp)[0], f"{key}[]")
    elif origin is dict or tp is dict:
        ok = isinstance(value, dict)
    else:
        return  # another class (a nested config): peft checks it
    if not ok:
        raise ConfigError(f"{key}: expected {_type_text(tp)}, got {type(value).__name__} {value!r}")


def _type_text(tp: Any) -> str:
    return str(tp).replace("typing.", "") if typing.get_origin(tp) else getattr(tp, "__name__", str(tp))


@dataclasses.dataclass(eq=False)
class PeftMethodConfig(Options):
    """Options of `method: peft`: `peft_type` and the type's own peft config keys (checked against its fields).

    Written flat, as peft's config: `method_args: {peft_type: loha, r: 4, alpha: 8}`. `options` holds the keys
    given besides `peft_type`, as given; `target_modules` defaults per backbone family (`TARGETS`).
    """

    peft_type: str = option("lora", "The peft tuner type (peft's PeftType, any case); see `list`.",
                            choices=tuple(PEFT_TYPES))
    options: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "The type's own peft config keys, written beside peft_type (e.g. r: 4)."})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], prefix: str = "method_args") -> PeftMethodConfig:
        """Parse `{peft_type: ..., <key>: <value>, ...}`; imports peft to read the type's config fields.

        Raises:
            ConfigError: peft missing (how to install it), an LM-only or unknown type, an unknown key (valid keys
                listed), plumbing keys, a value of the wrong type or one peft's config refuses (named).
        """
        data = dict(data)
        given = "peft_type" in data
        name = normalise_peft_type(data.pop("peft_type", "lora"))
        cls_ = peft_config_class(name)
        fields = {f.name: f for f in user_fields(cls_)}
        hints = typing.get_type_hints(cls_)
        for key, value in data.items():
            if key not in fields:
                why = " (peft's plumbing, set by GIST Studio)" if key in PLUMBING else ""
                raise ConfigError(f"unknown config key '{prefix}.{key}' for peft type {name}{why}; valid keys: "
                                  f"peft_type, {', '.join(fields)}")
            _check_type(value, hints.get(key, Any), f"{prefix}.{key}")
        init = data.get("init_lora_weights")
        if isinstance(init, str) and init in DATA_INITS:
            raise ConfigError(f"{prefix}.init_lora_weights: {init!r} is not supported here: {DATA_INITS[init]}; "
                              "use true, gaussian, pissa, pissa_niter_<n>, olora or orthogonal")
        obj = cls(peft_type=name, options=data)
        obj.peft_config("image")  # peft's own checks (__post_init__) on the image targets' config, named
        obj._given = frozenset(data) | ({"peft_type"} if given else frozenset())
        return obj

    def to_mapping(self) -> dict[str, Any]:
        """The flat mapping it was written as: `{peft_type, **options}` (peft_type left out when it was not given
        and is the default)."""
        keep = "peft_type" in (self._given or ()) or self.peft_type != "lora"
        return {**({"peft_type": self.peft_type} if keep else {}), **self.options}

    def peft_config(self, modality: str = "image", total_step: int | None = None) -> Any:
        """peft's config object for a backbone family ("image" or "text"): the table's defaults and targets, then
        the user's keys. AdaLoRA without `total_step` gets the given one (or a placeholder the trainer replaces).

        Raises:
            ConfigError: peft refuses the values (its message, naming `method_args`).
        """
        entry = PEFT_TYPES[self.peft_type]
        kwargs = {**TARGETS[modality][entry["targets"]], **entry["defaults"], **self.options}
        if self.peft_type == "adalora" and kwargs.get("total_step") is None:
            kwargs["total_step"] = total_step or kwargs.get("tinit", 0) + kwargs.get("tfinal", 0) + 1
        try:
            return peft_config_class(self.peft_type)(**kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"method_args: peft's {entry['config']} refuses these options: "
                              f"{' '.join(str(exc).split())}") from None


def describe_peft_types() -> dict[str, Any]:
    """Every supported peft type with its help, default targets and options (name, type, default, help read from
    the config class's field metadata); `{}` per type's options without peft installed (`installed` says so)."""
    installed = peft_installed_version()
    if installed:
        try:
            peft_config_class(next(iter(PEFT_TYPES)))
        except ConfigError:  # its metadata is there, but it cannot be imported (a broken or blocked install)
            installed = None
    out: dict[str, Any] = {}
    for name, entry in PEFT_TYPES.items():
        row = {"help": entry["help"], "config_class": entry["config"], "targets": entry["targets"],
               "image_targets": TARGETS["image"][entry["targets"]], "text_targets": TARGETS["text"][entry["targets"]],
               "defaults": entry["defaults"], "identity_at_init": entry["identity"], "options": []}
        if installed:
            cls = peft_config_class(name)
            hints = typing.get_type_hints(cls)
            for f in user_fields(cls):
                default = f.default_factory() if f.default is dataclasses.MISSING else f.default
                default = entry["defaults"].get(f.name, default)
                if f.name in TARGETS["image"][entry["targets"]]:
                    default = TARGETS["image"][entry["targets"]][f.name]
                tp = hints.get(f.name, Any)
                choices = list(typing.get_args(tp)) if typing.get_origin(tp) is typing.Literal else None
                row["options"].append({"name": f.name, "type": _type_text(tp), "default": _jsonable(default),
                                       "help": " ".join(str(f.metadata.get("help", "")).split()),
                                       "choices": choices, "min": None, "max": None, "min_exclusive": False})
        out[name] = row
    return {"version": installed, "pinned": PEFT_VERSION, "types": out, "lm_only": dict(LM_ONLY),
            "target_sets": dict(TARGET_WHY)}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


__all__ = ["DATA_INITS", "INSTALL_HINT", "LM_ONLY", "PEFT_TYPES", "PEFT_VERSION", "PLUMBING", "TARGETS",
           "TARGET_WHY", "PeftMethodConfig", "describe_peft_types", "normalise_peft_type", "peft_config_class",
           "peft_installed_version", "user_fields"]
