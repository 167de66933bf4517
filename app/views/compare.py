"""Compare: GIST minus plain per seed and on average (95% CI, p, a verdict), like-for-like curves, published rows."""

import charts
import pandas as pd
import readouts
import services
import state
import streamlit as st

mgr = state.manager()
st.title("Compare plain and GIST")
groups = {g["id"]: g for g in mgr.groups()}
everything = mgr.list()
runs = {r.id: r for r in everything[:500]}
counts = {g: readouts.seeds_in(r for r in everything if r.group_id == g) for g in groups}  # from the runs there now
wanted_group, wanted_runs = st.query_params.get("group"), st.query_params.get_all("runs")
mode = st.segmented_control("What to compare", ["Paired group", "Any runs"], key="compare.mode",
                            default="Any runs" if wanted_runs or not groups else "Paired group")


def group_label(g: str) -> str:
    c = counts[g]
    paired = readouts.plural(c["paired"], "seed") + " paired" + (f" of {c['seeds']}" if c["seeds"] != c["paired"]
                                                                  else "")
    return f"{groups[g]['name'] or g} · {paired} · {g}"


if mode == "Paired group" and groups:
    ids = list(groups)
    gid = st.selectbox("Group", ids, index=ids.index(wanted_group) if wanted_group in ids else 0,
                       format_func=group_label)
    st.query_params.update(group=gid)
    picked = [r.id for r in mgr.list(group_id=gid)]
else:
    gid = None
    picked = st.multiselect("Runs", list(runs), default=[r for r in wanted_runs if r in runs],
                            format_func=lambda i: state.run_label(runs[i]),
                            help="Runs with the same config and seed, GIST off and on, are paired.")
active = any(runs[i].status in state.ACTIVE for i in picked if i in runs)
with st.popover("Chart options", icon=":material/tune:"):
    loss_key = st.radio("Loss curve", ["ce_cls", "total"], key="compare.loss_key", format_func={
        "ce_cls": "Cross-entropy of the CLS head (the same quantity in both arms)",
        "total": "Training objective (GIST's total: CE + weighted Gist CE + weighted interaction)"}.get)
    smoothing = st.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="compare.smoothing",
                          help="Exponential moving average of the loss curves, as on TensorBoard")
    log = st.toggle("Log scale (loss)", key="compare.log")


def headline(results: dict, chosen: list) -> None:
    """The numbers and the verdict on the page: mean gain, its 95% CI, p, seeds, GIST's parameter cost."""
    d, extra = results.get("delta_acc_cls"), results.get("extra_params")
    epochs = min((r.config.get("train") or {}).get("epochs", 1) for r in chosen)
    v = readouts.verdict(d, epochs)
    k = st.columns(5)
    if d:
        k[0].metric("Mean accuracy gain (GIST − plain)", v["value"])
        k[1].metric("95% CI (points)", v["ci"].removeprefix("95% CI ") if d["ci_low"] is not None else "n/a",
                    help=v["ci"])
        k[2].metric("p-value", "n/a" if d["p_value"] is None else f"{d['p_value']:.3g}", help=v["p"])
        k[3].metric("Seeds paired", d["n"], help="Seeds with a finished plain and GIST run")
    done = sum(r.status not in state.ACTIVE for r in chosen)
    if done < len(chosen):
        k[3].progress(done / len(chosen), text=f"{done} of {len(chosen)} runs finished")
    if extra is not None:
        plain = next((r for r in chosen if not r.gist_enabled and r.trainable_params), None)
        share = f" (+{100 * extra / plain.trainable_params:.2f}% of the method's)" if plain else ""
        k[4].metric("Parameter cost of GIST", f"+{extra:,}", help=f"extra trainable parameters{share}")
    readouts.show_verdict(v)


