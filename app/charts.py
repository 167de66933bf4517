"""Plotly figures of the app: loss terms, accuracies, paired deltas, per-layer similarity, the token diagram; the
smoothing and the loss decomposition they draw."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import gist_engine as ge

LOSS_LABELS = {"ce_cls": "CE (CLS head)", "ce_gist": "CE (Gist head)", "kl_cls_gist": "KL(cls || gist)",
               "kl_gist_cls": "KL(gist || cls)", "total": "total loss"}
ACC_LABELS = {"acc_cls": "accuracy, CLS head", "acc_gist": "accuracy, Gist head", "agreement": "CLS/Gist agreement"}
COLOURS = {"ce_cls": "#1f77b4", "ce_gist": "#ff7f0e", "kl_cls_gist": "#2ca02c", "kl_gist_cls": "#9467bd",
           "total": "#222222", "acc_cls": "#1f77b4", "acc_gist": "#ff7f0e", "agreement": "#8c8c8c",
           "CLS": "#d62f6a", "Gist": "#f2b705", "registers": "#8c6bb1", "prompts": "#41ab5d", "patches": "#9ecae1",
           "tokens": "#9ecae1"}


PROBE, TEST = "probe", "test"  # evaluation splits: the trainer's accuracy probe (train.probe_every), the test split
VAL = "val"  # the validation split's evaluations (train.select_on: val, train.early_stop_patience)
# Points per line of the live loss chart: a browser shows ~1,000 px of width, and each refresh sends the figure whole
# to every open session (1.6 MB of JSON at 20,000 steps without a cap, 0.17 MB with it).
MAX_CURVE_POINTS = 2000
# Inferno (black for zero, brightening monotonically) with its stops written as rgb(): Streamlit's browser code
# replaces its chart theme's placeholder colours ("#000001" ...) wherever they occur in a figure, and Inferno's
# first stop is "#000004", which became a theme colour (pink #ffabab; purple with theme=None): zero attention looked
# brighter than a little.
INFERNO = [[pos, "rgb({}, {}, {})".format(*pc.hex_to_rgb(colour))]
           for pos, colour in pc.make_colorscale(pc.sequential.Inferno)]
MODEBAR = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}  # st.plotly_chart(config=)


def _layout(fig: go.Figure, title: str, y: str, height: int = 320, x: str = "step") -> go.Figure:
    """Title top left, just above the plot and below the band of plotly's modebar (which shows at the top right
    and would cover a title reaching that far on a narrow screen), legend in a column right of the plot (however
    many entries, never over the title or an axis title), integer steps on x."""
    fig.update_layout(title={"text": title, "x": 0, "xref": "paper", "xanchor": "left", "y": 1, "yref": "paper",
                             "yanchor": "bottom", "pad": {"b": 10}, "font": {"size": 15}}, height=height,
                      margin={"l": 10, "r": 10, "t": 64, "b": 10},
                      legend={"orientation": "v", "yanchor": "top", "y": 1, "xanchor": "left", "x": 1.02},
                      xaxis_title=x, yaxis_title=y)
    if x == "step":
        fig.update_xaxes(tickformat="d", rangemode="tozero")
    return fig


def _integer_ticks(fig: go.Figure, last_step: float) -> None:
    """One tick per step when there are few steps (plotly would put ticks at 0.5, 1.5, ...)."""
    if 0 < last_step <= 12:
        fig.update_xaxes(dtick=1)


def ema(values: Sequence[float] | pd.Series, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with weight `weight` in [0, 1), debiased at the start
    (the first point is kept as it is), NaNs skipped (kept as NaN). weight 0 returns the values unchanged.

    Args:
        values: (N,) the points of one curve, in step order.
        weight: How much of the running average each point keeps, 0 (none) .. 0.99.
    """
    x = np.asarray(values, dtype=float)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    if weight == 0.0:
        return x.copy()
    out = np.full_like(x, np.nan)
    last, n = 0.0, 0
    for i, v in enumerate(x):
        if not np.isfinite(v):
            continue
        last, n = last * weight + (1 - weight) * v, n + 1
        out[i] = last / (1 - weight ** n)
    return out


