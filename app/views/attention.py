"""Attention: CLS and Gist maps over an image (or the tokens of a text) per layer and head, rollout, snapshots, IG."""

import charts
import fmt
import panels
import services
import state
import streamlit as st

import gist_engine as ge

st.title("Where do CLS and Gist look?")
mgr = state.manager()
runs = {r.id: r for r in mgr.list(limit=200) if r.status in (ge.RunStatus.COMPLETED, ge.RunStatus.STOPPED)}
options, wanted = [*runs, "untrained"], st.query_params.get("run")  # opens on the newest trained run, not at random
state.missing_notice(mgr, wanted, options, f"Showing the {'newest trained' if runs else 'untrained'} model instead.")
choice = st.selectbox("Model", options, index=options.index(wanted) if wanted in options else 0,
                      format_func=lambda i: "Untrained backbone (the Launch page's settings)" if i == "untrained"
                      else fmt.run_label(runs[i]))
snap = None if choice == "untrained" else state.shown_run(mgr, choice)  # stops here if deleted since the list
source, cfg = (state.draft(), state.draft()) if snap is None else (snap.run_dir, snap.config_dict)
try:
    modality = services.model_modality(source)
except (FileNotFoundError, ValueError, ge.DatasetError, ge.CheckpointError, ge.BackboneError) as exc:
    st.error(str(exc))
    st.stop()
if modality == "text":
    panels.text_attention(source, cfg, key=f"attn.text.{choice}")
    st.stop()
names = (services.model_for_run(snap.run_dir).class_names if snap else None) or \
    services.class_names(cfg["data"]["dataset"])  # the heads' predictions and the images by class name
steps = ge.list_snapshots(snap.run_dir) if snap else []
kinds = (["Probe set over training"] if steps else []) + ["Dataset sample", "Upload an image"]
kind = st.segmented_control("Image", kinds, default=kinds[0], key=f"attn.kind.{choice}")
try:
    if kind == "Probe set over training":
        step = st.select_slider("Training step", steps, value=steps[-1], help="Snapshots recorded while training")
        maps = ge.load_snapshot(snap.run_dir, step)
        index = st.radio("Probe image", range(len(maps.images)), horizontal=True,
                         format_func=lambda i: f"#{i} ({fmt.class_label(int(maps.labels[i]), names)})"
                         if maps.labels is not None else f"#{i}")
    elif kind == "Upload an image":
        upload = st.file_uploader("An image", type=["png", "jpg", "jpeg", "bmp", "webp"])
        if upload is None:
            st.stop()
        maps, index = services.attention_for(source, upload.getvalue()), 0  # decoded by the engine, as predict
    else:
        sample = ge.dataset_samples(cfg["data"]["dataset"], n=8, size=cfg.get("image_size") or 224)
        index = st.radio("Test image", range(len(sample["images"])), horizontal=True,
                         format_func=lambda i: f"#{i} ({sample['class_names'][sample['labels'][i]]})")
        maps, index = services.attention_for(source, sample["images"][index]), index
except (FileNotFoundError, ValueError, ge.DatasetError, ge.CheckpointError) as exc:
    st.error(str(exc))
    st.stop()

c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
layer = c1.slider("Layer", 0, maps.num_layers - 1, maps.num_layers - 1)
head = c2.selectbox("Head", [None, *range(maps.num_heads)], format_func=lambda h: "mean of heads" if h is None
                    else f"head {h}")
rollout = c3.toggle("Rollout", help="Attention rollout (Abnar & Zuidema, 2020) through layers 0..layer")
panels.map_pair(maps, index, layer, head, rollout, names)
grids = {}
for name, label in (("cls", "CLS"), ("gist", "Gist")):
    per_head = getattr(maps, f"{name}_maps")
    if per_head is not None:
        grids[label] = (getattr(maps, f"{name}_rollout")[index, layer] if rollout else
                        per_head[index, layer].mean(axis=0) if head is None else per_head[index, layer, head])
what = f"rollout through layer {layer}" if rollout else f"layer {layer}, " + (
    "mean of heads" if head is None else f"head {head}")
st.plotly_chart(charts.attention_grid_figure(grids, f"Attention weights on the patch grid, {what} (one colour scale)"),
                key="attn.grid", config=charts.MODEBAR)
if maps.has_gist:
    st.plotly_chart(charts.similarity_figure(maps.summary(index), maps.step), key="attn.sim")
st.subheader("Attribution: CLS head vs Gist head")
if st.button("Compute Integrated Gradients (captum)", icon=":material/bolt:"):
    with st.spinner("Integrating gradients ..."):
        attr, resized = services.attributions_for(source, maps.images[index])
    panels.attribution_pair(attr, resized)
    if kind == "Probe set over training":
        st.caption("Attributions use the run's final checkpoint, not the snapshot's step.")
