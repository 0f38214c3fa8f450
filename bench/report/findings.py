""""What we found": three to five findings generated from a results directory, never typed in.

The same text goes into ``summary.md``, ``index.html`` (rendered by
:func:`bench.report.html.findings_section`) and, with ``bench report DIR --readme
README.md``, between the two marker comments of the README that name ``DIR``
(:mod:`bench.report.readme`), so the README's findings are the published files' own.

Every finding is a claim only where the report's statistics support it, with one owner for
each rule: the accuracy verdict is :func:`bench.report.advise.advise`'s (a winner only where
its interval clears every other candidate's; contended and measure-only cells are never named;
no winner while a compatible strategy lacks an accuracy), the gaps are
:func:`bench.report.stats.accuracy_diff_ci` and the speed and memory separations
:func:`bench.report.stats.separated`. Speed is the timed windows' throughput (``train_img_s``,
median over seeds, p10–p90 spread), never the wall clock, which counts whatever else the host
ran. Superseded rows are left out by the caller (:func:`bench.report.load.current_runs`).
Below two seeds per cell no finding is claimed: one seed's interval covers the test images'
sampling noise, not seed-to-seed variation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import REPO_ROOT
from bench.report.advise import Advice, Verdict, num_classes
from bench.report.aggregate import scored_images
from bench.report.fmt import fmt_num
from bench.report.load import TABLE_KEYS
from bench.report.page_header import read_config, recipe_items
from bench.report.stats import accuracy_diff_ci, ratio_interval, separated

MAX_FINDINGS = 5
MIN_SEEDS = 2  # fewer seeds per cell: no finding is claimed


@dataclass(frozen=True)
class Finding:
    """One generated sentence (markdown: identifiers in backticks, the lead in bold) and the
    file its numbers come from."""

    text: str
    source: str


def shown_path(path: Path, base: Path = REPO_ROOT) -> str:
    """``path`` relative to ``base`` (the repository) when below it, else as given: the same
    text whatever the working directory, so the README block can be checked."""
    path, base = Path(path).resolve(), Path(base).resolve()
    if base == path or base in path.parents:
        return Path(os.path.relpath(path, base)).as_posix()
    return str(path)


# ---------------------------------------------------------------------------------------------
# What was measured


def measured_line(runs: pd.DataFrame, config: dict, label: str) -> str:
    """The sentence said before any finding: weights, epochs, images, seeds, recipe, machine,
    and how to run with one's own weights (the ``weights`` key)."""
    weights = config.get("weights")
    own = any(":weights=" in str(e) for e in config.get("per_model", []))
    if weights == "" and not own:
        start = "randomly initialised models (no pretrained weights: `weights = \"\"`)"
    elif weights is None:
        start = "models whose starting weights are not recorded (no `config.toml`)"
    else:
        start = f"models started from `weights = \"{weights}\"`"
    recipe = "; ".join(f"{k} {v}" for k, v in recipe_items(runs))
    devices = ", ".join(dict.fromkeys(runs["device_name"].astype(str)))
    profile = str(runs["profile"].dropna().iloc[0]) if "profile" in runs and \
        runs["profile"].notna().any() else "PROFILE"
    files = "`, `".join(f"{label}/{n}" for n in ("config.toml", "runs.csv")
                        if n == "runs.csv" or config)
    return (f"**Measured** (`{files}`): {start}; {recipe}; "
            f"on {devices}. With your own weights: `python -m bench run --profile {profile} "
            "--set weights=PATH.pt` (a state dict; `weights=imagenet` for torchvision's).")


# ---------------------------------------------------------------------------------------------
# The findings


def _names(strategies: list[str]) -> str:
    return ", ".join(f"`{s}`" for s in strategies)


