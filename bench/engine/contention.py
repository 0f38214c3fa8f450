"""Was the CPU this cell's while it was timed? The contention check of every timing window.

A busy host slows a CPU cell without any sign in its throughput alone: the same resnet18 cell
read 58.9 img/s on a shared machine and 468.6 img/s on a quiet one. So every timed window also
reads the process's CPU time (user + system, all threads: :func:`time.process_time`) and
compares it with what the window could have used, wall seconds x torch's intra-op threads.

``cpu_share`` = the windows' CPU seconds / (their wall seconds x threads), summed over the
windows: the fraction (0..1) of the CPU the process got while it was timed. torch's OpenMP
threads spin while they wait, so a cell alone on its cores reads close to 1; another process
on those cores takes their time slices and the share drops with the throughput. A cell is
``contended`` when its share is below :data:`CPU_SHARE_THRESHOLD`; on CUDA the host share says
nothing about the device, so there the check does not apply (share empty, never contended).

The share is weighted by time, not the median of the windows' shares: the time-based
comparisons use ``train_img_s_pooled`` (images over the windows' total seconds), in which a
window slowed 30x by another process weighs 30x, so the check weighs it the same way. A median
let a cell through with 3 of 22 windows at ~12 img/s against ~390 (results/cpu published at
82c4613 under a busy host: median share 0.88-0.99, pooled throughput half the median).

The clocks are injectable (:data:`PROBE`), so tests can make a window contended without
loading the machine.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Below this share of threads x wall time a CPU cell is contended. 0.8: a quiet machine reads
# ~0.9-1.0 (spinning OpenMP threads); one other busy process on 2 cores halves it.
CPU_SHARE_THRESHOLD = 0.8
# A re-measure of a contended cell times at most this many windows (never more than the
# first measurement had): enough for a median, far short of re-running the training.
REMEASURE_MAX_WINDOWS = 10
# Steps run before a re-measure's first window: the model is already warm (caches, allocator,
# autotuning), the step only re-enters the loop.
REMEASURE_WARMUP_STEPS = 1


def load_1min() -> float:
    """The 1-minute load average (runnable processes), NaN where the OS has none."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return math.nan


@dataclass
class Probe:
    """The clocks the check reads: CPU seconds of this process and the load average.

    :meth:`cpu_clock` is asked once per measurement pass (0: the training's windows, 1.. the
    re-measures), so a test can make one pass contended and the next not.
    """

    cpu_s: Callable[[], float] = time.process_time
    load: Callable[[], float] = load_1min

    def cpu_clock(self, attempt: int) -> Callable[[], float]:
        """The CPU-seconds clock of measurement pass ``attempt`` (0 = the first)."""
        return self.cpu_s


PROBE = Probe()  # tests replace it (monkeypatch bench.engine.contention.PROBE)


def pooled_share(window_cpu_s: list[float], windows: list[tuple[float, float]],
                 threads: int) -> float:
    """All the windows' CPU seconds over their wall seconds x threads, clipped to 0..1; NaN
    without a window. Each window weighs by its duration, as in ``train_img_s_pooled``."""
    cpu = wall = 0.0
    for c, (start, end) in zip(window_cpu_s, windows, strict=False):
        if end > start:
            cpu, wall = cpu + c, wall + (end - start)
    if wall <= 0 or threads <= 0:
        return math.nan
    return min(1.0, max(0.0, cpu / (wall * threads)))


@dataclass(frozen=True)
class Verdict:
    """One measurement pass judged: its time-weighted share and whether it was contended."""

    cpu_share: float  # NaN when not applicable (CUDA) or no window
    contended: bool

    @property
    def applies(self) -> bool:
        return not math.isnan(self.cpu_share)


def judge(window_cpu_s: list[float], windows: list[tuple[float, float]], threads: int,
          device_type: str) -> Verdict:
    """The :class:`Verdict` of one pass of timed windows (CPU cells only)."""
    if device_type != "cpu":
        return Verdict(math.nan, False)
    share = pooled_share(window_cpu_s, windows, threads)
    if math.isnan(share):
        return Verdict(math.nan, False)
    return Verdict(share, share < CPU_SHARE_THRESHOLD)


def settle(row: dict[str, Any], meter: Any, step: Callable[[], int], *, device_type: str,
           device: Any, threads: int, window_steps: int, retries: int,
           distributed: bool = False) -> None:
    """Judge the training's timed windows and, while contended, re-time up to ``retries``
    passes of windows with ``step`` (an extra training step that returns its image count;
    the schedule does not move). Writes ``cpu_share``, ``contended``, ``remeasured`` and, when
    a re-measure is kept, the throughput columns of the pass it keeps.

    A pass that is not contended ends the retries and replaces the first figures; when every
    pass is contended the least contended one is kept and the row stays marked. Under
    ``--ddp`` the ranks would have to re-measure together, so there the flag is only recorded.
    """
    from bench.engine import measure

    verdict = judge(meter.window_cpu_s, meter.windows, threads, device_type)
    best, best_summary = verdict, None
    attempts = 0
    while best.contended and attempts < retries and not distributed:
        attempts += 1
        again = measure.ThroughputMeter(REMEASURE_WARMUP_STEPS, window_steps, device,
                                        cpu_clock=PROBE.cpu_clock(attempts))
        windows = min(REMEASURE_MAX_WINDOWS, max(1, int(row.get("timed_windows") or 1)))
        for _ in range(REMEASURE_WARMUP_STEPS + windows * window_steps):
            again.begin_step()
            again.end_step(step())
        again.interrupt()
        v = judge(again.window_cpu_s, again.windows, threads, device_type)
        if v.applies and (not v.contended or v.cpu_share > best.cpu_share):
            best, best_summary = v, again.summary()
    if best_summary is not None:
        row.update({k: best_summary[k] for k in THROUGHPUT_COLUMNS})
        row["timed_windows"] = int(best_summary["timed_windows"])
    row.update(cpu_share=best.cpu_share, contended=best.contended, remeasured=attempts)


# The columns a kept re-measure replaces (bench.engine.measure.ThroughputMeter.summary).
THROUGHPUT_COLUMNS = ("train_img_s", "train_img_s_p10", "train_img_s_p90",
                      "train_img_s_pooled", "timed_s")
