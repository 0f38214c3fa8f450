"""The report's charts: seaborn on matplotlib's Agg canvas, one PNG and one SVG each.

Sized for a README column (~900 px wide): 10 in at 150 dpi, text no smaller than 9 pt.
Strategies keep one colour (and marker) across every chart; panels are one per model (and per
dataset / device when there are several), so ~10 strategies × 4 models × 2 datasets stays
legible. Figures are built with ``matplotlib.figure.Figure`` directly — no pyplot, no global
backend or style state is touched.

Charts that do not mislead: every point carries its interval (accuracy: the 95% CI; throughput:
the p10–p90 spread of the timed windows; memory: min–max over seeds), a point without one is
drawn hollow and says so; accuracy panels share one y axis by default (``shared_axis``), so a
0.1-point gap in one panel does not look like a 10-point gap in another, and the gap chart
(:func:`accuracy_delta`) then gives each panel its own scale so a one-point gap is visible with
its interval; measure-only cells (timed, no accuracy) are hollow or hatched in every chart that
shows them; and strategies that created or re-initialised layers (the ``reinitialized``
column) are ringed / marked ``†``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from bench.report.stats import pareto_mask
from bench.schema import Mode

FIG_WIDTH_IN = 10.0
DPI = 150
MEASURE_ONLY = Mode.MEASURE_ONLY.value  # the comparison table's status of a cell that was only timed
CHART_STEMS = ("accuracy_vs_throughput", "accuracy_delta", "peak_memory", "learning_curves_epoch",
               "learning_curves_time", "compatibility", "op_time_shares")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*")
_RC = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9,
       "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 12,
       "svg.hashsalt": "adaptbench", "svg.fonttype": "path"}


# ---------------------------------------------------------------------------------------------
# Shared helpers


def strategy_palette(strategies: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per strategy, in the order given (tab10, tab20 beyond 10, husl beyond 20)."""
    names = list(dict.fromkeys(strategies))
    n = len(names)
    base = "tab10" if n <= 10 else "tab20" if n <= 20 else "husl"
    return dict(zip(names, sns.color_palette(base, n), strict=True))


def strategy_markers(strategies: Sequence[str]) -> dict[str, str]:
    names = list(dict.fromkeys(strategies))
    return {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(names)}


def _panel_keys(df: pd.DataFrame, dims: Sequence[str]) -> list[tuple]:
    """Distinct values of ``dims`` in order of appearance."""
    return list(dict.fromkeys(map(tuple, df[list(dims)].itertuples(index=False))))


def _panel_title(key: tuple, dims: Sequence[str], varying: set[str], width: int = 34) -> str:
    """Model always; dataset / device only when the report holds more than one."""
    parts = [str(v) for d, v in zip(dims, key, strict=True) if d == "model" or d in varying]
    return textwrap.fill(" · ".join(parts), width)


def _varying(df: pd.DataFrame, dims: Sequence[str]) -> set[str]:
    return {d for d in dims if df[d].nunique() > 1}


def _figure(n_panels: int, ncols: int, panel_h: float | Sequence[float],
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


def _plain_number(value: float, _pos: object = None) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _log_x(ax, values: Sequence[float]) -> None:
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
    ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
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


def _strategy_legend(fig: Figure, strategies: Sequence[str], palette: dict, markers: dict | None,
                     extra: Sequence = ()) -> None:
    handles = [Line2D([], [], color=palette[s], marker=markers[s] if markers else "s",
                      linestyle="" if markers else "-", markersize=7, linewidth=2, label=s)
               for s in strategies]
    handles += list(extra)
    ncol = min(len(handles), 4 if max(len(h.get_label()) for h in handles) > 16 else 5)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False,
               title="strategy", title_fontsize=9)


# ---------------------------------------------------------------------------------------------
# 1. Accuracy vs training throughput


REINIT_MARK = "†"  # appended to a strategy whose layers were created or re-initialised


def _reinitialized(row: pd.Series) -> bool:
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


def _timed_only(table: pd.DataFrame, key: tuple, dims: Sequence[str]) -> pd.DataFrame:
    """The measure-only cells of one panel that measured a throughput."""
    t = table[(table["status"] == MEASURE_ONLY) & (table["train_img_s_median"] > 0)]
    return t[(t[list(dims)] == pd.Series(key, index=dims)).all(axis=1)]


