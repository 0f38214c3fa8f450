"""Writing rows: upserts by ``cell_hash`` (a re-run or ``--force`` replaces its row in place) and the
merge of rank or shard files into one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.results.files import KINDS, atomic_write_text, file_name, normalize_row, to_csv_text
from bench.results.read import read_csv


def upsert(path: Path, kind: str, rows: Sequence[dict[str, Any]], replace_hashes: set[str]
           ) -> None:
    """Rewrite ``path`` atomically: drop rows whose cell_hash is in ``replace_hashes``, add ``rows``.

    The file is created if missing; existing rows are validated first (:func:`read_csv`).
    """
    columns = KINDS[kind]
    kept = [r for r in read_csv(path, kind) if r["cell_hash"] not in replace_hashes]
    new = [normalize_row(r, columns) for r in rows]
    atomic_write_text(path, to_csv_text([*kept, *new], columns))


def write_cell(results_dir: Path, suffix: str, run_row: dict[str, Any],
               history: Sequence[dict[str, Any]], ops: Sequence[dict[str, Any]]) -> None:
    """Record one cell: history and ops first, the runs row last.

    The runs row is the commit marker: if the run dies between the writes, the cell has no
    final row, is rerun, and its stale history/ops rows are replaced then.
    """
    results_dir = Path(results_dir)
    cell_hash = run_row["cell_hash"]
    upsert(results_dir / file_name("history", suffix), "history", history, {cell_hash})
    upsert(results_dir / file_name("ops", suffix), "ops", ops, {cell_hash})
    upsert(results_dir / file_name("runs", suffix), "runs", [run_row], {cell_hash})


def merge_files(results_dir: Path, sources: Sequence[str], target: str) -> int:
    """Merge the files named by suffixes ``sources`` into suffix ``target``; delete the sources.

    Used by torchrun rank 0 after the barrier. Idempotent: rows are upserted by cell_hash, so a
    merge interrupted after the replace but before the delete only repeats work. Returns the
    number of runs rows merged.
    """
    results_dir = Path(results_dir)
    merged = 0
    for suffix in sources:
        runs = read_csv(results_dir / file_name("runs", suffix), "runs")
        hashes = {r["cell_hash"] for r in runs}
        for kind in ("history", "ops"):
            rows = read_csv(results_dir / file_name(kind, suffix), kind)
            upsert(results_dir / file_name(kind, target), kind, rows,
                   hashes | {r["cell_hash"] for r in rows})
        upsert(results_dir / file_name("runs", target), "runs", runs, hashes)
        merged += len(runs)
        for kind in KINDS:
            try:
                (results_dir / file_name(kind, suffix)).unlink()
            except FileNotFoundError:
                pass
    return merged
