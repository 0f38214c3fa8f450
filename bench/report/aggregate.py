"""The comparison table: one row per dataset x model x device x strategy, aggregated over seeds
(means with 95% intervals, median throughput with its spread, peak memory, MFU), with the best
and fastest marked only where the intervals separate. Accuracies are fractions.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.report.fmt import fmt_pct
from bench.report.load import GROUP_KEYS, TABLE_KEYS
from bench.report.stats import accuracy_ci, accuracy_diff_ci, separated
from bench.schema import MIN_TIMED_WINDOWS, STATUSES, Mode, Status


def _median(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.median()) if len(values) else math.nan


def _first(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.iloc[0]) if len(values) else math.nan


def _status_summary(rows: pd.DataFrame) -> tuple[str, str]:
    """(status, detail): 'ok' | 'measure-only' | a failure status | 'mixed', and counts."""
    labels = [(Mode.MEASURE_ONLY if (s == Status.OK and m == Mode.MEASURE_ONLY) else s)
              for s, m in zip(rows["status"], rows["mode"], strict=True)]
    counts = pd.Series(labels).value_counts()
    ordered = [lab for lab in (Status.OK, Mode.MEASURE_ONLY, *STATUSES[1:]) if lab in counts]
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
    return (f"did not leave chance: {fmt_pct(mean_acc)}% against {fmt_pct(chance)}% for {classes} "
            f"classes{f' after {steps}' if steps else ''}. Too few steps for this model under "
            "this recipe is the likely reason, not the strategy: more steps (train_size, "
            "epochs) or a recipe that learns faster would tell")


def numeric_column(rows: pd.DataFrame, col: str) -> pd.Series:
    """``rows[col]`` as floats (NaN where absent, empty or not a number)."""
    if col not in rows.columns:
        return pd.Series(math.nan, index=rows.index, dtype=float)
    return pd.to_numeric(rows[col], errors="coerce").astype(float)


def scored_images(rows: pd.DataFrame) -> pd.Series:
    """Number of images each row's ``test_acc`` was computed over.

    ``test_count`` when the row has it, else ``test_size`` when > 0 (a stratified subset), else
    the dataset's full test split (NaN when that is unknown too).
    """
    count = numeric_column(rows, "test_count")
    count = count.where(count > 0)
    size = numeric_column(rows, "test_size")
    count = count.fillna(size.where(size > 0))
    if not count.isna().any():
        return count
    full = rows["dataset"].map(lambda d: _split_size(str(d))).astype(float)
    return count.fillna(full)


def images_per_epoch(rows: pd.DataFrame) -> pd.Series:
    """Images one training epoch processed: ``train_images / epochs`` (schema 5), else the
    whole batches of the ``train_size`` subset or of a built-in dataset's whole train split
    (rows before schema 5; NaN where neither is known)."""
    epochs = numeric_column(rows, "epochs")
    direct = numeric_column(rows, "train_images") / epochs.where(epochs > 0)
    size, batch = numeric_column(rows, "train_size"), numeric_column(rows, "batch_size")
    whole = rows["dataset"].map(lambda d: float(_builtin(str(d), "train_count"))) \
        if "dataset" in rows else pd.Series(0.0, index=rows.index)
    size = size.where(size > 0, whole)
    subset = (size // batch * batch).where((size > 0) & (batch > 0))
    return direct.fillna(subset)


def window_rate(rows: pd.DataFrame) -> pd.Series:
    """Images/s the time-based comparisons use: ``train_img_s_pooled`` (every timed window's
    images over their total seconds), else (rows before schema 5) the median window rate.
    Never the wall clock of an epoch, which counts whatever else the host ran."""
    return numeric_column(rows, "train_img_s_pooled").fillna(numeric_column(rows, "train_img_s"))


def window_train_seconds(rows: pd.DataFrame) -> pd.Series:
    """Training seconds of each row from its window throughput: epochs x images per epoch /
    :func:`window_rate` (NaN where the images are unknown)."""
    return numeric_column(rows, "epochs") * images_per_epoch(rows) / window_rate(rows)


def window_time_to_target(rows: pd.DataFrame) -> pd.Series:
    """Seconds to ``target_acc`` from window throughput: ``epochs_to_target`` x images per
    epoch / :func:`window_rate`; the wall-clock ``time_to_target_s`` only where the images
    are unknown (an older row on a whole split)."""
    derived = (numeric_column(rows, "epochs_to_target") * images_per_epoch(rows)
               / window_rate(rows))
    wall = numeric_column(rows, "time_to_target_s")
    return derived.where(wall.notna()).fillna(wall)


def contended_rows(rows: pd.DataFrame) -> pd.Series:
    """True where the row's contention check flagged it (empty: not measured, never True)."""
    if "contended" not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows["contended"].astype(str).str.strip().str.lower().isin(("true", "1"))


