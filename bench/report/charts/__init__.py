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

One module per chart family, found by its name: :mod:`~bench.report.charts.accuracy` (accuracy
against throughput, the accuracy gap), :mod:`~bench.report.charts.memory`,
:mod:`~bench.report.charts.curves` (learning curves), :mod:`~bench.report.charts.compat` (the
doctor's heatmap) and :mod:`~bench.report.charts.ops` (where time goes), all drawing with
:mod:`~bench.report.charts.style`. This module draws them all (:func:`write_charts`) and is the
import path of every chart function.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from bench.report.charts.accuracy import accuracy_delta, accuracy_vs_throughput
from bench.report.charts.compat import COMPAT_COLOURS, compat_heatmap
from bench.report.charts.curves import learning_curves, max_evaluations
from bench.report.charts.memory import peak_memory
from bench.report.charts.ops import op_time_shares
from bench.report.charts.style import (
    CHART_STEMS,
    DPI,
    FIG_WIDTH_IN,
    MARKERS,
    MEASURE_ONLY,
    RC_PARAMS,
    REINIT_MARK,
    save_figure,
    shared_limits,
    strategy_markers,
    strategy_palette,
)

__all__ = ["CHART_STEMS", "COMPAT_COLOURS", "DPI", "FIG_WIDTH_IN", "MARKERS", "MEASURE_ONLY",
           "REINIT_MARK", "accuracy_delta", "accuracy_vs_throughput", "compat_heatmap",
           "learning_curves", "max_evaluations", "op_time_shares", "peak_memory", "prune_charts",
           "save_figure", "shared_limits", "strategy_markers", "strategy_palette", "write_charts"]


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
    with matplotlib.rc_context(RC_PARAMS), sns.axes_style("whitegrid"):
        for stem, why, draw in jobs:
            fig = draw()
            if fig is None:
                notes.append(f"{stem.replace('_', ' ')} skipped: {why}")
                continue
            written += save_figure(fig, out_dir, stem)
    prune_charts(out_dir, written)
    return written, notes


def prune_charts(out_dir: Path, written: list[Path]) -> None:
    """Delete the report's own chart files in ``out_dir`` that this report did not write.

    A chart this report could not draw (or, with every row superseded, drew none of) must not
    survive from an earlier report, where a README or page would still show it. Only the
    names in ``CHART_STEMS`` are touched: anything else in the folder is not the report's.
    """
    for stem in CHART_STEMS:
        for old in (out_dir / f"{stem}.png", out_dir / f"{stem}.svg"):
            if old not in written and old.exists():
                old.unlink()
