"""The compatibility heatmap: the doctor's ``compat.csv`` as models × strategies, each cell coloured
by its class.
"""

from __future__ import annotations

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bench.report.charts.style import FIG_WIDTH_IN, two_lines

# Colours of the doctor's classes (strategies.explain.ERROR_CLASSES plus "build"); mid tones, so
# the dark annotation text stays readable. Classes the doctor adds later get Set2 colours.
COMPAT_COLOURS = {
    "ok": "#3a8a47", "channels": "#fb8072", "too-small": "#fdb462", "exact-size": "#bebada",
    "shape": "#d9b38c", "not-applicable": "#e6e6e6", "oom": "#f7b6d2", "bad-spec": "#b3b3b3",
    "other": "#9e9e9e", "failed": "#9e9e9e", "build": "#6b6b6b",
}


def _compat_label(cat: str, min_px: object) -> str:
    """What a failed cell says: the input size it needs where the doctor found one."""
    px = pd.to_numeric(pd.Series([min_px]), errors="coerce").iloc[0]
    if cat in ("too-small", "shape") and not pd.isna(px):
        return f"≥{px:.0f} px"
    if cat == "exact-size" and not pd.isna(px):
        return f"={px:.0f} px"
    return {"not-applicable": "n/a"}.get(cat, cat)


def compat_heatmap(compat: pd.DataFrame) -> Figure | None:
    """Doctor's model × strategy matrix: ok, or the class of the error that stopped it."""
    c = compat.drop_duplicates(["model", "strategy"], keep="last").copy()
    klass = c["error_class"].fillna("").astype(str).str.strip()
    c["cat"] = ["ok" if st == "ok" else (k or "failed")
                for st, k in zip(c["status"], klass, strict=True)]
    min_px = c["min_input_px"] if "min_input_px" in c.columns else pd.Series("", index=c.index)
    c["label"] = ["" if cat == "ok" else _compat_label(cat, px)
                  for cat, px in zip(c["cat"], min_px, strict=True)]
    models = list(dict.fromkeys(c["model"]))
    strategies = list(dict.fromkeys(c["strategy"]))
    known = [k for k in COMPAT_COLOURS if k in set(c["cat"])]
    cats = [*known, *sorted(set(c["cat"]) - set(known))]
    spare = iter(sns.color_palette("Set2", 8)[1:] + sns.color_palette("Pastel2", 8))
    colours = [COMPAT_COLOURS.get(k) or next(spare) for k in cats]
    code = {k: i for i, k in enumerate(cats)}
    grid = (c.assign(code=c["cat"].map(code))
            .pivot(index="model", columns="strategy", values="code")
            .reindex(index=models, columns=strategies))
    labels = (c.pivot(index="model", columns="strategy", values="label")
              .reindex(index=models, columns=strategies).fillna(""))
    width = min(FIG_WIDTH_IN, max(6.0, 2.2 + 0.7 * len(strategies)))
    fig = Figure(figsize=(width, 2.0 + 0.3 * len(models)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    cmap = matplotlib.colors.ListedColormap(colours)
    # Failed cells say why (readable without colour); ok cells stay quiet.
    budget = int((width - 2.2) / max(len(strategies), 1) * 72 / (0.6 * 7))
    labels = labels.map(lambda text: two_lines(text, budget)).to_numpy()
    annotate = len(models) <= 80 and budget >= 5
    sns.heatmap(grid, ax=ax, cmap=cmap, vmin=-0.5, vmax=len(cats) - 0.5, cbar=False,
                linewidths=0.5, linecolor="white", annot=labels if annotate else False,
                fmt="", annot_kws={"fontsize": 7, "linespacing": 0.95})
    ax.set_xlabel("strategy")
    ax.set_ylabel("model")
    ax.tick_params(axis="x", labelrotation=35)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.tick_params(axis="y", labelrotation=0)
    handles = [Patch(facecolor=colours[i], label=k) for i, k in enumerate(cats)]
    if grid.isna().to_numpy().any():
        handles.append(Patch(facecolor="white", edgecolor="0.6", label="not checked"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5),
               frameon=False, title="result (error class; ≥N px = input size it needs)",
               title_fontsize=9)
    ok = int((c["cat"] == "ok").sum())
    fig.suptitle(f"Compatibility (doctor): {ok} of {len(c)} model × strategy pairs run")
    return fig
