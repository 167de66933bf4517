"""Gallery: runs recorded by GIST Studio itself (machine, date, version, command), imported as read-only examples."""

import charts
import fmt
import pandas as pd
import services
import state
import streamlit as st
import study_views as sv

import gist_engine as ge

STUDIES = "views/studies.py"
FOLDER = services.gallery_dir()
DONE_KEY = "gallery.done"  # the message of the last import or removal, shown after the rerun


st.title("Gallery")
st.caption("Real runs recorded by this product, with the machine, date, versions and command that made them. "
           "Import one to see its curves, numbers and attention at once; examples are read-only, listed beside "
           "your own runs with names that start with “example ·”.")
mgr = state.store()  # imports write rows without torch; removing an example loads the engine (it deletes runs)
listed = state.refused(lambda: ge.list_gallery(FOLDER), f"The gallery in {FOLDER} cannot be read")  # too deep, ...
bundles = [b for b in listed or [] if b["recorded"]]
if not bundles:
    st.info(f"No recorded examples in {FOLDER}. Record them with `python -m gist_engine runs gallery record --all`.")
    st.stop()
if done := st.session_state.pop(DONE_KEY, None):
    st.success(done)
imported = ge.gallery_examples(mgr)
missing = [b for b in bundles if b["name"] not in imported]
if st.button(f"Import all ({len(missing)} not imported yet)", key="gallery.import_all", type="primary",
             icon=":material/download:", disabled=not missing) and (
        done := state.refused(lambda: ge.import_gallery(mgr, FOLDER), "Not imported")) is not None:  # checked whole
    names = [r["name"] for r in done if r["imported"]]
    st.session_state[DONE_KEY] = f"Imported {len(names)} examples: {', '.join(names)}"
    st.rerun()

for b in bundles:
    name, m, v = b["name"], b["machine"], b["versions"]
    with st.container(border=True):
        st.subheader(b["title"])
        st.write(b["description"])
        st.caption(f"Recorded {b['date'][:16].replace('T', ' ')} UTC on {m['cpu']} ({m['cores']} cores"
                   f"{', ' + m['gpu'] if m.get('gpu') else ''}) · "
                   f"gist_engine {v.get('gist_engine')}, torch {v.get('torch')}, timm {v.get('timm')} · "
                   f"{fmt.plural(len(b['runs']), 'run')} · {b['size_bytes'] / 1e6:.1f} MB")
        st.code(b["command"], language="bash")
        study = b.get("study") if b.get("kind") == "study" else None
        rows = fmt.gallery_rows(b, bool(study))  # a study: one row per cell; else one per run
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"gallery.table.{name}")
        if study and b.get("tuning"):  # a tuned study: each arm's choice, on validation data
            st.dataframe(sv.tuning_frame(b["tuning"]), hide_index=True, key=f"gallery.tuning.{name}")
        if study and any(r["n"] == 2 for r in b["results"]):
            st.caption(ge.FEW_SEEDS_NOTE)
        if study and (budget := charts.budget_frame(b.get("budget"))) is not None:  # the verdict after each epoch
            st.plotly_chart(charts.budget_figure(budget), key=f"gallery.budget.{name}", config=charts.MODEBAR)
        for g in (g for g in b["summary"]["groups"] if g.get("delta_acc_cls") and not study):
            st.markdown(f"**{fmt.gallery_delta(g['delta_acc_cls'])}**")
        left, right = st.columns(2)
        if name in imported:
            if left.button("Open", key=f"gallery.open.{name}", icon=":material/open_in_new:"):
                if study:  # a study: its matrix and curve on the Studies page
                    st.switch_page(STUDIES, query_params={"study": study["id"]})
                if b["groups"]:  # a paired group: Compare; one run: its live page (switch_page ends this script)
                    st.switch_page(state.COMPARE, query_params={"group": b["groups"][0]["id"]})
                state.open_run(b["runs"][0]["id"])
            if right.button("Remove from my runs", key=f"gallery.remove.{name}", icon=":material/delete:"):
                ge.remove_gallery_example(mgr, name)
                st.session_state[DONE_KEY] = f"Removed the example {name} from your runs"
                st.rerun()
        elif left.button("Import", key=f"gallery.import.{name}", icon=":material/download:") and state.refused(
                lambda p=b["path"]: ge.import_gallery_entry(mgr, p), "Not imported") is not None:
            runs = fmt.plural(len(b["runs"]), "run")
            st.session_state[DONE_KEY] = f"Imported {b['title']} ({runs}): open it below"
            st.rerun()