def loss_contributions(metrics: pd.DataFrame, gist: Mapping[str, Any] | None) -> pd.DataFrame:
    """The training objective split into the weighted terms that add up to it, per step, labelled for a chart.

    The weights and which terms enter the total are the engine's (`ge.loss_weights`, `ge.loss_contributions`):
    CE(cls) + ce_weight * CE(gist) + loss_weight * D, the KL losses' D shown as its directions. A plain run's
    objective is CE(cls) alone.

    Args:
        metrics: Step metrics (step, ce_cls, ce_gist, kl_cls_gist, kl_gist_cls, interaction, total).
        gist: The run's stored `gist` config (missing keys take the engine's defaults); None = GIST off.

    Returns:
        step and one column per contribution, named with its weight ("0.75 · KL(cls || gist)"); the columns
        other than step sum to `total`.
    """
    weights = ge.loss_weights(gist)
    parts = ge.loss_contributions(metrics, gist)
    out = pd.DataFrame({"step": metrics["step"]})
    for term, values in parts.items():
        label = LOSS_LABELS.get(term) or f"{str((gist or {}).get('loss', '')).upper()} interaction".strip()
        out[label if term == "ce_cls" else f"{weights[term]:g} · {label}"] = values
    return out


def thin_rows(values: Sequence[float] | pd.Series, max_points: int | None = None) -> np.ndarray:
    """Indices (ascending) of the rows that draw a curve of `len(values)` points with at most `max_points`
    (default `MAX_CURVE_POINTS`): every row when they fit, else per bucket of consecutive rows its first, lowest
    and highest point (NaN skipped), and the last row, so a spike and the newest step stay in the picture.

    Args:
        values: (N,) the curve that picks the extremes (the loss's total), in step order.
        max_points: The most points kept (>= 4).
    """
    v = np.asarray(values, dtype=float)
    n, cap = len(v), max(4, max_points or MAX_CURVE_POINTS)
    if n <= cap:
        return np.arange(n)
    edges = np.linspace(0, n, (cap - 1) // 3 + 1).astype(int)
    keep = [n - 1]
    for start, stop in itertools.pairwise(edges):
        part = v[start:stop]
        keep.append(start)
        if not np.isnan(part).all():
            keep += [start + int(np.nanargmin(part)), start + int(np.nanargmax(part))]
    return np.unique(keep)


def loss_figure(metrics: pd.DataFrame, gist: Mapping[str, Any] | None = None, smoothing: float = 0.0,
                log: bool = False, raw: bool = False) -> go.Figure:
    """The training objective per step, as stacked weighted contributions that add up to it (the line on top is
    the total), and below it, on its own scale, the knowledge interaction: the weighted interaction terms (a KL
    loss's two directions) that are slivers of the stack; or with `raw` each unweighted term as a line (KL terms are
    small: use `log`). A long run is drawn with at most `MAX_CURVE_POINTS` points per line (`thin_rows`, after the
    smoothing), so a refresh costs the same at step 100,000 as at step 2,000; the CSV download has every step."""
    rows = thin_rows(metrics["total"] if "total" in metrics else metrics["step"])
    steps = metrics["step"].to_numpy()[rows]
    last = float(metrics["step"].max()) if len(metrics) else 0
    if raw:
        fig = go.Figure()
        for key, label in LOSS_LABELS.items():
            if key in metrics and metrics[key].notna().any() and (key == "total" or metrics[key].abs().sum() > 0):
                fig.add_scatter(x=steps, y=ema(metrics[key], smoothing)[rows], name=label, mode="lines",
                                line={"color": COLOURS[key], "width": 3 if key == "total" else 1.8})
        if log:
            fig.update_yaxes(type="log")
        _integer_ticks(fig, last)
        return _layout(fig, "Loss terms, unweighted", "loss" + (" (log)" if log else ""))
    parts = loss_contributions(metrics, gist)
    terms = [t for t in ge.LOSS_TERMS if t in ge.loss_weights(gist)]  # the order of `parts`' columns
    interaction = [c for t, c in zip(terms, parts.columns[1:], strict=True) if t not in ("ce_cls", "ce_gist")]
    fig = (make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.58, 0.42], vertical_spacing=0.16,
                         subplot_titles=("", "Knowledge interaction (weighted, its own scale)"))
           if interaction else go.Figure())
    at = {"row": 1, "col": 1} if interaction else {}
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for colour, column in zip(colours, parts.columns[1:], strict=False):
        fig.add_scatter(x=steps, y=ema(parts[column], smoothing)[rows], name=column, mode="lines", legendgroup=column,
                        stackgroup=None if log else "loss", line={"color": colour, "width": 1}, **at)
    if "total" in metrics:
        fig.add_scatter(x=steps, y=ema(metrics["total"], smoothing)[rows], name="total", mode="lines",
                        line={"color": COLOURS["total"], "width": 2.5}, **at)
    for colour, column in zip(colours, parts.columns[1:], strict=False):
        if column in interaction:
            fig.add_scatter(x=steps, y=ema(parts[column], smoothing)[rows], name=column, mode="lines",
                            legendgroup=column, showlegend=False, line={"color": colour, "width": 2}, row=2, col=1)
    title = ("Training objective = sum of the weighted terms" if len(ge.loss_weights(gist)) > 1
             else "Training objective (cross-entropy)")
    if log:
        fig.update_yaxes(type="log")
    _integer_ticks(fig, last)
    _layout(fig, title, "loss" + (" (log)" if log else ""), height=480 if interaction else 320)
    if interaction:
        fig.update_layout(xaxis_title=None, xaxis2_title="step", yaxis2_title="KL" if "KL" in " ".join(interaction)
                          else "interaction")
        fig.update_annotations(x=0, xanchor="left", font={"size": 13})  # the panel title, left like the main one
    return fig


