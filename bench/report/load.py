"""Reading a results directory: ``runs*.csv`` (``runs.csv`` plus any shard or rank files, merged
through :mod:`bench.results`' one rule for the current row of a cell), ``history*.csv``,
``ops*.csv`` and the doctor's ``compat.csv``, each checked for its columns, types and choices.

Bad input (no rows, missing columns, mixed schema versions, unknown status) raises
:class:`ReportError`, which the command line prints and turns into exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench import results as results_mod
from bench import schema
from bench.schema import MODES, SCHEMA_VERSION, STATUSES, superseded_reason

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
    """Read every column as text (empty cell -> NaN); numbers are converted per column later.
    ``utf-8-sig``: a byte-order mark (a spreadsheet's export) is read as bench.results reads
    it, so resume and the report agree on the same file."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                           encoding="utf-8-sig")
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
            f"{', '.join(map(_shown, df.columns[:12]))}{' ...' if len(df.columns) > 12 else ''}")


def _shown(name: object) -> str:
    """A column name as the message prints it: quoted with its escapes when it holds a control
    character (a newline would split the one-line error in two)."""
    text = str(name)
    return repr(text) if any(ord(c) < 32 or ord(c) == 127 for c in text) else text


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


def _check_values(df: pd.DataFrame, path: Path, kind: str) -> None:
    """Every numeric value within its schema range (:func:`bench.schema.check_value`): an
    accuracy of inf, 1e9 or -5 is named here, not met as a crash in a statistic later."""
    for column in schema.TABLES[kind]:
        if column.name not in df.columns or column.dtype not in ("int", "float"):
            continue
        for i, text in enumerate(df[column.name]):
            problem = schema.check_value(column, text) if isinstance(text, str) else ""
            if problem:
                raise ReportError(f"{path}, line {i + 2}, column {column.name!r}: {problem}")


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


# A seed is what config.py accepts: a whole number 0..2**32-1 (its message's wording).
MAX_SEED = 2**32 - 1


def _check_seeds(df: pd.DataFrame, path: Path) -> None:
    """Every seed a whole number 0..2**32-1 before it is cast to int: ``nan`` or ``none`` (a
    "missing" number elsewhere) would crash the cast, and a seed names a cell, so it is never
    missing."""
    for i, text in enumerate(df["seed"]):
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value.is_integer() and 0 <= value <= MAX_SEED):
            raise ReportError(f"{path}, line {i + 2}: column 'seed' holds {text!r}, which is "
                              f"not a seed (valid: a whole number 0..{MAX_SEED})")


def _check_names(df: pd.DataFrame, path: Path) -> None:
    """Every model and strategy one the harness knows (``strategies``' own checks): a renamed
    or misspelt one would be reported as a result of a model nobody can run. Checked once per
    distinct name; a ``timm:`` model is checked only where timm is installed (another
    machine's rows stay readable without the extra)."""
    import strategies
    from strategies import sources

    def problem(column: str, value: str) -> str:
        try:
            if column == "strategy":
                strategies.parse_spec(value)
            elif sources.split_name(value)[0].name != "timm" or sources.timm_available():
                strategies.check_model_name(value)
        except strategies.StrategyError as exc:
            return str(exc)
        return ""

    for column in ("model", "strategy"):
        for value in dict.fromkeys(df[column]):
            why = problem(column, value)
            if why:
                i = int((df[column] == value).to_numpy().nonzero()[0][0])
                raise ReportError(f"{path}, line {i + 2}: column {column!r}: {why}")


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
        _check_values(df, path, "runs")
        _check_seeds(df, path)
        _check_names(df, path)
        _to_numeric(df, (*RUN_NUMERIC_COLUMNS, "seed"), path)
        versions[path.name] = set(df["schema_version"].dropna().astype(str))
        df["source_file"] = path.name
        # Where each row came from, for a message about it after the files are merged.
        df["_where"] = [f"{path}, line {i + 2}" for i in range(len(df))]
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
    runs["_ts"] = _parse_timestamps(runs["timestamp"], runs["_where"])
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
    # Why a row's method is superseded ('' = current): kept out of headlines (current_runs).
    runs["superseded"] = [superseded_reason(r) for r in runs.to_dict("records")]
    return runs


def current_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(the rows of the current method, '' or a plain sentence on what was left out).

    Headline tables, charts, the page's recommendation and ``advise`` use these rows only;
    when none is left the sentence says that no current rows exist.
    """
    reasons = runs["superseded"] if "superseded" in runs else pd.Series("", index=runs.index)
    current = runs[reasons == ""].reset_index(drop=True)
    old = reasons[reasons != ""]
    if old.empty:
        return current, ""
    why = "; ".join(dict.fromkeys(old))
    if current.empty:
        return current, (f"No current rows: all {len(old)} rows here were produced by a "
                         f"superseded method ({why}); they are shown in the full tables only, "
                         "with no headline, chart or recommendation.")
    return current, (f"{len(old)} rows produced by a superseded method ({why}) are left out of "
                     "the headline, charts and recommendation.")


def _read_optional(results_dir: Path, stem: str, required: tuple[str, ...],
                   numeric: tuple[str, ...]) -> pd.DataFrame | None:
    frames = []
    for path in _files(results_dir, stem):
        df = _read_csv(path)
        _check_columns(df, path, required)
        _check_values(df, path, stem)
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
