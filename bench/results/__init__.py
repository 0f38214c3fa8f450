"""The results store: CSV schema, atomic writes, provenance and the results-directory lock.

One module a job, all importable from here (``results.NAME``): :mod:`~bench.results.files`
(columns, file names, CSV text, atomic writes), :mod:`~bench.results.read` (checked reads
and the current row of a cell), :mod:`~bench.results.write` (upserts, merges),
:mod:`~bench.results.provenance` and :mod:`~bench.results.lock`;
:mod:`~bench.results.errors` holds the errors they raise.

Files in a results directory (``results/<profile>/`` or ``--results-dir``)::

    runs.csv       one row per cell x seed (RUN_COLUMNS; schema_version column)
    history.csv    one row per epoch / evaluation point (HISTORY_COLUMNS)
    ops.csv        profiler top operators per cell (OPS_COLUMNS)
    config.toml    the resolved config of the last run; env.json: host, versions, command line

Sharded runs (``--shard k/n``) write ``runs.shard-k-of-n.csv`` (and ``history.``/``ops.`` alike);
``torchrun`` ranks write ``runs.rank<r>.csv`` while they run and rank 0 merges them into
``runs.csv`` at the end. Readers take every ``runs*.csv`` of a directory (see
:func:`read_dir`): when one ``cell_hash`` appears more than once, the newest ``timestamp`` wins.

Why whole-file replacement and not appends: every write goes to a temporary file in the same
directory, is fsynced, then ``os.replace``-d over the old file. A killed run or a full disk
leaves the previous file byte-identical -- never a half row -- and ``--force`` can replace a
row in place. The files are small (hundreds of rows), so rewriting them costs nothing.
"""

from __future__ import annotations

from bench.results.errors import LockError, ResultsError
from bench.results.files import (
    HISTORY_COLUMNS,
    KINDS,
    OPS_COLUMNS,
    PROVENANCE_COLUMNS,
    RUN_COLUMNS,
    atomic_write_text,
    file_name,
    format_value,
    normalize_row,
    rank_suffix,
    shard_suffix,
    to_csv_text,
)
from bench.results.lock import DirLock
from bench.results.provenance import (
    device_info,
    git_info,
    host_cpu,
    now_iso,
    provenance,
    software_versions,
)
from bench.results.read import (
    cell_key,
    current_rows,
    done_hashes,
    final_rows,
    kind_files,
    read_csv,
    read_current_runs,
    read_dir,
    rerun_reason,
)
from bench.results.write import merge_files, upsert, write_cell
from bench.schema import FINAL_STATUSES, MODES, SCHEMA_VERSION, STATUSES, Mode, Status

__all__ = ["FINAL_STATUSES", "HISTORY_COLUMNS", "KINDS", "MODES", "OPS_COLUMNS",
           "PROVENANCE_COLUMNS", "RUN_COLUMNS", "SCHEMA_VERSION", "STATUSES", "DirLock",
           "LockError", "Mode", "ResultsError", "Status", "atomic_write_text", "cell_key",
           "current_rows", "device_info", "done_hashes", "file_name", "final_rows",
           "format_value", "git_info", "host_cpu", "kind_files", "merge_files", "normalize_row",
           "now_iso", "provenance", "rank_suffix", "read_csv", "read_current_runs", "read_dir",
           "rerun_reason", "shard_suffix", "software_versions", "to_csv_text", "upsert",
           "write_cell"]
