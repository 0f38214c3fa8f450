"""Tables and charts from a results directory -- reads only the published CSVs.

Outputs, beside the inputs (or under ``--out``): ``summary.md`` (one table per dataset x model x
device, one row per strategy, the warnings of mixed provenance, and the recommendation of
:mod:`bench.report.advise`), ``comparison.csv`` (the same numbers, machine-readable),
``charts/*.png|svg`` (:mod:`bench.report.charts`) and ``index.html`` (one self-contained page:
:mod:`bench.report.html`). Accuracy panels share one y axis unless ``--no-shared-axis``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from bench.outpath import out_problem
from bench.report.aggregate import comparison_table, numeric_column
from bench.report.fmt import fmt_num, fmt_pct
from bench.report.load import (
    TABLE_KEYS,
    UNKNOWN_DEVICE,
    ReportError,
    _check_columns,
    _files,
    _read_csv,
    _to_numeric,
    current_runs,
    read_compat,
    read_history,
    read_ops,
    read_runs,
)
from bench.report.markdown import (
    _table_markdown,
    display_path,
    headline_table,
    unique_value,
    winner_line,
)
from bench.schema import STATUSES, Mode, Status

# Columns that, when they differ within one table, mean its rows were not measured alike.
PROVENANCE_COLUMNS = (("git_sha", "commits"), ("torch_version", "torch versions"),
                      ("host_cpu", "host CPUs"), ("device_id", "devices"))
FRESH_PEAK_TOLERANCE = 0.20  # |fresh / peak - 1| above this: the peak was taken under load


def _table_name(key: tuple) -> str:
    return " · ".join(str(k) for k in key)


def mixed_provenance_warnings(runs: pd.DataFrame) -> list[str]:
    """One warning per provenance column whose values differ within a single table.

    A table is one dataset × model × device; its rows should come from one commit, torch
    version and host (``host_cpu`` includes the logical core count; ``device_id``, when the
    file has it, names the exact device). Empty cells and absent columns are not compared.
    """
    warnings = []
    for col, what in PROVENANCE_COLUMNS:
        if col not in runs.columns:
            continue
        mixed = []
        for key, g in runs.groupby(TABLE_KEYS, sort=False):
            counts = g[col].dropna().astype(str).value_counts(sort=False)
            if len(counts) > 1:
                values = ", ".join(f"{v} ({n} rows)" for v, n in counts.items())
                mixed.append(f"{_table_name(key)}: {values}")
        if mixed:
            warnings.append(f"rows compared in one table come from different {what} "
                            f"({col}) — {'; '.join(mixed)}. Their differences may be the "
                            "setup's, not the strategies'; rerun them alike to compare")
    return warnings


def fresh_peak_warnings(runs: pd.DataFrame,
                        tolerance: float = FRESH_PEAK_TOLERANCE) -> list[str]:
    """A warning naming the rows whose matmul peak (TFLOP/s) looks measured under load.

    ``peak_fresh_tflops`` is a quick matmul check at the end of the cell; a row is flagged when
    it differs from ``peak_tflops`` by more than ``tolerance`` (a fraction of ``peak_tflops``).
    Rows without the column, or with it empty, are not flagged.
    """
    if "peak_fresh_tflops" not in runs.columns or "peak_tflops" not in runs.columns:
        return []
    fresh = numeric_column(runs, "peak_fresh_tflops")
    peak = numeric_column(runs, "peak_tflops")
    off = (peak > 0) & fresh.notna() & ((fresh / peak - 1.0).abs() > tolerance)
    if not off.any():
        return []
    named = [f"{r['dataset']}/{r['model']}/{r['strategy']} seed {r['seed']} on "
             f"{r['device_name']} (peak {fmt_num(p)} vs fresh {fmt_num(f)} TFLOP/s)"
             for (_, r), p, f in zip(runs[off].iterrows(), peak[off], fresh[off], strict=True)]
    shown = "; ".join(named[:10]) + (f"; and {len(named) - 10} more" if len(named) > 10 else "")
    return [f"{len(named)} rows' matmul peak differs by more than {100 * tolerance:.0f}% from "
            f"a fresh check at the end of the cell: the machine's matmul speed changed between "
            f"the two (other load, or clock drift on a shared host), so their MFU is uncertain "
            f"by at least that much: {shown}"]


def report_warnings(runs: pd.DataFrame) -> list[str]:
    """Everything the summary header and the CLI warn about (the report still gets written)."""
    return [*mixed_provenance_warnings(runs), *fresh_peak_warnings(runs)]


def summary_markdown(runs: pd.DataFrame, table: pd.DataFrame, results_dir: Path,
                     inputs: list[str], charts: list[Path], notes: list[str],
                     out_dir: Path, advice: list[str] | None = None,
                     found: list[str] | None = None) -> str:
    """The whole summary.md text; ``advice``: the recommendation section's lines; ``found``:
    the "What we found" section's (:mod:`bench.report.findings`)."""
    profile = unique_value(runs, "profile") or Path(results_dir).name
    n_cells = len(table)
    labels = pd.Series([Mode.MEASURE_ONLY if (s == Status.OK and m == Mode.MEASURE_ONLY) else s
                        for s, m in zip(runs["status"], runs["mode"], strict=True)])
    counts = labels.value_counts()
    by_status = ", ".join(f"{counts[s]} {s}" for s in (Status.OK, Mode.MEASURE_ONLY, *STATUSES[1:])
                          if s in counts)
    devices = []
    for name, g in runs.groupby("device_name", sort=False):
        kind = unique_value(g, "device")
        cells = table[table["device_name"] == name]
        devices.append(f"{name}{f' ({kind})' if kind else ''}: {len(cells)} cells")
    lines = [
        f"# Results: profile `{profile}`",
        "",
        f"Generated by `python -m bench report {display_path(results_dir)}` from "
        f"{', '.join(inputs)} — regenerate with the same command; never edit by hand.",
        "",
        f"- **Device(s):** {'; '.join(devices)}",
        f"- **Cells:** {n_cells} (dataset × model × strategy × device) from {len(runs)} runs "
        f"(cell × seed): {by_status}",
    ]
    recipe = [f"{label} {unique_value(runs, col)}" for col, label in
              (("epochs", "epochs"), ("batch_size", "batch"), ("precision", "precision"),
               ("optimizer", "optimizer"), ("lr", "lr"), ("train_size", "train images"))
              if unique_value(runs, col)]
    if recipe:
        lines.append(f"- **Recipe:** {', '.join(recipe)}")
    prov = [f"{label} {unique_value(runs, col)}" for col, label in
            (("torch_version", "torch"), ("cuda_version", "CUDA"), ("git_sha", "git"))
            if unique_value(runs, col)]
    first, last = runs["_ts"].min(), runs["_ts"].max()
    prov.append(f"runs {first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC")
    lines.append(f"- **Provenance:** {', '.join(prov)}")
    impossible = int((runs["mfu"] > 1).sum())
    if impossible:
        lines.append(f"- **Warning:** {impossible} rows report MFU above 100%: the matmul peak "
                     "they were measured against was too low (taken while the machine was "
                     "busy?). Their throughput is unaffected; rerun with --force to re-measure")
    lines += [f"- **Warning:** {w}" for w in report_warnings(runs)]
    superseded = runs.attrs.get("superseded", 0)
    if superseded:
        lines.append(f"- **Superseded:** {superseded} older rows of the same cells and seeds, run "
                     "under another recipe or code version, are left out of the tables (they "
                     "stay in the CSVs); the newest run of each cell counts")
    lines += [
        "",
        "How to read: accuracy is top-1 on the test split in %, mean ± sample std over the seeds "
        "that finished (n). The 95% CI of one seed is the binomial (Wilson score) interval over "
        "the test images it was scored on; with more seeds it is the Student t interval over "
        "seeds, or the Wilson one at the mean where that is wider (identical seeds do not "
        "shrink the test set's noise). Δ vs top is the gap to the strategy with the highest "
        "mean in percentage points, with the wider of the Welch and Newcombe 95% intervals — "
        "*n.s.* marks a gap that cannot be told from zero. One seed's interval covers the test "
        "set's sampling noise only, not seed-to-seed variation. Bold marks a winner only when "
        "its interval clears every other strategy's (stricter than the Δ interval, so a gap can "
        "be significant while its cells still overlap): accuracy by the 95% CI, train img/s by "
        "the p10–p90 spread of its timing windows; columns without an interval are never bold, "
        "except exact counts (GFLOPs). Throughput is the median over seeds. "
        "MFU is training FLOP/s (3× the forward FLOPs) over the device's measured matmul peak. "
        "Measure-only and failed cells are listed with their reason, never dropped.",
        "",
        "## At a glance",
        "",
        _glance(runs, table),
        *(found or []),
        *(advice or []),
    ]
    for key, t in table.groupby(TABLE_KEYS, sort=False):
        dataset, model, device_name = key
        target = t["target_acc"].dropna()
        target_txt = (f" — time to target = first evaluation ≥ {fmt_pct(target.iloc[0], 1)}%, "
                      "its training images over the timed windows' img/s"
                      if len(target) else "")
        winner = winner_line(t)
        lines += ["", f"## {dataset} · {model} · {device_name}", "",
                  f"{len(t)} strategies{target_txt}", *([winner] if winner else []), ""]
        lines += _table_markdown(t.reset_index(drop=True))
    lines += gpu_check_markdown(results_dir)
    if charts or notes:
        lines += ["", "## Charts", ""]
        for path in charts:
            if path.suffix == ".png":
                rel = os.path.relpath(path, out_dir).replace(os.sep, "/")
                title = path.stem.replace("_", " ")
                lines.append(f"![{title}]({rel})")
                lines.append("")
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip("\n") + "\n"