def accuracy_vs_throughput(table: pd.DataFrame, palette: dict, markers: dict,
                           shared_axis: bool = True) -> Figure | None:
    """Mean test accuracy (95% CI bars) against median train img/s (p10–p90 bars), log x,
    Pareto frontier. ``shared_axis``: one accuracy range for every panel."""
    df = table[table["test_acc_mean"].notna() & (table["train_img_s_median"] > 0)]
    if df.empty:
        return None
    dims = ("model", "dataset", "device_name")
    keys = _panel_keys(df, dims)
    varying = _varying(df, dims)
    ncols = 3 if len(keys) > 4 else 2
    fig, axes = _figure(len(keys), ncols, 3.0)
    shown = []
    no_interval = ringed = crossed = footed = False
    limits = shared_limits([100 * v for v in df["test_acc_ci_lo"].fillna(df["test_acc_mean"])],
                           [100 * v for v in df["test_acc_ci_hi"].fillna(df["test_acc_mean"])])
    for ax, key in zip(axes, keys, strict=True):
        p = df[(df[list(dims)] == pd.Series(key, index=dims)).all(axis=1)]
        x, y = p["train_img_s_median"], 100 * p["test_acc_mean"]
        for (_, r), xi, yi in zip(p.iterrows(), x, y, strict=True):
            colour = palette[r["strategy"]]
            yerr = xerr = None
            if not math.isnan(r["test_acc_ci_lo"]):
                # A t interval can run past 100 %; accuracy cannot, so the bar stops there.
                hi = min(100.0, 100 * r["test_acc_ci_hi"])
                yerr = [[yi - 100 * r["test_acc_ci_lo"]], [max(0.0, hi - yi)]]
            lo_x, hi_x = r.get("train_img_s_lo", math.nan), r.get("train_img_s_hi", math.nan)
            if not (pd.isna(lo_x) or pd.isna(hi_x)):
                xerr = [[max(0.0, xi - lo_x)], [max(0.0, hi_x - xi)]]
            hollow = yerr is None
            no_interval |= hollow
            ax.errorbar([xi], [yi], yerr=yerr, xerr=xerr, fmt=markers[r["strategy"]],
                        markersize=7, color=colour, ecolor=colour, elinewidth=1, capsize=2,
                        markerfacecolor="white" if hollow else colour, zorder=3)
            if _reinitialized(r):
                ringed = True
                ax.plot([xi], [yi], marker="o", markersize=13, markerfacecolor="none",
                        markeredgecolor="black", markeredgewidth=1.0, linestyle="", zorder=4)
            if r.get("contended"):  # timed on a busy host: shown, crossed, off the frontier
                crossed = True
                ax.plot([xi], [yi], marker="x", markersize=12, color="red",
                        markeredgewidth=1.5, linestyle="", zorder=5)
            shown.append(r["strategy"])
        # Measure-only cells were timed but not trained to the end: no accuracy to place,
        # so each sits hollow at the panel's foot, at its measured throughput.
        timed = _timed_only(table, key, dims)
        for _, r in timed.iterrows():
            ax.plot([r["train_img_s_median"]], [0.035], transform=ax.get_xaxis_transform(),
                    marker=markers[r["strategy"]], markersize=7, linestyle="",
                    markerfacecolor="white", markeredgecolor=palette[r["strategy"]],
                    markeredgewidth=1.5, clip_on=False, zorder=3)
            shown.append(r["strategy"])
        footed |= not timed.empty
        contended = (p["contended"].astype(bool) if "contended" in p
                     else pd.Series(False, index=p.index))
        on = pareto_mask(x.where(~contended).tolist(), y.where(~contended).tolist())
        front = sorted((xi, yi) for xi, yi, o in zip(x, y, on, strict=True) if o)
        if len(front) > 1:
            ax.plot(*zip(*front, strict=True), linestyle="--", color="0.35", linewidth=1.2,
                    zorder=2)
        # The ticks follow the drawn span, bars included: from the medians alone a wide p10
        # (a slow first window) left the left half of the axis without a label.
        _log_x(ax, [*x.tolist(), *timed["train_img_s_median"].tolist(),
                    *p.get("train_img_s_lo", pd.Series(dtype=float)).tolist(),
                    *p.get("train_img_s_hi", pd.Series(dtype=float)).tolist()])
        ax.set_title(_panel_title(key, dims, varying))
        ax.set_xlabel("train throughput (img/s, log)")
        ax.set_ylabel("test accuracy (%)")
        if shared_axis and limits is not None:
            ax.set_ylim(*limits)
        else:
            ax.margins(y=0.15)
            bottom, top = ax.get_ylim()
            ax.set_ylim(bottom, min(top, 100.0 + 0.03 * (top - bottom)))
    order = [s for s in palette if s in set(shown)]
    extra = [Line2D([], [], linestyle="--", color="0.35", label="Pareto frontier")]
    if ringed:
        extra.append(Line2D([], [], marker="o", markersize=10, markerfacecolor="none",
                            markeredgecolor="black", linestyle="",
                            label="ring: layers created / re-initialised"))
    if crossed:
        extra.append(Line2D([], [], marker="x", color="red", linestyle="",
                            label="red x: contended (busy host), never on the frontier"))
    if no_interval:
        extra.append(Line2D([], [], marker="o", markerfacecolor="white", markeredgecolor="0.3",
                            linestyle="", label="hollow: no interval (test count unknown)"))
    if footed:
        extra.append(Line2D([], [], marker="o", markerfacecolor="white", markeredgecolor="0.3",
                            markeredgewidth=1.5, linestyle="",
                            label="hollow at the foot: measure-only (img/s, no accuracy)"))
    _strategy_legend(fig, order, palette, markers, extra=extra)
    hidden = int((table["test_acc_mean"].isna() & (table["status"] != MEASURE_ONLY)).sum())
    note = f"{hidden} cell(s) without accuracy (failed or n/a) not shown" if hidden else ""
    axis = "one accuracy axis for all panels" if shared_axis else "each panel its own accuracy axis"
    fig.suptitle("Test accuracy vs training throughput (up-right is better; bars = 95% CI and "
                 f"p10–p90 img/s)\n{axis}" + (f"; {note}" if note else ""))
    return fig


