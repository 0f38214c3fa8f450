"""Tables and charts from a results directory — reads only the published CSVs.

    python -m bench report results/<profile> [--compat results/compat.csv] [--out DIR] [--headline]

Inputs, all under ``results/<profile>/``: ``runs*.csv`` (``runs.csv`` plus any shard or rank
files; merged, and a cell run twice keeps its latest row), ``history*.csv`` and ``ops*.csv``;
plus the doctor's ``compat.csv`` (default: ``<dir>/../compat.csv`` when it exists).

Outputs, beside the inputs (or under ``--out``): ``summary.md`` (one table per dataset × model ×
device, one row per strategy, and the recommendation of :mod:`bench.advise`), ``comparison.csv``
(the same numbers, machine-readable), ``charts/*.png|svg`` and ``index.html`` (one
self-contained page: :mod:`bench.report_html`). Accuracies are fractions in the CSVs and percent
in ``summary.md``. Accuracy panels share one y axis unless ``--no-shared-axis``.

Bad input (no rows, missing columns, mixed schema versions, unknown status) raises
:class:`ReportError`, which the CLI prints and turns into exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench import results as results_mod
from bench.schema import MODES, SCHEMA_VERSION, STATUSES
from bench.stats import accuracy_ci, accuracy_diff_ci, separated

# Columns of runs.csv the report reads (a subset of bench.results.RUN_COLUMNS).
RUN_KEY_COLUMNS = ("cell_hash", "dataset", "model", "strategy", "seed", "status", "mode",
                   "timestamp")
RUN_NUMERIC_COLUMNS = ("test_acc", "best_acc", "target_acc", "time_to_target_s", "train_img_s",
                       "eval_img_s", "peak_mem_mib", "gflops_fwd_per_img", "params",
                       "effective_input_px", "estimate_s", "mfu")
RUN_REQUIRED_COLUMNS = (*RUN_KEY_COLUMNS, "schema_version", "reason", "device_name",
                        *RUN_NUMERIC_COLUMNS)
HISTORY_REQUIRED_COLUMNS = ("cell_hash", "dataset", "model", "strategy", "seed", "device_name",
                            "epoch", "test_acc", "elapsed_s")
OPS_REQUIRED_COLUMNS = ("cell_hash", "dataset", "model", "strategy", "seed", "device_name", "op",
                        "self_cpu_ms", "self_device_ms")
COMPAT_REQUIRED_COLUMNS = ("model", "strategy", "status", "error_class")

# One table per (dataset, model, device); rows are strategies.
TABLE_KEYS = ["dataset", "model", "device_name"]
GROUP_KEYS = [*TABLE_KEYS, "strategy"]
COORD_KEYS = [*GROUP_KEYS, "seed"]  # one run of one cell

UNKNOWN_DEVICE = "unknown device"


class ReportError(ValueError):
    """Input the report cannot use; the message names the file, the bad value and the fix."""


# ---------------------------------------------------------------------------------------------
# Reading


def _read_csv(path: Path) -> pd.DataFrame:
    """Read every column as text (empty cell -> NaN); numbers are converted per column later."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise ReportError(f"{path} is empty (not even a header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not a well-formed CSV: {exc}".strip()) from None


def _check_columns(df: pd.DataFrame, path: Path, required: Iterable[str]) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ReportError(
            f"{path} lacks column(s) {', '.join(missing)}: it was written by a different schema "
            f"or is not a {path.name.split('.')[0]} file. Columns found: "
            f"{', '.join(map(str, df.columns[:12]))}{' ...' if len(df.columns) > 12 else ''}")


def _to_numeric(df: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    """Convert columns in place; a non-empty cell that is not a number is an error."""
    for col in columns:
        if col not in df.columns:
            continue
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & num.isna() & ~raw.astype(str).str.lower().isin(["nan", "none"])
        if bad.any():
            i = bad.to_numpy().nonzero()[0][0]
            raise ReportError(f"{path}, line {i + 2}: column {col!r} holds {raw.iloc[i]!r}, "
                              "which is not a number")
        df[col] = num.astype(float)


def _check_not_empty(df: pd.DataFrame, path: Path, columns: Iterable[str]) -> None:
    for col in columns:
        empty = df[col].isna()
        if empty.any():
            i = empty.to_numpy().nonzero()[0][0]
            raise ReportError(f"{path}, line {i + 2}: column {col!r} is empty — the row is "
                              "truncated or was not written by `python -m bench run`")


def _check_choices(df: pd.DataFrame, path: Path, col: str, valid: tuple[str, ...]) -> None:
    bad = ~df[col].isin(valid)
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        raise ReportError(f"{path}, line {i + 2}: {col} {df[col].iloc[i]!r} is not one of "
                          f"{', '.join(valid)}")


def _parse_timestamps(values: pd.Series, path_of: pd.Series) -> pd.Series:
    """ISO-8601 strings (or epoch seconds) -> UTC datetimes; unparseable is an error."""
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    missing = parsed.isna()
    if missing.any():
        as_num = pd.to_numeric(values[missing], errors="coerce")
        parsed[missing] = pd.to_datetime(as_num, unit="s", utc=True, errors="coerce")
        missing = parsed.isna()
    if missing.any():
        i = missing.to_numpy().nonzero()[0][0]
        raise ReportError(f"{path_of.iloc[i]}: timestamp {values.iloc[i]!r} is not ISO-8601 "
                          "(e.g. 2025-01-31T12:00:00+00:00)")
    return parsed


def _files(results_dir: Path, stem: str) -> list[Path]:
    """``stem.csv`` first, then its shard/rank siblings (``stem.shard-1-of-4.csv``, ...)."""
    found = sorted(results_dir.glob(f"{stem}*.csv"))
    return sorted(found, key=lambda p: (p.name != f"{stem}.csv", p.name))


def read_runs(results_dir: Path) -> pd.DataFrame:
    """All ``runs*.csv`` rows, validated, merged and de-duplicated.

    One current row per cell (:func:`bench.results.current_rows`, the rule resume and plan use):
    the newest per dataset x model x strategy x seed x device identity, so a resumed, re-run or
    re-hashed cell counts once and two machines' rows stay apart. Schema versions 1 and 2 mix
    (version 1 has no ``device_id``: its device_name stands in). ``runs.attrs["superseded"]``
    counts the rows of another cell_hash left out.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"results directory {results_dir} does not exist; run "
                          "`python -m bench run --profile <name>` first or pass the right path")
    paths = _files(results_dir, "runs")
    if not paths:
        raise ReportError(f"no runs*.csv in {results_dir}; run `python -m bench run --profile "
                          "<name>` first or pass the right directory")
    frames = []
    versions: dict[str, set[str]] = {}
    for path in paths:
        df = _read_csv(path)
        _check_columns(df, path, RUN_REQUIRED_COLUMNS)
        if df.empty:
            continue
        _check_not_empty(df, path, RUN_KEY_COLUMNS)
        _check_choices(df, path, "status", STATUSES)
        _check_choices(df, path, "mode", MODES)
        _to_numeric(df, (*RUN_NUMERIC_COLUMNS, "seed"), path)
        versions[path.name] = set(df["schema_version"].dropna().astype(str))
        df["source_file"] = path.name
        frames.append(df)
    if not frames:
        raise ReportError(f"{', '.join(p.name for p in paths)} in {results_dir} hold a header "
                          "but no rows: no cell has finished yet")
    all_versions = set().union(*versions.values())
    unknown = sorted(v for v in all_versions if v not in {str(n) for n in
                                                           range(1, SCHEMA_VERSION + 1)})
    if unknown:
        detail = "; ".join(f"{name}: {', '.join(sorted(v)) or 'none'}"
                           for name, v in versions.items())
        raise ReportError(f"schema versions {unknown} in {results_dir} ({detail}) are newer than "
                          f"this harness (version {SCHEMA_VERSION}); update adaptbench or report "
                          "them with the version that wrote them")
    runs = pd.concat(frames, ignore_index=True)
    if "device_id" not in runs:
        runs["device_id"] = pd.NA  # schema version 1 had no exact device identity
    runs["seed"] = runs["seed"].astype(int)
    runs["device_name"] = runs["device_name"].fillna(UNKNOWN_DEVICE)
    # Two machines that share a short name (a 2-core and a 64-core "AMD EPYC") are two
    # devices: their tables must never merge, so their names carry the exact identity.
    ids = runs.dropna(subset=["device_id"]).groupby("device_name")["device_id"].nunique()
    for name in ids[ids > 1].index:
        mask = (runs["device_name"] == name) & runs["device_id"].notna()
        runs.loc[mask, "device_name"] = runs.loc[mask, "device_id"]
    runs["reason"] = runs["reason"].fillna("")
    runs["_ts"] = _parse_timestamps(runs["timestamp"], runs["source_file"])
    # THE rule for the current row of a cell, shared with resume and plan
    # (bench.results.current_rows): newest per dataset x model x strategy x seed x device_id.
    # A cell re-run under another recipe replaces its old row rather than being averaged with
    # it as another seed; the older rows stay in runs.csv and are counted in the summary.
    keys = runs[["cell_hash", "dataset", "model", "strategy", "seed", "device_id",
                 "device_name"]].astype("string").fillna("")
    keys["timestamp"] = runs["_ts"].map(lambda t: t.isoformat())
    records = [{"_i": i, **row} for i, row in enumerate(keys.to_dict("records"))]
    current, superseded = results_mod.current_rows(
        sorted(records, key=lambda r: (r["timestamp"], r["_i"])))
    keep = sorted(r["_i"] for r in current)
    runs = runs.iloc[keep].reset_index(drop=True)
    runs.attrs["superseded"] = superseded
    return runs


def _read_optional(results_dir: Path, stem: str, required: tuple[str, ...],
                   numeric: tuple[str, ...]) -> pd.DataFrame | None:
    frames = []
    for path in _files(results_dir, stem):
        df = _read_csv(path)
        _check_columns(df, path, required)
        _to_numeric(df, numeric, path)
        df["device_name"] = df["device_name"].fillna(UNKNOWN_DEVICE)
        frames.append(df)
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else None


def read_history(results_dir: Path, runs: pd.DataFrame) -> pd.DataFrame | None:
    """Per-epoch rows of the cells kept in ``runs`` (None when there are none).

    history.csv has no timestamp, so a re-run cell's epochs are de-duplicated keeping the row
    written last.
    """
    hist = _read_optional(Path(results_dir), "history", HISTORY_REQUIRED_COLUMNS,
                          ("seed", "epoch", "step", "train_loss", "test_acc", "epoch_s",
                           "elapsed_s"))
    if hist is None:
        return None
    keep = set(zip(runs["cell_hash"], runs["device_name"], strict=True))
    hist = hist[[k in keep for k in zip(hist["cell_hash"], hist["device_name"], strict=True)]]
    subset = [c for c in ("cell_hash", "device_name", "epoch", "step") if c in hist.columns]
    hist = hist.drop_duplicates(subset, keep="last")
    return hist.reset_index(drop=True) if not hist.empty else None


def read_ops(results_dir: Path, runs: pd.DataFrame) -> pd.DataFrame | None:
    """Profiler top-operator rows of the cells kept in ``runs`` (None when there are none)."""
    ops = _read_optional(Path(results_dir), "ops", OPS_REQUIRED_COLUMNS,
                         ("seed", "self_cpu_ms", "self_device_ms", "calls"))
    if ops is None:
        return None
    keep = set(zip(runs["cell_hash"], runs["device_name"], strict=True))
    ops = ops[[k in keep for k in zip(ops["cell_hash"], ops["device_name"], strict=True)]]
    ops = ops.drop_duplicates(["cell_hash", "device_name", "op"], keep="last")
    return ops.reset_index(drop=True) if not ops.empty else None


def read_compat(path: Path) -> pd.DataFrame:
    """The doctor's compatibility matrix (model × strategy -> ok | failed, error_class)."""
    if not Path(path).is_file():
        raise ReportError(f"compat file {path} does not exist; run `python -m bench doctor` "
                          "or drop --compat")
    df = _read_csv(Path(path))
    _check_columns(df, Path(path), COMPAT_REQUIRED_COLUMNS)
    if df.empty:
        raise ReportError(f"{path} has a header but no rows")
    _check_not_empty(df, Path(path), ("model", "strategy", "status"))
    _check_choices(df, Path(path), "status", ("ok", "failed"))
    return df


# ---------------------------------------------------------------------------------------------
# The comparison table


def _median(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.median()) if len(values) else math.nan


def _first(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.iloc[0]) if len(values) else math.nan


def _status_summary(rows: pd.DataFrame) -> tuple[str, str]:
    """(status, detail): 'ok' | 'measure-only' | a failure status | 'mixed', and counts."""
    labels = [("measure-only" if (s == "ok" and m == "measure-only") else s)
              for s, m in zip(rows["status"], rows["mode"], strict=True)]
    counts = pd.Series(labels).value_counts()
    ordered = [lab for lab in ("ok", "measure-only", *STATUSES[1:]) if lab in counts]
    n = len(labels)
    status = ordered[0] if len(ordered) == 1 else "mixed"
    detail = ", ".join(f"{lab} {counts[lab]}/{n}" for lab in ordered)
    return status, detail


# Full test-split sizes, for rows that predate the test_count column and ran on the whole split
# (test_size 0). bench.data imports torch, so it is asked only when needed.
_FALLBACK_TEST_COUNTS = {"mnist": 10_000, "fashion-mnist": 10_000}


def _split_size(dataset: str) -> float:
    """Images in ``dataset``'s full test split (NaN if unknown)."""
    try:
        from bench.data import DATASETS
        count = DATASETS[dataset].test_count if dataset in DATASETS else 0
    except ImportError:  # pragma: no cover - torch missing: the report still works
        count = 0
    return float(count or _FALLBACK_TEST_COUNTS.get(dataset, math.nan))


# A full cell whose mean test accuracy is less than this far above chance (1 / classes, as a
# fraction) did not leave chance: the report says so, with the steps it trained.
CHANCE_MARGIN = 0.05


def _builtin(dataset: str, field: str) -> int:
    """``field`` (num_classes, train_count) of a built-in dataset; 0 when unknown."""
    try:
        from bench.data import DATASETS
    except ImportError:  # pragma: no cover - torch missing: the report still works
        return 0
    return int(getattr(DATASETS[dataset], field, 0) or 0) if dataset in DATASETS else 0


def _steps_trained(row: pd.Series) -> str:
    """'62 training steps (1 epoch of 2,000 images at batch 32)' from a runs row's recipe
    columns, or '' when they are missing (an epoch is its full batches: drop_last)."""
    try:
        epochs, batch = int(row["epochs"]), int(row["batch_size"])
        images = int(row["train_size"]) or _builtin(str(row["dataset"]), "train_count")
    except (KeyError, TypeError, ValueError):
        return ""
    if epochs < 1 or batch < 1 or images < 1:
        return ""
    return (f"{epochs * (images // batch):,} training steps ({epochs} epoch"
            f"{'s' if epochs > 1 else ''} of {images:,} images at batch {batch})")


def chance_note(dataset: str, finished: pd.DataFrame, mean_acc: float) -> str:
    """'' or, for a cell whose full runs' mean test accuracy (a fraction) is within
    :data:`CHANCE_MARGIN` of chance, a sentence saying it did not leave chance and how many
    steps it trained: the likely reason in a scaled-down profile."""
    classes = _builtin(dataset, "num_classes")
    if finished.empty or not classes or pd.isna(mean_acc):
        return ""
    chance = 1.0 / classes
    if round(mean_acc - chance, 9) >= CHANCE_MARGIN:  # 0.15 - 0.1 < 0.05 in floats
        return ""
    steps = _steps_trained(finished.iloc[0])
    return (f"did not leave chance: {_pct(mean_acc)}% against {_pct(chance)}% for {classes} "
            f"classes{f' after {steps}' if steps else ''}. Too few steps for this model under "
            "this recipe is the likely reason, not the strategy: more steps (train_size, "
            "epochs) or a recipe that learns faster would tell")


def _numeric_column(rows: pd.DataFrame, col: str) -> pd.Series:
    """``rows[col]`` as floats (NaN where absent, empty or not a number)."""
    if col not in rows.columns:
        return pd.Series(math.nan, index=rows.index, dtype=float)
    return pd.to_numeric(rows[col], errors="coerce").astype(float)


def scored_images(rows: pd.DataFrame) -> pd.Series:
    """Number of images each row's ``test_acc`` was computed over.

    ``test_count`` when the row has it, else ``test_size`` when > 0 (a stratified subset), else
    the dataset's full test split (NaN when that is unknown too).
    """
    count = _numeric_column(rows, "test_count")
    count = count.where(count > 0)
    size = _numeric_column(rows, "test_size")
    count = count.fillna(size.where(size > 0))
    if not count.isna().any():
        return count
    full = rows["dataset"].map(lambda d: _split_size(str(d))).astype(float)
    return count.fillna(full)


def _throughput_range(rows: pd.DataFrame) -> tuple[float, float]:
    """(lowest p10, highest p90) of train img/s over ``rows``: the window-to-window spread of
    every seed together; NaN when any measured row lacks its p10/p90."""
    measured = _numeric_column(rows, "train_img_s").notna()
    lo = _numeric_column(rows, "train_img_s_p10")[measured]
    hi = _numeric_column(rows, "train_img_s_p90")[measured]
    if lo.empty or lo.isna().any() or hi.isna().any():
        return math.nan, math.nan
    return float(lo.min()), float(hi.max())


def _speed_rows(g: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows a cell's throughput (and MFU) comes from, and how many cells shared the device
    in them (1 = solo). Solo rows when any measured throughput: a packed row (``concurrency`` >
    1, cells sharing a device) is never averaged with them; packed rows only when there is
    nothing else, and then the table says so. Rows without the column (older files) ran solo."""
    conc = _numeric_column(g, "concurrency")
    solo = conc.isna() | (conc <= 1)
    measured = _numeric_column(g, "train_img_s").notna()
    if (solo & measured).any() or not measured.any():
        return g[solo], 1
    return g, int(conc[measured].max())


def _group_row(key: tuple, g: pd.DataFrame, confidence: float) -> dict:
    """One row of :func:`comparison_table` from the runs of one cell (all its seeds)."""
    finished = g[(g["status"] == "ok") & (g["mode"] == "full")]
    images = scored_images(finished)
    acc = accuracy_ci(finished["test_acc"].tolist(),
                      float(images.min()) if len(images) else math.nan, confidence)
    status, detail = _status_summary(g)
    explained = (g["status"] != "ok") | (g["mode"] == "measure-only")
    reasons = [r for r in dict.fromkeys(g.loc[explained, "reason"]) if r]
    ttt = finished["time_to_target_s"].dropna()
    speed, packed = _speed_rows(g)
    img_s_lo, img_s_hi = _throughput_range(speed)
    reinit = [r for r in dict.fromkeys(g["reinitialized"].dropna().astype(str)) if r] \
        if "reinitialized" in g else []
    return {
        **dict(zip(GROUP_KEYS, key, strict=True)),
        "device": g["device"].iloc[0] if "device" in g else "",
        "n_runs": len(g),
        "status": status,
        "status_detail": detail,
        "reason": " | ".join(reasons),
        "chance_note": chance_note(str(key[0]), finished, acc.mean),
        "estimate_s": _median(g.loc[g["mode"] == "measure-only", "estimate_s"]),
        "test_acc_mean": acc.mean,
        "test_acc_std": acc.std,
        "test_acc_n": acc.n,
        "test_acc_ci_lo": acc.lo,
        "test_acc_ci_hi": acc.hi,
        "test_acc_ci_method": acc.method,
        "test_images": acc.images,
        "best_acc_mean": finished["best_acc"].mean() if len(finished) else math.nan,
        "target_acc": _first(g["target_acc"]),
        "time_to_target_s_median": float(ttt.median()) if len(ttt) else math.nan,
        "n_reached_target": len(ttt),
        "train_img_s_median": _median(speed["train_img_s"]),
        "train_img_s_lo": img_s_lo,
        "train_img_s_hi": img_s_hi,
        "train_img_s_packed": packed,
        "eval_img_s_median": _median(speed["eval_img_s"]),
        "peak_mem_mib": _median(g["peak_mem_mib"]),
        "peak_mem_mib_lo": float(g["peak_mem_mib"].min()),  # min..max over seeds (NaN: none)
        "peak_mem_mib_hi": float(g["peak_mem_mib"].max()),
        "reinitialized": " | ".join(reinit),
        "mfu_median": _median(speed["mfu"]),
        "gflops_fwd_per_img": _first(g["gflops_fwd_per_img"]),
        "params": _first(g["params"]),
        "effective_input_px": _first(g["effective_input_px"]),
        "_acc_values": finished["test_acc"].dropna().tolist(),
    }


def _mark_best(table: pd.DataFrame, g: pd.DataFrame, confidence: float) -> None:
    """Set is_top / is_best / tied_with and the Δ-vs-top columns of one dataset × model × device.

    The top cell has the highest mean accuracy; it is the *best* only when its interval lies
    above every other scored cell's. ``tied_with`` lists the strategies whose interval overlaps
    the top cell's (the top one first), when it is not the best.
    """
    scored = g["test_acc_mean"].dropna()
    if scored.empty:
        return
    top = scored.idxmax()
    table.loc[top, "is_top"] = True
    interval = (table.at[top, "test_acc_ci_lo"], table.at[top, "test_acc_ci_hi"])
    others = [i for i in scored.index if i != top]
    if separated(interval, [(table.at[i, "test_acc_ci_lo"], table.at[i, "test_acc_ci_hi"])
                            for i in others]):
        table.loc[top, "is_best"] = True
    else:
        tied = [table.at[top, "strategy"]] + [
            table.at[i, "strategy"] for i in others
            if not separated(interval, [(table.at[i, "test_acc_ci_lo"],
                                         table.at[i, "test_acc_ci_hi"])])]
        table.loc[top, "tied_with"] = ", ".join(tied)
    for i in others:
        d = accuracy_diff_ci(table.at[i, "_acc_values"], table.at[i, "test_images"],
                             table.at[top, "_acc_values"], table.at[top, "test_images"],
                             confidence)
        table.loc[i, ["diff_vs_best", "diff_ci_lo", "diff_ci_hi"]] = [d.diff, d.lo, d.hi]
        if not pd.isna(d.lo):
            table.loc[i, "diff_significant"] = d.significant


def _mark_fastest(table: pd.DataFrame, g: pd.DataFrame) -> None:
    """Set train_img_s_is_best on the fastest cell of one table, only when its p10 clears every
    other measured cell's p90 (and every one of them has a p10/p90)."""
    # Packed throughput is a figure of its own: never the fastest against solo ones.
    measured = g.loc[g["train_img_s_packed"] <= 1, "train_img_s_median"].dropna()
    if len(measured) < 2:
        return
    top = measured.idxmax()
    ranges = [(table.at[i, "train_img_s_lo"], table.at[i, "train_img_s_hi"])
              for i in measured.index if i != top]
    if separated((table.at[top, "train_img_s_lo"], table.at[top, "train_img_s_hi"]), ranges):
        table.loc[top, "train_img_s_is_best"] = True


def comparison_table(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per dataset × model × device × strategy, in the order cells first appear.

    Accuracy statistics use the ``ok`` full-mode seeds only; throughput and memory use every
    seed that measured them (measure-only cells included). Accuracies are fractions.

    ``test_acc_ci_lo``/``_hi`` is the interval each cell is judged by (see
    :func:`bench.stats.accuracy_ci`): Wilson over ``test_images`` for one seed; with more, the
    wider of Student t over seeds and Wilson at the mean. ``is_top`` marks the highest mean of
    each dataset × model × device; ``is_best`` only when that cell's interval clears every other
    scored cell's (a lone scored cell is trivially best), else ``tied_with`` names the cells it
    cannot be told from. ``diff_vs_best`` is this strategy's mean minus the top one's, with the
    wider of the Welch and Newcombe intervals; ``diff_significant`` says it excludes 0.
    ``train_img_s_is_best`` likewise needs the fastest cell's p10 above all others' p90.
    """
    table = pd.DataFrame([_group_row(key, g, confidence)
                          for key, g in runs.groupby(GROUP_KEYS, sort=False)])
    for col in ("params", "effective_input_px"):  # counts, not measurements: keep them exact
        table[col] = table[col].round().astype("Int64")
    table["is_top"] = False
    table["is_best"] = False
    table["tied_with"] = ""
    table["train_img_s_is_best"] = False
    for col in ("diff_vs_best", "diff_ci_lo", "diff_ci_hi"):
        table[col] = math.nan
    table["diff_significant"] = pd.Series([pd.NA] * len(table), dtype="boolean")
    for _, g in table.groupby(TABLE_KEYS, sort=False):
        _mark_best(table, g, confidence)
        _mark_fastest(table, g)
    return table.drop(columns="_acc_values")


# ---------------------------------------------------------------------------------------------
# Markdown

_DASH = "—"


def _fmt(value: float, digits: int = 3) -> str:
    """Three significant figures, thousands separators from 1,000; NaN -> em dash."""
    if value is None or pd.isna(value):
        return _DASH
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _fmt_duration(seconds: float) -> str:
    if pd.isna(seconds):
        return _DASH
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pct(fraction: float, decimals: int = 2) -> str:
    return _DASH if pd.isna(fraction) else f"{100 * fraction:.{decimals}f}"


def _md_escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


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
        return _DASH
    images = f"{r['test_images']:,.0f} img"
    source = {"wilson": f"Wilson, {images}", "t": "t",
              "wilson>t": f"Wilson, {images} (wider than t)"}.get(r["test_acc_ci_method"], "")
    return f"[{_pct(lo)}, {_pct(hi)}] ±{50 * (hi - lo):.2f} {source}".rstrip()


def _diff_cell(r: pd.Series) -> str:
    """Δ vs the top strategy in pp with its interval; 'best' / 'top (tied)' on the top row."""
    if r["is_best"]:
        return "best"
    if r["is_top"]:
        return "top (tied)"
    if pd.isna(r["diff_vs_best"]):
        return _DASH
    if pd.isna(r["diff_ci_lo"]):
        return f"{100 * r['diff_vs_best']:+.2f} (no CI: test image count unknown)"
    ns = "" if r["diff_significant"] else " n.s."
    return (f"{100 * r['diff_vs_best']:+.2f} "
            f"[{100 * r['diff_ci_lo']:+.2f}, {100 * r['diff_ci_hi']:+.2f}]{ns}")


def winner_line(t: pd.DataFrame) -> str:
    """One sentence on who wins the accuracy comparison of one table ('' with < 2 scored)."""
    if (t["test_acc_n"] > 0).sum() < 2:
        return ""
    best = t[t["is_best"]]
    if len(best):
        caveat = (" (one seed: the interval covers the test set's noise, not seed-to-seed "
                  "variation)" if (t.loc[t["test_acc_n"] > 0, "test_acc_n"] < 2).any() else "")
        return (f"Best accuracy: `{best['strategy'].iloc[0]}` — its 95% interval clears every "
                f"other strategy's{caveat}.")
    tied = t.loc[t["is_top"], "tied_with"]
    names = ", ".join(f"`{n}`" for n in (tied.iloc[0].split(", ") if len(tied) else []))
    return f"No clear winner: {names} tied (their 95% intervals overlap), so none is bold."


def _status_cell(row: pd.Series, note: int | None) -> str:
    mark = f" [{note}]" if note else ""
    if row["status"] == "ok":
        return f"ok{mark}"
    if row["status"] == "measure-only":
        return f"measure-only (full run est. {_fmt_duration(row['estimate_s'])}){mark}"
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
            acc.append(_DASH)
        elif r["test_acc_n"] == 1:
            acc.append(f"{_pct(r['test_acc_mean'])} (n=1)")
        else:
            acc.append(f"{_pct(r['test_acc_mean'])} ± {_pct(r['test_acc_std'])} "
                       f"(n={r['test_acc_n']})")
    ci = [_ci_cell(r) for _, r in t.iterrows()]
    diff = [_diff_cell(r) for _, r in t.iterrows()]
    ttt = []
    for _, r in t.iterrows():
        if r["test_acc_n"] == 0:
            ttt.append(_DASH)
        else:
            ttt.append(f"{_fmt(r['time_to_target_s_median'])} "
                       f"({r['n_reached_target']}/{r['test_acc_n']})")

    n_scored = int((t["test_acc_n"] > 0).sum())
    columns = [
        ("strategy", [f"`{s}`{' †' if r else ''}" for s, r in
                      zip(t["strategy"], t.get("reinitialized", [""] * len(t)), strict=True)],
         False),
        ("test acc % (mean ± std)", _bold_flagged(t["is_best"] & (n_scored > 1), acc), True),
        ("95% CI", ci, True),
        ("Δ vs top, pp [95% CI]", diff, True),
        ("best acc %", [_pct(v) for v in t["best_acc_mean"]], True),
        ("time to target, s (reached)", ttt, True),
        ("train img/s", _bold_flagged(t["train_img_s_is_best"], _speeds(t)), True),
        ("eval img/s", [_fmt(v) for v in t["eval_img_s_median"]], True),
        ("MFU %", [_DASH if pd.isna(v) else f"{100 * v:.1f}" for v in t["mfu_median"]], True),
        ("peak MiB", [_fmt(v) for v in t["peak_mem_mib"]], True),
        ("GFLOPs/img", _bold_best(t["gflops_fwd_per_img"],
                                  [_fmt(v) for v in t["gflops_fwd_per_img"]], False), True),
        ("params M", [_fmt(v / 1e6) for v in t["params"]], True),
        ("input px", [_DASH if pd.isna(v) else f"{v:.0f}" for v in t["effective_input_px"]],
         True),
        ("status", status_cells, False),
    ]
    lines = ["| " + " | ".join(name for name, _, _ in columns) + " |",
             "|" + "|".join("---:" if right else "---" for _, _, right in columns) + "|"]
    for i in range(len(t)):
        lines.append("| " + " | ".join(_md_escape(cells[i]) for _, cells, _ in columns) + " |")
    if notes:
        lines.append("")
        lines += [f"[{n}] {_md_escape(reason)}  " for reason, n in notes.items()]
    if "reinitialized" in t and (t["reinitialized"] != "").any():
        lines += ["", "† the strategy created or replaced layers (`reinitialized` column; their "
                  "init rule is in runs.csv)."]
    return lines


def _speed(r: pd.Series) -> str:
    """A cell's train img/s; a packed figure says how many cells shared the device."""
    packed = int(r.get("train_img_s_packed", 1) or 1)
    text = _fmt(r["train_img_s_median"])
    return f"{text} (packed ×{packed})" if packed > 1 and text != _DASH else text


def _speeds(t: pd.DataFrame) -> list[str]:
    return [_speed(r) for _, r in t.iterrows()]


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
            acc = _DASH
        elif r["test_acc_n"] == 1:
            acc = _pct(r["test_acc_mean"])
        else:
            acc = f"{_pct(r['test_acc_mean'])} ± {_pct(r['test_acc_std'])}"
        if r["is_best"] and competitors[tuple(r[k] for k in TABLE_KEYS)] > 1:
            acc = f"**{acc}**"
        status = r["status_detail"] if r["status"] == "mixed" else r["status"]
        if r.get("chance_note"):
            status += " (at chance)"
        mfu = ([_DASH if pd.isna(r["mfu_median"]) else f"{100 * r['mfu_median']:.1f}"]
               if with_mfu else [])
        cells = [*(r[c] for c in extra), r["model"], f"`{r['strategy']}`", acc,
                 _speed(r), *mfu, _fmt(r["peak_mem_mib"]), status]
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _display_path(path: Path) -> str:
    """Relative to the working directory when below it (as a user would type it)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(Path(path).resolve()) if rel.startswith("..") else rel


def _unique(runs: pd.DataFrame, col: str) -> str:
    if col not in runs.columns:
        return ""
    return " / ".join(str(v) for v in dict.fromkeys(runs[col].dropna()))


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
    fresh = _numeric_column(runs, "peak_fresh_tflops")
    peak = _numeric_column(runs, "peak_tflops")
    off = (peak > 0) & fresh.notna() & ((fresh / peak - 1.0).abs() > tolerance)
    if not off.any():
        return []
    named = [f"{r['dataset']}/{r['model']}/{r['strategy']} seed {r['seed']} on "
             f"{r['device_name']} (peak {_fmt(p)} vs fresh {_fmt(f)} TFLOP/s)"
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
                     out_dir: Path, advice: list[str] | None = None) -> str:
    """The whole summary.md text; ``advice``: the recommendation section's lines."""
    profile = _unique(runs, "profile") or Path(results_dir).name
    n_cells = len(table)
    labels = pd.Series(["measure-only" if (s == "ok" and m == "measure-only") else s
                        for s, m in zip(runs["status"], runs["mode"], strict=True)])
    counts = labels.value_counts()
    by_status = ", ".join(f"{counts[s]} {s}" for s in ("ok", "measure-only", *STATUSES[1:])
                          if s in counts)
    devices = []
    for name, g in runs.groupby("device_name", sort=False):
        kind = _unique(g, "device")
        cells = table[table["device_name"] == name]
        devices.append(f"{name}{f' ({kind})' if kind else ''}: {len(cells)} cells")
    lines = [
        f"# Results: profile `{profile}`",
        "",
        f"Generated by `python -m bench report {_display_path(results_dir)}` from "
        f"{', '.join(inputs)} — regenerate with the same command; never edit by hand.",
        "",
        f"- **Device(s):** {'; '.join(devices)}",
        f"- **Cells:** {n_cells} (dataset × model × strategy × device) from {len(runs)} runs "
        f"(cell × seed): {by_status}",
    ]
    recipe = [f"{label} {_unique(runs, col)}" for col, label in
              (("epochs", "epochs"), ("batch_size", "batch"), ("precision", "precision"),
               ("optimizer", "optimizer"), ("lr", "lr"), ("train_size", "train images"))
              if _unique(runs, col)]
    if recipe:
        lines.append(f"- **Recipe:** {', '.join(recipe)}")
    prov = [f"{label} {_unique(runs, col)}" for col, label in
            (("torch_version", "torch"), ("cuda_version", "CUDA"), ("git_sha", "git"))
            if _unique(runs, col)]
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
        headline_table(table).rstrip("\n"),
        *(advice or []),
    ]
    for key, t in table.groupby(TABLE_KEYS, sort=False):
        dataset, model, device_name = key
        target = t["target_acc"].dropna()
        target_txt = f" — time to target = first evaluation ≥ {_pct(target.iloc[0], 1)}%" \
            if len(target) else ""
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


def gpu_check_markdown(results_dir: Path) -> list[str]:
    """The ceilings and naive-baseline section, when ``python -m bench.gpu_check`` left its files.

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
                              "regenerate it with python -m bench.gpu_check") from None
        lines += ["", f"## Device ceilings ({ceil.get('device_name', UNKNOWN_DEVICE)})", "",
                  "Measured by `python -m bench.gpu_check` (`ceilings.json`): "
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
                     _fmt(r["naive_best_img_s"]), _fmt(r["harness_fp32_img_s"]),
                     f"{float(r['ratio_fp32']):.2f}×"]
            for p in other:
                cells += [_fmt(r.get(f"harness_{p}_img_s", math.nan)),
                          f"{float(r[f'ratio_{p}']):.2f}×"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# Entry points


def _default_compat(results_dir: Path) -> Path | None:
    candidate = Path(results_dir).parent / "compat.csv"
    return candidate if candidate.is_file() else None


def _build(results_dir: Path, compat_csv: Path | None, out_dir: Path | None,
           shared_axis: bool = True) -> tuple[list[Path], list[str], pd.DataFrame, list[str]]:
    """Everything :func:`build_report` does, also returning the notes, table and warnings."""
    from bench import advise, report_charts, report_html  # matplotlib: only to draw charts

    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
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
        finished = runs[(runs["status"] == "ok") & (runs["mode"] == "full")]
        keep = set(zip(finished["cell_hash"], finished["device_name"], strict=True))
        curves = history[[k in keep for k in zip(history["cell_hash"], history["device_name"],
                                                    strict=True)]]
        curves = curves if not curves.empty else None
    charts, notes = report_charts.write_charts(table, curves, ops, compat, out_dir / "charts",
                                               shared_axis=shared_axis)
    advice = advise.advise(runs, table, history)

    written = []
    csv_path = out_dir / "comparison.csv"
    table.to_csv(csv_path, index=False, float_format="%.6g")
    written.append(csv_path)
    md_path = out_dir / "summary.md"
    md_path.write_text(summary_markdown(runs, table, results_dir, inputs, charts, notes,
                                        out_dir, advise.advice_markdown(advice)),
                       encoding="utf-8")
    written.append(md_path)
    written.append(report_html.write_index(report_html.Page(
        runs=runs, table=table, history=history, ops=ops, compat=compat, charts=charts,
        advice=advice, warnings=report_warnings(runs), results_dir=results_dir,
        inputs=inputs), out_dir / "index.html"))
    return written + charts, notes, table, report_warnings(runs)


def build_report(results_dir: Path, compat_csv: Path | None = None,
                 out_dir: Path | None = None, shared_axis: bool = True) -> list[Path]:
    """Write summary.md, comparison.csv, charts/ and index.html for ``results_dir``; return
    the paths.

    ``compat_csv`` defaults to ``results_dir/../compat.csv`` when present; ``out_dir`` defaults
    to ``results_dir``; ``shared_axis``: one accuracy axis for every chart panel. Raises
    :class:`ReportError` for unusable input.
    """
    return _build(results_dir, compat_csv, out_dir, shared_axis)[0]


def main(argv: list[str] | None = None) -> int:
    """``python -m bench report <dir>``: argv excludes the ``report`` word. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m bench report",
        description="Regenerate summary.md, comparison.csv, charts/ and index.html from a "
                    "results directory.")
    parser.add_argument("results_dir", type=Path, help="e.g. results/cpu (holds runs*.csv)")
    parser.add_argument("--compat", type=Path, default=None,
                        help="doctor's compat.csv (default: <dir>/../compat.csv if present)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write (default: the results directory)")
    parser.add_argument("--headline", action="store_true",
                        help="also print the compact README table (model × strategy) to stdout")
    parser.add_argument("--shared-axis", action=argparse.BooleanOptionalAction, default=True,
                        help="one accuracy axis across chart panels (default: on, so a gap "
                             "looks as large in every panel; --no-shared-axis zooms each)")
    args = parser.parse_args(argv)
    try:
        written, notes, table, warnings = _build(args.results_dir, args.compat, args.out,
                                                 args.shared_axis)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {_display_path(path)}")
    for note in notes:
        print(f"note: {note}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.headline:
        print()
        print(headline_table(table), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
