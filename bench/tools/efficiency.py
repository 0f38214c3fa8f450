"""Sweep efficiency, executor by executor, measured side by side in one sitting::

    python -m bench.tools.efficiency                       # the five-cell resnet18 smoke sweep
    python -m bench.tools.efficiency --executors process   # one of them
    python -m bench.tools.efficiency --executors warm,ray  # ray: Ray's start-up is in its wall time
    python -m bench.tools.efficiency --set epochs=2        # more --set items for every sweep

Sweep efficiency = seconds the sweep's cells spent training epochs (sum over its rows of
``epochs x epoch_s``) / the sweep's wall time (the whole ``python -m bench run`` command, from
its start to its exit, measured here). It says how much of a sweep is the benchmark itself;
the rest is process starts, imports, data loading, model builds, evaluation and the memory and
profiler windows. Each executor's sweep runs into a fresh temporary results directory, one after
the other (never in parallel: they would share the cores), ``warm`` first, so that any one-time
cost of the machine (a cold matmul-peak cache) counts against the default. The load average is
printed beside each figure: a busy machine lowers every figure.

Every executor is measured by default, ``ray`` and ``submitit`` only where their package is
installed (``submitit`` with its local cluster where there is no Slurm: the five cells then
run at once on this machine). ``ray`` starts its own Ray instance inside the sweep's wall time.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import REPO_ROOT, results
from bench.executors import NAMES
from bench.progress import training_s
from bench.schema import Status

# Five small resnet18 cells: the fixed cost per cell dominates them.
SWEEP = ["--profile", "smoke", "--set", "models=resnet18",
         "--set", "strategies=repeat3,resize32,droppools,cifarstem,pad32"]


def measure(executor: str, results_dir: Path, extra: list[str]) -> dict[str, float | str]:
    """Run the sweep once with ``executor``; its training seconds, wall seconds, efficiency."""
    cmd = [sys.executable, "-m", "bench", "run", *SWEEP, *extra, "--results-dir",
           str(results_dir), "--device", "cpu", "--quiet", "--executor", executor]
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: the {executor} sweep failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    rows = results.read_dir(results_dir, "runs")
    return summarize(executor, rows, wall, load)


def summarize(executor: str, rows: list[dict[str, str]], wall_s: float,
              load: float) -> dict[str, float | str]:
    """One line of the table from a sweep's rows and its wall time (s).

    ``concurrency`` is the most cells any row shared its device with: above 1 the cells' epochs
    ran at the same time and slowed each other, so their sum may exceed the wall time and the
    efficiency is not comparable with a one-at-a-time executor's (it is flagged, not hidden).
    """
    train = training_s(rows)
    conc = max((int(r["concurrency"]) for r in rows if str(r.get("concurrency", "")).isdigit()),
               default=1)
    evals = evaluation_s(rows)
    in_cells = sum(_number(r.get("wall_s")) for r in rows)
    return {"executor": executor, "cells": len(rows),
            "ok": sum(r["status"] == Status.OK for r in rows), "training_s": train, "wall_s": wall_s,
            "efficiency": train / wall_s if wall_s > 0 else float("nan"), "load_before": load,
            "concurrency": conc, "eval_s": evals,
            # The rest of the cells' own wall time: building, the memory and profiler window,
            # the FLOP count, writing nothing yet (rows are written by the driver).
            "cell_other_s": max(0.0, in_cells - train - evals),
            # Outside every cell: interpreter and imports, planning, worker start, row writes.
            "outside_s": max(0.0, wall_s - in_cells)}


def _number(value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0


def evaluation_s(rows: list[dict[str, str]]) -> float:
    """Seconds the cells spent evaluating: per row, one pass over the test split per epoch at
    the row's ``eval_img_s`` (``epochs x test_count / eval_img_s``; measure-only rows, which do
    not evaluate, count 0)."""
    total = 0.0
    for r in rows:
        rate = _number(r.get("eval_img_s"))
        if rate > 0:
            total += _number(r.get("epochs")) * _number(r.get("test_count")) / rate
    return total


def line(m: dict[str, float | str]) -> str:
    """A row of the printed table; a concurrent sweep's efficiency carries a warning."""
    note = (f"  (cells ran {m['concurrency']} at once on one device: their epochs overlapped, "
            "not comparable)" if int(m["concurrency"]) > 1 else "")
    return (f"{m['executor']:<9} {m['cells']:>5} {m['ok']:>3} {m['training_s']:>10.1f} "
            f"{m['eval_s']:>6.1f} {m['cell_other_s']:>8.1f} {m['outside_s']:>9.1f} "
            f"{m['wall_s']:>7.1f} {m['efficiency']:>10.2f} {m['load_before']:>5.2f}{note}")


HEADER = (f"{'executor':<9} {'cells':>5} {'ok':>3} {'training_s':>10} {'eval_s':>6} "
          f"{'in-cell_s':>8} {'outside_s':>9} {'wall_s':>7} {'efficiency':>10} {'load':>5}")
LEGEND = ("training_s: epochs x epoch_s summed; eval_s: the evaluation passes; in-cell_s: the "
          "rest of the cells' wall_s (model build, FLOP count, memory and profiler window); "
          "outside_s: the sweep's wall time outside every cell (interpreter, imports, planning, "
          "worker start, row writes). training_s / (training_s + eval_s) is what the efficiency "
          "would be if nothing else cost time.")


def _installed() -> list[str]:
    """The executors whose optional package (ray, submitit) can be found here."""
    import importlib.util

    engine = {"ray": "ray", "submitit": "submitit"}
    return [n for n in NAMES if n not in engine or importlib.util.find_spec(engine[n])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.efficiency",
                                     description=__doc__.split("\n\n")[0])
    default = ",".join(_installed())
    parser.add_argument("--executors", default=default,
                        help=f"comma-separated, in the order to run (default {default})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra config override for every sweep")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.executors.split(",") if n.strip()]
    bad = [n for n in names if n not in NAMES]
    if bad or not names:
        print(f"error: unknown executor {(bad or [''])[0]!r}; valid: {', '.join(NAMES)}",
              file=sys.stderr)
        return 2
    extra = [x for item in args.overrides for x in ("--set", item)]
    print(f"sweep: python -m bench run {' '.join(SWEEP)} {' '.join(extra)}".rstrip())
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="adaptbench-efficiency-") as tmp:
        for name in names:
            m = measure(name, Path(tmp) / name, extra)
            print(line(m), flush=True)
    print(LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