def split_of(evals: pd.DataFrame, split: str) -> pd.DataFrame:
    """The evaluations of one split (frames without a split column are the test split's)."""
    if "split" not in evals:
        return evals if split == TEST else evals.iloc[0:0]
    return evals[evals["split"] == split]


def accuracy_figure(evals: pd.DataFrame) -> go.Figure:
    """Accuracy of the CLS and Gist heads and their agreement (percent, 0-100): the accuracy probe as lines during
    training, the test evaluations as large markers, the validation split's CLS accuracy as a dashed line of
    squares."""
    fig = go.Figure()
    probe, test, val = split_of(evals, PROBE), split_of(evals, TEST), split_of(evals, VAL)
    for key, label in ACC_LABELS.items():
        if key in probe and probe[key].notna().any():
            fig.add_scatter(x=probe["step"], y=100 * probe[key], name=f"{label} (probe)", mode="lines+markers",
                            marker={"size": 5}, legendgroup=key,
                            line={"color": COLOURS[key], "dash": "dot" if key == "agreement" else "solid"})
        if key in test and test[key].notna().any():
            fig.add_scatter(x=test["step"], y=100 * test[key], name=f"{label} (test)", mode="markers",
                            marker={"color": COLOURS[key], "size": 12, "symbol": "diamond"}, legendgroup=key)
    if len(val):
        fig.add_scatter(x=val["step"], y=100 * val["acc_cls"], name=f"{ACC_LABELS['acc_cls']} (validation)",
                        mode="lines+markers", marker={"size": 8, "symbol": "square"}, legendgroup="acc_cls",
                        line={"color": COLOURS["acc_cls"], "dash": "dash"})
    fig.update_yaxes(range=[0, 101])
    _integer_ticks(fig, float(evals["step"].max()) if len(evals) else 0)
    n = int(probe["n"].iloc[0]) if len(probe) and "n" in probe else 0
    title = (f"Accuracy: probe of {n} held-out training images (lines), test (diamonds)" if n
             else "Test accuracy and agreement")
    if len(val):
        title += ", validation (squares)"
    return _layout(fig, title, "%")


