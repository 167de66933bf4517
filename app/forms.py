"""Widgets that build a run config: a form per config section generated from the engine's field help, number boxes
that answer typed text, the peft form, the input size, a recipe, and the checks that stand before a launch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import fmt
import panels
import services
import streamlit as st

import gist_engine as ge


def value_problem(field: dict[str, Any], value: Any, path: str, label: str | None = None) -> str | None:
    """Why a form value is refused, in words ('Epochs — train.epochs: 0 is out of range (must be >= 1)'), from the
    field's own choices and range (`ge.check_value`: the check the config parser makes), or None when it is fine."""
    label = label or fmt.field_label(field["name"])
    if value is None and "None" not in field["type"]:
        return f"{label} — {path}: needs a value"
    try:
        ge.check_value(field, value, path)
    except ge.ConfigError as exc:
        return f"{label} — {exc}"
    return None


def show_problem(problem: str | None, problems: list[str] | None) -> None:
    """Say why a value is refused right under its widget (visible text, not a tooltip) and collect the reason."""
    if problem is None:
        return
    st.error(problem, icon=":material/error:")
    if problems is not None:
        problems.append(problem)


def field_widget(field: dict[str, Any], key: str, value: Any, path: str | None = None, scope: str = "",
                 problems: list[str] | None = None) -> Any:
    """One widget for one config field (a `describe_fields` dict), keeping its value in the session.

    choices -> selectbox, bool -> toggle, int/float -> number_input (empty allowed when optional), str -> text_input
    (empty = None when optional). The field's help text becomes the widget's help; `scope` picks its label
    (`fmt.LABELS`' "scope.name"). Numbers take any value: one outside the field's range is shown as typed with the
    reason under it and added to `problems` (the browser keeps no hidden last valid value); `path` names the key
    there.
    """
    kind, label, help_ = field["type"], fmt.field_label(field["name"], scope), field["help"] or None
    path = path or field["name"]
    optional = "None" in kind
    base = kind.replace(" | None", "").replace("None | ", "")
    common = {"key": key, "help": help_, "persist_state": "session"}
    if field["choices"]:
        choices = list(field["choices"])
        return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0, **common)
    if base == "bool":
        return st.toggle(label, value=bool(value), **common)
    if base in ("int", "float"):
        number, problem = number_box(label, value, base == "int", path, optional=optional,
                                     placeholder=fmt.placeholder(field["help"]) if optional else None, **common)
        show_problem(problem or value_problem(field, number, path, label), problems)
        return number
    text = st.text_input(label, value="" if value is None else str(value), **common)
    return None if optional and not text.strip() else text


def number_box(label: str, value: int | float | None, is_int: bool, path: str, key: str, optional: bool = False,
               **kwargs: Any) -> tuple[int | float | None, str | None]:
    """A number typed as text, so that anything typed reaches the app and is answered: a browser's number box drops
    letters and silently restores the last value ('abc' in Image size went back to a number unseen).

    Returns (the number, None), or (`value`, the reason) when the text is no number: the caller shows the reason
    under the box and blocks the launch, while the page keeps drawing with the last valid value; the text stays as
    typed. Empty text is None when `optional`, else a reason.
    """
    shown = "" if value is None else str(int(value)) if is_int else f"{float(value):g}"
    text = st.text_input(label, value=shown, key=key, **kwargs)
    kind = "a whole number" if is_int else "a number"
    try:
        number = fmt.parse_number(text, is_int)
    except ValueError:
        example = shown or ("224" if is_int else "0.001")
        return value, f"{label} — {path}: {text.strip()!r} is not {kind}; type {kind}, e.g. {example}"
    if number is None and not optional:
        return value, f"{label} — {path}: needs a value ({kind})"
    return number, None


def config_form(fields: Iterable[dict[str, Any]], values: dict[str, Any], key: str, skip: Iterable[str] = (),
                columns: int = 2, path: str = "", scope: str | None = None,
                problems: list[str] | None = None) -> dict[str, Any]:
    """Widgets for every field (except `skip`) laid out in `columns`; returns {name: value}.

    `path` is the config section ("train", "method_args", "" for top-level keys) named in the reasons a value is
    refused (added to `problems`); `scope` picks the labels (default `path`; a tuner's name for its options).
    """
    shown = [f for f in fields if f["name"] not in set(skip)]
    cols = st.columns(columns)
    out = {}
    for i, f in enumerate(shown):
        with cols[i % columns]:
            out[f["name"]] = field_widget(f, f"{key}.{f['name']}", values.get(f["name"], f["default"]),
                                          path=f"{path}.{f['name']}" if path else f["name"],
                                          scope=path if scope is None else scope, problems=problems)
    return out


FORM_TYPES = ("int", "float", "bool", "str")  # peft option types a generated form edits; lists/dicts stay in YAML