# ---------------------------------------------------------------------------------------------
# 1b. Accuracy gap to the top strategy


def accuracy_delta(table: pd.DataFrame, palette: dict, markers: dict) -> Figure | None:
    """Each strategy's gap to the top one's mean accuracy (pp) with the gap's 95% interval (the
    wider of Welch and Newcombe, from :func:`bench.report.aggregate.comparison_table`); the top
    one at 0 with its own 95% interval. Each panel has its own scale, so a one-point gap is as
    visible as it is real, which the shared accuracy axis of the scatter cannot show.
    Measure-only and failed cells get a row that says so and no point; n/a cells are left out.
    """
    dims = ("model", "dataset", "device_name")
    scored = table[table["test_acc_n"] > 0]
    keys = [k for k in _panel_keys(scored, dims)
            if len(scored[(scored[list(dims)] == pd.Series(k, index=dims)).all(axis=1)]) > 1]
    if not keys:
        return None
    varying = _varying(table, dims)
    panels = []
    for key in keys:
        p = table[(table[list(dims)] == pd.Series(key, index=dims)).all(axis=1)
                  & (table["status"] != "incompatible")]
        gap = (100 * p["diff_vs_best"]).where(~p["is_top"].astype(bool), 0.0)
        # Top first, then by gap; cells without an accuracy last, in table order.
        p = p.assign(_gap=gap).sort_values("_gap", ascending=False, na_position="last",
                                           kind="stable")
        panels.append(p)
    ncols = 2 if len(keys) > 1 else 1
    sizes = [len(p) for p in panels]
    rows = [max(sizes[i:i + ncols]) for i in range(0, len(keys), ncols)]
    fig, axes = _figure(len(keys), ncols, [0.9 + 0.34 * n for n in rows])
    for ax, key, p in zip(axes, keys, panels, strict=True):
        spans = [0.0]
        for i, (_, r) in enumerate(p.iterrows()):
            colour, marker = palette[r["strategy"]], markers[r["strategy"]]
            if r["test_acc_n"] == 0:
                why = "measure-only: no accuracy" if r["status"] == MEASURE_ONLY else \
                    f"no accuracy ({r['status']})"
                ax.text(0.02, i, why, transform=ax.get_yaxis_transform(), va="center",
                        fontsize=8.5, color="0.35", style="italic")
                continue
            if r["is_top"]:
                lo = 100 * (r["test_acc_ci_lo"] - r["test_acc_mean"])
                hi = 100 * (r["test_acc_ci_hi"] - r["test_acc_mean"])
                label = "top"
            else:
                lo = 100 * r["diff_ci_lo"] - r["_gap"]
                hi = 100 * r["diff_ci_hi"] - r["_gap"]
                sig = r["diff_significant"]
                label = f"{r['_gap']:+.1f}" + ("" if not pd.isna(sig) and bool(sig) else " n.s.")
            x = r["_gap"]
            xerr = None if pd.isna(lo) else [[x - (x + lo)], [(x + hi) - x]]
            if xerr is not None:
                spans += [x + lo, x + hi]
            spans.append(x)
            ax.errorbar([x], [i], xerr=xerr, fmt=marker, color=colour, ecolor=colour,
                        markersize=7, elinewidth=1.2, capsize=3, zorder=3)
            ax.annotate(label, (x, i), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=8.5, color="0.2")
        ax.axvline(0.0, color="0.4", linewidth=1, linestyle="--", zorder=1)
        lo_x, hi_x = min(spans), max(spans)
        pad = max(0.08 * (hi_x - lo_x), 0.3)
        ax.set_xlim(lo_x - pad, hi_x + pad)
        ax.set_ylim(len(p) - 0.4, -0.7)  # top row first, room for its label
        ax.set_yticks(range(len(p)), [f"{s} {REINIT_MARK}" if _reinitialized(r) else s
                                      for s, (_, r) in zip(p["strategy"], p.iterrows(),
                                                           strict=True)])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(_panel_title(key, dims, varying))
        ax.set_xlabel("test accuracy − top strategy's (pp)")
    fig.suptitle("Accuracy gap to the top strategy, each panel its own scale\n"
                 "bars = 95% interval of the gap (top: its own); n.s. = cannot be told from 0")
    return fig


