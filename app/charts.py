"""Plotly figures of the app: loss terms, accuracies, paired deltas, per-layer similarity, the token diagram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

LOSS_LABELS = {"ce_cls": "CE (CLS head)", "ce_gist": "CE (Gist head)", "kl_cls_gist": "KL(cls || gist)",
               "kl_gist_cls": "KL(gist || cls)", "total": "total loss"}
ACC_LABELS = {"acc_cls": "accuracy, CLS head", "acc_gist": "accuracy, Gist head", "agreement": "CLS/Gist agreement"}
COLOURS = {"ce_cls": "#1f77b4", "ce_gist": "#ff7f0e", "kl_cls_gist": "#2ca02c", "kl_gist_cls": "#9467bd",
           "total": "#222222", "acc_cls": "#1f77b4", "acc_gist": "#ff7f0e", "agreement": "#8c8c8c",
           "CLS": "#d62f6a", "Gist": "#f2b705", "registers": "#8c6bb1", "prompts": "#41ab5d", "patches": "#9ecae1",
           "tokens": "#9ecae1"}


def _layout(fig: go.Figure, title: str, y: str, height: int = 320, x: str = "step") -> go.Figure:
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.25}, xaxis_title=x, yaxis_title=y)
    return fig


def loss_figure(metrics: pd.DataFrame) -> go.Figure:
    """The BKLD decomposition per step: CE of both heads and the total (left axis), both KL directions (right)."""
    fig = go.Figure()
    for key, label in LOSS_LABELS.items():
        if key in metrics and metrics[key].notna().any():
            kl = key.startswith("kl_")
            fig.add_scatter(x=metrics["step"], y=metrics[key], name=label, mode="lines", yaxis="y2" if kl else "y",
                            line={"color": COLOURS[key], "width": 3 if key == "total" else 1.8,
                                  "dash": "dot" if kl else "solid"})
    fig.update_layout(yaxis2={"title": "KL (dotted)", "overlaying": "y", "side": "right", "rangemode": "tozero",
                              "showgrid": False})
    return _layout(fig, "Loss terms (BKLD decomposition)", "cross-entropy, total")


def accuracy_figure(evals: pd.DataFrame) -> go.Figure:
    """Test accuracy of the CLS and Gist heads and their agreement at each evaluation (percent)."""
    fig = go.Figure()
    for key, label in ACC_LABELS.items():
        if key in evals and evals[key].notna().any():
            fig.add_scatter(x=evals["step"], y=100 * evals[key], name=label, mode="lines+markers",
                            line={"color": COLOURS[key], "dash": "dot" if key == "agreement" else "solid"})
    return _layout(fig, "Test accuracy and agreement", "%")


def live_figures(drawn: dict[str, tuple], run_id: str, metrics: pd.DataFrame,
                 evals: pd.DataFrame) -> tuple[go.Figure, go.Figure | None]:
    """The live page's loss and accuracy figures (None before the first evaluation), rebuilt only when points were
    added since `drawn[run_id]` = (metric rows, evaluations, loss figure, accuracy figure) was stored."""
    if run_id not in drawn or drawn[run_id][:2] != (len(metrics), len(evals)):
        drawn[run_id] = (len(metrics), len(evals), loss_figure(metrics), accuracy_figure(evals) if len(evals) else None)
    return drawn[run_id][2], drawn[run_id][3]


def delta_figure(results: Mapping[str, Any], key: str = "acc_cls") -> go.Figure:
    """Per-seed GIST-minus-plain accuracy deltas (points) and their mean with the 95% CI (error bar)."""
    fig = go.Figure()
    rows = [r for r in results.get("seeds", []) if r.get(f"plain_{key}") is not None
            and r.get(f"gist_{key}") is not None]
    fig.add_bar(x=[f"seed {r['seed']}" for r in rows], y=[100 * (r[f"gist_{key}"] - r[f"plain_{key}"]) for r in rows],
                name="per seed", marker_color="#9ecae1")
    d = results.get(f"delta_{key}")
    if d:
        err = None if d["ci_high"] is None else {"type": "data", "array": [100 * (d["ci_high"] - d["mean"])],
                                                 "arrayminus": [100 * (d["mean"] - d["ci_low"])]}
        fig.add_scatter(x=["mean (95% CI)"], y=[100 * d["mean"]], error_y=err, mode="markers", name="mean",
                        marker={"size": 14, "color": COLOURS["CLS"]})
    fig.add_hline(y=0, line_color="#888", line_width=1)
    return _layout(fig, "GIST minus plain, accuracy points", "Δ accuracy (points)", x="")


def overlay_figure(curves: Mapping[str, pd.DataFrame], column: str, title: str, scale: float = 1.0,
                   y: str = "") -> go.Figure:
    """One line per run (label -> frame with `step` and `column`)."""
    fig = go.Figure()
    for label, frame in curves.items():
        if column in frame and len(frame):
            fig.add_scatter(x=frame["step"], y=scale * frame[column], name=label,
                            mode="lines+markers" if len(frame) < 20 else "lines",
                            line={"dash": "solid" if "GIST" in label else "dot"})
    return _layout(fig, title, y or column, height=340)


def similarity_figure(summary: pd.DataFrame, step: int | None = None) -> go.Figure:
    """CLS<->Gist similarity per layer: cosine of the two maps and of their rollouts, plus map entropies."""
    fig = go.Figure()
    for key, label in (("cls_gist_cosine", "cosine of CLS and Gist maps"), ("rollout_cosine", "cosine of rollouts")):
        if summary[key].notna().any():
            fig.add_scatter(x=summary["layer"], y=summary[key], name=label, mode="lines+markers")
    title = "CLS ↔ Gist similarity per layer" + ("" if step is None else f" (step {step})")
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(dtick=1)
    return _layout(fig, title, "cosine", height=300, x="layer")


def _arrow(fig: go.Figure, x0: float, y0: float, x1: float, y1: float, colour: str, both: bool = False) -> None:
    fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="", showarrow=True,
                       arrowhead=2, arrowwidth=1.6, arrowcolor=colour, startarrowhead=2,
                       arrowside="end+start" if both else "end")


def _box(fig: go.Figure, x0: float, x1: float, y0: float, y1: float, fill: str, text: str = "",
         font_colour: str = "black") -> None:
    fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, fillcolor=fill, line={"color": "#444"})
    if text:
        fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=text, showarrow=False,
                           font={"color": font_colour, "size": 12})


def token_diagram(layout: Sequence[Sequence[Any]], num_layers: int, method: str) -> go.Figure:
    """The model's real token sequence as boxes, the blocks they pass through, and the two heads with the BKLD."""
    fig = go.Figure()
    x, first = 0.0, {}
    for name, count in layout:  # e.g. (("CLS", 1), ("Gist", 1), ("patches", 64))
        shown = min(int(count), 6)
        first[name] = x
        for i in range(shown):
            label = name if name in ("CLS", "Gist", "registers", "prompts") and i == 0 else ""
            _box(fig, x, x + 1, 0, 1, COLOURS.get(name, "#ccc"), label, "white" if name == "CLS" else "black")
            _arrow(fig, x + 0.5, 1.02, x + 0.5, 1.55, "#999")
            x += 1.1
        if count > shown:
            fig.add_annotation(x=x - 0.6, y=-0.35, text=f"… {count} {name} in all", showarrow=False)
        x += 0.4
    width = x - 0.4
    _box(fig, 0, width, 1.6, 2.9, "#eef3fb",
         f"{num_layers} frozen transformer blocks + {method} (trainable); every token attends to every token")
    heads = [("CLS", "S_cls = head(CLS output)", 0.0)]
    if "Gist" in first:
        heads.append(("Gist", "S_gist = head(Gist output)", width - 3.4))
    for name, text, hx in heads:
        _box(fig, hx, hx + 3.4, 3.6, 4.3, "white", f"<b>{text}</b>", COLOURS[name])
        _arrow(fig, first[name] + 0.5, 2.92, hx + 1.7, 3.58, COLOURS[name])
    if len(heads) == 2:
        _arrow(fig, 3.5, 3.95, width - 3.5, 3.95, "#555", both=True)
        fig.add_annotation(x=width / 2, y=4.7, showarrow=False,
                           text="BKLD = KL(p_cls ‖ p_gist) + KL(p_gist ‖ p_cls), p = softmax(S / T)")
        fig.add_annotation(x=width / 2, y=3.75, showarrow=False, text="one shared head", font={"color": "#777"})
    fig.update_xaxes(visible=False, range=[-0.5, width + 0.5])
    fig.update_yaxes(visible=False, range=[-0.7, 4.95])
    fig.update_layout(height=320, margin={"l": 0, "r": 0, "t": 10, "b": 0}, plot_bgcolor="white", showlegend=False)
    return fig


