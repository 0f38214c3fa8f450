"""Where time goes: each strategy's share of profiled self time (seconds) in its top operators.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bench.report.charts.style import new_figure, panel_title, short_label, varying_dims


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
    varying = varying_dims(o, dims)
    sizes = [sum(1 for k in shares.index if k[:2] == key) for key in keys]
    ncols = 2 if len(keys) > 1 else 1
    rows = [max(sizes[i:i + ncols]) for i in range(0, len(keys), ncols)]
    fig, axes = new_figure(len(keys), ncols, [0.8 + 0.3 * n for n in rows])
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
        ax.set_title(panel_title(key, dims, varying))
    handles = [Patch(facecolor=colours[op], label=short_label(op, 28)) for op in columns]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False,
               title="operator (aten::)", title_fontsize=9)
    hatched = "; hatched = measure-only (no accuracy)" if any(
        k in measure_only for k in shares.index) else ""
    fig.suptitle(f"Where training time goes: top profiler operators by self time{hatched}")
    return fig