# ---------------------------------------------------------------------------------------------
# 2. Peak memory


def peak_memory(table: pd.DataFrame, palette: dict) -> Figure | None:
    """Horizontal bars of peak memory per strategy, one panel per model (× device), with the
    min–max over seeds as an interval bar; ``†`` marks strategies that created layers."""
    if table["peak_mem_mib"].notna().sum() == 0:
        return None
    dims = ("model", "device_name")
    # Memory does not depend on which 28x28 dataset is fed; keep the worst case over datasets.
    t = table.assign(
        _lo=table.get("peak_mem_mib_lo", table["peak_mem_mib"]),
        _hi=table.get("peak_mem_mib_hi", table["peak_mem_mib"]),
        _reinit=[_reinitialized(r) for _, r in table.iterrows()])
    agg = (t.groupby([*dims, "strategy"], sort=False)
           .agg(peak_mem_mib=("peak_mem_mib", "max"), lo=("_lo", "min"), hi=("_hi", "max"),
                reinit=("_reinit", "any"), status=("status", "first"))
           .reset_index())
    keys = _panel_keys(agg, dims)
    varying = _varying(agg, dims)
    sizes = [(agg[list(dims)] == pd.Series(k, index=dims)).all(axis=1).sum() for k in keys]
    ncols = 2 if len(keys) > 1 else 1
    rows = [max(sizes[i:i + ncols]) for i in range(0, len(keys), ncols)]
    fig, axes = _figure(len(keys), ncols, [0.8 + 0.3 * n for n in rows])
    for ax, key in zip(axes, keys, strict=True):
        p = agg[(agg[list(dims)] == pd.Series(key, index=dims)).all(axis=1)].copy()
        p["mem"] = p["peak_mem_mib"].fillna(0.0)
        sns.barplot(data=p, y="strategy", x="mem", hue="strategy", palette=palette, ax=ax,
                    legend=False, orient="h", order=list(p["strategy"]))
        top = max(p["mem"].max(), p["hi"].max(skipna=True) if p["hi"].notna().any() else 0)
        top = top or 1.0
        for i, (_, r) in enumerate(p.iterrows()):
            if math.isnan(r["peak_mem_mib"]):
                ax.text(top * 0.01, i, f"no value ({r['status']})", va="center", fontsize=8.5,
                        color="0.35", style="italic")
                continue
            lo, hi = (r["mem"], r["mem"]) if pd.isna(r["lo"]) else (r["lo"], r["hi"])
            ax.errorbar([r["mem"]], [i], xerr=[[r["mem"] - lo], [hi - r["mem"]]], fmt="none",
                        ecolor="0.2", elinewidth=1, capsize=3, zorder=3)
            ax.text(hi + top * 0.015, i, f"{r['mem']:,.0f}", va="center", fontsize=8.5)
        # A measure-only cell's memory is a real measurement of a cell that did not train to
        # the end: hatched and pale, as the page and the accuracy chart set it apart.
        for bar, status in zip(ax.patches, p["status"], strict=False):
            if status == MEASURE_ONLY:
                bar.set_hatch("///")
                bar.set_edgecolor(bar.get_facecolor())
                bar.set_facecolor("white")
        ax.set_yticks(range(len(p)),
                      [f"{s} {REINIT_MARK}" if m else s
                       for s, m in zip(p["strategy"], p["reinit"], strict=True)])
        ax.set_xlim(0, top * 1.22)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # 10000 12000 ... would collide
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
        ax.set_title(_panel_title(key, dims, varying))
        ax.set_xlabel("peak memory (MiB)")
        ax.set_ylabel("")
    worst = " (max over datasets)" if table["dataset"].nunique() > 1 else ""
    marked = f"; {REINIT_MARK} = layers created / re-initialised" if agg["reinit"].any() else ""
    if (agg["status"] == MEASURE_ONLY).any():
        marked += "; hatched = measure-only (no accuracy)"
    fig.suptitle(f"Peak training memory per strategy{worst} — lower is better\n"
                 f"bars = min–max over seeds{marked}")
    return fig


