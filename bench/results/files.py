"""The files of a results directory and how they are written: the column tuples of each kind, file
names (shards, ranks), cell values as CSV text, and atomic whole-file replacement (a temporary file
in the same directory, fsynced, then ``os.replace``-d).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench import schema
from bench.results.errors import ResultsError

RUN_COLUMNS: tuple[str, ...] = schema.COLUMNS["runs"]
HISTORY_COLUMNS: tuple[str, ...] = schema.COLUMNS["history"]
OPS_COLUMNS: tuple[str, ...] = schema.COLUMNS["ops"]
KINDS: dict[str, tuple[str, ...]] = schema.COLUMNS
PROVENANCE_COLUMNS = schema.PROVENANCE


def file_name(kind: str, suffix: str = "") -> str:
    """``file_name("runs", ".shard-1-of-4") == "runs.shard-1-of-4.csv"``."""
    if kind not in KINDS:
        raise ValueError(f"unknown results kind {kind!r}; valid: {', '.join(KINDS)}")
    return f"{kind}{suffix}.csv"


def shard_suffix(index: int, count: int) -> str:
    """Suffix of a ``--shard index/count`` run (1-based index)."""
    return f".shard-{index}-of-{count}" if count > 1 else ""


def rank_suffix(base: str, rank: int) -> str:
    return f"{base}.rank{rank}"


# --- formatting ------------------------------------------------------------------------------

def format_value(value: Any) -> str:
    """One CSV cell: '' for missing/None, lowercase booleans, JSON for lists and dicts."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return format_value(value.item())
    return str(value)


def normalize_row(row: dict[str, Any], columns: Sequence[str]) -> dict[str, str]:
    """Exactly ``columns`` (missing ones empty), every value formatted as text.

    A key that is not a column is an error under ``$ADAPTBENCH_STRICT_SCHEMA`` (the tests) and
    a warning otherwise: a measurement computed and then dropped must not go unnoticed.
    """
    kind = next((k for k, cols in KINDS.items() if tuple(columns) == cols), None)
    if kind is not None:
        unknown = schema.check_keys(row, kind)
        if unknown:
            import sys

            print(f"warning: {kind} row keys not in the schema, not written: {unknown}",
                  file=sys.stderr)
    return {c: format_value(row.get(c)) for c in columns}


def to_csv_text(rows: Iterable[dict[str, str]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue()


# --- atomic writes -------------------------------------------------------------------------

def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    On any failure (disk full, permission) the old file is left untouched and
    :class:`ResultsError` is raised.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    data = text.encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ResultsError(f"could not write {path}: {exc.strerror or exc}; "
                           "the previous version of the file is unchanged") from exc


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the replace itself is still atomic
    finally:
        os.close(fd)
