"""Reports from a results directory: tables, charts, a self-contained page and advice.

Data flows one way through the package: :mod:`~bench.report.load` reads the CSVs through
:mod:`bench.results` and checks them; :mod:`~bench.report.aggregate` turns rows into the
comparison table (with :mod:`~bench.report.stats` for the intervals);
:mod:`~bench.report.markdown` and :mod:`~bench.report.fmt` format it;
:mod:`~bench.report.summary` writes ``summary.md``, ``comparison.csv``, the charts
(:mod:`~bench.report.charts`) and ``index.html`` (:mod:`~bench.report.html`);
:mod:`~bench.report.advise` answers "which strategy?" from the same table.

    python -m bench report results/<profile> [--compat results/compat.csv] [--out DIR] [--headline]
    python -m bench advise --model vgg16 [--dataset mnist] [--results results/cpu]
"""

from __future__ import annotations

from bench.report.aggregate import comparison_table
from bench.report.cli import main
from bench.report.load import ReportError, read_compat, read_history, read_ops, read_runs
from bench.report.markdown import headline_table
from bench.report.summary import build_report, summary_markdown

__all__ = ["ReportError", "build_report", "comparison_table", "headline_table", "main",
           "read_compat", "read_history", "read_ops", "read_runs", "summary_markdown"]
