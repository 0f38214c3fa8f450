"""Markdown formatting: numbers, durations, percentages, escaping, the per-model tables of
``summary.md`` and the compact headline table of the README. Accuracies are printed in percent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bench.report.aggregate import comparison_table
from bench.report.fmt import DASH, fmt_duration, fmt_num, fmt_pct, md_escape
from bench.report.load import TABLE_KEYS, ReportError
from bench.schema import Mode, Status


def _bold_best(values: pd.Series, texts: list[str], higher_is_better: bool) -> list[str]:
    """Bold every row holding the column's best value (only if at least two rows compete).

    Only for exact quantities (counts such as GFLOPs/img): a measured column needs an interval
    to call a winner (see :func:`_bold_flagged`).
    """
    valid = values.dropna()
    if len(valid) < 2 or valid.nunique() < 2:
        return texts
    best = valid.max() if higher_is_better else valid.min()
    return [f"**{t}**" if (not pd.isna(v) and v == best) else t
            for v, t in zip(values, texts, strict=True)]


def _bold_flagged(flags: pd.Series, texts: list[str]) -> list[str]:
    """Bold the rows whose flag is set (a winner whose interval clears every other row's)."""
    return [f"**{t}**" if bool(f) else t for f, t in zip(flags, texts, strict=True)]


def _ci_cell(r: pd.Series) -> str:
    """The 95% CI cell in percent: bounds, half-width and where the interval came from."""
    lo, hi = r["test_acc_ci_lo"], r["test_acc_ci_hi"]
    if pd.isna(lo) or pd.isna(hi):
        return DASH
    images = f"{r['test_images']:,.0f} img"
    source = {"wilson": f"Wilson, {images}", "t": "t",
              "wilson>t": f"Wilson, {images} (wider than t)"}.get(r["test_acc_ci_method"], "")
    return f"[{fmt_pct(lo)}, {fmt_pct(hi)}] ±{50 * (hi - lo):.2f} {source}".rstrip()


def _diff_cell(r: pd.Series) -> str:
    """Δ vs the top strategy in pp with its interval; 'best' / 'top (tied)' on the top row."""
    if r["is_best"]:
        return "best"
    if r["is_top"] and r.get("contended"):
        return "top (contended)"
    if r["is_top"]:
        return "top (tied)"
    if pd.isna(r["diff_vs_best"]):
        return DASH
    if pd.isna(r["diff_ci_lo"]):
        return f"{100 * r['diff_vs_best']:+.2f} (no CI: test image count unknown)"
    ns = "" if r["diff_significant"] else " n.s."
    return (f"{100 * r['diff_vs_best']:+.2f} "
            f"[{100 * r['diff_ci_lo']:+.2f}, {100 * r['diff_ci_hi']:+.2f}]{ns}")


def winner_line(t: pd.DataFrame) -> str:
    """One sentence on who wins the accuracy comparison of one table ('' with < 2 scored)."""
    if (t["test_acc_n"] > 0).sum() < 2:
        return ""
    missing = t["missing_acc"].iloc[0] if "missing_acc" in t and len(t) else ""
    if missing:
        return (f"No winner named: {missing} could run here but {'have' if ', ' in missing else 'has'} "
                "no accuracy, so none is bold.")
    best = t[t["is_best"]]
    if len(best):
        caveat = (" (one seed: the interval covers the test set's noise, not seed-to-seed "
                  "variation)" if (t.loc[t["test_acc_n"] > 0, "test_acc_n"] < 2).any() else "")
        return (f"Best accuracy: `{best['strategy'].iloc[0]}` — its 95% interval clears every "
                f"other strategy's{caveat}.")
    top = t[t["is_top"]]
    if len(top) and bool(top["contended"].iloc[0]):
        return (f"No winner named: `{top['strategy'].iloc[0]}` has the top mean, but its "
                "timing ran on a busy host (contended), so it is not named.")
    tied = t.loc[t["is_top"], "tied_with"]
    names = ", ".join(f"`{n}`" for n in (tied.iloc[0].split(", ") if len(tied) else []))
    return f"No clear winner: {names} tied (their 95% intervals overlap), so none is bold."


def _status_cell(row: pd.Series, note: int | None) -> str:
    mark = f" [{note}]" if note else ""
    if row.get("contended"):
        mark = f", contended{mark}"
    if row["status"] == Status.OK:
        return f"ok{mark}"
    if row["status"] == Mode.MEASURE_ONLY:
        return f"measure-only (full run est. {fmt_duration(row['estimate_s'])}){mark}"
    if row["status"] == "mixed":
        return f"{row['status_detail']}{mark}"
    return f"{row['status']}{mark}"


def _table_markdown(t: pd.DataFrame) -> list[str]:
    """One dataset × model × device table; returns lines (table, then the reasons as notes)."""
    notes: dict[str, int] = {}
    status_cells = []
    for _, r in t.iterrows():
        note = None
        text = "; ".join(t for t in (r["reason"], r.get("chance_note", "")) if t)
        if text:
            note = notes.setdefault(text, len(notes) + 1)
        status_cells.append(_status_cell(r, note))

    acc = []
    for _, r in t.iterrows():
        if r["test_acc_n"] == 0:
            acc.append(DASH)
        elif r["test_acc_n"] == 1:
            acc.append(f"{fmt_pct(r['test_acc_mean'])} (n=1)")
        else:
            acc.append(f"{fmt_pct(r['test_acc_mean'])} ± {fmt_pct(r['test_acc_std'])} "
                       f"(n={r['test_acc_n']})")
    ci = [_ci_cell(r) for _, r in t.iterrows()]
    diff = [_diff_cell(r) for _, r in t.iterrows()]
    ttt = []
    for _, r in t.iterrows():
        if r["test_acc_n"] == 0:
            ttt.append(DASH)
        else:
            ttt.append(f"{fmt_num(r['time_to_target_s_median'])} "
                       f"({r['n_reached_target']}/{r['test_acc_n']})")

    n_scored = int((t["test_acc_n"] > 0).sum())
    columns = [
        ("strategy", [f"`{s}`{' †' if r else ''}" for s, r in
                      zip(t["strategy"], t.get("reinitialized", [""] * len(t)), strict=True)],
         False),
        ("test acc % (mean ± std)", _bold_flagged(t["is_best"] & (n_scored > 1), acc), True),
        ("95% CI", ci, True),
        ("Δ vs top, pp [95% CI]", diff, True),
        ("best acc %", [fmt_pct(v) for v in t["best_acc_mean"]], True),
        ("time to target, s (reached)", ttt, True),
        ("train img/s", _bold_flagged(t["train_img_s_is_best"], _speeds(t)), True),
        ("img/s, all windows", [fmt_num(v) for v in t["train_img_s_pooled_median"]], True),
        ("eval img/s", [fmt_num(v) for v in t["eval_img_s_median"]], True),
        ("MFU %", [DASH if pd.isna(v) else f"{100 * v:.1f}" for v in t["mfu_median"]], True),
        ("peak MiB", [fmt_num(v) for v in t["peak_mem_mib"]], True),
        ("GFLOPs/img", _bold_best(t["gflops_fwd_per_img"],
                                  [fmt_num(v) for v in t["gflops_fwd_per_img"]], False), True),
        ("params M", [fmt_num(v / 1e6) for v in t["params"]], True),
        ("input px", [DASH if pd.isna(v) else f"{v:.0f}" for v in t["effective_input_px"]],
         True),
        ("status", status_cells, False),
    ]
    lines = ["| " + " | ".join(name for name, _, _ in columns) + " |",
             "|" + "|".join("---:" if right else "---" for _, _, right in columns) + "|"]
    for i in range(len(t)):
        lines.append("| " + " | ".join(md_escape(cells[i]) for _, cells, _ in columns) + " |")
    if notes:
        lines.append("")
        lines += [f"[{n}] {md_escape(reason)}  " for reason, n in notes.items()]
    lines += contention_notes(t)
    if "reinitialized" in t and (t["reinitialized"] != "").any():
        lines += ["", "† the strategy created or replaced layers (`reinitialized` column; their "
                  "init rule is in runs.csv)."]
    return lines


def speed_text(r: pd.Series) -> str:
    """A cell's train img/s; a packed figure says how many cells shared the device, a
    contended one that the host was busy (and the CPU share it got)."""
    packed = int(r.get("train_img_s_packed", 1) or 1)
    text = fmt_num(r["train_img_s_median"])
    if text == DASH:
        return text
    if packed > 1:
        text = f"{text} (packed ×{packed})"
    if r.get("contended"):
        text = f"{text} (contended, CPU share {r.get('cpu_share_min', float('nan')):.2f})"
    return text


def contention_notes(t: pd.DataFrame) -> list[str]:
    """The lines under a table about the contention check: what a contended mark means, or
    that these rows predate the check (schema < 5) and so nothing could be flagged."""
    if "contended" not in t:
        return []
    if t["contended"].any():
        return ["", "contended: the cell's timed windows got under 80% of its threads' CPU "
                "time even after re-measuring (a busy host); its speed and time figures are "
                "not its own and it is never named best."]
    cpu = t["device"].astype(str).eq("cpu") if "device" in t else pd.Series(True, t.index)
    if cpu.any() and not t.loc[cpu, "contention_measured"].any():
        return ["", "Contention was not measured for these rows (written before schema 5): "
                "a busy host would not be flagged here."]
    return []


def _speeds(t: pd.DataFrame) -> list[str]:
    return [speed_text(r) for _, r in t.iterrows()]


def _is_comparison(df: pd.DataFrame) -> bool:
    return "test_acc_mean" in df.columns


def headline_table(df: pd.DataFrame) -> str:
    """A compact markdown table for the README: model × strategy -> accuracy, speed, MFU, memory.

    ``df`` is a :func:`comparison_table` (or a runs table, aggregated first). Dataset and
    device columns appear only when there is more than one of them. An accuracy is bold only
    when it is the ``is_best`` of its dataset × model × device: its interval clears every other
    strategy's (see :func:`comparison_table`); with a tie nothing is bold.
    """
    t = df if _is_comparison(df) else comparison_table(df)
    if t.empty:
        raise ReportError("nothing to tabulate: the table has no rows")
    extra = [c for c in ("dataset", "device_name") if t[c].nunique() > 1]
    head = [*extra, "model", "strategy"]
    names = {"dataset": "dataset", "device_name": "device"}
    competitors = t[t["test_acc_n"] > 0].groupby(TABLE_KEYS).size().to_dict()
    # MFU only where a peak was measured (a CPU run without one leaves the column empty).
    with_mfu = bool(t["mfu_median"].notna().any()) if "mfu_median" in t else False
    numbers = ["test acc %", "train img/s", *(["MFU %"] if with_mfu else []), "peak MiB"]
    lines = ["| " + " | ".join([*(names.get(c, c) for c in head), *numbers, "status"]) + " |",
             "|" + "|".join(["---"] * len(head) + ["---:"] * len(numbers) + ["---"]) + "|"]
    for _, r in t.iterrows():
        if r["test_acc_n"] == 0:
            acc = DASH
        elif r["test_acc_n"] == 1:
            acc = fmt_pct(r["test_acc_mean"])
        else:
            acc = f"{fmt_pct(r['test_acc_mean'])} ± {fmt_pct(r['test_acc_std'])}"
        if r["is_best"] and competitors[tuple(r[k] for k in TABLE_KEYS)] > 1:
            acc = f"**{acc}**"
        status = r["status_detail"] if r["status"] == "mixed" else r["status"]
        if r.get("chance_note"):
            status += " (at chance)"
        if r.get("contended"):
            status += " (contended)"
        mfu = ([DASH if pd.isna(r["mfu_median"]) else f"{100 * r['mfu_median']:.1f}"]
               if with_mfu else [])
        cells = [*(r[c] for c in extra), r["model"], f"`{r['strategy']}`", acc,
                 speed_text(r), *mfu, fmt_num(r["peak_mem_mib"]), status]
        lines.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def display_path(path: Path) -> str:
    """Relative to the working directory when below it (as a user would type it)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(Path(path).resolve()) if rel.startswith("..") else rel


def unique_value(runs: pd.DataFrame, col: str) -> str:
    if col not in runs.columns:
        return ""
    return " / ".join(str(v) for v in dict.fromkeys(runs[col].dropna()))