def seeds_view(results: dict) -> None:
    """The per-seed table, its columns sized to fit."""
    names = {"seed": "seed", "plain_acc_cls": "plain", "gist_acc_cls": "GIST", "delta": "Δ",
             "gist_acc_gist": "Gist head", "gist_agreement": "agree", "plain_best_acc_cls": "plain best",
             "gist_best_acc_cls": "GIST best"}
    frame = pd.DataFrame(results["seeds"])
    frame["delta"] = frame["gist_acc_cls"] - frame["plain_acc_cls"]
    frame = frame[[c for c in names if c in frame]]
    pct = {c: 100 * frame[c].astype(float) for c in frame if c != "seed"}
    frame = frame.assign(**pct)
    column = {c: st.column_config.NumberColumn(label, format="%+.2f" if c == "delta" else "%.2f", width="small",
                                               help=f"{label}, % (test accuracy; agree = CLS/Gist agreement)")
              for c, label in names.items() if c != "seed"}
    st.dataframe(frame, hide_index=True, column_config={"seed": st.column_config.NumberColumn("seed", width="small"),
                                                        **column}, width="stretch")


@st.fragment(run_every=2.0 if active else None)
def results_view() -> None:
    """Refreshes while any compared run still trains; redraws the page once they have all finished."""
    if gid:
        results = mgr.group_results(gid)
        chosen = results["runs"]
    else:
        chosen = [mgr.get(i) for i in picked]
        results = services.pair_runs(chosen)
    if not chosen:
        st.info("Pick a paired group (Launch → 'plain vs GIST') or some runs.")
        return
    headline(results, chosen)
    if results.get("seeds") and results.get("delta_acc_cls"):
        chart, table = st.columns(2)
        chart.plotly_chart(charts.delta_figure(results), key="compare.delta", config=charts.MODEBAR)
        with table:
            seeds_view(results)
    named = len({r.name.rsplit("-seed", 1)[0].removesuffix("-gist").removesuffix("-plain") for r in chosen}) > 1
    labels = {r.id: readouts.short_label(r, name=named and not gid) for r in chosen}
    evals = {labels[r.id]: mgr.evaluations(r.id) for r in chosen}
    probed = any(len(charts.split_of(e, charts.PROBE)) for e in evals.values())
    split = charts.PROBE if probed else charts.TEST
    acc = {k: charts.split_of(e, split) for k, e in evals.items()}
    losses = {labels[r.id]: mgr.metrics(r.id, keys=[loss_key]) for r in chosen}
    c1, c2 = st.columns(2)
    title = ("Accuracy over training, CLS head (probe of held-out training images)" if probed
             else "Test accuracy, CLS head")
    c1.plotly_chart(charts.overlay_figure(acc, "acc_cls", title, 100, "%"), key="compare.acc", config=charts.MODEBAR)
    loss_title = "Cross-entropy of the CLS head (both arms)" if loss_key == "ce_cls" else \
        "Training objective (GIST: its total; plain: CE)"
    c2.plotly_chart(charts.overlay_figure(losses, loss_key, loss_title, y="loss", smoothing=smoothing, log=log),
                    key="compare.loss", config=charts.MODEBAR)
    c1.download_button("Accuracy data (CSV)", charts.curves_frame(acc, "acc_cls").to_csv(index=False),
                       file_name="accuracy.csv", mime="text/csv", key="compare.acc_csv", on_click="ignore",
                       icon=":material/download:")
    c2.download_button("Loss data (CSV)", charts.curves_frame(losses, loss_key).to_csv(index=False),
                       file_name=f"{loss_key}.csv", mime="text/csv", key="compare.loss_csv", on_click="ignore",
                       icon=":material/download:")
    if results.get("unpaired"):
        st.caption(f"Without a partner (shown in the curves only): {', '.join(results['unpaired'])}")
    if active and not any(r.status in state.ACTIVE for r in chosen):
        st.rerun()


results_view()
st.subheader("Reference: published VTAB-1k numbers")
published = services.load_published()
st.caption(f"**Published numbers, not runs of this app** — {published['source']}. {published['claim']}")
st.dataframe(pd.DataFrame(published["rows"], columns=list(published["columns"])).rename(columns=published["columns"]),
             hide_index=True)
