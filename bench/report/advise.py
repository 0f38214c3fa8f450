"""Which strategy to use, computed from a results directory: ``python -m bench advise``.

    python -m bench advise --model vgg16 [--dataset mnist] [--results results/cpu]

For each dataset × model × device it answers three questions, each only where an interval
separates one strategy from every other candidate (:func:`bench.report.stats.pick_best`); otherwise the
answer is "no clear winner" with the tied set:

(a) **best accuracy** — mean test accuracy with the report's 95% interval
    (:func:`bench.report.stats.accuracy_ci`: Wilson over the test images for one seed, the wider of
    Student t over seeds and Wilson for several).
(b) **best accuracy per training second** — ``test_acc / training seconds``, the seconds
    derived from the timed windows' throughput (``epochs × images per epoch /
    train_img_s_pooled``, the median window rate for rows before schema 5), never the wall clock
    of an epoch, which counts whatever else the host ran. Its interval is interval arithmetic on
    the accuracy interval and a time interval: per seed, the images over the p90 to the p10
    window rate, min to max over seeds. Only cells whose accuracy interval lies above chance
    (1 / classes) compete: a fast cell that learned nothing is not efficient; a contended cell
    (timed on a busy host) does not compete either.

A contended cell is never named under any criterion: where it would win, the verdict says it is
not named.
(c) **least peak memory** — ``peak_mem_mib`` (tensor bytes of one training step), median over
    seeds. The schema has no spread column for it (tensor bytes repeat exactly for a cell's
    shapes), so its interval is min..max over seeds widened by :data:`MEMORY_RESOLUTION`:
    strategies within 1% of each other are a tie. Measure-only cells compete here (they measured
    memory), not in (a) or (b).

Default results directory: the published ``results/cpu`` of this checkout. Bad input (unknown
model or dataset, a directory without runs.csv) prints one line naming the bad value and the
valid ones and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench import REPO_ROOT, cli_args
from bench.report.aggregate import comparison_table, images_per_epoch, numeric_column, window_rate
from bench.report.fmt import md_escape
from bench.report.load import TABLE_KEYS, ReportError, current_runs, read_history, read_runs
from bench.report.markdown import display_path
from bench.report.stats import Pick, pick_best, ratio_interval
from bench.schema import Mode, Status

DEFAULT_RESULTS = REPO_ROOT / "results" / "cpu"
MEMORY_RESOLUTION = 0.01  # fraction: peak memories closer than this are not told apart

# (key, title, unit, higher is better)
CRITERIA = (("accuracy", "best accuracy", "%", True),
            ("acc_per_s", "best accuracy per training second", "%/s", True),
            ("memory", "least peak memory", "MiB", False))
DEFINITIONS = {
    "accuracy": "mean test accuracy, 95% CI (Wilson for one seed; t or Wilson over seeds)",
    "acc_per_s": "test accuracy (%) / training seconds from the timed windows' throughput "
                 "(epochs × images per epoch / images per second over all windows), evaluation "
                 "excluded; interval from the accuracy CI and the p10–p90 window rates; only "
                 "cells whose accuracy CI clears chance (1/classes) and not contended",
    "memory": "peak tensor MiB of one training step, median over seeds; interval = min–max "
              f"over seeds ± {100 * MEMORY_RESOLUTION:g}%",
}


@dataclass(frozen=True)
class Verdict:
    """One criterion of one table: the candidates' (value, lo, hi), the pick, and who sat out."""

    criterion: str
    pick: Pick
    values: dict[str, tuple[float, float, float]]
    excluded: dict[str, str] = field(default_factory=dict)  # strategy -> why it did not compete
    # Compatible strategies with no accuracy ('' = none): no winner is named while any is.
    missing: str = ""
    withheld: str = ""  # the top candidate, not named because it is contended

    @property
    def title(self) -> str:
        return next(t for k, t, _, _ in CRITERIA if k == self.criterion)

    @property
    def unit(self) -> str:
        return next(u for k, _, u, _ in CRITERIA if k == self.criterion)


