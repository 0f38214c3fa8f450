"""How far the cost model's estimates were from what ran, and the speeds the rows imply.

Two questions, answered from a results directory's current rows (``bench.results``):

1. *Was the plan right?* For every ``ok`` full-mode row, ``wall_s / estimate_s`` (the plan
   wrote ``estimate_s`` into the row before the cell ran). Measure-only rows are left out: their
   ``estimate_s`` is the full cell's, which they never ran. ``bench plan`` prints this line for
   its results directory, so a user sees how far to trust the ETA.

   Both questions are about one cell alone on its device: packed rows (``concurrency`` > 1)
   are left out of each.
2. *What should the cost model say?* The :class:`bench.plan.costmodel.DeviceSpeed` constants fitted
   to the rows of one device kind and precision:

   - CPU (steps are compute plus overhead): seconds per training image
     ``1 / train_img_s = 3 * gflops_fwd_per_img * 1e9 / flop_s + per_img_s``, a least-squares
     line through the rows (both coefficients kept >= 0).
   - CUDA (asynchronous: a step costs ``max(compute, per_step_s)``): ``per_step_s`` is the
     median step time of the launch-bound rows (the shortest steps, within 1.5x of the
     fastest), ``tflops`` the median ``3 * gflops * train_img_s`` of the rows whose step is
     at least 3x that floor (compute-bound).
   - ``start_s`` (every cell): the median of ``wall_s - epochs * epoch_s - evaluation``, the
     evaluation costed by the fitted speed.

Command line::

    python -m bench.tools.calibrate results/cpu [results/gpu ...] [--profile cpu --device cpu]

prints, per (device, precision), the estimate error of the last run and the fitted constants;
with ``--profile``, also what *today's* cost model (:data:`bench.plan.costmodel.SPEEDS`) estimates for
the same cells (each row's recipe on top of the profile) against what they took, which is how
the constants in :mod:`bench.plan.costmodel` were checked.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.schema import Mode, Status


@dataclass(frozen=True)
class ErrorSummary:
    """``wall_s / estimate_s`` over the full-mode ``ok`` rows: n, median, p10, p90 (ratios), and
    the totals in seconds (what the ETA said and what the cells took)."""

    n: int
    median: float
    p10: float
    p90: float
    estimated_s: float
    measured_s: float

    def line(self) -> str:
        if not self.n:
            return "no finished full-mode cells to compare the estimates with"
        return (f"{self.n} cells took x{self.median:.2f} their estimate (median; p10 "
                f"x{self.p10:.2f}, p90 x{self.p90:.2f}); in all {self.estimated_s / 60:.1f} min "
                f"estimated, {self.measured_s / 60:.1f} min measured")


def _num(row: dict[str, Any], key: str) -> float:
    try:
        value = float(row.get(key, "") or "nan")
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _solo(row: dict[str, Any]) -> bool:
    """Did the cell have its device to itself? A packed row (``concurrency`` > 1: ray's or the
    local executors' ``pack``) shared it, so its wall time and throughput are not what the
    cost model prices (one cell alone). Rows without the column (older files) ran solo."""
    conc = _num(row, "concurrency")
    return math.isnan(conc) or conc <= 1


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == Status.OK and r.get("mode") == Mode.FULL
            and _num(r, "estimate_s") > 0 and _num(r, "wall_s") > 0 and _solo(r)]


def estimate_errors(rows: list[dict[str, Any]]) -> ErrorSummary:
    """How far ``estimate_s`` was from ``wall_s`` (see the module docstring)."""
    usable = _comparable(rows)
    if not usable:
        return ErrorSummary(0, math.nan, math.nan, math.nan, 0.0, 0.0)
    ratios = np.array([_num(r, "wall_s") / _num(r, "estimate_s") for r in usable])
    return ErrorSummary(len(usable), float(np.median(ratios)), float(np.percentile(ratios, 10)),
                        float(np.percentile(ratios, 90)),
                        float(sum(_num(r, "estimate_s") for r in usable)),
                        float(sum(_num(r, "wall_s") for r in usable)))


@dataclass(frozen=True)
class Fit:
    """Fitted cost-model constants for one (device, precision) and the rows behind them."""

    device: str  # cpu | cuda
    precision: str
    n: int
    tflops: float
    per_img_s: float
    per_step_s: float
    start_s: float


def _train_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == Status.OK and _num(r, "train_img_s") > 0
            and _num(r, "gflops_fwd_per_img") > 0 and _num(r, "batch_size") > 0 and _solo(r)]


def fit_speed(rows: list[dict[str, Any]], device: str) -> tuple[float, float, float]:
    """(tflops, per_img_s, per_step_s) that best explain ``train_img_s`` of ``rows``."""
    rows = _train_rows(rows)
    if not rows:
        raise ValueError("no ok rows with throughput and FLOPs to fit")
    flop = np.array([3 * _num(r, "gflops_fwd_per_img") * 1e9 for r in rows])
    sec_per_img = np.array([1 / _num(r, "train_img_s") for r in rows])
    if device == "cuda":
        step = sec_per_img * np.array([_num(r, "batch_size") for r in rows])
        floor = float(np.median(step[step <= 1.5 * step.min()]))
        bound = step >= 3 * floor
        achieved = flop[bound] / sec_per_img[bound] if bound.any() else flop / sec_per_img
        return float(np.median(achieved) / 1e12), 0.0, floor
    if len(rows) == 1 or np.ptp(flop) == 0:
        return float(np.median(flop / sec_per_img) / 1e12), 0.0, 0.0
    slope, intercept = np.polyfit(flop, sec_per_img, 1)
    if slope <= 0:  # overhead explains nothing better than arithmetic: fit a pure rate
        return float(np.median(flop / sec_per_img) / 1e12), 0.0, 0.0
    if intercept < 0:  # through the origin instead: a negative fixed cost is not a cost
        slope, intercept = float(flop @ sec_per_img / (flop @ flop)), 0.0
    return float(1 / slope / 1e12), float(intercept), 0.0


def fit(rows: list[dict[str, Any]]) -> list[Fit]:
    """One :class:`Fit` per (device, precision) among ``rows``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r.get("device", ""), r.get("precision", "")), []).append(r)
    out = []
    for (device, precision), group in sorted(groups.items()):
        if not _train_rows(group):
            continue
        tflops, per_img_s, per_step_s = fit_speed(group, device)
        starts = []
        for r in _comparable(group):
            epochs, epoch_s = _num(r, "epochs"), _num(r, "epoch_s")
            gflops, n_test = _num(r, "gflops_fwd_per_img"), _num(r, "test_count")
            if math.isnan(epoch_s) or math.isnan(epochs):
                continue
            eval_s = 0.0 if math.isnan(n_test) or math.isnan(gflops) else (
                epochs * n_test * (gflops * 1e9 / (tflops * 1e12) + per_img_s / 3))
            starts.append(_num(r, "wall_s") - epochs * epoch_s - eval_s)
        start_s = max(0.0, statistics.median(starts)) if starts else math.nan
        out.append(Fit(device, precision, len(_train_rows(group)), tflops, per_img_s,
                       per_step_s, start_s))
    return out


