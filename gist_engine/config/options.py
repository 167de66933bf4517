"""The option machinery: dataclass fields with help and ranges, validated parsing, YAML and `key=value` overrides."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# A decimal number in scientific or plain notation ("5e-5", "1E3", "-2.5e+1"): accepted by float options even when
# PyYAML (YAML 1.1) left it a string. Not "nan"/"inf" (refused by name below) nor "1_000".
NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
MAX_DEPTH = 32  # nesting a config may have (its own tree is 3 levels deep); deeper is refused before parsing


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key."""


class Options:
    """Base of option dataclasses whose class another key chooses (a tuner's `method_args`, chosen by `method`).

    A field annotated with such a class is given as a mapping and typed by the dataclass that owns it (in its
    `__post_init__`), since only the owner knows the concrete class. The object remembers the keys it was given:
    `to_dict` writes back those keys (and any changed since), so a stored config reads as it was written and keeps
    working when an override picks another method. It equals a mapping that parses to the same options
    (`LoRAConfig(rank=4) == {"rank": 4}`). Subclasses are declared `@dataclass(eq=False)` to keep this `__eq__`.
    """

    _given: frozenset[str] | None = None  # the keys `parse` was given; None for an object built directly

    def __eq__(self, other: object) -> bool:
        if isinstance(other, typing.Mapping):
            try:
                other = parse(type(self), other)
            except ConfigError:
                return False
        if type(other) is not type(self):
            return NotImplemented
        return _values(self) == _values(other)

    __hash__ = None  # mutable, like every config dataclass


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def option(
    default: Any,
    help: str,
    *,
    choices: typing.Iterable[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
) -> Any:
    """A dataclass field with help text and the constraints `parse` enforces.

    Args:
        default: The default value (a dict/list default is copied per instance).
        help: One sentence shown in the CLI, `list --json` and the app's forms.
        choices: Allowed values, if the option is an enumeration.
        min: Smallest allowed value (inclusive unless `min_exclusive`).
        max: Largest allowed value (inclusive).
        min_exclusive: Whether `min` itself is rejected.
    """
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "min": min, "max": max,
            "min_exclusive": min_exclusive}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _is_options(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Options)


def _type_name(tp: Any) -> str:
    if _is_options(tp):
        return "dict"  # written as a mapping; its owner chooses the class
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting only the lossless int -> float case."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if _is_options(tp):  # an object of the class, or a mapping its owner's __post_init__ types
        if isinstance(value, tp):
            return value
        if not isinstance(value, typing.Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, prefix=key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and NUMBER_TEXT.fullmatch(value.strip()):
            value = float(value)  # PyYAML reads 5e-5 (no dot) as a string; YAML 1.2 and users call it a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported option type {_type_name(tp)}")  # a programming error in a dataclass


def _check_range(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("min_exclusive") and value == lo)):
        bound = f"> {lo}" if meta.get("min_exclusive") else f">= {lo}"
        raise ConfigError(f"{key}: {value!r} is out of range (must be {bound})")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is out of range (must be <= {hi})")


def check_value(field: typing.Mapping[str, Any], value: Any, key: str | None = None) -> None:
    """Check one value against a `describe_fields` row's choices and range (what `parse` checks for that key), so a
    form can say why a value is refused before the whole config is parsed; None passes (optional fields).

    Raises:
        ConfigError: naming `key` (default the field's name), e.g. "train.epochs: 0 is out of range (must be >= 1)".
    """
    _check_range(value, field, key or field["name"])