def live_figures(drawn: dict[str, tuple], run_id: str, metrics: pd.DataFrame, evals: pd.DataFrame,
                 gist: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None
                 ) -> tuple[go.Figure, go.Figure | None]:
    """The live page's loss and accuracy figures (None before the first evaluation), rebuilt only when points were
    added since `drawn[run_id]` = (metric rows, evaluations, loss figure, accuracy figure, options) was stored, or
    the chart options (smoothing, log, raw) changed."""
    options = dict(options or {})
    if run_id not in drawn or drawn[run_id][:2] != (len(metrics), len(evals)) or drawn[run_id][4] != options:
        drawn[run_id] = (len(metrics), len(evals), loss_figure(metrics, gist, **options),
                         accuracy_figure(evals) if len(evals) else None, options)
    return drawn[run_id][2], drawn[run_id][3]


def delta_figure(result: Any, key: str = "acc_cls") -> go.Figure:
    """Per-seed GIST-minus-plain accuracy deltas (bars) and their mean with the 95% CI (error bar) of a
    `ge.PairedResult`; the CI is the engine's (clipped to ±100 points)."""
    fig = go.Figure()
    pairs = [p for p in result.pairs if p.delta(key) is not None]
    fig.add_bar(x=[f"seed {p.seed}" for p in pairs], y=[100 * p.delta(key) for p in pairs], name="per seed",
                marker_color="#9ecae1")
    d = result.delta(key)
    if d:
        err = None if d["ci_high"] is None else {"type": "data", "array": [100 * (d["ci_high"] - d["mean"])],
                                                 "arrayminus": [100 * (d["mean"] - d["ci_low"])]}
        fig.add_scatter(x=["mean (95% CI)"], y=[100 * d["mean"]], error_y=err, mode="markers", name="mean ± 95% CI",
                        marker={"size": 14, "color": COLOURS["CLS"]})
    fig.add_hline(y=0, line_color="#888", line_width=1)
    return _layout(fig, "GIST minus plain, accuracy points", "Δ accuracy (points)", x="")


def overlay_figure(curves: Mapping[str, pd.DataFrame], column: str, title: str, scale: float = 1.0,
                   y: str = "", smoothing: float = 0.0, log: bool = False) -> go.Figure:
    """One line per run (label -> frame with `step` and `column`): GIST solid, plain dotted, one colour per seed
    label; `smoothing` (EMA weight) and a `log` y axis as on TensorBoard."""
    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]
    seeds: dict[str, str] = {}
    last = 0.0
    for label, frame in curves.items():
        if column in frame and len(frame) and frame[column].notna().any():
            base = label.replace(" · GIST", "").replace(" · plain", "")
            colour = seeds.setdefault(base, palette[len(seeds) % len(palette)])
            fig.add_scatter(x=frame["step"], y=ema(scale * frame[column], smoothing), name=label,
                            mode="lines+markers" if len(frame) < 20 else "lines",
                            line={"dash": "solid" if "GIST" in label else "dot", "color": colour})
            last = max(last, float(frame["step"].max()))
    if log:
        fig.update_yaxes(type="log")
    _integer_ticks(fig, last)
    return _layout(fig, title, y or column, height=360)