def _pct(v: tuple[float, float, float]) -> str:
    """'95.70% [94.26, 96.79]' from (value, lo, hi) in percent."""
    value, lo, hi = v
    if math.isnan(lo) or math.isnan(hi):
        return f"{value:.2f}% (no interval)"
    # A t interval over three scattered seeds can run past 0 or 100; accuracy cannot.
    return f"{value:.2f}% [{max(lo, 0.0):.2f}, {min(hi, 100.0):.2f}]"


def _speed(r: pd.Series) -> str:
    """'143 img/s (p10–p90 120–150)': the median window throughput and its spread."""
    text = f"{fmt_num(r['train_img_s_median'])} img/s"
    if not (pd.isna(r["train_img_s_lo"]) or pd.isna(r["train_img_s_hi"])):
        text += f" (p10–p90 {fmt_num(r['train_img_s_lo'])}–{fmt_num(r['train_img_s_hi'])})"
    return text


def _speed_range(r: pd.Series) -> tuple[float, float]:
    return float(r["train_img_s_lo"]), float(r["train_img_s_hi"])


def _mem_range(r: pd.Series) -> tuple[float, float]:
    """min–max peak MiB over seeds, widened by advise's 1% resolution (closer is a tie)."""
    from bench.report.advise import MEMORY_RESOLUTION
    return (float(r["peak_mem_mib_lo"]) * (1 - MEMORY_RESOLUTION),
            float(r["peak_mem_mib_hi"]) * (1 + MEMORY_RESOLUTION))


def _accuracy_finding(name: str, t: pd.DataFrame, v: Verdict,
                      chance_pct: float = 0.0) -> tuple[str, str | None]:
    """(the sentence, the strategy it offers or None): which strategy is best on one model, or
    the tied set and its cheapest member.

    ``chance_pct``: 100 / classes (0 = unknown). A tied strategy whose accuracy interval
    reaches it is not offered as the one to take, however cheap: it may not have learned
    anything (the recommendation's accuracy-per-second column applies the same rule)."""
    if v.pick.top is None:
        return "", None
    if v.missing:
        return (f"**{name}: no winner named**: {v.missing} could run but has no accuracy, so "
                "any of the others could be beaten by it."), None
    if v.withheld:
        return (f"**{name}: no winner named**: `{v.withheld}` leads with "
                f"{_pct(v.values[v.withheld])} but was timed on a busy host (contended)."), None
    if v.pick.winner is not None:
        rest = len(v.values) - 1
        return (f"**{name}: `{v.pick.winner}` has the best accuracy**, "
                f"{_pct(v.values[v.pick.winner])}; its 95% interval clears the other "
                f"{rest}'s."), v.pick.winner
    tied = list(v.pick.tied)
    rows = t.set_index("strategy")
    cheap = [s for s in tied if not bool(rows.at[s, "contended"])
             and not pd.isna(rows.at[s, "train_img_s_median"])]
    at_chance = [s for s in cheap if chance_pct and not v.values[s][1] > chance_pct]
    cheap = [s for s in cheap if s not in at_chance]
    skipped = ("" if not at_chance else
               f" ({_names(at_chance)} not taken: {'its' if len(at_chance) == 1 else 'their'} "
               f"interval reaches chance, {chance_pct:g}%)")
    text = (f"**{name}: no clear winner**: " + ", ".join(f"`{s}` {_pct(v.values[s])}"
                                                        for s in tied)
            + " are tied (the top one's 95% interval overlaps "
            + ("the other one's)" if len(tied) == 2 else f"the other {len(tied) - 1}'s)"))
    if not cheap:
        return text + skipped + ".", None
    best = max(cheap, key=lambda s: rows.at[s, "train_img_s_median"])
    others = [_speed_range(rows.loc[s]) for s in cheap if s != best]
    clear = separated(_speed_range(rows.loc[best]), others)
    return (text + f"; take the cheapest of the tied set, `{best}`, at {_speed(rows.loc[best])}"
            + ("" if not others else ", its window spread clear of the others'" if clear else
               ", though its window spread overlaps another tied strategy's") + skipped
            + "."), best


