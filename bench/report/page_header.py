"""The page's header: what was measured (the recipe line), what every number is not (the
caveat box), the files it was made from (links), and the columns every cell shares.

Everything shown comes from the rows (runs*.csv) or the ``config.toml`` the sweep wrote beside
them; nothing here is typed in. Every value is escaped by the caller's :func:`esc`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from bench import REPO_ROOT
from bench.schema import Mode

# Columns of the cells table that move to the header when every cell has the same value.
CONSTANT_COLUMNS = (("dataset", "dataset", "dataset"), ("device", "device_name", "device"))


def constant_columns(table: pd.DataFrame) -> dict[str, str]:
    """``{data-key: value}`` of the cells table's columns with one value in every row."""
    out = {}
    for key, col, _ in CONSTANT_COLUMNS:
        if col in table.columns and len(table) and table[col].nunique(dropna=False) == 1:
            out[key] = str(table[col].iloc[0])
    return out


def read_config(results_dir: Path) -> dict:
    """The resolved config the sweep saved (``config.toml``), flattened; {} when absent."""
    path = Path(results_dir) / "config.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return {k: v for table in raw.values() if isinstance(table, dict) for k, v in table.items()}


def _per_model(runs: pd.DataFrame, col: str, fmt=str) -> str:
    """One value, or ``model value`` pairs where the models differ (per_model entries)."""
    if col not in runs.columns:
        return ""
    values = runs[[col, "model"]].dropna()
    distinct = list(dict.fromkeys(values[col].astype(str)))
    if len(distinct) <= 1:
        return fmt(distinct[0]) if distinct else ""
    by_model = values.groupby("model", sort=False)[col].agg(
        lambda s: " / ".join(fmt(v) for v in dict.fromkeys(s.astype(str))))
    return ", ".join(f"{m} {v}" for m, v in by_model.items())


def _images(value: str) -> str:
    try:
        n = int(float(value))
    except ValueError:
        return value
    return "the whole split" if n == 0 else f"{n:,}"


def recipe_items(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, text) of the recipe every number was measured with, from the rows."""
    seeds = sorted({int(s) for s in runs["seed"].dropna()}) if "seed" in runs else []
    items = [("epochs", _per_model(runs, "epochs")),
             ("training images", _per_model(runs, "train_size", _images)),
             ("test images", _per_model(runs, "test_size", _images)),
             ("seeds", f"{len(seeds)} ({', '.join(map(str, seeds))})" if seeds else ""),
             ("optimizer", _per_model(runs, "optimizer")),
             ("lr", _per_model(runs, "lr")),
             ("batch", _per_model(runs, "batch_size")),
             ("precision", _per_model(runs, "precision"))]
    return [(label, text) for label, text in items if text]


def _one_epoch(runs: pd.DataFrame) -> bool:
    try:
        return bool(len(runs)) and (pd.to_numeric(runs["epochs"]) <= 1).all()
    except (KeyError, ValueError, TypeError):
        return False


def caveats(runs: pd.DataFrame, config: dict) -> list[str]:
    """The plain-text caveats a reader needs before any number: where the weights came from,
    how short the training was, and which cells have no accuracy at all."""
    out = []
    weights = config.get("weights")
    per_model = [e for e in config.get("per_model", []) if ":weights=" in str(e)]
    if weights == "" and not per_model:
        out.append("Every number here is from randomly initialised models: no ImageNet (or "
                   "other pretrained) weights were loaded (config.toml: weights = \"\"). "
                   "Pretrained models may rank the strategies differently; to run with your "
                   "own weights: python -m bench run --profile PROFILE --set weights=PATH.pt")
    elif weights is None:
        out.append("The weights the models started from are not recorded here (no "
                   "config.toml beside the rows).")
    if _one_epoch(runs):
        out.append("Every cell trained for one short epoch: accuracy is how fast a strategy "
                   "starts to learn under this recipe, not how well it ends.")
    if "mode" in runs.columns:
        n = int((runs["mode"] == Mode.MEASURE_ONLY).sum())
        if n:
            out.append(f"{n} of {len(runs)} runs are measure-only (their estimated cost was "
                       "over the profile's cell budget): throughput, memory and FLOPs, no "
                       "accuracy. The charts draw them hatched.")
    return out


def links(results_dir: Path, out_dir: Path, inputs: list[str]) -> list[tuple[str, str]]:
    """(text, relative href) of the CSVs the page was made from and wrote, and of the docs."""
    out: list[tuple[str, str]] = []

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, out_dir)).as_posix()

    for name in inputs:
        path = Path(results_dir) / name
        if path.suffix == ".csv" and path.is_file():
            out.append((name, rel(path)))
    out.append(("comparison.csv", "comparison.csv"))  # bench report writes it beside the page
    docs = REPO_ROOT / "docs"
    for name in ("results.md", "methodology.md"):
        if (docs / name).is_file():
            out.append((f"docs/{name}", rel(docs / name)))
    return out