def _throughput_range(rows: pd.DataFrame) -> tuple[float, float]:
    """(lowest p10, highest p90) of train img/s over ``rows``: the window-to-window spread of
    every seed together; NaN when any measured row lacks its p10/p90."""
    measured = numeric_column(rows, "train_img_s").notna()
    lo = numeric_column(rows, "train_img_s_p10")[measured]
    hi = numeric_column(rows, "train_img_s_p90")[measured]
    if lo.empty or lo.isna().any() or hi.isna().any():
        return math.nan, math.nan
    return float(lo.min()), float(hi.max())


def _speed_rows(g: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows a cell's throughput (and MFU) comes from, and how many cells shared the device
    in them (1 = solo). Solo rows when any measured throughput: a packed row (``concurrency`` >
    1, cells sharing a device) is never averaged with them; packed rows only when there is
    nothing else, and then the table says so. Rows without the column (older files) ran solo."""
    conc = numeric_column(g, "concurrency")
    solo = conc.isna() | (conc <= 1)
    measured = numeric_column(g, "train_img_s").notna()
    if (solo & measured).any() or not measured.any():
        return g[solo], 1
    return g, int(conc[measured].max())


def _group_row(key: tuple, g: pd.DataFrame, confidence: float) -> dict:
    """One row of :func:`comparison_table` from the runs of one cell (all its seeds)."""
    finished = g[(g["status"] == Status.OK) & (g["mode"] == Mode.FULL)]
    images = scored_images(finished)
    acc = accuracy_ci(finished["test_acc"].tolist(),
                      float(images.min()) if len(images) else math.nan, confidence)
    status, detail = _status_summary(g)
    explained = (g["status"] != Status.OK) | (g["mode"] == Mode.MEASURE_ONLY)
    reasons = [r for r in dict.fromkeys(g.loc[explained, "reason"]) if r]
    ttt = window_time_to_target(finished).dropna()
    speed, packed = _speed_rows(g)
    share = numeric_column(speed, "cpu_share")
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
        "estimate_s": _median(g.loc[g["mode"] == Mode.MEASURE_ONLY, "estimate_s"]),
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
        # The fewest timed windows behind a seed's throughput (NaN: older rows do not say).
        "timed_windows_min": float(numeric_column(speed, "timed_windows")[
            numeric_column(speed, "train_img_s").notna()].min()),
        "train_img_s_pooled_median": _median(numeric_column(speed, "train_img_s_pooled")),
        "cpu_share_min": float(share.min()) if share.notna().any() else math.nan,
        # Any contended seed makes the cell contended: its timing is not the cell's own.
        "contended": bool(contended_rows(speed).any()),
        "contention_measured": bool(share.notna().any()),
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
    missing = missing_accuracy(g)
    if missing:  # a strategy that could run has no accuracy: it might have won
        table.loc[g.index, "missing_acc"] = missing
    elif table.at[top, "contended"]:
        pass  # timed on a busy host: never named a winner (the tables say contended)
    elif separated(interval, [(table.at[i, "test_acc_ci_lo"], table.at[i, "test_acc_ci_hi"])
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


def missing_accuracy(g: pd.DataFrame) -> str:
    """'' or the compatible strategies of one dataset × model × device without an accuracy,
    each with why ('resize224 (measure-only), conv1 (error)'): while there are any, no
    strategy of the table is named the best. Incompatible strategies cannot compete."""
    rows = g[(g["test_acc_n"] == 0) & (g["status"] != "incompatible")]
    return ", ".join(f"{r['strategy']} ({r['status_detail'] if r['status'] == 'mixed' else r['status']})"
                     for _, r in rows.iterrows())


def _mark_fastest(table: pd.DataFrame, g: pd.DataFrame) -> None:
    """Set train_img_s_is_best on the fastest cell of one table, only when its p10 clears every
    other measured cell's p90 (and every one of them has a p10/p90)."""
    # Packed throughput is a figure of its own: never the fastest against solo ones.
    measured = g.loc[g["train_img_s_packed"] <= 1, "train_img_s_median"].dropna()
    if len(measured) < 2:
        return
    top = measured.idxmax()
    if table.at[top, "timed_windows_min"] < MIN_TIMED_WINDOWS:  # NaN: an older row, unknown
        return  # a p10..p90 over one or two windows is no spread to judge by
    if table.at[top, "contended"]:  # its speed is the host's, not the cell's
        return
    ranges = [(table.at[i, "train_img_s_lo"], table.at[i, "train_img_s_hi"])
              for i in measured.index if i != top]
    if separated((table.at[top, "train_img_s_lo"], table.at[top, "train_img_s_hi"]), ranges):
        table.loc[top, "train_img_s_is_best"] = True


def comparison_table(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per dataset × model × device × strategy, in the order cells first appear.

    Accuracy statistics use the ``ok`` full-mode seeds only; throughput and memory use every
    seed that measured them (measure-only cells included). Accuracies are fractions.

    ``test_acc_ci_lo``/``_hi`` is the interval each cell is judged by (see
    :func:`bench.report.stats.accuracy_ci`): Wilson over ``test_images`` for one seed; with more, the
    wider of Student t over seeds and Wilson at the mean. ``is_top`` marks the highest mean of
    each dataset × model × device; ``is_best`` only when that cell's interval clears every other
    scored cell's (a lone scored cell is trivially best), else ``tied_with`` names the cells it
    cannot be told from. ``diff_vs_best`` is this strategy's mean minus the top one's, with the
    wider of the Welch and Newcombe intervals; ``diff_significant`` says it excludes 0.
    ``train_img_s_is_best`` likewise needs the fastest cell's p10 above all others' p90, and
    at least :data:`~bench.schema.MIN_TIMED_WINDOWS` timed windows behind each of its seeds.
    ``missing_acc`` (on every row of a table) names the compatible strategies with no accuracy
    (measure-only, failed); while it is set, nothing is ``is_best`` and ``tied_with`` is empty.
    """
    table = pd.DataFrame([_group_row(key, g, confidence)
                          for key, g in runs.groupby(GROUP_KEYS, sort=False)])
    for col in ("params", "effective_input_px"):  # counts, not measurements: keep them exact
        table[col] = table[col].round().astype("Int64")
    table["is_top"] = False
    table["is_best"] = False
    table["tied_with"] = ""
    table["missing_acc"] = ""
    table["train_img_s_is_best"] = False
    for col in ("diff_vs_best", "diff_ci_lo", "diff_ci_hi"):
        table[col] = math.nan
    table["diff_significant"] = pd.Series([pd.NA] * len(table), dtype="boolean")
    for _, g in table.groupby(TABLE_KEYS, sort=False):
        _mark_best(table, g, confidence)
        _mark_fastest(table, g)
    return table.drop(columns="_acc_values")