def curves_frame(curves: Mapping[str, pd.DataFrame], column: str) -> pd.DataFrame:
    """The data of an overlay figure as one long table (run, step, value): what its CSV download holds."""
    parts = [pd.DataFrame({"run": label, "step": f["step"], column: f[column]})
             for label, f in curves.items() if column in f and len(f)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run", "step", column])


def attention_grid_figure(grids: Mapping[str, np.ndarray], title: str) -> go.Figure:
    """Attention weights over the patch grid, one heat map per token (e.g. CLS, Gist), one shared colour scale with
    its colour bar (the weights as they are: each row of attention sums to 1 over all tokens)."""
    names = list(grids)
    top = max(float(np.nanmax(g)) for g in grids.values()) if grids else 1.0
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"{n} → patches" for n in names],
                        horizontal_spacing=0.06)
    for i, name in enumerate(names, start=1):
        fig.add_trace(go.Heatmap(z=grids[name], colorscale=INFERNO, zmin=0, zmax=top, coloraxis="coloraxis",
                                 hovertemplate="row %{y}, column %{x}: %{z:.4f}<extra>" + name + "</extra>"),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i if i > 1 else ''}", showticklabels=False,
                         row=1, col=i)
        fig.update_xaxes(showticklabels=False, row=1, col=i)
    fig.update_layout(coloraxis={"colorscale": INFERNO, "cmin": 0, "cmax": top,
                                 "colorbar": {"title": "attention", "thickness": 12}},
                      title=title, height=300, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


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


# ------------------------------------------------------------------------------------------------- studies
ARM_COLOURS = {"plain": "#1f77b4", "gist": "#d62f6a", "delta": "#222222"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")  # one per value of the other axes in a curve


def _key_text(key: Any) -> str:
    """A cell's key as text: ('a', 1) -> 'a · 1'."""
    return " · ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def matrix_figure(values: pd.DataFrame, text: pd.DataFrame, metric: str) -> go.Figure:
    """A heatmap of mean GIST - plain (points) per cell of a study's matrix (`ge.study_matrix`), each annotated
    `+1.23 [-0.40, +2.86]*`; `metric` names the accuracy in the title ("test accuracy, CLS head")."""
    z = 100 * values.apply(pd.to_numeric, errors="coerce")
    span = max(1.0, float(z.abs().max().max()) if z.notna().any().any() else 1.0)  # symmetric: white is 0
    fig = go.Figure(go.Heatmap(z=z.to_numpy(), x=[_key_text(c) for c in values.columns],
                               y=[_key_text(i) for i in values.index], text=text.to_numpy(), texttemplate="%{text}",
                               colorscale="RdBu", zmin=-span, zmax=span, colorbar={"title": "points"},
                               hovertemplate="%{y} / %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=f"GIST - plain, {metric} (points, 95% CI; * p<.05 ** p<.01 *** p<.001)",
                      height=max(260, 60 * len(values) + 120), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title=values.columns.name or "", yaxis_title=" · ".join(map(str, values.index.names)))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


def _band(fig: go.Figure, x: pd.Series, low: pd.Series, high: pd.Series, colour: str, col: int) -> None:
    ok = low.notna() & high.notna()
    if ok.any():
        xs = list(x[ok])
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=list(high[ok]) + list(low[ok])[::-1], fill="toself",
                                 fillcolor=colour, opacity=0.18, line={"width": 0}, hoverinfo="skip",
                                 showlegend=False), row=1, col=col)


def curve_figure(curve: pd.DataFrame, axis: str, metric: str) -> go.Figure:
    """Both arms' accuracy (left) and GIST - plain (right) against a numeric axis (`ge.study_curve`), with their 95%
    CI bands; `metric` names the accuracy ("test accuracy, CLS head")."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"{metric} (%)", "GIST - plain (points)"))
    others = [a for a in curve.attrs.get("axes", []) if a != axis]
    groups = curve.groupby(others, sort=False) if others else [((), curve)]
    for i, (key, part) in enumerate(groups):
        tag = f" ({_key_text(key)})" if others else ""
        num = part.apply(pd.to_numeric, errors="coerce")
        for arm, col in (("plain", 1), ("gist", 1), ("delta", 2)):
            colour = ARM_COLOURS[arm]
            _band(fig, num[axis], 100 * num[f"{arm}_ci_low"], 100 * num[f"{arm}_ci_high"], colour, col)
            name = {"plain": "plain", "gist": "GIST", "delta": "GIST - plain"}[arm] + tag
            fig.add_trace(go.Scatter(x=num[axis], y=100 * num[f"{arm}_mean"], mode="lines+markers", name=name,
                                     line={"color": colour, "dash": DASHES[i % len(DASHES)]}), row=1, col=col)
    fig.add_hline(y=0, line={"color": "#888888", "dash": "dot"}, row=1, col=2)
    fig.update_xaxes(title_text=axis)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.3})
    return fig



def trial_figure(rows: list[dict[str, Any]], cell: str) -> go.Figure:
    """Every trial's validation accuracy per epoch in one cell, both arms (the chosen trial drawn thick)."""
    fig = go.Figure()
    for r in (r for r in rows if r["label"] == cell):
        for t in r["curve"]:
            chosen = t["trial"] == r["trial"]
            name = f"{'GIST' if r['arm'] == 'gist' else 'plain'} trial {t['trial']}" + (" (chosen)" if chosen else "")
            fig.add_trace(go.Scatter(
                x=[e for e, _ in t["epochs"]], y=[100 * a for _, a in t["epochs"]], mode="lines+markers", name=name,
                line={"color": ARM_COLOURS[r["arm"]], "width": 3 if chosen else 1}, opacity=1.0 if chosen else 0.5))
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="epoch",
                      yaxis_title="validation accuracy (%)", legend={"orientation": "h", "y": -0.3})
    return fig