def method_form(tuner: dict[str, Any], method: str, args: dict[str, Any], key: Callable[[str], str],
                problems: list[str]) -> dict[str, Any]:
    """The chosen method's `method_args` form: for `peft`, a peft type and a form generated from its peft config
    fields (`peft_form`); else the tuner's own options (`config_form`)."""
    if method == "peft":
        default = next(f["default"] for f in tuner["options"] if f["name"] == "peft_type")  # the engine's: lora
        return peft_form(tuner["peft_types"], args, key("args.peft"), problems=problems, default_type=default)
    return config_form(tuner["options"], args, key(f"args.{method}"), path="method_args", scope=method,
                       problems=problems)


def peft_form(info: dict[str, Any], values: dict[str, Any], key: str, problems: list[str] | None = None, *,
              default_type: str) -> dict[str, Any]:
    """`method: peft`: a peft type picker and a form generated from that type's config fields (`list --json`'s
    `tuners.peft.peft_types`: help, types, defaults read from peft's dataclasses); returns the flat method_args
    (`peft_type` and the options that differ from their defaults; keys set in YAML, e.g. lists, are kept).
    `default_type` is the engine's default `method_args.peft_type`, shown while `values` name none."""
    types = info["types"]
    names = list(types)
    current = str(values.get("peft_type", default_type)).lower()
    peft_type = st.selectbox("Peft type", names, index=names.index(current) if current in names else 0,
                             key=f"{key}.peft_type", persist_state="session",
                             help="Hugging Face peft's tuner type (peft " + info["pinned"] + "); GIST adds its token "
                                  "on top. LM-only types (prompt/prefix tuning, ...) are not offered.")
    st.caption(types[peft_type]["help"])
    if not info["version"]:
        st.warning("peft is not installed here: pip install 'gist-studio[peft]'", icon=":material/warning:")
        return {"peft_type": peft_type}
    kept = {k: v for k, v in values.items() if k != "peft_type"} if peft_type == current else {}
    fields = types[peft_type]["options"]
    editable = [f for f in fields if f["choices"] or f["type"] in FORM_TYPES]
    form = config_form(editable, kept, f"{key}.{peft_type}", path="method_args", scope=f"peft.{peft_type}",
                       problems=problems)
    defaults = {f["name"]: f["default"] for f in editable}
    changed = {k: v for k, v in form.items() if v != defaults[k]}
    in_yaml = [f["name"] for f in fields if f not in editable]
    if in_yaml:
        st.caption(f"Set in the YAML config (lists, mappings): {', '.join(in_yaml)}; targets by default: "
                   f"{types[peft_type]['image_targets']['target_modules']}.")
    return {"peft_type": peft_type, **{k: v for k, v in kept.items() if k not in form}, **changed}