# ---------------------------------------------------------------------------------------------
# 3. Learning curves


def max_evaluations(history: pd.DataFrame) -> int:
    """The most evaluation points (history rows with a test accuracy) of any one cell's seed."""
    h = history[history["test_acc"].notna()]
    if h.empty:
        return 0
    keys = [c for c in ("cell_hash", "device_name", "seed") if c in h.columns]
    return int(h.groupby(keys, sort=False).size().max())


def learning_curves(history: pd.DataFrame, palette: dict, markers: dict,
                    x: str, shared_axis: bool = True) -> Figure | None:
    """Test accuracy vs ``x`` ('epoch' or 'elapsed_s'): mean over seeds, band = min..max.
    ``shared_axis``: one accuracy range for every panel."""
    h = history[history["test_acc"].notna() & history[x].notna()].copy()
    if h.empty:
        return None
    dims = ("model", "dataset", "device_name")
    # Average seeds at the same evaluation point; elapsed time is averaged the same way so a
    # line is one strategy's typical run.
    point = [*dims, "strategy", "epoch"]
    keys = _panel_keys(h, dims)
    agg = (h.groupby(point, sort=False)
           .agg(acc=("test_acc", "mean"), lo=("test_acc", "min"), hi=("test_acc", "max"),
                t=(x, "mean"))
           .reset_index().sort_values("t", kind="stable"))
    varying = _varying(agg, dims)
    limits = shared_limits(100 * agg["lo"], 100 * agg["hi"]) if shared_axis else None
    ncols = 3 if len(keys) > 4 else 2
    fig, axes = _figure(len(keys), ncols, 2.9)
    shown = []
    for ax, key in zip(axes, keys, strict=True):
        p = agg[(agg[list(dims)] == pd.Series(key, index=dims)).all(axis=1)]
        for strategy, s in p.groupby("strategy", sort=False):
            # About six markers per line, staggered between strategies so they do not pile up:
            # enough to tell lines apart without colour.
            step = max(1, math.ceil(len(s) / 6))
            ax.plot(s["t"], 100 * s["acc"], color=palette[strategy], linewidth=1.6,
                    marker=markers[strategy], markersize=4.5,
                    markevery=(list(palette).index(strategy) % step, step))
            ax.fill_between(s["t"], 100 * s["lo"], 100 * s["hi"], color=palette[strategy],
                            alpha=0.15, linewidth=0)
            shown.append(strategy)
        if x == "elapsed_s":
            _log_x(ax, p["t"].tolist())
            ax.set_xlabel("training time (s, log; eval excluded)")
        else:
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(_panel_title(key, dims, varying))
        if limits is not None:
            ax.set_ylim(*limits)
    order = [s for s in palette if s in set(shown)]
    _strategy_legend(fig, order, palette, markers)
    versus = "training time" if x == "elapsed_s" else "epoch"
    fig.suptitle(f"Learning curves: test accuracy vs {versus} (mean over seeds; band = min–max)")
    return fig


