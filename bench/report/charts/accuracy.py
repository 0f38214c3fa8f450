"""The accuracy charts: test accuracy against train throughput (with the Pareto frontier) and each
strategy's accuracy gap to the panel's best, both with their 95% intervals.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from bench.report.charts.style import (
    MEASURE_ONLY,
    REINIT_MARK,
    log_x,
    new_figure,
    panel_keys,
    panel_title,
    reinitialized,
    shared_limits,
    strategy_legend,
    timed_only,
    varying_dims,
)
from bench.report.stats import pareto_mask


def accuracy_vs_throughput(table: pd.DataFrame, palette: dict, markers: dict,
                           shared_axis: bool = True) -> Figure | None:
    """Mean test accuracy (95% CI bars) against median train img/s (p10–p90 bars), log x,
    Pareto frontier. ``shared_axis``: one accuracy range for every panel."""
    df = table[table["test_acc_mean"].notna() & (table["train_img_s_median"] > 0)]
    if df.empty:
        return None
    dims = ("model", "dataset", "device_name")
    keys = panel_keys(df, dims)
    varying = varying_dims(df, dims)
    ncols = 3 if len(keys) > 4 else 2
    fig, axes = new_figure(len(keys), ncols, 3.0)
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
            if reinitialized(r):
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
        timed = timed_only(table, key, dims)
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
        log_x(ax, [*x.tolist(), *timed["train_img_s_median"].tolist(),
                    *p.get("train_img_s_lo", pd.Series(dtype=float)).tolist(),
                    *p.get("train_img_s_hi", pd.Series(dtype=float)).tolist()])
        ax.set_title(panel_title(key, dims, varying))
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
    strategy_legend(fig, order, palette, markers, extra=extra)
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
    keys = [k for k in panel_keys(scored, dims)
            if len(scored[(scored[list(dims)] == pd.Series(k, index=dims)).all(axis=1)]) > 1]
    if not keys:
        return None
    varying = varying_dims(table, dims)
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
    fig, axes = new_figure(len(keys), ncols, [0.9 + 0.34 * n for n in rows])
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
        ax.set_yticks(range(len(p)), [f"{s} {REINIT_MARK}" if reinitialized(r) else s
                                      for s, (_, r) in zip(p["strategy"], p.iterrows(),
                                                           strict=True)])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(panel_title(key, dims, varying))
        ax.set_xlabel("test accuracy − top strategy's (pp)")
    fig.suptitle("Accuracy gap to the top strategy, each panel its own scale\n"
                 "bars = 95% interval of the gap (top: its own); n.s. = cannot be told from 0")
    return fig