def _seed_values(runs: pd.DataFrame, strategy: str) -> tuple[list[float], float]:
    """(test accuracies of the finished seeds, the images each was scored on)."""
    rows = runs[(runs["strategy"] == strategy) & (runs["status"] == "ok")
                & (runs["mode"] == "full")]
    images = scored_images(rows)
    return rows["test_acc"].dropna().tolist(), float(images.min()) if len(images) else math.nan


def _cost_finding(name: str, t: pd.DataFrame, runs: pd.DataFrame,
                  offered: str | None = None) -> str:
    """What the costliest strategy (the slowest window throughput) buys in accuracy, and what it
    costs in throughput and peak memory, against ``offered`` (the strategy the accuracy finding
    offers) when that is another timed one, else against the fastest: a reader weighs the
    costliest against what they were told to take, not against one they were told to skip."""
    timed = t[(~t["contended"].astype(bool)) & t["train_img_s_median"].notna()
              & (t["train_img_s_packed"] <= 1)]
    if len(timed) < 2:
        return ""
    slow = timed.loc[timed["train_img_s_median"].idxmin()]
    fast = timed.loc[timed["train_img_s_median"].idxmax()]
    pick = timed[timed["strategy"] == offered]
    against_pick = len(pick) > 0 and offered != slow["strategy"]
    if against_pick:
        fast = pick.iloc[0]
    speed = ratio_interval(
        (fast["train_img_s_median"], fast["train_img_s_lo"], fast["train_img_s_hi"]),
        (slow["train_img_s_median"], slow["train_img_s_lo"], slow["train_img_s_hi"]))
    slower = f"{speed[0]:.1f}× slower"
    if not math.isnan(speed[1]):
        slower += f" ({speed[1]:.1f}–{speed[2]:.1f}× by the window spreads)"
    if not separated(_speed_range(fast), [_speed_range(slow)]):
        slower += ", though their window spreads overlap"
    mem = ""
    if not (pd.isna(slow["peak_mem_mib"]) or pd.isna(fast["peak_mem_mib"])):
        tie = not separated(_mem_range(fast), [_mem_range(slow)], higher_is_better=False) and \
            not separated(_mem_range(slow), [_mem_range(fast)], higher_is_better=False)
        mem = (f" in {fmt_num(slow['peak_mem_mib'])} MiB of peak memory against "
               f"{fmt_num(fast['peak_mem_mib'])}"
               + (" (within 1%: a tie)" if tie else
                  f" ({slow['peak_mem_mib'] / fast['peak_mem_mib']:.2f}×)"))
    cost = (f"`{slow['strategy']}` trains at {_speed(slow)} against {_speed(fast)} for "
            f"`{fast['strategy']}`{' (the pick above)' if against_pick else ''}, {slower},{mem}")
    if slow["test_acc_n"] == 0 or fast["test_acc_n"] == 0:
        missing = slow if slow["test_acc_n"] == 0 else fast
        return (f"**{name}: the costliest strategy**, {cost}; what it buys is not measured: "
                f"`{missing['strategy']}` has no accuracy ({missing['status']}).")
    a, a_images = _seed_values(runs, slow["strategy"])
    b, b_images = _seed_values(runs, fast["strategy"])
    d = accuracy_diff_ci(a, a_images, b, b_images)
    if math.isnan(d.lo):
        return ""
    gap = f"{100 * d.diff:+.2f} pp [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]"
    if not d.significant:
        buys = f"for no accuracy gain that can be told from zero: {gap}"
    elif d.diff > 0:
        buys = f"and buys {gap} of accuracy"
    else:
        buys = f"and loses accuracy: {gap}"
    return f"**{name}: the costliest strategy**, {cost} {buys}."