def class_counts(counts: Mapping[str, int]) -> go.Figure:
    """Images per class as bars."""
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), marker_color=COLOURS["patches"]))
    return _layout(fig, "Images per class", "images", height=240, x="class")


def token_strip_figure(strip: pd.DataFrame, title: str, per_row: int = 12) -> go.Figure:
    """A coloured token strip: each token in a cell shaded by its attention weight, wrapped `per_row` a row.

    Args:
        strip: `TokenAttention.strip` (position, token, kind, weight), in token order.
        title: The figure title.
        per_row: Tokens per row of the strip.
    """
    n = len(strip)
    rows = max(1, -(-n // per_row))
    z = [[None] * per_row for _ in range(rows)]
    text = [[""] * per_row for _ in range(rows)]
    hover = [[""] * per_row for _ in range(rows)]
    for i, (tok, kind, w) in enumerate(zip(strip["token"], strip["kind"], strip["weight"], strict=True)):
        r, c = divmod(i, per_row)
        z[r][c], text[r][c] = float(w), str(tok)
        hover[r][c] = f"#{i} {tok} ({kind}): {w:.4f}"
    fig = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}", customdata=hover,
                               hovertemplate="%{customdata}<extra></extra>", colorscale="YlOrRd", zmin=0,
                               xgap=2, ygap=2, colorbar={"title": "weight", "thickness": 12}))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(title=title, height=60 + 34 * rows, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      plot_bgcolor="white")
    return fig


def token_heatmap_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """Attention weights as a heat map: rows layers or heads (`TokenAttention.heatmap`), columns tokens."""
    rows = [f"{table.index.name or 'row'} {i}" for i in table.index]
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=list(range(table.shape[1])), y=rows, colorscale="YlOrRd",
                               zmin=0, customdata=[list(table.columns)] * len(rows),
                               hovertemplate="%{y} · %{customdata}: %{z:.4f}<extra></extra>",
                               colorbar={"title": "weight", "thickness": 12}))
    ticks = list(range(table.shape[1]))
    fig.update_xaxes(tickvals=ticks, ticktext=[c.split(":", 1)[1] for c in table.columns], tickangle=-60)
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, table.index.name or "", height=120 + 26 * len(rows), x="token")