# ---------------------------------------------------------------------------------------------
# 4. Compatibility heatmap


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
    labels = labels.map(lambda text: _two_lines(text, budget)).to_numpy()
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


def _short(text: str, limit: int = 12) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _two_lines(text: str, limit: int) -> str:
    """Fit ``text`` in a heatmap cell: as is, split at the separator nearest the middle, or cut."""
    if len(text) <= limit:
        return text
    cuts = [i for i, ch in enumerate(text) if ch in "-_ "]
    if cuts:
        i = min(cuts, key=lambda c: abs(c - len(text) / 2))
        return f"{_short(text[:i + 1].rstrip(), limit)}\n{_short(text[i + 1:], limit)}"
    return _short(text, limit)


# ---------------------------------------------------------------------------------------------
# 5. Where time goes


def op_time_shares(ops: pd.DataFrame, top_n: int = 8,
                   measure_only: frozenset[tuple[str, str, str]] = frozenset()
                   ) -> Figure | None:
    """Stacked horizontal bars: share of profiled self time per operator, per strategy.

    Device (CUDA) self time where the profile has any, CPU self time otherwise. Shares are of
    the operators the profiler kept (``profile_top_ops`` per cell), averaged over seeds and
    datasets; the ``top_n`` operators overall get a colour, the rest are 'other'.
    ``measure_only``: (model, device_name, strategy) of measure-only cells, whose bars are
    hatched as in the memory chart (their operators were profiled; they have no accuracy).
    """
    o = ops.copy()
    device_total = o.groupby("device_name")["self_device_ms"].transform(
        lambda s: s.fillna(0).sum())
    o["ms"] = o["self_device_ms"].where(device_total > 0, o["self_cpu_ms"]).fillna(0.0)
    o = o[o["ms"] > 0]
    if o.empty:
        return None
    o["op"] = o["op"].astype(str).str.removeprefix("aten::")
    dims = ("model", "device_name")
    per_cell = ["cell_hash", "device_name"]
    o["share"] = 100 * o["ms"] / o.groupby(per_cell)["ms"].transform("sum")
    bar = [*dims, "strategy"]
    n_cells = o.groupby(bar, sort=False)["cell_hash"].transform("nunique")
    o["share"] /= n_cells  # summed over cells below, so each bar averages its cells to 100 %
    top = o.groupby("op")["share"].sum().sort_values(ascending=False).index[:top_n].tolist()
    o["op_group"] = o["op"].where(o["op"].isin(top), "other")
    shares = (o.groupby([*bar, "op_group"], sort=False)["share"].sum()
              .unstack("op_group", fill_value=0.0))
    columns = [op for op in top if op in shares.columns]
    if "other" in shares.columns:
        columns.append("other")
    shares = shares[columns]
    # colorblind's 8th colour is grey, kept for 'other'.
    cb, pastel = sns.color_palette("colorblind", 10), sns.color_palette("pastel", 10)
    colours = dict(zip(top, [c for i, c in enumerate(cb) if i != 7]
                       + [c for i, c in enumerate(pastel) if i != 7], strict=False))
    colours["other"] = (0.75, 0.75, 0.75)
    keys = list(dict.fromkeys(k[:2] for k in shares.index))
    varying = _varying(o, dims)
    sizes = [sum(1 for k in shares.index if k[:2] == key) for key in keys]
    ncols = 2 if len(keys) > 1 else 1
    rows = [max(sizes[i:i + ncols]) for i in range(0, len(keys), ncols)]
    fig, axes = _figure(len(keys), ncols, [0.8 + 0.3 * n for n in rows])
    time_kind = "device" if (o["self_device_ms"].fillna(0) > 0).any() else "CPU"
    for ax, key in zip(axes, keys, strict=True):
        p = shares.loc[[k for k in shares.index if k[:2] == key]]
        labels = [k[2] for k in p.index]
        left = [0.0] * len(p)
        hatch = ["///" if (*key, s) in measure_only else "" for s in labels]
        for op in columns:
            ax.barh(labels, p[op], left=left, color=colours[op], edgecolor="white",
                    linewidth=0.5, height=0.7, label=op, hatch=hatch)
            left = [a + b for a, b in zip(left, p[op], strict=True)]
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"share of profiled {time_kind} self time (%)")
        ax.set_title(_panel_title(key, dims, varying))
    handles = [Patch(facecolor=colours[op], label=_short(op, 28)) for op in columns]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False,
               title="operator (aten::)", title_fontsize=9)
    hatched = "; hatched = measure-only (no accuracy)" if any(
        k in measure_only for k in shares.index) else ""
    fig.suptitle(f"Where training time goes: top profiler operators by self time{hatched}")
    return fig


