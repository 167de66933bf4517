"""Launch: backbone, dataset, PEFT method and GIST options; their cost and time; one run or a paired comparison."""

import forms
import panels
import run_actions
import services
import state
import streamlit as st

MAX_SEEDS = 20  # runs per arm the page offers for a paired comparison
st.title("Launch a run")
st.caption("GIST adds one learnable **Gist token** and a **bidirectional KL** between what the CLS token and the "
           "Gist token predict, to any parameter-efficient fine-tuning (PEFT) method.")
st.page_link(state.ABOUT, label="New to GIST? The one-minute explainer", icon=":material/school:")
if not state.has_runs():  # a new user: a recorded example at once, the engine (torch) loading after it is drawn
    if not panels.first_example(services.gallery_dir()):
        st.page_link(panels.GALLERY_PAGE, label="No runs yet? Import recorded examples", icon=":material/collections:")
    panels.load_engine_after_first_paint()
cat = services.catalogue()  # the forms' choices: loads torch & co the first time (behind a spinner)
sections, cfg = cat["sections"], state.draft()
model_fields = {f["name"]: f for f in sections["model"]}
data_fields = {f["name"]: f for f in sections["data"]}
problems: list[str] = []  # every refused value, said under its widget; any one blocks Launch
choices = services.load_presets()
preset = st.pills("Start from", list(choices), key="preset", label_visibility="collapsed")
if preset and st.session_state.get("preset_applied") != preset:
    st.session_state["preset_applied"] = preset
    state.apply_preset(choices[preset])
    st.rerun()
forms.recipe_picker(cfg, state.launch_key, state.apply_preset)
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Backbone and data")
    backbones = {**cat["image_backbones"], **cat["text_backbones"], **services.hub_backbone(cfg["backbone"])}
    names = list(backbones)
    cfg["backbone"] = st.selectbox("Backbone", names, index=names.index(cfg["backbone"]) if cfg["backbone"] in names
                                   else 0, format_func=lambda n: f"{backbones[n]['title']} ({n})",
                                   help=f"{model_fields['backbone']['help']} Text backbones (BERT family) train on "
                                        "text datasets.",
                                   key=state.launch_key("backbone"), persist_state="session")
    modality = forms.input_size(cfg, backbones[cfg["backbone"]], model_fields["image_size"],
                                  data_fields["max_length"], state.launch_key, problems)
    datasets = {d["dataset"]: d for d in services.list_datasets(services.data_root(), modality=modality)}
    fallback = d if (d := data_fields["dataset"]["default"]) in datasets else next(iter(datasets))  # the engine's
    current = cfg["data"]["dataset"] if cfg["data"]["dataset"] in datasets else fallback
    cfg["data"]["dataset"] = st.selectbox("Dataset", list(datasets), index=list(datasets).index(current),
                                          format_func=lambda d: datasets[d]["title"],
                                          key=state.launch_key(f"dataset.{modality}"),
                                          help=f"Registered {modality} datasets"
                                          + (" and your uploads (Datasets page)." if modality == "image" else "."))
    panels.dataset_card(datasets[cfg["data"]["dataset"]])
with right:
    st.subheader("PEFT method")
    tuners = list(cat["tuners"])
    method = st.selectbox("Method", tuners, index=tuners.index(cfg["method"]), key=state.launch_key("method"),
                          help=model_fields["method"]["help"], persist_state="session")
    if method != cfg["method"]:
        cfg["method"], cfg["method_args"] = method, {}
    st.caption(cat["tuners"][method]["help"])
    cfg["method_args"] = forms.method_form(cat["tuners"][method], method, cfg["method_args"], state.launch_key,
                                           problems)
    st.subheader("GIST")
    cfg["gist"] = forms.config_form(sections["gist"], cfg["gist"], state.launch_key("gist"), columns=2,
                                    path="gist", problems=problems)
with st.expander("Data, training and backbone options"):
    forms.advanced_options(cfg, sections, state.launch_key, problems)

st.subheader("Before you launch")
info = forms.launch_checks(cfg, state.launch_key, problems, datasets[cfg["data"]["dataset"]].get("installed"))
name = state.run_name(cfg)
one, pair, seeds = st.columns([1, 1.3, 0.8], vertical_alignment="bottom")
n_seeds, seeds_ok = forms.seeds_input(seeds, MAX_SEEDS)
if one.button("Launch run", type="primary", icon=":material/play_arrow:", disabled=info is None):
    state.launch(cfg, name)
if run_actions.pair_button(pair, cfg, int(n_seeds) if seeds_ok else 0, info is not None):  # its runs and time
    state.launch(cfg, name, int(n_seeds))
st.caption(f"The run is named **{name}**" + ("" if cfg.get("name") else " (type your own under *Run name*)") + ".")
with st.expander("Copy as CLI"):
    panels.copy_as_cli({**cfg, "name": name}, key="launch.cli")
