"""``python -m bench report DIR|--results DIR [--compat CSV] [--out DIR] [--headline]
[--readme README.md]``: regenerate ``summary.md``, ``comparison.csv``, ``charts/`` and
``index.html`` from a results directory (and, with ``--readme``, the README's findings block
for DIR); exit 2 on unusable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import cli_args
from bench.report.load import ReportError
from bench.report.markdown import display_path, headline_table
from bench.report.readme import ReadmeError, fill
from bench.report.summary import _build


def main(argv: list[str] | None = None) -> int:
    """``python -m bench report <dir>``: argv excludes the ``report`` word. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m bench report",
        description="Regenerate summary.md, comparison.csv, charts/ and index.html from a "
                    "results directory.")
    # The directory is the positional argument, as it always was, or --results DIR as in
    # every other subcommand (bench/cli_args.py).
    parser.add_argument("directory", type=Path, nargs="?", metavar="results_dir",
                        help="e.g. results/cpu (holds runs*.csv); or --results DIR")
    cli_args.add_results(parser, "the results directory (the same as the positional one)",
                         type=Path)
    parser.add_argument("--compat", type=Path, default=None,
                        help="doctor's compat.csv (default: <dir>/../compat.csv if present)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write (default: the results directory)")
    parser.add_argument("--headline", action="store_true",
                        help="also print the compact README table (model × strategy) to stdout")
    parser.add_argument("--shared-axis", action=argparse.BooleanOptionalAction, default=True,
                        help="one accuracy axis across chart panels (default: on, so a gap "
                             "looks as large in every panel; --no-shared-axis zooms each)")
    parser.add_argument("--readme", type=Path, default=None, metavar="README.md",
                        help="also replace the findings block of this file (between the two "
                             "marker comments naming the results directory) with the generated "
                             "'What we found' text; make publish does this for README.md")
    args = parser.parse_args(argv)
    if args.directory is not None and args.results_dir is not None \
            and args.directory != args.results_dir:
        parser.error(f"two results directories: {args.directory} and --results "
                     f"{args.results_dir}; give one")
    args.results_dir = args.directory or args.results_dir
    if args.results_dir is None:
        parser.error("the results directory is required: report DIR or report --results DIR")
    try:
        written, notes, table, warnings = _build(args.results_dir, args.compat, args.out,
                                                 args.shared_axis)
        if args.readme is not None:
            written.append(fill(args.readme, args.results_dir))
    except (ReportError, ReadmeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {display_path(path)}")
    for note in notes:
        print(f"note: {note}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.headline:
        print()
        if table is None:  # every row superseded: the notes above say so
            print("no current rows: no headline table")
        else:
            print(headline_table(table), end="")
    return 0