def input_size(cfg: dict[str, Any], backbone: dict[str, Any], size_field: dict[str, Any],
               length_field: dict[str, Any], key: Any, problems: list[str] | None = None) -> str:
    """The input size of a backbone (edits `cfg`): image size in px for a ViT, `data.max_length` for a text
    encoder; returns the backbone's modality ("image" or "text"). `key(name)` makes widget keys; a value out of
    the field's range (or an image smaller than one patch) is shown with its reason and added to `problems`."""
    if backbone.get("modality", "image") == "text":
        cfg["image_size"] = 0  # ignored by text models
        length = cfg["data"]["max_length"] = st.number_input(
            "Max length (tokens)", value=int(cfg["data"].get("max_length") or length_field["default"]), step=16,
            help=length_field["help"], key=key("data.max_length"))
        show_problem(value_problem(length_field, length, "data.max_length", "Max length (tokens)"), problems)
        return "text"
    cfg["data"].pop("max_length", None)
    patch = backbone["patch_size"]
    size = cfg.get("image_size") or backbone["default_size"]  # 0 = the backbone's default size: shown as such
    size, problem = number_box("Image size (px)", max(patch, size // patch * patch), True, "image_size",
                               key=key(f"size.{patch}"),
                               help=f"{size_field['help']} A multiple of the patch size, {patch}.")
    cfg["image_size"] = size
    problem = problem or value_problem(size_field, size, "image_size", "Image size (px)")
    if problem is None and size is not None and size < patch:
        problem = f"Image size (px) — image_size: {size} is smaller than one patch ({patch} px)"
    show_problem(problem, problems)
    return "image"


def launch_checks(cfg: dict[str, Any], key: Any, problems: list[str], installed: bool | None = True
                  ) -> dict[str, Any] | None:
    """What stands before a launch, after the forms have collected their refused values in `problems`: the whole
    config parsed, the data sizes checked against the dataset (unless it is not `installed` yet: a run downloads
    it), then the cost panel. Returns the cost panel's info, or None (every reason listed) while anything blocks."""
    if not problems:
        try:
            ge.load_run_config(cfg)
        except ge.ConfigError as exc:
            show_problem(f"Fix this option first: {exc}", problems)
    if not problems and installed is not False:
        size_check(cfg, key, problems)
    info = None if problems else panels.cost_panel(cfg)
    if problems:
        st.warning(f"Launch is blocked until {'this value is' if len(problems) == 1 else 'these values are'} "
                   "fixed: " + "; ".join(problems), icon=":material/block:")
    return info


def seeds_input(where: Any, most: int) -> tuple[Any, bool]:
    """The number of seeds of a paired comparison (any value can be typed; one outside 1..`most` is said under the
    launch buttons) and whether it is within range."""
    n = where.number_input("Seeds", value=3, step=1, key="launch.seeds",
                           help=f"Runs per arm of the paired comparison (plain and GIST share each seed), 1 to {most}.")
    ok = n is not None and 1 <= n <= most
    if not ok:
        st.error(f"Seeds — {n} is out of range (must be 1 to {most})", icon=":material/error:")
    return n, ok


def size_check(cfg: dict[str, Any], key: Any, problems: list[str]) -> None:
    """Check the data sizes against what the chosen dataset holds per split (`ge.split_sizes`), before a run: each
    size too large is said (and added to `problems`) with a button that sets the sizes to what is available;
    otherwise one line says what is available. `key(name)` makes the launch page's widget keys."""
    data = cfg["data"]
    try:
        sizes = services.split_sizes(data["dataset"], int(data.get("val_size") or 0), int(data.get("seed") or 0))
    except (ge.DatasetError, OSError) as exc:
        show_problem(f"Dataset — {exc}", problems)
        return
    unit = "documents" if services.dataset_modality(data["dataset"]) == "text" else "images"
    fits, said = {}, []
    for name, have, what in (("train_size", sizes["train"], "the train split"),
                             ("test_size", sizes["test"], "the test split"),
                             ("few_shot", sizes["min_per_class"], "its smallest class in the train split")):
        want = data.get(name)
        if want is not None and want > have:
            fits[name] = have
            said.append(f"{fmt.field_label(name, 'data')} — data.{name} is {want:,} but {what} holds {have:,} {unit}")
    available = (f"{sizes['train']:,} training and {sizes['test']:,} test {unit}"
                 + (f" ({sizes['val']:,} held out for validation)" if sizes["val"] else ""))
    if not fits:
        st.caption(f"Available: {available}; {sizes['split']}.")
        return
    for line in said:
        show_problem(line, problems)

    def fit() -> None:
        for name, n in fits.items():
            data[name] = n
            st.session_state[key(f"data.{name}")] = str(n)  # the number box holds text

    new = ", ".join(f"{fmt.field_label(n, 'data')} {v:,}" for n, v in fits.items())
    st.button(f"Fit the sizes to the dataset ({new})",
              on_click=fit, icon=":material/fit_screen:", key=key("fit_sizes"),
              help=f"Sets the sizes to what the dataset holds: {available}.")


def recipe_picker(cfg: dict[str, Any], key: Any, apply: Any) -> None:
    """A recipe select box (none by default): picking one fills the form with its values and records `recipe` in the
    config; `apply(config)` replaces the draft and resets the widgets (state.apply_preset). Edits made afterwards win
    over the recipe (load_run_config merges it under the config's own keys)."""
    names = [None, *ge.RECIPES]
    current = cfg.get("recipe") if cfg.get("recipe") in names else None
    picked = st.selectbox("Recipe", names, index=names.index(current), key=key("recipe"),
                          format_func=lambda n: "none (the values below)" if n is None else n,
                          help=services.recipe_help())
    if picked == current:
        return
    if picked is None:
        cfg["recipe"] = None
        return
    try:  # every key written out, as the form shows them; the dataset stays yours
        apply(ge.to_dict(ge.load_run_config({"recipe": picked, "data": cfg["data"]})))
    except ge.ConfigError as exc:
        st.error(f"Recipe {picked} does not apply: {exc}")
        return
    st.rerun()


def advanced_options(cfg: dict[str, Any], sections: dict[str, list[dict[str, Any]]], key: Any,
                     problems: list[str] | None = None) -> None:
    """The run name and the data, training and backbone forms (edits `cfg` in place); `key(name)` makes keys;
    refused values go to `problems`. An empty name shows the name a run gets then (`fmt.auto_name`)."""
    cfg["name"] = st.text_input("Run name", value=cfg.get("name") or "", key=key("name"),
                                placeholder=fmt.auto_name(cfg),
                                help="A label in the run list; empty = the preset's name while the form still "
                                     "equals that preset, else method · dataset · backbone.") or None
    st.markdown("**Data**")
    cfg["data"].update(config_form(sections["data"], cfg["data"], key("data"), columns=3, path="data",
                                   skip=["dataset", "max_length"], problems=problems))  # max_length: text only
    st.markdown("**Training**")
    cfg["train"] = config_form(sections["train"], cfg["train"], key("train"), columns=3, path="train",
                               problems=problems)
    st.markdown("**Backbone**")
    cfg.update(config_form(sections["model"], cfg, key("model"), columns=3, problems=problems,
                           skip=["backbone", "image_size", "method", "num_classes"]))
