"""Reading a results directory: every ``runs*.csv`` checked against the schema's ranges, and the one
rule for a cell's current row (the newest ``timestamp`` per cell key) that resume, plan and the
report use.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import schema
from bench.results.errors import ResultsError
from bench.results.files import KINDS
from bench.schema import (
    FINAL_STATUSES,
    MODES,
    SCHEMA_VERSION,
    STATUSES,
    Mode,
    Status,
)


def read_csv(path: Path, kind: str) -> list[dict[str, str]]:
    """Rows of one results file; ``[]`` if it does not exist.

    Raises :class:`ResultsError` when the header is not this schema's (an older schema, a
    hand-edited or foreign file) or a line has the wrong number of fields (truncated, edited).
    """
    path = Path(path)
    try:
        # utf-8-sig: a file saved by a spreadsheet starts with a byte-order mark, which would
        # otherwise make the first column '\ufeffschema_version' and the header "foreign".
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from None
    if not text.strip():
        return []
    reader = csv.reader(io.StringIO(text))
    try:
        return _read_rows(path, kind, reader)
    except csv.Error as exc:  # a field over csv's 128 KiB limit, a stray quote or NUL byte
        raise ResultsError(f"{path}, line {reader.line_num}: not a well-formed CSV line "
                           f"({exc}); fix or remove that line, or move the file away.") from None


def _read_rows(path: Path, kind: str, reader: Any) -> list[dict[str, str]]:
    """The rows of :func:`read_csv` from its ``csv.reader`` (whose errors it turns into
    :class:`ResultsError` naming the line)."""
    columns = KINDS[kind]
    header = tuple(next(reader))
    legacy = header in schema.LEGACY_COLUMNS[kind]
    if legacy:
        file_columns = header  # an earlier layout: mapped onto this one, new columns empty
    elif header != columns:
        missing = [c for c in columns if c not in header]
        extra = [c for c in header if c not in columns]
        raise ResultsError(
            f"{path} does not have the {kind} columns of schema version {SCHEMA_VERSION} "
            f"(missing: {missing or 'none'}; unexpected: {extra or 'none'}"
            f"{'; same names, different order' if not missing and not extra else ''}). "
            "It was written by another version or edited by hand: move it away, or use "
            "--results-dir for a fresh directory.")
    else:
        file_columns = columns
    rows, line_nos = [], []
    for line_no, fields in enumerate(reader, start=2):
        if not fields:
            continue
        if len(fields) != len(file_columns):
            raise ResultsError(
                f"{path}, line {line_no}: {len(fields)} fields, expected {len(file_columns)} "
                "(a truncated or hand-edited row). Fix or remove that line, or move the file "
                "away.")
        values = dict(zip(file_columns, fields, strict=True))
        _check_values(path, line_no, kind, values)
        rows.append({c: values.get(c, "") for c in columns})
        line_nos.append(line_no)
    if kind == "runs":
        known = {str(v) for v in range(1, SCHEMA_VERSION + 1)}
        versions = {r["schema_version"] for r in rows}
        if versions - known:
            raise ResultsError(
                f"{path} has schema versions {sorted(versions)}; this harness reads versions "
                f"{', '.join(sorted(known))}. Move the file away or use --results-dir.")
        # Resume trusts cell_hash and status: an edited one would silently rerun a cell (or
        # keep a row no cell matches), so refuse it like a truncated row.
        for line_no, row in zip(line_nos, rows, strict=True):
            problem = ("empty cell_hash" if not row["cell_hash"]
                       else f"status {row['status']!r} is not one of {', '.join(STATUSES)}"
                       if row["status"] not in STATUSES
                       else f"mode {row['mode']!r} is not one of {', '.join(MODES)}"
                       if row["mode"] not in MODES else "")
            if problem:
                raise ResultsError(f"{path}, line {line_no}: {problem} (a hand-edited row?). "
                                   "Fix or remove that line, or move the file away.")
    return rows


def _check_values(path: Path, line_no: int, kind: str, values: dict[str, str]) -> None:
    """Every numeric value of one row within its schema range (:func:`schema.check_value`)."""
    for column in schema.TABLES[kind]:
        problem = schema.check_value(column, values.get(column.name, ""))
        if problem:
            raise ResultsError(f"{path}, line {line_no}, column {column.name!r}: {problem} "
                               "(a hand-edited row?). Fix or remove that line, or move the "
                               "file away.")


def kind_files(results_dir: Path, kind: str) -> list[Path]:
    """Every ``<kind>*.csv`` of a directory: plain, shard and rank files, sorted by name."""
    return sorted(p for p in Path(results_dir).glob(f"{kind}*.csv") if p.is_file())


def cell_key(row: dict[str, str]) -> tuple[str, ...]:
    """Which cell a runs row measured: :data:`bench.schema.CELL_KEY` (dataset, model, strategy,
    seed, device_id; a version-1 row without device_id falls back to its device_name)."""
    return (row["dataset"], row["model"], row["strategy"], str(row["seed"]),
            row.get("device_id") or row.get("device_name", ""))


def current_rows(rows: Iterable[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
    """THE rule for "the current row of a cell", used by resume, plan, the summary and the
    report: per :func:`cell_key`, the row with the newest ``timestamp`` (a tie goes to the row
    read later). Returns (current rows in first-seen order, how many rows of *another*
    cell_hash were superseded -- the same cell re-run under a changed recipe or code).

    So a cell re-run under a new recipe replaces its old row instead of being averaged with
    it as another seed, a ``--force`` rerun in a shard file replaces the old row, and a row
    from another machine (another device_id) is never anyone's current row.
    """
    best: dict[tuple[str, ...], dict[str, str]] = {}
    hashes: dict[tuple[str, ...], set[str]] = {}
    for row in rows:
        key = cell_key(row)
        hashes.setdefault(key, set()).add(row["cell_hash"])
        old = best.get(key)
        if old is None or row["timestamp"] >= old["timestamp"]:
            best[key] = row
    superseded = sum(len(h) - 1 for h in hashes.values())
    return list(best.values()), superseded


def _runs_by_file(results_dir: Path) -> list[tuple[str, dict[str, str]]]:
    out = []
    for path in kind_files(results_dir, "runs"):
        suffix = path.name[len("runs"):-len(".csv")]
        out.extend((suffix, row) for row in read_csv(path, "runs"))
    return out


def read_dir(results_dir: Path, kind: str = "runs") -> list[dict[str, str]]:
    """The current rows of ``kind`` in a directory, over plain, shard and rank files.

    ``runs``: :func:`current_rows`. ``history`` and ``ops``: the rows that belong to a current
    runs row, from the file that holds it (rows without a runs row -- a run killed between
    the writes -- are stale and left out).
    """
    by_file = _runs_by_file(Path(results_dir))
    current, _ = current_rows(row for _, row in by_file)
    if kind == "runs":
        return current
    chosen = {id(row) for row in current}
    winners = {row["cell_hash"]: suffix for suffix, row in by_file if id(row) in chosen}
    out = []
    for path in kind_files(results_dir, kind):
        suffix = path.name[len(kind):-len(".csv")]
        out.extend(r for r in read_csv(path, kind) if winners.get(r["cell_hash"]) == suffix)
    return out


def read_current_runs(results_dir: Path) -> tuple[list[dict[str, str]], int]:
    """``(current runs rows, rows superseded under another hash)`` of a directory."""
    return current_rows(row for _, row in _runs_by_file(Path(results_dir)))


def done_hashes(results_dir: Path) -> set[str]:
    """Hashes of cells whose current row has a final status and nothing that contradicts it
    (the resume rule; :func:`rerun_reason`)."""
    return {h for h, row in final_rows(results_dir).items() if not rerun_reason(row)}


def final_rows(results_dir: Path) -> dict[str, dict[str, str]]:
    """The current rows with a final status, by cell_hash (candidates for "done")."""
    return {r["cell_hash"]: r for r in read_dir(results_dir, "runs")
            if r["status"] in FINAL_STATUSES}


def rerun_reason(row: dict[str, str], cell: Any = None) -> str:
    """Why a final row does not make its cell done ("" when it does), so the cell is rerun.

    Resume trusts a row's cell_hash, so a row that contradicts itself must not be trusted: an
    ``ok`` full-mode row without a test accuracy (emptied, or ``nan``, by hand or a truncated
    write), or a row whose dataset, model, strategy or seed is not the one of the ``cell``
    (a :class:`bench.config.Cell`) its hash names (an edited name).
    """
    if (row["status"] == Status.OK and row["mode"] == Mode.FULL
            and row["test_acc"].strip().lower() in ("", "nan", "none")):
        return "its row says status ok but has no test_acc (an edited or truncated row)"
    if cell is not None:
        for key in ("dataset", "model", "strategy", "seed"):
            if str(row[key]) != str(getattr(cell, key)):
                return (f"its row (cell_hash {row['cell_hash']}) names {key} {row[key]!r}, "
                        f"not {str(getattr(cell, key))!r} (an edited row)")
    return ""
