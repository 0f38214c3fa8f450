"""The results schema: every column of runs.csv, history.csv and ops.csv, in one place.

Each :class:`Column` has a dtype, a unit and a one-line meaning; the CSV headers, the column
glossary of docs/methodology.md (``python -m bench.schema [--write docs/methodology.md]``) and
the row checks all come from here.
:class:`Status` and :class:`Mode` are the only status and mode values there are, and
:func:`make_row` is the one constructor of a runs row (every row starts as an :func:`outcome`).

Version history (``schema_version`` column of runs.csv):

1. the first published layout (results/gpu was written with it).
2. adds ``device_id`` (exact device identity, part of the cell hash), memory columns with
   one meaning each (``peak_mem_mib`` is tensor bytes on every device;
   ``eval_peak_mem_mib``, ``peak_rss_mib``), ``test_count``, ``timed_windows``,
   ``peak_fresh_tflops``; ops.csv gains the profiler's memory columns. Version-1 files are
   read by mapping them onto version 2 (new columns empty): nothing is lost.
3. adds ``executor`` (which executor ran the cell: ``warm`` | ``process``; ``none`` when the
   sweep recorded the cell without running it) and gives ``peak_rss_mib`` its per-cell meaning
   under a long-lived worker; adds ``input_shape`` (the dataset's C×H×W: user datasets come in
   any size and channel count) and ``data_digest`` (which cached arrays the cell saw).
   ``peak_rss_mib`` is read from VmHWM from now on: the ru_maxrss of earlier rows was at
   least the sweep process's own peak (Linux carries it over exec). Version 1 and 2 files are
   read with these columns empty (every version-2 row was run by a
   fresh process per cell, but the file does not say so).
4. adds ``world_size`` (ranks that trained the cell together: 1, or W under ``run --ddp``,
   whose rows also have ``device_id`` ending in ``| ddp xW``) and ``concurrency`` (cells that
   shared the device while this one ran, itself included: 1 = alone; more under the ``ray``
   executor with ``pack`` > 1, whose throughput is not a solo figure), and the executors
   ``ray`` and ``submitit``. Earlier files are read with both empty: every earlier row was
   trained by one process, alone on its device (under torchrun, each rank on its own GPU; on
   CPU the ranks split the cores, which the file does not say either).
   It also adds ``graphs`` (the training and evaluation step replayed as CUDA graphs),
   ``capture_s`` (their warm-up and capture, outside every timed window) and
   ``fast_path_reason`` (why ``graphs`` and ``compile`` are on or off: the ``auto`` decision
   or the fallback); ``compile`` now records the resolved value of ``compile = "auto"``.
   Earlier files are read with these columns empty too (their cells ran eager, uncaptured).
5. adds the contention check (bench/engine/contention.py): ``threads``, ``cpu_share``,
   ``load_start``, ``load_end``, ``contended``, ``remeasured``; and the throughput the
   time-based comparisons use, ``train_img_s_pooled`` (images over the windows' total
   seconds) with ``timed_s`` and ``train_images``. Earlier files are read with these columns
   empty: contention was not measured, so nothing in them is flagged (the report says so).
6. the same columns; ``cpu_share`` is weighted by time (all the kept windows' CPU seconds over
   their wall seconds x threads), where version 5 took the median of the windows' shares,
   which passed a cell with a few windows slowed many times over (see
   bench/engine/contention.py). Version-5 rows are read as they are: their ``contended`` is
   the median's verdict.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Status(str, enum.Enum):
    """How a cell ended."""

    OK = "ok"
    INCOMPATIBLE = "incompatible"  # the strategy cannot run this model (explained in reason)
    DIVERGED = "diverged"  # non-finite training loss; stopped early
    OOM = "oom"  # out of memory at this batch size (never retried smaller)
    ERROR = "error"  # anything else went wrong (reason, and logs/ for a crashed process)
    TIMEOUT = "timeout"  # killed after cell_timeout_s

    def __str__(self) -> str:
        return self.value


class Mode(str, enum.Enum):
    """What a cell was asked to do."""

    FULL = "full"  # trained for the recipe's epochs and evaluated
    MEASURE_ONLY = "measure-only"  # over the cell budget: throughput, memory, FLOPs; no accuracy

    def __str__(self) -> str:
        return self.value


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
MODES: tuple[str, ...] = tuple(m.value for m in Mode)
# The resume rule: a cell whose current row has one of these statuses is done. ``error`` and
# ``timeout`` are transient (a crash, a kill, a busy machine) and are retried.
FINAL_STATUSES = frozenset({Status.OK.value, Status.INCOMPATIBLE.value, Status.DIVERGED.value,
                            Status.OOM.value})


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # str | int | float | bool | json
    unit: str  # "" when unitless
    meaning: str


def _c(name: str, dtype: str, unit: str, meaning: str) -> Column:
    return Column(name, dtype, unit, meaning)


SCHEMA_VERSION = 6

# Rows written under a method since replaced: (schema versions, why). A report keeps them in
# its full tables, marked, and out of headline tables, charts and recommendations.
SUPERSEDED_VERSIONS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"1"}), "schema 1: the old recipe, layers a strategy creates at PyTorch's "
                       "default init (not the family rule), resnet50 under a clipped recipe "
                       "that failed to train"),
)


def superseded_reason(row: Mapping[str, Any]) -> str:
    """'' for a row of the current method, else why its method is superseded (from its
    ``schema_version``: the recipe and init rules it implies)."""
    version = str(row.get("schema_version", "")).strip()
    if version.endswith(".0"):  # read back as a float by pandas
        version = version[:-2]
    return next((why for versions, why in SUPERSEDED_VERSIONS if version in versions), "")


# Timed windows a throughput needs before a report may call it the fastest, and that a
# measure-only cell always runs (bench.plan.steps): one window has no spread to judge by.
MIN_TIMED_WINDOWS = 5

RUNS: tuple[Column, ...] = (
    _c("schema_version", "int", "", "layout version of this row (see bench/schema.py)"),
    _c("cell_hash", "str", "", "hash of the cell, its effective recipe and device_id: the resume key"),
    _c("profile", "str", "", "profile the row was run from"),
    _c("dataset", "str", "", "dataset name: a built-in, or folder:PATH / npz:PATH (your images)"),
    _c("input_shape", "str", "", "channels x height px x width px of the dataset's images"),
    _c("data_digest", "str", "", "short sha256 of the cached arrays the cell trained and "
       "tested on"),
    _c("model", "str", "", "model name (torchvision, or timm:NAME)"),
    _c("strategy", "str", "", "adaptation strategy spec or preset"),
    _c("seed", "int", "", "seed of initialisation and batch order (the data subset is fixed)"),
    _c("status", "str", "", "ok | incompatible | diverged | oom | error | timeout"),
    _c("reason", "str", "", "why the status is not ok, or why a measurement is missing"),
    _c("mode", "str", "", "full | measure-only (over cell_budget_s: no accuracy)"),
    _c("epochs", "int", "epochs", "training epochs of the recipe"),
    _c("batch_size", "int", "images", "training batch size, the global one over all ranks "
       "under --ddp (evaluation uses four times this: bench.plan.steps.EVAL_BATCH_FACTOR)"),
    _c("precision", "str", "", "fp32 | bf16 | fp16 (autocast)"),
    _c("channels_last", "bool", "", "NHWC memory layout"),
    _c("compile", "bool", "", "torch.compile of the model (the resolved value of auto)"),
    _c("graphs", "bool", "", "the whole training step (forward, loss, backward, optimizer) and "
       "the evaluation step replayed as CUDA graphs on static buffers (the resolved value of "
       "auto; false where it fell back)"),
    _c("optimizer", "str", "", "sgd | adamw"),
    _c("lr", "float", "", "peak learning rate of the effective recipe"),
    _c("train_size", "int", "images", "training subset size; 0 = the whole split"),
    _c("test_size", "int", "images", "test subset size; 0 = the whole split"),
    _c("test_acc", "float", "fraction", "final top-1 accuracy on the test split"),
    _c("test_count", "int", "images", "test images test_acc was computed over (its binomial n)"),
    _c("best_acc", "float", "fraction", "best accuracy over the evaluation points"),
    _c("final_train_loss", "float", "nats", "mean training loss over the last epoch"),
    _c("target_acc", "float", "fraction", "accuracy that time_to_target_s waits for"),
    _c("time_to_target_s", "float", "s", "training seconds (evaluation excluded) to target_acc"),
    _c("epochs_to_target", "float", "epochs", "epochs to target_acc"),
    _c("train_img_s", "float", "images/s", "median training throughput over timed windows of "
       "whole consecutive steps (batch preparation, forward, backward, optimizer, checks), "
       "warm-up excluded, device synchronised at both ends"),
    _c("train_img_s_p10", "float", "images/s", "10th percentile over the timed windows"),
    _c("train_img_s_p90", "float", "images/s", "90th percentile over the timed windows"),
    _c("timed_windows", "int", "", "number of timed windows behind train_img_s (a measure-only "
       "cell runs at least MIN_TIMED_WINDOWS; a cell with fewer is never marked fastest)"),
    _c("train_img_s_pooled", "float", "images/s", "images of every timed window over their "
       "total seconds: what accuracy per training second, time to target and epoch cost in "
       "the report are derived from (the median is the typical window)"),
    _c("timed_s", "float", "s", "total seconds of the timed windows behind train_img_s"),
    _c("train_images", "int", "images", "images the training steps processed, all epochs, "
       "warm-up included (extra memory, profiler and re-measure steps excluded)"),
    _c("threads", "int", "threads", "torch intra-op threads of the cell (torch.get_num_threads)"),
    _c("cpu_share", "float", "fraction", "CPU cells: the process's CPU seconds (user+sys, "
       "time.process_time) over wall seconds x threads, summed over the kept timed windows "
       "(each weighs by its seconds, as in train_img_s_pooled), 0..1; schema 5 rows: the "
       "median of the windows' shares; empty on CUDA (not applicable) and before schema 5"),
    _c("load_start", "float", "processes", "1-minute load average (os.getloadavg) when the "
       "cell started"),
    _c("load_end", "float", "processes", "1-minute load average when its timing ended"),
    _c("contended", "bool", "", "cpu_share < 0.8 (CPU_SHARE_THRESHOLD, "
       "bench/engine/contention.py) after the re-measures: the host was busy, throughput is "
       "not the cell's own; the report marks it and never names it a winner. False on CUDA"),
    _c("remeasured", "int", "passes", "re-timings of contended windows (0..contended_retries "
       "passes of at most 10 windows of extra steps after training; a pass that is not "
       "contended replaces the first figures)"),
    _c("eval_img_s", "float", "images/s", "median evaluation throughput under "
       "torch.inference_mode (first pass excluded)"),
    _c("epoch_s", "float", "s", "median wall time of a training epoch, evaluation excluded"),
    _c("wall_s", "float", "s", "the whole cell: build, data, training, evaluation, profiler"),
    _c("compile_s", "float", "s", "first step minus a steady step when compile is on"),
    _c("capture_s", "float", "s", "CUDA-graph warm-up and capture of the training and "
       "evaluation steps, before the first epoch (never in a timed window); 0 without graphs"),
    _c("fast_path_reason", "str", "", "why graphs and compile are on or off: the auto "
       "decision from the cost model's estimates, or why a fast path fell back"),
    _c("peak_mem_mib", "float", "MiB", "peak bytes held by tensors on the device during the "
       "steady training steps of the profiler window (max(1, profile_steps) untimed steps "
       "after a settling one, the steps ops.csv covers), weights, gradients, optimizer state "
       "and device-resident data included (CUDA allocator; CPU allocator events via "
       "torch.profiler)"),
    _c("peak_reserved_mib", "float", "MiB", "CUDA only: peak bytes the caching allocator "
       "reserved during those steps"),
    _c("eval_peak_mem_mib", "float", "MiB", "the same peak during one evaluation batch "
       "(4 x batch_size images, or the evaluation split if smaller)"),
    _c("peak_rss_mib", "float", "MiB", "peak resident set size of the process that ran the "
       "cell, while it ran (Linux VmHWM: libraries, framework, host copies included, the "
       "sweep's own memory not; warm executor: the worker's high-water mark reset at the "
       "cell's start, so it includes the 60-150 MiB of caches a worker keeps between cells; "
       "empty where it cannot be reset)"),
    _c("params", "int", "", "parameters of the adapted model"),
    _c("gflops_fwd_per_img", "float", "GFLOP", "forward FLOPs per image (FlopCounterMode, 2 per "
       "multiply-add; the adaptation included, but bilinear resampling counts 0)"),
    _c("tflops_achieved", "float", "TFLOP/s", "3 x forward FLOPs x train_img_s"),
    _c("mfu", "float", "fraction", "tflops_achieved / peak_tflops; overstated when the first "
       "layer needs no input gradient (the input does not require one): 3 x forward counts "
       "it, by up to that layer's FLOPs / (3 x forward FLOPs)"),
    _c("peak_tflops", "float", "TFLOP/s", "sustained matmul peak of the cell's compute dtype "
       "on this device (cached per device identity, dtype, threads, TF32)"),
    _c("peak_fresh_tflops", "float", "TFLOP/s", "a quick matmul at the peak's size after the "
       "cell: far below peak_tflops means the machine was busy; measured once per process and "
       "reused for 10 minutes, so a warm worker's cells share one check"),
    _c("effective_input_px", "int", "px", "side of the image the ImageNet-shaped body sees"),
    _c("reinitialized", "str", "", "layers the strategy created or replaced, with the init rule"),
    _c("estimate_s", "float", "s", "the plan's estimate for the cell"),
    _c("executor", "str", "", "what ran the cell: warm (a long-lived worker, fresh after any "
       "failure) | process (a fresh process) | ray (a warm worker in a Ray actor) | submitit "
       "(a Slurm array task, fresh process) | none (recorded by the sweep without running)"),
    _c("concurrency", "int", "cells", "cells that ran on this cell's device at once while it "
       "ran, itself included (1 = alone; > 1: packed, its throughput is not a solo figure); "
       "empty when nothing ran"),
    _c("world_size", "int", "ranks", "processes that trained the cell together: 1, or W under "
       "run --ddp (then train_img_s and tflops_achieved are over every rank, mfu against W "
       "devices' peak, the memory columns the max over ranks, final_train_loss the mean)"),
    _c("device", "str", "", "cpu | cuda"),
    _c("device_name", "str", "", "short device name (CPU model, family/model/stepping when "
       "masked; GPU name)"),
    _c("device_id", "str", "", "exact device identity: CPU model, family/model/stepping, "
       "logical cores, speed flags; GPU name, memory, count"),
    _c("host_cpu", "str", "", "host CPU and logical cores"),
    _c("torch_version", "str", "", "torch version"),
    _c("torchvision_version", "str", "", "torchvision version"),
    _c("cuda_version", "str", "", "CUDA version torch was built with"),
    _c("cudnn_version", "str", "", "cuDNN version"),
    _c("git_sha", "str", "", "commit of the harness"),
    _c("git_dirty", "str", "", "true when the tree had uncommitted changes"),
    _c("config_hash", "str", "", "hash of the whole resolved config"),
    _c("timestamp", "str", "UTC", "when the row was written (ISO 8601)"),
)

_IDENTITY = ("cell_hash", "dataset", "model", "strategy", "seed", "device_name")

HISTORY: tuple[Column, ...] = (
    *(c for c in RUNS if c.name in _IDENTITY),
    _c("epoch", "float", "epochs", "position of the evaluation point"),
    _c("step", "int", "steps", "optimizer steps so far"),
    _c("train_loss", "float", "nats", "mean training loss since the epoch started"),
    _c("test_acc", "float", "fraction", "accuracy at this point (validation split if val_size)"),
    _c("epoch_s", "float", "s", "training seconds of the last finished epoch"),
    _c("elapsed_s", "float", "s", "training seconds so far, evaluation excluded"),
    _c("per_class_acc", "json", "fraction", "accuracy per class"),
)

OPS: tuple[Column, ...] = (
    *(c for c in RUNS if c.name in _IDENTITY),
    _c("op", "str", "", "operator name"),
    _c("self_cpu_ms", "float", "ms", "host self time over the profiled steps"),
    _c("self_device_ms", "float", "ms", "device self time over the profiled steps"),
    _c("calls", "int", "", "calls over the profiled steps"),
    _c("self_cpu_mem_mib", "float", "MiB", "host memory the operator allocated, net"),
    _c("self_device_mem_mib", "float", "MiB", "device memory the operator allocated, net"),
)

TABLES: dict[str, tuple[Column, ...]] = {"runs": RUNS, "history": HISTORY, "ops": OPS}
COLUMNS: dict[str, tuple[str, ...]] = {k: tuple(c.name for c in v) for k, v in TABLES.items()}

# Earlier layouts, read by mapping onto the current one (new columns empty).
_V3 = ("input_shape", "data_digest", "executor")
_V4 = ("world_size", "concurrency", "graphs", "capture_s", "fast_path_reason")
_V5 = ("train_img_s_pooled", "timed_s", "train_images", "threads", "cpu_share", "load_start",
       "load_end", "contended", "remeasured")
LEGACY_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "runs": (tuple(c for c in COLUMNS["runs"] if c not in (
        "test_count", "timed_windows", "eval_peak_mem_mib", "peak_rss_mib", "peak_fresh_tflops",
        "device_id", *_V3, *_V4, *_V5)),
        tuple(c for c in COLUMNS["runs"] if c not in (*_V3, *_V4, *_V5)),
        tuple(c for c in COLUMNS["runs"] if c not in (*_V4, *_V5)),
        tuple(c for c in COLUMNS["runs"] if c not in _V5)),
    "history": (),
    "ops": (COLUMNS["ops"][:-2],),
}

# Filled by the sweep, not by run_cell.
PROVENANCE = ("device", "device_name", "device_id", "host_cpu", "torch_version",
              "torchvision_version", "cuda_version", "cudnn_version", "git_sha", "git_dirty",
              "config_hash", "timestamp")
# Where a cell ran, as a process sees it: the device, then the host and its libraries.
DEVICE_KEYS = ("device", "device_name", "device_id")
HOST_KEYS = ("host_cpu", "torch_version", "torchvision_version", "cuda_version", "cudnn_version")

# The key of "the same cell": one current row per key (see bench.results.current_rows).
CELL_KEY = ("dataset", "model", "strategy", "seed", "device_id")

# The recipe columns of a runs row, from the effective config of the cell (bench.config.for_model).
RECIPE = ("epochs", "batch_size", "precision", "channels_last", "compile", "graphs", "optimizer",
          "lr",
          "train_size", "test_size", "target_acc")

STRICT_ENV = "ADAPTBENCH_STRICT_SCHEMA"


def recipe_values(cfg: Any) -> dict[str, Any]:
    """The :data:`RECIPE` columns of a row, read off a (per-model resolved) Config."""
    return {key: getattr(cfg, key) for key in RECIPE}


# --- building a row: one constructor for every place that writes one --------------------------

def outcome(status: Status | str, reason: str = "", **columns: Any) -> dict[str, Any]:
    """How a cell ended, as one process knows it: the start of every runs row.

    ``status`` must be a :class:`Status` (an unknown one raises ``ValueError``), ``mode``, when
    given among ``columns``, a :class:`Mode`; both are stored as their plain text, the CSV's.
    ``reason`` says why the status is not ok or why a measurement is missing ("" for nothing).
    Used by the engine (a finished or failed cell), the worker (an exception the engine did
    not catch), the executors' protocol (a process that left no result: killed, timed out),
    the sweep (an incompatible cell it records without running) and ``--ddp`` (the status of
    all ranks together).
    """
    out = {**columns, "status": Status(status).value, "reason": reason}
    if "mode" in columns:
        out["mode"] = Mode(columns["mode"]).value
    return out


def _missing(value: Any) -> bool:
    return value is None or value == ""


def make_row(measured: Mapping[str, Any], *, fixed: Mapping[str, Any],
             defaults: Mapping[str, Any], provenance: Mapping[str, Any],
             fallback: Mapping[str, Any], device_suffix: str = "") -> dict[str, Any]:
    """THE runs row of a cell, from its sources, each with one rule:

    - ``measured``: what the cell recorded (an :func:`outcome` with its measurements);
    - ``fixed``: what the sweep decided, always written (identity, the plan's estimate, the
      executor, world size, git, config hash, timestamp);
    - ``defaults``: fill a column the measurement left absent or empty (the effective recipe,
      the planned mode, the input shape of a cell that never started);
    - ``provenance``: where the cell ran (:data:`DEVICE_KEYS`, :data:`HOST_KEYS`) as the
      process that ran it saw it, taken whole; only a process that reported none (it died
      first, or a stand-in that never imported torch) has its row's own values completed
      from ``fallback``, the sweep process's;
    - ``device_suffix``: appended to ``device_id`` (``| ddp xW``: another experiment).
    """
    out = dict(measured)
    out.update(fixed)
    for key, value in defaults.items():
        if _missing(out.get(key)):
            out[key] = value
    out["status"] = Status(out["status"]).value
    out["mode"] = Mode(out["mode"]).value
    keys = (*DEVICE_KEYS, *HOST_KEYS)
    where = provenance or {key: out.get(key) or fallback.get(key, "") for key in keys}
    for key in keys:
        out[key] = where.get(key, "")
    out["device_id"] += device_suffix
    return out


# The valid values of the numeric columns, checked by every reader (bench.results.read_csv,
# bench.report.load): a hand-edited accuracy of 1e9 or -5 is refused with its file, line and
# column instead of crashing a statistic later. Fractions are in [0, 1]; every other count,
# time, size and rate is finite and >= 0. Not bounded: the losses (a diverged cell's loss is
# not finite by definition), ``mfu`` (a busy machine's measured peak can sit below what a
# cell achieved, so > 1 happens), the operators' net memory (a free is negative) and
# ``schema_version`` (checked against the known versions).
UNBOUNDED = frozenset({"final_train_loss", "train_loss", "mfu", "self_cpu_mem_mib",
                       "self_device_mem_mib", "schema_version"})


def value_range(column: Column) -> tuple[float, float] | None:
    """``(low, high)``, both inclusive, of a numeric column's finite values; None when the
    column is not numeric or not bounded (:data:`UNBOUNDED`)."""
    if column.dtype not in ("int", "float") or column.name in UNBOUNDED:
        return None
    return (0.0, 1.0) if column.unit == "fraction" else (0.0, float("inf"))


def check_value(column: Column, text: str) -> str:
    """Why ``text`` (one CSV cell of ``column``) is not a valid value; "" when it is.
    Empty, ``nan`` and ``none`` are "missing" (the writer's empty cell) and always valid."""
    if column.dtype not in ("int", "float") or text.strip().lower() in ("", "nan", "none"):
        return ""
    try:
        value = float(text)
    except ValueError:
        return f"{text!r} is not a number"
    if column.dtype == "int" and math.isfinite(value) and not value.is_integer():
        return f"{text!r} is not a whole number"
    bounds = value_range(column)
    if bounds is None:
        return ""
    low, high = bounds
    if not math.isfinite(value) or not low <= value <= high:
        valid = f"[{low:g}, {high:g}]" if math.isfinite(high) else f"a finite number >= {low:g}"
        return f"{text!r} is out of range (valid: {valid})"
    return ""


class SchemaError(ValueError):
    """A row with a key the schema does not know."""


def check_keys(row: dict[str, Any], kind: str, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Keys of ``row`` that are not ``kind`` columns. Raises :class:`SchemaError` when
    ``$ADAPTBENCH_STRICT_SCHEMA`` is set (the test suite sets it), so a measurement that is
    computed and then dropped fails a test instead of vanishing."""
    unknown = sorted(k for k in row if k not in COLUMNS[kind] and k not in ignore)
    if unknown and os.environ.get(STRICT_ENV):
        raise SchemaError(f"{kind} row has keys the schema does not define: {unknown}; add "
                          "them to bench/schema.py or stop producing them")
    return unknown


def glossary_markdown() -> str:
    """The column glossary (README / docs), generated so it cannot drift from the schema."""
    lines = []
    for kind, columns in TABLES.items():
        lines += [f"**{kind}.csv**", "", "| column | type | unit | meaning |", "|---|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype} | {c.unit or ''} | {c.meaning} |" for c in columns]
        lines.append("")
    return "\n".join(lines)


GLOSSARY_BEGIN = "<!-- glossary: generated by python -m bench.schema; do not edit by hand -->"
GLOSSARY_END = "<!-- /glossary -->"


def fill_glossary(text: str) -> str:
    """``text`` (the README) with the block between the glossary markers regenerated."""
    begin, end = text.index(GLOSSARY_BEGIN), text.index(GLOSSARY_END)
    return (text[:begin] + GLOSSARY_BEGIN + "\n\n" + glossary_markdown() + "\n"
            + text[end:])


if __name__ == "__main__":  # python -m bench.schema [--write docs/methodology.md]
    import sys
    from pathlib import Path

    if sys.argv[1:2] == ["--write"]:
        path = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/methodology.md")
        path.write_text(fill_glossary(path.read_text()))
        print(f"glossary written into {path}")
    else:
        print(glossary_markdown())