def cost_model_errors(rows: list[dict[str, Any]], profile: str, device: str) -> ErrorSummary:
    """``wall_s`` over today's cost-model estimate for the full-mode ``ok`` rows, each cell
    estimated with the row's own recipe (epochs, batch, subset sizes, precision) on ``profile``."""
    from bench import config
    from bench.plan.costmodel import CostModel

    cfg, model = config.load(profile), CostModel(device)
    redone = []
    for r in _comparable(rows):
        cell = config.Cell(r["dataset"], r["model"], r["strategy"], int(r["seed"]))
        recipe = cfg.replace(batch_size=int(r["batch_size"]), epochs=int(r["epochs"]),
                             train_size=int(r["train_size"]), test_size=int(r["test_size"]),
                             precision=r["precision"])
        redone.append({**r, "estimate_s": model.estimate(recipe, cell).seconds})
    return estimate_errors(redone)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.calibrate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="results directories")
    parser.add_argument("--profile", default=None,
                        help="also estimate the rows' cells with today's cost model on this "
                             "profile (e.g. cpu for results/cpu, gpu-quick for results/gpu)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cost-model device for --profile (default: %(default)s)")
    args = parser.parse_args(argv)
    from bench import results

    for directory in args.dirs:
        if not (directory / "runs.csv").is_file():
            print(f"error: {directory} has no runs.csv; valid: a results directory written by "
                  "bench run", file=sys.stderr)
            return 2
        rows, _ = results.read_current_runs(directory)
        print(f"{directory}: estimates of the last run: {estimate_errors(rows).line()}")
        if args.profile:
            now = cost_model_errors(rows, args.profile, args.device)
            print(f"  today's cost model ({args.profile}, {args.device}): {now.line()}")
        for f in fit(rows):
            print(f"  fitted ({f.device}, {f.precision}) from {f.n} rows: tflops={f.tflops:.4g} "
                  f"per_img_s={f.per_img_s:.3g} per_step_s={f.per_step_s:.3g} "
                  f"start_s={f.start_s:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