@dataclass(frozen=True)
class Advice:
    """The three verdicts for one dataset × model × device."""

    dataset: str
    model: str
    device_name: str
    verdicts: tuple[Verdict, ...]


# ---------------------------------------------------------------------------------------------
# Computing


def num_classes(dataset: str, history: pd.DataFrame | None) -> int | None:
    """Classes of ``dataset``: the registry's count, else the length of a history row's
    ``per_class_acc`` list, else None (then no chance filter is applied)."""
    try:
        from bench.data import DATASETS
        if dataset in DATASETS:
            return int(DATASETS[dataset].num_classes)
    except ImportError:  # pragma: no cover - torch missing
        pass
    if history is not None and "per_class_acc" in history.columns:
        for text in history.loc[history["dataset"] == dataset, "per_class_acc"].dropna():
            try:
                return len(json.loads(text)) or None
            except (ValueError, TypeError):
                continue
    return None


def _why_not_scored(row: pd.Series) -> str:
    if row["status"] == Mode.MEASURE_ONLY:
        return "measure-only: no accuracy"
    if row["status"] == Status.OK:
        return "no accuracy recorded"
    return str(row["status_detail"] if row["status"] == "mixed" else row["status"])


def _train_seconds(seeds: pd.DataFrame) -> tuple[float, float, float]:
    """(median, lo, hi) training seconds over seeds, from the timed windows: epochs × images
    per epoch over the windows' pooled rate, and over their p90 / p10 rates for the bounds
    (NaN bounds when a seed lacks them). Not ``epochs × epoch_s``: an epoch's wall clock
    counts what else the host ran (2.2-2.4x the window time in three results/cpu cells)."""
    images = numeric_column(seeds, "epochs") * images_per_epoch(seeds)
    t = images / window_rate(seeds)
    t = t[t > 0]
    if t.empty:
        return math.nan, math.nan, math.nan
    lo = images[t.index] / numeric_column(seeds, "train_img_s_p90")[t.index]
    hi = images[t.index] / numeric_column(seeds, "train_img_s_p10")[t.index]
    if lo.isna().any() or hi.isna().any():
        return float(t.median()), math.nan, math.nan
    return float(t.median()), float(lo.min()), float(hi.max())


def _memory(seeds: pd.DataFrame) -> tuple[float, float, float]:
    mem = numeric_column(seeds, "peak_mem_mib").dropna()
    if mem.empty:
        return math.nan, math.nan, math.nan
    return (float(mem.median()), float(mem.min()) * (1 - MEMORY_RESOLUTION),
            float(mem.max()) * (1 + MEMORY_RESOLUTION))


