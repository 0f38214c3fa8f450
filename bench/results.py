"""The results store: CSV schema, atomic writes, provenance and the results-directory lock.

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

import csv
import errno
import fcntl
import io
import json
import math
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import REPO_ROOT, schema
from bench.schema import (  # noqa: F401 - re-exported
    FINAL_STATUSES,
    MODES,
    SCHEMA_VERSION,
    STATUSES,
    Mode,
    Status,
)

RUN_COLUMNS: tuple[str, ...] = schema.COLUMNS["runs"]
HISTORY_COLUMNS: tuple[str, ...] = schema.COLUMNS["history"]
OPS_COLUMNS: tuple[str, ...] = schema.COLUMNS["ops"]
KINDS: dict[str, tuple[str, ...]] = schema.COLUMNS
PROVENANCE_COLUMNS = schema.PROVENANCE


class ResultsError(Exception):
    """A results file that cannot be read or written as expected. Message says what to do."""


class LockError(ResultsError):
    """Another run holds the results directory."""


# --- file names --------------------------------------------------------------------------

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


# --- reading ---------------------------------------------------------------------------------

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


# --- upserts -------------------------------------------------------------------------------

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


# --- provenance ------------------------------------------------------------------------------

def now_iso() -> str:
    """UTC timestamp, second resolution, ISO 8601 (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def git_info(repo_dir: Path | None = None) -> dict[str, str]:
    """``{"git_sha": ..., "git_dirty": "true"|"false"}``; "unknown"/"" outside a git checkout.

    Untracked files are ignored (a fresh results directory must not make the tree "dirty").
    Outside a checkout (a copied working tree, e.g. on a lent GPU machine) the commit can be
    named by ``$ADAPTBENCH_GIT_SHA``; its dirty flag is then unknown ("").
    """
    repo_dir = Path(repo_dir or REPO_ROOT)

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"git_sha": os.environ.get("ADAPTBENCH_GIT_SHA") or "unknown", "git_dirty": ""}
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = "" if status is None else ("true" if status.strip() else "false")
    return {"git_sha": sha.strip(), "git_dirty": dirty}


def host_cpu() -> str:
    """CPU model and logical core count, e.g. ``AMD EPYC 7B13 (2 logical cores)``."""
    from bench import device

    return device.host_cpu()


def software_versions() -> dict[str, str]:
    """torch / torchvision / CUDA / cuDNN versions (imports torch)."""
    import torch
    import torchvision

    cudnn = ""
    if torch.backends.cudnn.is_available():
        cudnn = str(torch.backends.cudnn.version() or "")
    return {"torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
            "cuda_version": torch.version.cuda or "", "cudnn_version": cudnn}


def device_info(device: str) -> dict[str, str]:
    """``device`` kind, short ``device_name`` and exact ``device_id`` of ``cpu`` / ``cuda:N``."""
    from bench import device as device_mod

    return {"device": device.split(":")[0], "device_name": device_mod.device_name(device),
            "device_id": device_mod.device_identity(device)}


def provenance(device: str) -> dict[str, str]:
    """Where a cell runs, as this process sees it: the :data:`bench.schema.DEVICE_KEYS` and
    :data:`bench.schema.HOST_KEYS` of a row (imports torch). Gathered by the process that
    runs the cell (:mod:`bench.executors.worker`), once per cell; the sweep gathers its own only
    for env.json and for a cell whose process reported none."""
    return {**device_info(device), "host_cpu": host_cpu(), **software_versions()}


# --- the directory lock ------------------------------------------------------------------

class DirLock:
    """An exclusive ``fcntl.flock`` on ``<dir>/<name>.lock``, held for the whole run.

    The lock file holds the holder's pid, host and command line, so a refused run can say who
    holds it. The kernel releases a flock when its process dies, so a killed run never leaves a
    stale lock (the file itself stays; it is ignored by git).
    """

    def __init__(self, results_dir: Path, name: str = "runs") -> None:
        self.path = Path(results_dir) / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self, command: str = "") -> DirLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ResultsError(f"results directory {self.path.parent} is not writable: "
                               f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise ResultsError(f"cannot lock {self.path}: {exc}") from None
            holder = _read_holder(fd)
            os.close(fd)
            raise LockError(
                f"results directory {self.path.parent} is in use by another run ({holder}); "
                f"lock file {self.path}. Wait for it to finish, or pass --results-dir for a "
                "separate directory.") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                "started": now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    # The holder writes its line right after locking; give it a moment if we raced it.
    for _ in range(5):
        raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if raw:
            try:
                info = json.loads(raw)
                return (f"pid {info.get('pid')} on {info.get('host')}, started "
                        f"{info.get('started')}: {info.get('command')}")
            except json.JSONDecodeError:
                return raw[:200]
        time.sleep(0.05)
    return "holder unknown"