def findings(runs: pd.DataFrame, table: pd.DataFrame, advice: list[Advice],
             source: str) -> tuple[list[Finding], str]:
    """(findings, '' or the sentence saying why none is claimed) from the current rows.

    ``source``: the results file(s) shown as each finding's origin. At most
    :data:`MAX_FINDINGS`, two per dataset × model × device in table order (its accuracy
    verdict, then what its costliest strategy buys); none below :data:`MIN_SEEDS` seeds.
    """
    scored = table[table["test_acc_n"] > 0]
    if scored.empty:
        return [], "No cell has an accuracy: no finding is claimed."
    seeds = int(scored["test_acc_n"].min())
    if seeds < MIN_SEEDS:
        return [], (f"{'One seed' if seeds == 1 else f'{seeds} seeds'} per cell: no finding is "
                    "claimed. One seed's interval covers the test images' sampling noise, not "
                    "seed-to-seed variation, so a ranking could be one seed's luck; rerun with "
                    "`--set seeds=0,1,2`.")
    verdicts = {(a.dataset, a.model, a.device_name): a.verdicts[0] for a in advice}
    several = {k for k in ("dataset", "device_name") if table[k].nunique() > 1}
    out: list[Finding] = []
    for key, t in table.groupby(TABLE_KEYS, sort=False):
        name = " · ".join(str(v) for k, v in zip(TABLE_KEYS, key, strict=True)
                          if k == "model" or k in several)
        rows = runs[(runs["dataset"] == key[0]) & (runs["model"] == key[1])
                    & (runs["device_name"] == key[2])]
        classes = num_classes(str(key[0]), None)
        chance_pct = 100.0 / classes if classes else 0.0
        verdict, offered = (_accuracy_finding(name, t, verdicts[key], chance_pct)
                            if key in verdicts else ("", None))
        for text in (verdict, _cost_finding(name, t, rows, offered)):
            if text:
                out.append(Finding(text, source))
    extra = len(out) - MAX_FINDINGS
    note = (f"{extra} more in `summary.md`'s tables and recommendation." if extra > 0 else "")
    return out[:MAX_FINDINGS], note


# ---------------------------------------------------------------------------------------------
# Rendering


def findings_body(runs: pd.DataFrame, table: pd.DataFrame | None, advice: list[Advice],
                  results_dir: Path, note: str = "") -> list[str]:
    """The section's markdown lines without its heading (what the README block holds).

    ``runs``: the current rows (empty when every row is superseded; ``note`` then says so).
    """
    label = shown_path(results_dir)
    if table is None or runs.empty:
        return [f"No finding is claimed. {note}".strip() if note else
                "No finding is claimed: no current rows."]
    files = ", ".join(f"`{label}/{f}`" for f in sorted(runs["source_file"].unique())) \
        if "source_file" in runs else f"`{label}/runs.csv`"
    found, why = findings(runs, table, advice, files)
    lines = [measured_line(runs, read_config(results_dir), label), ""]
    if not found:
        return [*lines, why]
    lines.append(f"Generated by `python -m bench report {label}` from the file each finding "
                 "names. Intervals are 95%; a strategy is named best only where its interval "
                 "clears every other's, and each sentence says when a gap's interval includes "
                 "zero or two window spreads overlap.")
    lines.append("")
    lines += [f"{i}. {f.text} ({f.source})" for i, f in enumerate(found, 1)]
    return [*lines, *(["", why] if why else [])]


def findings_markdown(body: list[str]) -> list[str]:
    """The "What we found" section of summary.md (lines)."""
    return ["", "## What we found", "", *body]


def findings_for(results_dir: Path) -> list[str]:
    """The block's lines for ``results_dir``, computed from its files with no chart drawn
    (what the README test compares against)."""
    from bench.report.advise import advise
    from bench.report.aggregate import comparison_table
    from bench.report.load import current_runs, read_history, read_runs

    runs = read_runs(results_dir)
    current, note = current_runs(runs)
    if current.empty:
        return findings_body(current, None, [], results_dir, note)
    table = comparison_table(current)
    return findings_body(current, table, advise(current, table, read_history(results_dir, current)),
                         results_dir)