# ---------------------------------------------------------------------------------------------


def write_charts(table: pd.DataFrame, history: pd.DataFrame | None, ops: pd.DataFrame | None,
                 compat: pd.DataFrame | None, out_dir: Path,
                 shared_axis: bool = True) -> tuple[list[Path], list[str]]:
    """Draw every chart the inputs allow; returns (written files, notes on skipped charts).

    ``shared_axis`` (default on): accuracy panels share one y range, so the size of a gap reads
    the same in every panel; off, each panel zooms to its own points (small gaps look large).
    """
    strategies = list(table["strategy"])
    for frame in (history, ops, compat):
        if frame is not None:
            strategies += list(frame["strategy"])
    palette = strategy_palette(strategies)
    markers = strategy_markers(strategies)
    notes: list[str] = []
    timed_only = frozenset(  # (model, device_name, strategy) of the measure-only cells
        (str(r["model"]), str(r["device_name"]), str(r["strategy"]))
        for _, r in table[table["status"] == MEASURE_ONLY].iterrows())

    jobs: list[tuple[str, str, Callable[[], Figure | None]]] = [
        ("accuracy_vs_throughput", "no cell has both a test accuracy and a train throughput",
         lambda: accuracy_vs_throughput(table, palette, markers, shared_axis)),
        ("accuracy_delta", "no panel has two strategies with an accuracy",
         lambda: accuracy_delta(table, palette, markers)),
        ("peak_memory", "no cell recorded peak_mem_mib",
         lambda: peak_memory(table, palette)),
    ]
    if history is not None and max_evaluations(history) <= 1:
        # One evaluation per cell (one epoch) would draw a single dot per line: no curve.
        notes.append("learning curves skipped: every cell was evaluated once (one epoch), "
                     "a single point per line; its accuracy is in the tables")
        history = None
    elif history is None:
        notes.append("learning curves skipped: no history*.csv rows for runs that finished ok")
    if history is not None:
        jobs += [("learning_curves_epoch", "history has no test_acc values",
                  lambda: learning_curves(history, palette, markers, "epoch", shared_axis)),
                 ("learning_curves_time", "history has no elapsed_s values",
                  lambda: learning_curves(history, palette, markers, "elapsed_s",
                                          shared_axis))]
    if compat is not None:
        jobs.append(("compatibility", "compat.csv is empty", lambda: compat_heatmap(compat)))
    if ops is not None:
        jobs.append(("op_time_shares", "ops has no positive self time",
                     lambda: op_time_shares(ops, measure_only=timed_only)))

    written: list[Path] = []
    if compat is None:
        notes.append("compatibility heatmap skipped: no compat.csv (run `python -m bench "
                     "doctor`, or pass --compat)")
    if ops is None:
        notes.append("operator time chart skipped: no ops*.csv rows (profile_steps = 0?)")
    with matplotlib.rc_context(_RC), sns.axes_style("whitegrid"):
        for stem, why, draw in jobs:
            fig = draw()
            if fig is None:
                notes.append(f"{stem.replace('_', ' ')} skipped: {why}")
                continue
            written += save_figure(fig, out_dir, stem)
    # A chart this run could not draw must not survive from an earlier report.
    for stem in CHART_STEMS:
        for old in (out_dir / f"{stem}.png", out_dir / f"{stem}.svg"):
            if old not in written and old.exists():
                old.unlink()
    return written, notes