def advise_table(t: pd.DataFrame, runs: pd.DataFrame, classes: int | None) -> tuple[Verdict, ...]:
    """The three verdicts for one dataset × model × device (``t``: its comparison-table rows,
    ``runs``: its runs rows)."""
    acc: dict[str, tuple[float, float, float]] = {}
    per_s: dict[str, tuple[float, float, float]] = {}
    mem: dict[str, tuple[float, float, float]] = {}
    no_acc: dict[str, str] = {}
    no_per_s: dict[str, str] = {}
    no_mem: dict[str, str] = {}
    chance = 1.0 / classes if classes else 0.0
    contended = {s for s in t.loc[t["contended"].astype(bool), "strategy"]} \
        if "contended" in t else set()
    for _, r in t.iterrows():
        s = r["strategy"]
        seeds = runs[runs["strategy"] == s]
        finished = seeds[(seeds["status"] == Status.OK) & (seeds["mode"] == Mode.FULL)]
        m = _memory(seeds)
        if math.isnan(m[0]):
            no_mem[s] = _why_not_scored(r) if r["status"] != Mode.MEASURE_ONLY else "no memory"
        else:
            mem[s] = m
        if r["test_acc_n"] == 0 or pd.isna(r["test_acc_mean"]):
            no_acc[s] = no_per_s[s] = _why_not_scored(r)
            continue
        a = (100 * r["test_acc_mean"], 100 * r["test_acc_ci_lo"], 100 * r["test_acc_ci_hi"])
        acc[s] = a
        if classes and not r["test_acc_ci_lo"] > chance:
            no_per_s[s] = f"at chance: {100 * chance:g}% is inside its accuracy CI"
            continue
        if s in contended:  # its seconds are the busy host's, not its own
            no_per_s[s] = "contended: timed on a busy host"
            continue
        ratio = ratio_interval(a, _train_seconds(finished))
        if math.isnan(ratio[0]):
            no_per_s[s] = "no training time recorded"
        else:
            per_s[s] = ratio
    # A strategy that could have run but has no accuracy might have won: no accuracy winner
    # (nor accuracy-per-second winner) while there is one; the verdict says which and why.
    missing = str(t["missing_acc"].iloc[0]) if "missing_acc" in t and len(t) else ""
    return (_unnamed(Verdict("accuracy", _unless(missing, pick_best(acc)), acc, no_acc, missing),
                     contended),
            Verdict("acc_per_s", _unless(missing, pick_best(per_s)), per_s, no_per_s, missing),
            _unnamed(Verdict("memory", pick_best(mem, higher_is_better=False), mem, no_mem),
                     contended))


def _unnamed(v: Verdict, contended: set[str]) -> Verdict:
    """``v`` with a contended winner withheld: it still counts as a candidate (its accuracy
    and memory are not timing), but a cell timed on a busy host is never named."""
    if v.pick.winner is None or v.pick.winner not in contended:
        return v
    return Verdict(v.criterion, Pick(v.pick.top, None, v.pick.tied), v.values, v.excluded,
                   v.missing, withheld=v.pick.winner)


def _unless(missing: str, pick: Pick) -> Pick:
    """``pick`` with no winner when ``missing`` names strategies lacking an accuracy."""
    return Pick(pick.top, None, pick.tied) if missing and pick.winner is not None else pick


def advise(runs: pd.DataFrame, table: pd.DataFrame,
           history: pd.DataFrame | None = None) -> list[Advice]:
    """One :class:`Advice` per dataset × model × device of a comparison table, in table order."""
    out = []
    cache: dict[str, int | None] = {}
    for key, t in table.groupby(TABLE_KEYS, sort=False):
        dataset, model, device_name = key
        if dataset not in cache:
            cache[dataset] = num_classes(dataset, history)
        rows = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                    & (runs["device_name"] == device_name)]
        out.append(Advice(dataset, model, device_name,
                          advise_table(t, rows, cache[dataset])))
    return out


# ---------------------------------------------------------------------------------------------
# Formatting


def _plain(value: float, unit: str) -> str:
    """A number as the verdicts print it: % with 2 decimals, MiB whole, else 3 figures."""
    if unit == "%":
        return f"{value:.2f}"
    if unit == "MiB":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _interval(v: tuple[float, float, float], unit: str) -> str:
    """``17.40% [15.18, 19.87]``: value, unit, then the interval (or "(no interval)")."""
    value, lo, hi = v
    sep = "" if unit == "%" else " "
    head = f"{_plain(value, unit)}{sep}{unit}"
    if math.isnan(lo) or math.isnan(hi):
        return f"{head} (no interval)"
    return f"{head} [{_plain(lo, unit)}, {_plain(hi, unit)}]"


