"""What every chart shares: figure size, fonts, one colour and marker per strategy, panels, log axes,
the strategy legend, the ``†`` mark and saving a figure as PNG and SVG.

Sizes are inches at ``DPI`` dots per inch (10 in at 150 dpi, ~900 px: a README column); text no
smaller than 9 pt.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from bench.schema import Mode

FIG_WIDTH_IN = 10.0
DPI = 150
# The comparison table's status of a cell that was only timed.
MEASURE_ONLY = Mode.MEASURE_ONLY.value
CHART_STEMS = ("accuracy_vs_throughput", "accuracy_delta", "peak_memory", "learning_curves_epoch",
               "learning_curves_time", "compatibility", "op_time_shares")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*")
RC_PARAMS = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10,
             "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
             "figure.titlesize": 12, "svg.hashsalt": "adaptbench", "svg.fonttype": "path"}


def strategy_palette(strategies: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per strategy, in the order given (tab10, tab20 beyond 10, husl beyond 20)."""
    names = list(dict.fromkeys(strategies))
    n = len(names)
    base = "tab10" if n <= 10 else "tab20" if n <= 20 else "husl"
    return dict(zip(names, sns.color_palette(base, n), strict=True))


def strategy_markers(strategies: Sequence[str]) -> dict[str, str]:
    names = list(dict.fromkeys(strategies))
    return {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(names)}


def panel_keys(df: pd.DataFrame, dims: Sequence[str]) -> list[tuple]:
    """Distinct values of ``dims`` in order of appearance."""
    return list(dict.fromkeys(map(tuple, df[list(dims)].itertuples(index=False))))


def panel_title(key: tuple, dims: Sequence[str], varying: set[str], width: int = 34) -> str:
    """Model always; dataset / device only when the report holds more than one."""
    parts = [str(v) for d, v in zip(dims, key, strict=True) if d == "model" or d in varying]
    return textwrap.fill(" · ".join(parts), width)


def varying_dims(df: pd.DataFrame, dims: Sequence[str]) -> set[str]:
    return {d for d in dims if df[d].nunique() > 1}


def new_figure(n_panels: int, ncols: int, panel_h: float | Sequence[float],
            sharex: bool = False) -> tuple[Figure, list]:
    """A constrained-layout figure with ``n_panels`` axes; spare grid cells are removed."""
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    heights = list(panel_h) if isinstance(panel_h, Sequence) else [panel_h] * nrows
    fig = Figure(figsize=(FIG_WIDTH_IN, sum(heights) + 1.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex,
                        gridspec_kw={"height_ratios": heights}).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.remove()
    return fig, axes[:n_panels]


def plain_number(value: float, _pos: object = None) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def log_x(ax, values: Sequence[float]) -> None:
    """Log x axis with plain tick labels that stay readable whatever the span.

    Under a decade, log ticks (1, 2, 5, 10) would leave one label or none, so round linear
    steps are used; up to two decades 1-2-5 steps; beyond, powers of ten.
    """
    ax.set_xscale("log")
    vals = [v for v in values if v and v > 0 and not math.isnan(v)]
    span = math.log10(max(vals) / min(vals)) if vals else 0.0
    if vals and span < 0.2:  # a single point or a tight cluster: give it some room
        ax.set_xlim(min(vals) / 1.3, max(vals) * 1.3)
    if span < 1.0:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    else:
        subs = (1.0, 2.0, 5.0) if span < 2.0 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
    ax.xaxis.set_minor_formatter(NullFormatter())


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``; metadata without dates so reruns are identical."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=DPI, metadata={"Software": None})
    # Constrained layout is the slow part of a save; the first save has placed everything,
    # so freeze those positions for the SVG instead of solving the layout again.
    fig.set_layout_engine("none")
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    return [png, svg]


def strategy_legend(fig: Figure, strategies: Sequence[str], palette: dict, markers: dict | None,
                     extra: Sequence = ()) -> None:
    handles = [Line2D([], [], color=palette[s], marker=markers[s] if markers else "s",
                      linestyle="" if markers else "-", markersize=7, linewidth=2, label=s)
               for s in strategies]
    handles += list(extra)
    ncol = min(len(handles), 4 if max(len(h.get_label()) for h in handles) > 16 else 5)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False,
               title="strategy", title_fontsize=9)


REINIT_MARK = "†"  # appended to a strategy whose layers were created or re-initialised


def reinitialized(row: pd.Series) -> bool:
    """True when the cell's strategy created or replaced layers (the ``reinitialized`` column)."""
    value = row.get("reinitialized", "")
    return isinstance(value, str) and value.strip() != ""


def shared_limits(lows: Sequence[float], highs: Sequence[float], pad: float = 0.06,
                  ceiling: float = 100.0) -> tuple[float, float] | None:
    """One (bottom, top) for every panel: the span of all intervals, padded by ``pad`` of it,
    never above ``ceiling`` + a hair (accuracy cannot pass 100 %). None when nothing is finite."""
    vals = [v for v in (*lows, *highs) if v is not None and not math.isnan(v)]
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    margin = max(pad * (hi - lo), 0.5)
    return lo - margin, min(hi + margin, ceiling + 0.03 * (hi - lo + 2 * margin))


def timed_only(table: pd.DataFrame, key: tuple, dims: Sequence[str]) -> pd.DataFrame:
    """The measure-only cells of one panel that measured a throughput."""
    t = table[(table["status"] == MEASURE_ONLY) & (table["train_img_s_median"] > 0)]
    return t[(t[list(dims)] == pd.Series(key, index=dims)).all(axis=1)]


def short_label(text: str, limit: int = 12) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def two_lines(text: str, limit: int) -> str:
    """Fit ``text`` in a heatmap cell: as is, split at the separator nearest the middle, or cut."""
    if len(text) <= limit:
        return text
    cuts = [i for i, ch in enumerate(text) if ch in "-_ "]
    if cuts:
        i = min(cuts, key=lambda c: abs(c - len(text) / 2))
        return f"{short_label(text[:i + 1].rstrip(), limit)}\n{short_label(text[i + 1:], limit)}"
    return short_label(text, limit)