# ------------------------------------------------------------------------------------- the training budget
BUDGET_NUMBERS = ("epoch", "n", "plain_mean", "plain_ci_low", "plain_ci_high", "gist_mean", "gist_ci_low",
                  "gist_ci_high", "delta_mean", "delta_ci_low", "delta_ci_high")
BUDGET_ARMS = {"plain": ("plain", "#1f77b4", 1), "gist": ("GIST", "#d62f6a", 1),  # arm -> (name, colour, subplot)
               "delta": ("GIST − plain", "#222222", 2)}
BUDGET_NOTE = ("Each point is the same runs read after that epoch of one schedule (the learning rate decays over all "
               "of it), not a run of that length; the band is the 95% CI over the paired seeds.")


def budget_frame(rows: pd.DataFrame | Sequence[Mapping[str, Any]] | None) -> pd.DataFrame | None:
    """`ge.study_budget`'s frame, or a study bundle's `budget` rows (a manifest from outside: non-numbers read as
    missing), with its numbers as floats; None unless some cell has a paired verdict after 2 or more epochs (one
    point is no curve)."""
    if rows is None or len(rows) == 0:
        return None
    frame = pd.DataFrame(rows).copy()
    if "epoch" not in frame or "label" not in frame:
        return None
    for col in BUDGET_NUMBERS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else np.nan
    frame["label"] = frame["label"].astype(str)
    paired = frame[frame["delta_mean"].notna() & frame["epoch"].notna()]
    return frame if len(paired) and paired.groupby("label")["epoch"].nunique().max() >= 2 else None


def _rgba(colour: str, alpha: float) -> str:
    return "rgba({}, {}, {}, {})".format(*pc.hex_to_rgb(colour), alpha)


def budget_figure(budget: pd.DataFrame) -> go.Figure:
    """Against the epochs trained: both arms' test accuracy (left, %) and GIST − plain (right, points), each with its
    95% CI band, one set of lines per cell; from `budget_frame` (fractions, as the engine gives them)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy (%)", "GIST − plain (points)"),
                        horizontal_spacing=0.1)
    cells = list(dict.fromkeys(budget["label"]))
    for i, label in enumerate(cells):
        part = budget[budget["label"] == label].sort_values("epoch")
        dash = ("solid", "dash", "dot", "dashdot")[i % 4]
        for arm, (name, colour, col) in BUDGET_ARMS.items():
            x, mean = part["epoch"], 100 * part[f"{arm}_mean"]
            low, high = 100 * part[f"{arm}_ci_low"], 100 * part[f"{arm}_ci_high"]
            band = low.notna() & high.notna()
            if band.any():
                xs = list(x[band])
                fig.add_scatter(x=xs + xs[::-1], y=list(high[band]) + list(low[band])[::-1], mode="lines",
                                fill="toself", fillcolor=_rgba(colour, 0.15), line={"width": 0}, hoverinfo="skip",
                                showlegend=False, row=1, col=col)
            fig.add_scatter(x=x, y=mean, mode="lines+markers", name=name + (f" ({label})" if len(cells) > 1 else ""),
                            line={"color": colour, "dash": dash}, row=1, col=col,
                            hovertemplate="epoch %{x}: %{y:.1f}<extra>" + name + "</extra>")
    fig.add_hline(y=0, line={"color": "#888888", "dash": "dot"}, row=1, col=2)
    fig.update_xaxes(title_text="epochs trained", dtick=1 if budget["epoch"].max() <= 12 else None)
    fig = _layout(fig, "GIST − plain against the training budget", "", height=380, x="epochs trained")
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0},
                      title_pad_b=30, margin_t=90)  # the title above the two subplots' own titles
    return fig