def verdict_text(v: Verdict) -> str:
    """One line: the winner and why, or "no clear winner" with the tied set, or nothing to pick."""
    p = v.pick
    if p.top is None:
        return "nothing to compare"
    if v.missing:
        return f"no winner named — no accuracy for {v.missing}"
    if v.withheld:
        return (f"not named — {v.withheld} {_interval(v.values[v.withheld], v.unit)} leads, "
                "but it is contended (timed on a busy host)")
    if p.winner is not None:
        rest = len(v.values) - 1
        why = (f"its interval clears the other {rest}" if rest else
               "the only strategy with a value")
        return f"{p.winner} — {_interval(v.values[p.winner], v.unit)}; {why}"
    tied = ", ".join(f"{s} {_interval(v.values[s], v.unit)}" for s in p.tied)
    return f"no clear winner — tied: {tied}"


def advice_text(items: list[Advice]) -> str:
    """The plain-text answer ``bench advise`` prints."""
    lines = []
    width = max(len(t) for _, t, _, _ in CRITERIA)
    for a in items:
        lines += [f"{a.dataset} · {a.model} · {a.device_name}"]
        for v in a.verdicts:
            lines.append(f"  {v.title + ':':<{width + 1}} {verdict_text(v)}")
            if v.excluded:
                out = "; ".join(f"{s} ({why})" for s, why in v.excluded.items())
                lines.append(f"  {'':<{width + 1}} not compared: {out}")
        lines.append("")
    lines.append("How each is defined (a winner only where its interval clears every other "
                 "candidate's):")
    lines += [f"  {t}: {DEFINITIONS[k]}" for k, t, _, _ in CRITERIA]
    return "\n".join(lines) + "\n"


def advice_markdown(items: list[Advice]) -> list[str]:
    """The "Recommendation" section of summary.md (lines)."""
    if not items:
        return []
    lines = ["", "## Recommendation", "",
             "Computed by `python -m bench advise` from these rows. A strategy is named only "
             "where its interval clears every other candidate's; otherwise the tied set is "
             "listed. " + " ".join(f"*{t}*: {DEFINITIONS[k]}." for k, t, _, _ in CRITERIA), "",
             "| dataset | model | device | " + " | ".join(t for _, t, _, _ in CRITERIA) + " |",
             "|---|---|---|" + "---|" * len(CRITERIA)]
    for a in items:
        cells = [md_escape(verdict_text(v)) for v in a.verdicts]
        lines.append("| " + " | ".join([md_escape(a.dataset), md_escape(a.model),
                                        md_escape(a.device_name), *cells]) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# Command line


def _choose(name: str, value: str | None, valid: list[str], results_dir: Path) -> None:
    if value is not None and value not in valid:
        raise ReportError(f"{name} {value!r} is not in {display_path(results_dir)}"
                                 f"; valid: {', '.join(valid)}")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench advise``: argv excludes the ``advise`` word. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m bench advise",
        description="Which strategy to use for best accuracy, best accuracy per training "
                    "second and least memory — only where an interval separates it.")
    parser.add_argument("--model", required=True, help="e.g. vgg16 (a model in the results)")
    parser.add_argument("--dataset", default=None, help="default: every dataset in the results")
    cli_args.add_results(parser, "results directory holding runs.csv (default: the published "
                                 "results/cpu of this checkout)", DEFAULT_RESULTS, type=Path)
    args = parser.parse_args(argv)
    try:
        every = read_runs(args.results_dir)
        # A model or dataset that is not in the rows is bad input, superseded rows or not.
        _choose("model", args.model, list(dict.fromkeys(every["model"])), args.results_dir)
        of_model = every[every["model"] == args.model]
        _choose("dataset", args.dataset, list(dict.fromkeys(of_model["dataset"])), args.results_dir)
        runs, current_note = current_runs(every)
        if runs.empty:
            print(f"{display_path(args.results_dir)}: {current_note}")
            return 0
        runs = runs[runs["model"] == args.model]
        if args.dataset is not None:
            runs = runs[runs["dataset"] == args.dataset]
        runs = runs.reset_index(drop=True)
        table = comparison_table(runs)
        history = read_history(args.results_dir, runs)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{display_path(args.results_dir)}:" + (f" {current_note}" if current_note else ""))
    print(advice_text(advise(runs, table, history)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