def _glance(runs: pd.DataFrame, table: pd.DataFrame) -> str:
    """The headline table of the current method's rows, or the sentence saying none exist."""
    current, note = current_runs(runs)
    if current.empty:
        return note
    glance = headline_table(table if len(current) == len(runs) else comparison_table(current))
    return glance.rstrip("\n") + (f"\n\n{note}" if note else "")


def gpu_check_markdown(results_dir: Path) -> list[str]:
    """The ceilings and naive-baseline section, when ``python -m bench.tools.gpu_check`` left its files.

    ``ceilings.json`` and ``baseline.csv`` sit beside the sweep's CSVs when a gpu_check run is
    published; without them this section is empty.
    """
    results_dir = Path(results_dir)
    lines: list[str] = []
    ceil_path, base_path = results_dir / "ceilings.json", results_dir / "baseline.csv"
    if ceil_path.is_file():
        try:
            ceil = json.loads(ceil_path.read_text())
            figures = [f"bf16 matmul {float(ceil['bf16_matmul_tflops']):.0f} TFLOP/s",
                       f"TF32 matmul {float(ceil['tf32_matmul_tflops']):.0f} TFLOP/s",
                       f"strict fp32 matmul {float(ceil['fp32_matmul_tflops']):.1f} TFLOP/s",
                       f"device-to-device copy {float(ceil['copy_gb_s']):.0f} GB/s"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{ceil_path} is not a gpu_check ceilings file ({exc!r}): "
                              "regenerate it with python -m bench.tools.gpu_check") from None
        lines += ["", f"## Device ceilings ({ceil.get('device_name', UNKNOWN_DEVICE)})", "",
                  "Measured by `python -m bench.tools.gpu_check` (`ceilings.json`): "
                  + ", ".join(figures) + "."]
    if base_path.is_file():
        base = _read_csv(base_path)
        needed = ("model", "strategy", "batch_size", "naive_best_img_s", "harness_fp32_img_s",
                  "ratio_fp32")
        _check_columns(base, base_path, needed)
        numeric = [c for c in base.columns if c.endswith(("_img_s", "batch_size"))
                   or c.startswith("ratio_")]
        _to_numeric(base, numeric, base_path)
        other = [c[len("ratio_"):] for c in base.columns
                 if c.startswith("ratio_") and c != "ratio_fp32"]
        head = ["model", "strategy", "batch", "naive img/s (best of workers)",
                "harness fp32 img/s", "ratio fp32"]
        for p in other:
            head += [f"harness {p} img/s", f"ratio {p}"]
        lines += ["", "## Naive pipeline vs harness (training img/s, same model and batch)", "",
                  "The write-up's pipeline: a `DataLoader` of PIL images with `Resize(224)` + "
                  "`Grayscale(3)` + `ToTensor` on CPU workers, fp32, an untouched torchvision "
                  "model; against the harness's `resize224` cell (`baseline.csv`).", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
        for _, r in base.iterrows():
            cells = [str(r["model"]), f"`{r['strategy']}`", f"{int(r['batch_size'])}",
                     fmt_num(r["naive_best_img_s"]), fmt_num(r["harness_fp32_img_s"]),
                     f"{float(r['ratio_fp32']):.2f}×"]
            for p in other:
                cells += [fmt_num(r.get(f"harness_{p}_img_s", math.nan)),
                          f"{float(r[f'ratio_{p}']):.2f}×"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# Entry points


def _default_compat(results_dir: Path) -> Path | None:
    candidate = Path(results_dir).parent / "compat.csv"
    return candidate if candidate.is_file() else None


def _build(results_dir: Path, compat_csv: Path | None, out_dir: Path | None,
           shared_axis: bool = True
           ) -> tuple[list[Path], list[str], pd.DataFrame | None, list[str]]:
    """Everything :func:`build_report` does, also returning the notes, the headline table (the
    current method's rows; None when every row is superseded) and the warnings."""
    from bench.report import advise  # matplotlib: only to draw charts
    from bench.report import charts as report_charts
    from bench.report import findings as report_findings
    from bench.report import html as report_html

    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    problem = out_problem(out_dir, is_dir=True)
    if problem:  # before any reading: nothing is computed for a page that cannot be written
        raise ReportError(f"--out: {problem}")
    runs = read_runs(results_dir)
    history = read_history(results_dir, runs)
    ops = read_ops(results_dir, runs)
    compat_csv = Path(compat_csv) if compat_csv is not None else _default_compat(results_dir)
    compat = read_compat(compat_csv) if compat_csv is not None else None
    table = comparison_table(runs)

    inputs = sorted(runs["source_file"].unique())
    inputs += [n for n in ("ceilings.json", "baseline.csv") if (results_dir / n).is_file()]
    for stem, frame in (("history", history), ("ops", ops)):
        if frame is not None:
            inputs += [p.name for p in _files(results_dir, stem)]
    if compat_csv is not None:
        inputs.append(os.path.relpath(compat_csv, results_dir).replace(os.sep, "/"))

    out_dir.mkdir(parents=True, exist_ok=True)
    # Curves of diverged or cut-short runs would bend the mean over seeds; they are plotted
    # from the runs that finished ok only (their failures are in the tables).
    curves = None
    if history is not None:
        finished = runs[(runs["status"] == Status.OK) & (runs["mode"] == Mode.FULL)]
        keep = set(zip(finished["cell_hash"], finished["device_name"], strict=True))
        curves = history[[k in keep for k in zip(history["cell_hash"], history["device_name"],
                                                    strict=True)]]
        curves = curves if not curves.empty else None
    # Charts and the recommendation from the current method's rows only (superseded ones stay
    # in the full tables); with none, neither exists and a note says so.
    current, current_note = current_runs(runs)
    headline = comparison_table(current) if len(current) else None
    if headline is not None:
        charts, notes = report_charts.write_charts(headline, curves, ops, compat,
                                                   out_dir / "charts", shared_axis=shared_axis)
        advice = advise.advise(current, headline, history)
    else:  # and no chart drawn from older rows may stay behind
        charts, notes, advice = [], [], []
        report_charts.prune_charts(out_dir / "charts", [])
    found = report_findings.findings_body(current, headline, advice, results_dir, current_note)
    if current_note:
        notes.append(current_note)

    written = []
    csv_path = out_dir / "comparison.csv"
    table.to_csv(csv_path, index=False, float_format="%.6g")
    written.append(csv_path)
    md_path = out_dir / "summary.md"
    md_path.write_text(summary_markdown(runs, table, results_dir, inputs, charts, notes,
                                        out_dir, advise.advice_markdown(advice),
                                        report_findings.findings_markdown(found)),
                       encoding="utf-8")
    written.append(md_path)
    written.append(report_html.write_index(report_html.Page(
        runs=runs, table=table, history=history, ops=ops, compat=compat, charts=charts,
        advice=advice, warnings=report_warnings(runs), results_dir=results_dir,
        inputs=inputs, findings=found), out_dir / "index.html"))
    return written + charts, notes, headline, report_warnings(runs)


def build_report(results_dir: Path, compat_csv: Path | None = None,
                 out_dir: Path | None = None, shared_axis: bool = True) -> list[Path]:
    """Write summary.md, comparison.csv, charts/ and index.html for ``results_dir``; return
    the paths.

    ``compat_csv`` defaults to ``results_dir/../compat.csv`` when present; ``out_dir`` defaults
    to ``results_dir``; ``shared_axis``: one accuracy axis for every chart panel. Raises
    :class:`ReportError` for unusable input.
    """
    return _build(results_dir, compat_csv, out_dir, shared_axis)[0]
