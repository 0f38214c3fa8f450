"""The peak-memory chart: bars of peak MiB (2**20 bytes) per strategy, one panel per model (and
device), min–max over seeds.
"""

from __future__ import annotations

import math

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from bench.report.charts.style import (
    MEASURE_ONLY,
    REINIT_MARK,
    new_figure,
    panel_keys,
    panel_title,
    plain_number,
    reinitialized,
    varying_dims,
)


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
        _reinit=[reinitialized(r) for _, r in table.iterrows()])
    agg = (t.groupby([*dims, "strategy"], sort=False)
           .agg(peak_mem_mib=("peak_mem_mib", "max"), lo=("_lo", "min"), hi=("_hi", "max"),
                reinit=("_reinit", "any"), status=("status", "first"))
           .reset_index())
    keys = panel_keys(agg, dims)
    varying = varying_dims(agg, dims)
    sizes = [(agg[list(dims)] == pd.Series(k, index=dims)).all(axis=1).sum() for k in keys]
    ncols = 2 if len(keys) > 1 else 1
    rows = [max(sizes[i:i + ncols]) for i in range(0, len(keys), ncols)]
    fig, axes = new_figure(len(keys), ncols, [0.8 + 0.3 * n for n in rows])
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
        ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
        ax.set_title(panel_title(key, dims, varying))
        ax.set_xlabel("peak memory (MiB)")
        ax.set_ylabel("")
    worst = " (max over datasets)" if table["dataset"].nunique() > 1 else ""
    marked = f"; {REINIT_MARK} = layers created / re-initialised" if agg["reinit"].any() else ""
    if (agg["status"] == MEASURE_ONLY).any():
        marked += "; hatched = measure-only (no accuracy)"
    fig.suptitle(f"Peak training memory per strategy{worst} — lower is better\n"
                 f"bars = min–max over seeds{marked}")
    return fig
