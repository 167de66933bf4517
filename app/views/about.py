"""What is GIST? The token, the two heads and the BKLD, drawn from the live model's real token sequence."""

import charts
import pandas as pd
import services
import state
import streamlit as st

import gist_engine as ge

st.title("What is GIST?")
cfg = state.draft()
info = services.describe_config(cfg)
st.markdown(f"""
A **Vision Transformer** cuts an image into patches and reads them as a sequence of tokens. A special **CLS token**
collects what the network knows about the whole image; a small classifier head reads it. **Parameter-efficient
fine-tuning (PEFT)** keeps the big pretrained network frozen and trains only a few new parameters (here:
`{cfg['method']}`, {info['plain_trainable_params']:,} of {info['total_params']:,} parameters).

**GIST** (Ruan et al., ACM MM 2024) adds two things:
1. a learnable **Gist token** placed right after CLS ({info['gist_params']:,} parameters: one vector of
   {info['embed_dim']} numbers). It has no position, sees every patch, and gathers *task-specific* knowledge;
2. **knowledge interaction**: the same head reads the CLS token and the Gist token, and the loss pulls their two
   predictions together with a **bidirectional KL divergence (BKLD)** — each learns from the other.
""")
diagram = charts.token_diagram(info["sequence_layout"], info["num_layers"], cfg["method"])
if any(kind == "Gist" for kind, _ in info["sequence_layout"]):  # the CLS <-> Gist arrow is the BKLD: say so on it
    diagram.add_annotation(x=sum(diagram.layout.xaxis.range) / 2, y=4.13, showarrow=False,
                           text="<b>BKLD</b> (bidirectional KL)", font={"color": "#555"})
st.plotly_chart(diagram, key="about.diagram")
size = (f"up to {info['max_length']} tokens" if info.get("modality") == "text" else f"{info['image_size']} px")
st.caption(f"The real sequence of the model on the Launch page ({info['backbone']} at {size}): "
           + " + ".join(f"{n} {k}" for k, n in info["sequence_layout"]) + f" = {info['seq_len']} tokens.")
defaults = ge.GistConfig()  # the engine's defaults (the paper's), never a copy here
st.latex(rf"L = \mathrm{{CE}}(S_{{cls}}, y) + {defaults.ce_weight:g}\,\mathrm{{CE}}(S_{{gist}}, y) + "
         rf"{defaults.loss_weight:g}\,[\mathrm{{KL}}(p\,\|\,q) + \mathrm{{KL}}(q\,\|\,p)],\quad "
         rf"p = \mathrm{{softmax}}(S_{{cls}}/{defaults.temperature:g}),\ q = \mathrm{{softmax}}(S_{{gist}}/"
         rf"{defaults.temperature:g})")
st.markdown("""
At test time only the CLS prediction is used; the Gist token stays in the sequence. On the **Live run** page you can
watch each of these terms while a run trains; on **Compare**, whether GIST helped over several seeds; on
**Attention**, where the CLS and Gist tokens look in the image.
""")
st.subheader("What the paper reports")
paper = services.load_published()["gist_authors"]
st.caption(f"**The GIST authors' numbers, not runs of this app** — {paper['source']}.")
st.dataframe(pd.DataFrame(paper["rows"], columns=list(paper["columns"])).rename(columns=paper["columns"]),
             hide_index=True, key="about.paper")
cols = st.columns(3)
cols[0].page_link(state.LAUNCH, label="Try it: launch a run", icon=":material/rocket_launch:")
cols[1].page_link(state.ATTENTION, label="See the attention maps", icon=":material/visibility:")