def parse(cls: type[T], data: typing.Mapping[str, Any] | T | None, prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and bad values by name.

    Args:
        cls: A dataclass type whose fields were declared with `option`.
        data: A mapping (e.g. from YAML), an instance of `cls` (re-validated), or None for all defaults.
        prefix: Dotted key prefix used in error messages (e.g. "gist").

    Returns:
        A validated instance of `cls`.

    Raises:
        ConfigError: naming the first offending key.
    """
    if isinstance(data, cls):
        data = to_dict(data)
    if data is None:
        data = {}
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    from_mapping = getattr(cls, "from_mapping", None)  # options whose keys another library's class defines (peft)
    if from_mapping is not None:
        return from_mapping(data, prefix=prefix)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = f" in {prefix}" if prefix else ""
        raise ConfigError(
            f"unknown config key {'.'.join(filter(None, [prefix, str(unknown[0])]))!r}{where}; "
            f"valid keys: {', '.join(fields)}"
        )
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        value = _coerce(value, hints[name], key)
        _check_range(value, fields[name].metadata, key)
        values[name] = value
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    if isinstance(obj, Options):
        obj._given = frozenset(values)
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A config dataclass as a plain (YAML/JSON-ready) nested dict; `parse(type(obj), to_dict(obj)) == obj`.

    An `Options` object gives the keys it was given and those that differ from their defaults (see `Options`); one
    with its own flat form (`to_mapping`, e.g. `method: peft`'s) gives that.
    """
    to_mapping = getattr(obj, "to_mapping", None)
    if to_mapping is not None:
        return copy.deepcopy(to_mapping())
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(obj, Options) and f.name not in (obj._given or ()) and value == _default(f):
            continue
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    return out


def describe_fields(cls: type) -> list[dict[str, Any]]:
    """Name, type, default, help and constraints of every field of a config dataclass (for UIs and `list`); a
    section (a dataclass-typed field such as `train`) also lists its own keys under `fields`."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = _default(f)
        if dataclasses.is_dataclass(default):
            default = to_dict(default)
        meta = f.metadata
        row = {
            "name": f.name, "type": _type_name(hints[f.name]).replace("typing.", ""), "default": default,
            "help": meta.get("help", ""), "choices": list(meta["choices"]) if meta.get("choices") else None,
            "min": meta.get("min"), "max": meta.get("max"), "min_exclusive": bool(meta.get("min_exclusive")),
        }
        if dataclasses.is_dataclass(hints[f.name]):
            row["fields"] = describe_fields(hints[f.name])
        out.append(row)
    return out


def _depth(data: Any, limit: int = MAX_DEPTH) -> int:
    """How deep mappings and lists nest in `data` (a scalar is 0), without recursion."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            break
        todo.extend((child, level + 1) for child in children)
    return deepest


NESTING_HINT = "a config nests 3 levels (e.g. train: {lr: ...})"


def check_nesting(data: Any, source: str, limit: int = MAX_DEPTH, hint: str = NESTING_HINT) -> Any:
    """`data` itself when its mappings and lists nest at most `limit` levels (counted without recursion).

    Raises:
        ConfigError: naming `source`, the limit and `hint` (what nesting is expected).
    """
    if _depth(data, limit) > limit:
        raise ConfigError(f"{source} nests more than {limit} levels; {hint}")
    return data


def safe_load_json(text: str | bytes, source: str, limit: int = MAX_DEPTH, hint: str = NESTING_HINT) -> Any:
    """`json.loads` with one-line errors: malformed JSON (where and what) and nesting past `limit` levels (the
    decoder's own recursion caught, then `check_nesting`).

    Raises:
        ConfigError: naming `source` and the problem.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source} is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:  # the decoder recurses once per level
        raise ConfigError(f"{source} nests too deeply to read (more than {limit} levels); {hint}") from None
    return check_nesting(data, source, limit, hint)


def safe_load_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load` with one-line errors: malformed YAML (where and what) and nesting past `MAX_DEPTH`.

    Raises:
        ConfigError: naming `source` (a file name, or "override key"), the line and the problem.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(filter(None, [exc.context, exc.problem])) or "malformed"
        raise ConfigError(f"{source} is not valid YAML{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # PyYAML's composer recurses once per level
        raise ConfigError(f"{source} nests too deeply to read (more than {MAX_DEPTH} levels); a config nests "
                          "3 levels (e.g. train: {lr: ...})") from None
    return check_nesting(data, source)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with `yaml.safe_load`; a clear error for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        what = "is a directory; give a YAML file" if path.is_dir() else (exc.strerror or str(exc))
        raise ConfigError(f"cannot read config file {path}: {what}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}); give a YAML file") from None
    data = safe_load_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML scalars) to a copy of a config mapping.

    Args:
        data: The config mapping (not modified).
        overrides: Strings like "gist.length=2" or "method_args={rank: 4}".

    Returns:
        The new mapping. Key validity is checked later by `parse`.
    """
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. gist.length=2)")
        value = safe_load_yaml(raw, f"override {key}={raw!r}") if raw.strip() else None
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {'.'.join(parts[: i + 1])} is not a mapping")
            node = child
        node[parts[-1]] = value
    return out
