"""The learning curves: test accuracy per evaluation, against the epoch or the elapsed training
seconds.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from bench.report.charts.style import (
    log_x,
    new_figure,
    panel_keys,
    panel_title,
    shared_limits,
    strategy_legend,
    varying_dims,
)


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
    keys = panel_keys(h, dims)
    agg = (h.groupby(point, sort=False)
           .agg(acc=("test_acc", "mean"), lo=("test_acc", "min"), hi=("test_acc", "max"),
                t=(x, "mean"))
           .reset_index().sort_values("t", kind="stable"))
    varying = varying_dims(agg, dims)
    limits = shared_limits(100 * agg["lo"], 100 * agg["hi"]) if shared_axis else None
    ncols = 3 if len(keys) > 4 else 2
    fig, axes = new_figure(len(keys), ncols, 2.9)
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
            log_x(ax, p["t"].tolist())
            ax.set_xlabel("training time (s, log; eval excluded)")
        else:
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(panel_title(key, dims, varying))
        if limits is not None:
            ax.set_ylim(*limits)
    order = [s for s in palette if s in set(shown)]
    strategy_legend(fig, order, palette, markers)
    versus = "training time" if x == "elapsed_s" else "epoch"
    fig.suptitle(f"Learning curves: test accuracy vs {versus} (mean over seeds; band = min–max)")
    return fig
